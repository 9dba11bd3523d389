/**
 * Shared helpers of the reliability tests: an archive checker that trusts nothing of the code
 * under test, file-tree snapshots (to prove what a run did NOT touch), leftovers, a seeded PRNG
 * and tmpfs mounts. The hook itself is run through test/hook/harness.ts.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { join, relative } from 'node:path';

export const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

/** A temp file of a safe-fs writer (`.<base>.ovmf-hook-tmp-<random>`). */
export const isTempName = (name: string): boolean => name.startsWith('.') && name.includes('.ovmf-hook-tmp-');

export interface CheckedGeneration {
  generation: number;
  sha256: string;
  size: number;
  kind: string;
}

export interface ArchiveCheck {
  /** Committed generations (those with a gen-N.json), ascending. */
  generations: CheckedGeneration[];
  /** Committed generations whose data is missing, of another size or another sha256. */
  bad: string[];
  /** Files a crashed writer left: temps, gen-N.fd without json, claim.released-*. */
  leftovers: string[];
}

/**
 * Read `<archiveDir>/<uuid>` with plain fs calls (not the archive module): every gen-N.json must
 * parse and its gen-N.fd must have the recorded size and sha256.
 */
export function checkArchive(archiveDir: string, uuid: string): ArchiveCheck {
  const dir = join(archiveDir, uuid);
  if (!existsSync(dir)) return { generations: [], bad: [], leftovers: [] };
  const names = readdirSync(dir);
  const generations: CheckedGeneration[] = [];
  const bad: string[] = [];
  for (const name of names) {
    const m = /^gen-(\d+)\.json$/.exec(name);
    if (!m) continue;
    try {
      const meta = JSON.parse(readFileSync(join(dir, name), 'utf8')) as CheckedGeneration;
      const data = readFileSync(join(dir, `gen-${m[1]}.fd`));
      if (meta.generation !== Number(m[1]) || data.length !== meta.size || sha256(data) !== meta.sha256) bad.push(name);
      else generations.push({ generation: meta.generation, sha256: meta.sha256, size: meta.size, kind: meta.kind });
    } catch (e) {
      bad.push(`${name}: ${(e as Error).message}`);
    }
  }
  const leftovers = names.filter((n) => {
    const fd = /^gen-(\d+)\.fd$/.exec(n);
    return isTempName(n) || n.startsWith('claim.released-') || (fd !== null && !names.includes(`gen-${fd[1]}.json`));
  });
  generations.sort((a, b) => a.generation - b.generation);
  return { generations, bad, leftovers };
}

/** Every temp file (any writer) under `root`, relative paths. */
export function tempFilesUnder(root: string): string[] {
  if (!existsSync(root)) return [];
  return readdirSync(root, { recursive: true, withFileTypes: true })
    .filter((e) => isTempName(e.name))
    .map((e) => relative(root, join(e.parentPath, e.name)));
}

export interface Entry {
  type: 'file' | 'dir' | 'symlink' | 'other';
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtimeMs: number;
  ctimeMs: number;
  /** sha256 of a file (up to HASH_LIMIT bytes; larger ones are compared by size, mtime and ctime), target of a symlink */
  content?: string;
}

/** Files up to this size are hashed; any write or chmod of a larger one still changes its mtime/ctime. */
const HASH_LIMIT = 1024 * 1024;

/** lstat (never following links) + sha256 of every entry under `root`, by relative path. */
export function snapshot(root: string): Map<string, Entry> {
  const out = new Map<string, Entry>();
  const walk = (dir: string) => {
    for (const name of readdirSync(dir)) {
      const p = join(dir, name);
      const st = lstatSync(p);
      const type = st.isFile() ? 'file' : st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : 'other';
      const content = type === 'file' ? (st.size <= HASH_LIMIT ? sha256(readFileSync(p)) : undefined) : type === 'symlink' ? readlinkSync(p) : undefined;
      out.set(relative(root, p), { type, mode: st.mode, uid: st.uid, gid: st.gid, size: st.size, mtimeMs: st.mtimeMs, ctimeMs: st.ctimeMs, content });
      if (type === 'dir') walk(p);
    }
  };
  walk(root);
  return out;
}

/** Paths added, removed or changed (any of type, mode, owner, size, mtime, ctime, content). */
export function diffSnapshots(before: Map<string, Entry>, after: Map<string, Entry>): { added: string[]; removed: string[]; changed: string[] } {
  const same = (a: Entry, b: Entry) =>
    a.type === b.type && a.mode === b.mode && a.uid === b.uid && a.gid === b.gid && a.size === b.size && a.mtimeMs === b.mtimeMs && a.ctimeMs === b.ctimeMs && a.content === b.content;
  return {
    added: [...after.keys()].filter((k) => !before.has(k)).sort(),
    removed: [...before.keys()].filter((k) => !after.has(k)).sort(),
    changed: [...before.keys()].filter((k) => after.has(k) && !same(before.get(k)!, after.get(k)!)).sort(),
  };
}

/** mulberry32, seeded, so a failing kill sequence can be replayed. */
export { rng as prng } from '../support/rng';

// ---------------------------------------------------------------------------------------------
// tmpfs mounts (root only)

const mounted: string[] = [];

/** Can this process mount a tmpfs? (root, and not forbidden by the container) */
export function canMount(probeDir: string): { ok: boolean; why: string } {
  if (process.geteuid?.() !== 0) return { ok: false, why: 'not root' };
  const dir = join(probeDir, 'mount-probe');
  mkdirSync(dir, { recursive: true });
  const r = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', dir], { encoding: 'utf8' });
  if (r.status !== 0) return { ok: false, why: `mount -t tmpfs: ${(r.stderr || String(r.error)).trim()}` };
  spawnSync('umount', [dir]);
  return { ok: true, why: '' };
}

const run = (cmd: string, args: string[]): void => {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${(r.stderr || String(r.error)).trim()}`);
};

/** Mount a tmpfs of `size` (e.g. '1m') on `dir` (created), mode 0700 root. */
export function mountTmpfs(dir: string, size: string): void {
  mkdirSync(dir, { recursive: true });
  run('mount', ['-t', 'tmpfs', '-o', `size=${size},mode=0700`, 'tmpfs', dir]);
  mounted.push(dir);
}

/** `mount -o remount,<mode>[,<extra>]` (e.g. extra 'size=4m' grows a tmpfs). */
export const remount = (dir: string, mode: 'ro' | 'rw', extra?: string): void =>
  run('mount', ['-o', `remount,${mode}${extra ? `,${extra}` : ''}`, dir]);

/** Unmount everything mountTmpfs mounted (lazily if busy), newest first. */
export function unmountAll(): void {
  for (const dir of mounted.splice(0).reverse()) {
    const r = spawnSync('umount', [dir]);
    if (r.status !== 0) spawnSync('umount', ['-l', dir]);
  }
}
