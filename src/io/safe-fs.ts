/**
 * Safe file layer for a root process working in directories that others (libvirt-qemu) can write,
 * and on shared storage (NFS/CephFS) that may hang: `fs.promises` unless the caller passes the
 * synchronous `io` of a directory proven local (fs-api.ts), no path is followed through a symlink,
 * data is read from the fd that was checked, and files are replaced by temp + fsync + rename
 * (+ dev/ino check + directory fsync). See docs/HOOK.md §3.4–3.6.
 *
 * Every step can be observed by an optional `faults` hook so tests can throw ("error") or never
 * resolve ("kill") at a named point. Unused, it costs one `undefined` check per step.
 */
import { closeSync, constants as C, openSync, readdirSync, readSync, type Stats } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { setTimeout as delay } from 'node:timers/promises';
import path from 'node:path';
import { UnsafePathError } from '../core/errors';
import { byteOrder, fnv1a64, octalMode } from '../core/text';
import { asyncIo, type Io, type IoHandle } from './fs-api';

/** Fault-injection hook: called before each named step; throw to fail there, never resolve to "kill". */
export interface Faults {
  at(step: string): void | Promise<void>;
}

/** Steps of writeFileAtomic, in order (`temp-*` steps are those of writeTemp). */
export const TEMP_STEPS = ['temp-open', 'temp-write', 'temp-fsync', 'temp-chown', 'temp-close'] as const;
export const ATOMIC_WRITE_STEPS = [...TEMP_STEPS, 'rename', 'verify', 'dir-fsync'] as const;

export const MAX_NVRAM_BYTES = 64 * 1024 * 1024;
const TEMP_MARK = '.ovmf-hook-tmp-';

export const step = async (faults: Faults | undefined, name: string): Promise<void> => {
  if (faults) await faults.at(name);
};

/** Faults seen through a prefix: step 'x' is reported as '<prefix>-x'. */
export const prefixFaults = (faults: Faults | undefined, prefix: string): Faults | undefined =>
  faults && { at: (s) => faults.at(`${prefix}-${s}`) };

// node:crypto is loaded on first use: a hook call that hashes nothing (migrate, restore) never loads it
// eslint-disable-next-line @typescript-eslint/no-require-imports
export const sha256 = (buf: Uint8Array): string => (require('node:crypto') as typeof import('node:crypto')).createHash('sha256').update(buf).digest('hex');

/**
 * `bytes` random bytes from the kernel's CSPRNG (/dev/urandom), in hex: what node:crypto's
 * randomBytes gives, without loading node:crypto for a temp name or a token.
 */
export function randomHex(bytes: number): string {
  const buf = Buffer.alloc(bytes);
  const fd = openSync('/dev/urandom', C.O_RDONLY);
  try {
    for (let n = 0; n < bytes; ) n += readSync(fd, buf, n, bytes - n, null);
  } finally {
    closeSync(fd);
  }
  return buf.toString('hex');
}

const errno = (e: unknown): string | undefined => (e as NodeJS.ErrnoException)?.code;

/** ESTALE (NFS/FUSE: the file handle's inode is gone). libuv has no name for it: Node's code is "Unknown system error -116". */
const isEstale = (e: unknown): boolean => errno(e) === 'ESTALE' || (e as NodeJS.ErrnoException)?.errno === -osConstants.errno.ESTALE;

export interface ReadOptions {
  maxBytes?: number;
  /** Refuse a symlink as the last component (ELOOP). Default true. */
  noFollow?: boolean;
  /** Refuse files with more than one link (a hard link to a foreign file). Default true. */
  singleLink?: boolean;
  /** If given, the file's owner must be one of these uids. */
  uids?: readonly number[];
  /** The file API of the file's directory (fs-api.ts). Default fs.promises. */
  io?: Io;
}

/**
 * Open a regular file without blocking on FIFOs or following a final symlink, check the fd
 * (regular, link count, owner, size) and read from that fd only. Missing file → null.
 */
export async function readRegularFile(
  file: string,
  opts: ReadOptions = {},
): Promise<{ data: Buffer; stat: Stats } | null> {
  // On NFS/GlusterFS, a name another host has just replaced (rename over it) or removed can fail
  // the open — or the fstat/read of the file it found — with ESTALE: the lookup found an inode
  // that is gone by the time it is used. Looking the name up again finds the new file (or none);
  // a short pause between tries lets a burst of replacements pass.
  for (let attempt = 1; ; attempt++) {
    try {
      return await readRegularFileOnce(file, opts);
    } catch (e) {
      if (!isEstale(e) || attempt >= ESTALE_ATTEMPTS) throw e;
      await delay(2 ** attempt);
    }
  }
}

/** Tries of a read that keeps answering ESTALE (pauses 2, 4, … 32 ms: 62 ms in all). */
const ESTALE_ATTEMPTS = 6;

async function readRegularFileOnce(file: string, opts: ReadOptions): Promise<{ data: Buffer; stat: Stats } | null> {
  const { maxBytes = MAX_NVRAM_BYTES, noFollow = true, singleLink = true, uids, io = asyncIo } = opts;
  const flags = C.O_RDONLY | C.O_NONBLOCK | (noFollow ? C.O_NOFOLLOW : 0);
  let fh: IoHandle;
  try {
    fh = await io.open(file, flags);
  } catch (e) {
    if (errno(e) === 'ENOENT') return null;
    if (errno(e) === 'ELOOP') throw new UnsafePathError(file, `${file} is a symlink; refusing to follow it (remove the link and restore the NVRAM from the archive)`);
    throw e;
  }
  try {
    const stat = await fh.stat();
    if (!stat.isFile()) throw new UnsafePathError(file, `${file} is not a regular file; refusing to use it`);
    // nlink 0: replaced (renamed over) since we opened it — we hold a complete older version
    if (singleLink && stat.nlink > 1)
      throw new UnsafePathError(file, `${file} has ${stat.nlink} hard links; refusing to use it (remove the extra links)`);
    if (uids && !uids.includes(stat.uid))
      throw new UnsafePathError(file, `${file} is owned by uid ${stat.uid}, expected one of ${uids.join(', ')}; refusing to use it`);
    if (stat.size > maxBytes)
      throw new UnsafePathError(file, `${file} is ${stat.size} bytes, more than the ${maxBytes} allowed for an NVRAM file`);
    // Read up to maxBytes+1 so a file that grows after fstat is still caught.
    const buf = Buffer.alloc(Math.min(maxBytes + 1, Math.max(stat.size, 0) + 1));
    let n = 0;
    for (;;) {
      if (n === buf.length) break;
      const { bytesRead } = await fh.read(buf, n, buf.length - n, n);
      if (bytesRead === 0) break;
      n += bytesRead;
    }
    if (n > maxBytes || n > stat.size)
      throw new UnsafePathError(file, `${file} changed size while being read; refusing to use it`);
    return { data: buf.subarray(0, n), stat };
  } finally {
    await fh.close();
  }
}

/**
 * Read a VM's NVRAM file in a directory others can write: O_NOFOLLOW|O_NONBLOCK, regular file,
 * exactly one link, size ≤ maxBytes (default 64 MiB). Missing → null; unsafe → UnsafePathError.
 */
export const readNvramSafely = (
  file: string,
  opts: { maxBytes?: number; uids?: readonly number[]; io?: Io } = {},
): Promise<{ data: Buffer; stat: Stats } | null> => readRegularFile(file, { ...opts, noFollow: true, singleLink: true });

export interface WriteOptions {
  /** Final mode, applied with fchmod on the fd. Default 0o600. */
  mode?: number;
  /** Owner applied with fchown on the fd (only when given). */
  uid?: number;
  gid?: number;
  faults?: Faults;
  /** The file API of the file's directory (fs-api.ts). Default fs.promises. */
  io?: Io;
}

/** Longest file name Linux file systems take (NAME_MAX), in bytes. */
export const NAME_MAX = 255;
/** What a temp name adds to its file's name: ".", TEMP_MARK and 24 hex digits. */
const TEMP_EXTRA = 1 + TEMP_MARK.length + 24;

/**
 * The part of a temp name that tells whose temp it is: the file's name, or — when the name is too
 * long to carry a temp suffix within NAME_MAX (a 247-byte VM name gives a 255-byte NVRAM name) —
 * a stable digest of it.
 */
function tempStem(basename: string): string {
  return Buffer.byteLength(basename) + TEMP_EXTRA <= NAME_MAX ? basename : `~${fnv1a64(basename)}`;
}

export const tempName = (basename: string): string => `.${tempStem(basename)}${TEMP_MARK}${randomHex(12)}`;

/**
 * Create a fully written, fsynced, chowned and closed temp file next to `final` (same directory,
 * unpredictable name, O_CREAT|O_EXCL|O_NOFOLLOW). Returns its path and fstat. On error the temp
 * is unlinked. Steps: TEMP_STEPS.
 */
export async function writeTemp(final: string, data: Uint8Array, opts: WriteOptions = {}): Promise<{ tmp: string; stat: Stats }> {
  const { mode = 0o600, uid, gid, faults, io = asyncIo } = opts;
  const tmp = path.join(path.dirname(final), tempName(path.basename(final)));
  await step(faults, 'temp-open');
  const fh = await io.open(tmp, C.O_CREAT | C.O_EXCL | C.O_WRONLY | C.O_NOFOLLOW, 0o600);
  let open = true;
  try {
    await step(faults, 'temp-write');
    await fh.writeFile(data);
    await step(faults, 'temp-fsync');
    await fh.sync();
    await step(faults, 'temp-chown');
    if (uid !== undefined || gid !== undefined) await fh.chown(uid ?? -1, gid ?? -1);
    await fh.chmod(mode);
    const stat = await fh.stat();
    await step(faults, 'temp-close');
    open = false;
    await fh.close(); // NFS reports ENOSPC/EDQUOT here: an error is a failure
    return { tmp, stat };
  } catch (e) {
    if (open) await fh.close().catch(() => {});
    await unlinkQuiet(tmp, io);
    throw e;
  }
}

export const unlinkQuiet = (p: string, io: Io): Promise<void> => io.unlink(p).catch(() => {});

/** Same inode — plus type/size/owner, because a freed inode number is quickly reused (ext4). */
const sameFile = (a: Stats, b: Stats): boolean =>
  a.dev === b.dev && a.ino === b.ino && a.isFile() && a.size === b.size && a.uid === b.uid && a.gid === b.gid;

/** rename with a bounded retry on NFS's spurious ESTALE/EBUSY ("source gone, target present" = done). */
async function renameNfs(tmp: string, final: string, tmpStat: Stats, io: Io): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await io.rename(tmp, final);
    } catch (e) {
      const code = errno(e);
      if (!isEstale(e) && code !== 'EBUSY') throw e;
      const done = await io.lstat(final).then((s) => sameFile(s, tmpStat), () => false);
      if (done) return;
      if (attempt >= 3) throw e;
    }
  }
}

/**
 * Replace `final` atomically: writeTemp, rename over the final name (a symlink there is replaced,
 * never followed), lstat(final) must be our inode (else UnsafePathError; a symlink, hard link or
 * non-file found there is unlinked, another writer's regular file is left alone), then fsync the
 * directory. Steps: ATOMIC_WRITE_STEPS. The temp never survives an error.
 */
export async function writeFileAtomic(final: string, data: Uint8Array, opts: WriteOptions = {}): Promise<Stats> {
  return (await stageFileAtomic(final, data, opts)).commit();
}

/** A written and fsynced temp file waiting to replace its final name (see stageFileAtomic). */
export interface StagedFile {
  /** The rest of writeFileAtomic: rename, verify, directory fsync (the temp never survives an error). */
  commit(): Promise<Stats>;
  /** Give up: unlink the temp. */
  discard(): Promise<void>;
}

/**
 * writeFileAtomic in two halves: the slow one (writeTemp: write and fsync) now, the replacement
 * (commit) when the caller says. Independent files can so be written at the same time and still
 * replace their final names in a fixed order, each durable before the next one.
 */
export async function stageFileAtomic(final: string, data: Uint8Array, opts: WriteOptions = {}): Promise<StagedFile> {
  const { faults, io = asyncIo } = opts;
  const { tmp, stat } = await writeTemp(final, data, opts);
  const commit = async (): Promise<Stats> => {
    try {
      await step(faults, 'rename');
      await renameNfs(tmp, final, stat, io);
    } catch (e) {
      await unlinkQuiet(tmp, io);
      throw e;
    }
    await step(faults, 'verify');
    const now = await io.lstat(final).catch(() => null);
    if (!now || !sameFile(now, stat)) {
      // A planted link goes; a complete single-link file is another writer's result (writers only
      // rename finished files in): deleting it would destroy their data, so it stays.
      const planted = now !== null && (!now.isFile() || now.nlink > 1);
      if (planted) await unlinkQuiet(final, io);
      throw new UnsafePathError(final, `${final} was replaced by someone else while it was being written; ${planted ? 'removed it, ' : ''}try again`);
    }
    await step(faults, 'dir-fsync');
    await fsyncDir(path.dirname(final), io);
    return stat;
  };
  return { commit, discard: () => unlinkQuiet(tmp, io) };
}

/**
 * Create `final` exclusively as a hard link of `tmp` (atomic and NFS-safe, unlike O_EXCL on old
 * NFS). Returns false when `final` already exists. A lost NFS reply is detected by nlink == 2.
 */
export async function linkExclusive(tmp: string, final: string, io: Io): Promise<boolean> {
  try {
    await io.link(tmp, final);
    return true;
  } catch (e) {
    const won = await io.lstat(tmp).then((s) => s.nlink === 2, () => false);
    if (won) return true;
    if (errno(e) === 'EEXIST') return false;
    throw e;
  }
}

/** fsync a directory so a rename/link/unlink in it is durable (a COMMIT on NFS). */
export async function fsyncDir(dir: string, io: Io = asyncIo): Promise<void> {
  const fh = await io.open(dir, C.O_RDONLY | C.O_DIRECTORY);
  try {
    await fh.sync().catch((e) => {
      if (errno(e) !== 'EINVAL' && errno(e) !== 'ENOTSUP') throw e;
    });
  } finally {
    await fh.close();
  }
}

export const isTempName = (name: string, basename?: string): boolean =>
  basename === undefined ? name.startsWith('.') && name.includes(TEMP_MARK) : name.startsWith(`.${tempStem(basename)}${TEMP_MARK}`);

/**
 * Remove leftover temp files of writeTemp in `dir` (only regular files or symlinks, never
 * followed), optionally only those of `basename` and only those older than `olderThanMs`
 * (by mtime; use a margin on shared storage where another host may be writing). Returns the
 * removed paths, and the `kept` ones: younger than `olderThanMs` (a writer may still be at work).
 */
export async function sweepTemps(
  dir: string,
  basename?: string,
  opts: { olderThanMs?: number; now?: Date; io?: Io } = {},
): Promise<{ removed: string[]; kept: string[] }> {
  const { olderThanMs = 0, now = new Date(), io = asyncIo } = opts;
  const names = await io.readdir(dir).catch((e) => {
    if (errno(e) === 'ENOENT') return [] as string[];
    throw e;
  });
  const removed: string[] = [];
  const kept: string[] = [];
  for (const name of names.filter((n) => isTempName(n, basename))) {
    const p = path.join(dir, name);
    const st = await io.lstat(p).catch(() => null);
    if (!st || st.isDirectory()) continue;
    if (olderThanMs > 0 && now.getTime() - st.mtimeMs < olderThanMs) {
      kept.push(p);
      continue;
    }
    await unlinkQuiet(p, io);
    removed.push(p);
  }
  return { removed, kept };
}

/** sweepTemps, returning the removed paths only. */
export async function cleanupTemps(dir: string, basename?: string, opts: { olderThanMs?: number; now?: Date; io?: Io } = {}): Promise<string[]> {
  return (await sweepTemps(dir, basename, opts)).removed;
}

/**
 * Make sure `dir` exists (created 0700 when missing) and is safe for root-only data: a real
 * directory (not a symlink), owned by the effective uid, not writable by group/other. With
 * `checkAncestors`, every ancestor of its real path must be owned by root or the euid and not be
 * group/other-writable unless sticky (like /tmp). Violations → UnsafePathError naming the fix.
 */
export async function ensurePrivateDir(dir: string, opts: { create?: boolean; checkAncestors?: boolean; io?: Io } = {}): Promise<void> {
  // `io` is the directory's API, used for its parent and ancestors too: the path to a local directory is local
  const { create = true, checkAncestors = false, io = asyncIo } = opts;
  const euid = process.geteuid?.() ?? 0;
  if (create) {
    await io.mkdir(path.dirname(dir), { recursive: true, mode: 0o700 });
    await io.mkdir(dir, { mode: 0o700 }).catch((e) => {
      if (errno(e) !== 'EEXIST') throw e;
    });
  }
  const st = await io.lstat(dir);
  if (st.isSymbolicLink())
    throw new UnsafePathError(dir, `${dir} is a symlink; point the configuration at the real directory instead`);
  if (!st.isDirectory()) throw new UnsafePathError(dir, `${dir} is not a directory`);
  if (st.uid !== euid)
    throw new UnsafePathError(dir, `${dir} is owned by uid ${st.uid}, not ${euid}; run: chown ${euid} ${dir} (on NFS, export it with no_root_squash)`);
  if (st.mode & 0o022)
    throw new UnsafePathError(dir, `${dir} is writable by group/other (mode ${octalMode(st.mode)}); run: chmod 700 ${dir}`);
  if (!checkAncestors) return;
  const real = await io.realpath(dir);
  for (let p = path.dirname(real); ; p = path.dirname(p)) {
    const a = await io.lstat(p);
    if (a.uid !== 0 && a.uid !== euid)
      throw new UnsafePathError(dir, `${p} (parent of ${dir}) is owned by uid ${a.uid}; it must be owned by root`);
    if (a.mode & 0o022 && !(a.mode & 0o1000 /* sticky */))
      throw new UnsafePathError(dir, `${p} (parent of ${dir}) is writable by group/other (mode ${octalMode(a.mode)}); run: chmod go-w ${p}`);
    if (p === path.dirname(p)) break;
  }
}

/** The entries of `dir` in byte order (libvirt's order for hook and descriptor directories); [] when it cannot be read. */
export function namesInByteOrder(dir: string): string[] {
  try {
    return readdirSync(dir).sort(byteOrder);
  } catch {
    return [];
  }
}
