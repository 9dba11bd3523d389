/**
 * Archive storage that fills up, turns read-only or cannot be used, with the real hook binary:
 * the archive lives on a 1 MiB tmpfs mounted for the test (root; skipped visibly where mounting
 * is not permitted, a failure under CI). Promises checked after every run:
 *   - release exits 0 and logs exactly one clear line (config `logFile`);
 *   - nothing is lost: the local NVRAM is byte-identical, older generations still verify,
 *     no temp or half-written generation stays behind;
 *   - prepare starts the VM from the local NVRAM when the archive cannot be used
 *     (`archiveUnavailable: "allow"`) and refuses with exit 1 + one stderr line ("refuse").
 */
import { chownSync, mkdirSync, readFileSync, rmSync, statfsSync, unlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_UUID, domainXml, ensureBuilt, makeFirmware, makeHost, pattern, tempRoot, VARS_SIZE, type Firmware, type HookHost } from '../hook/harness';
import { canMount, checkArchive, mountTmpfs, remount, sha256, tempFilesUnder, unmountAll } from './support';

const VM = 'vm1';
const tmp = tempRoot();
const mountable = canMount(tmp.root);
const ci = !!process.env.CI && process.env.CI !== 'false' && process.env.CI !== '0';
let fw: Firmware;

beforeAll(() => {
  ensureBuilt();
  fw = makeFirmware(path.join(tmp.root, 'fw'));
}, 120_000);
afterAll(() => {
  unmountAll();
  tmp.cleanup();
});

const lines = (s: string) => s.split('\n').filter((l) => l !== '');

/** A host whose archive directory is a fresh tmpfs of `size`. */
function hostOnTmpfs(name: string, size: string, config: Record<string, unknown> = {}): HookHost {
  const mnt = path.join(tmp.root, `mnt-${name}`);
  mountTmpfs(mnt, size);
  return makeHost(tmp.root, { firmware: fw, name, archiveDir: mnt, config });
}

/** Run one hook call and return it with the log lines it added. */
async function run(h: HookHost, op: 'prepare' | 'release', extra: Record<string, unknown> = {}) {
  if (Object.keys(extra).length) h.setConfig({ archiveDir: h.archiveDir, ...extra });
  const logBefore = lines(h.log()).length;
  const xml = domainXml({ name: VM, firmware: 'ovmf', nvram: h.nvramPath(VM) }, fw);
  const r = await h.run([VM, op, op === 'prepare' ? 'begin' : 'end', op === 'prepare' ? '-' : 'shutdown'], xml);
  const logged = lines(h.log()).slice(logBefore);
  if (process.env.DEBUG_STORAGE) console.log(op, JSON.stringify(extra), r.code, r.stderr.trim(), logged);
  return { ...r, logged };
}

const guest = (h: HookHost, seed: string) => {
  const data = pattern(VARS_SIZE, seed);
  writeFileSync(h.nvramPath(VM), data);
  return sha256(data);
};
const localSha = (h: HookHost) => sha256(readFileSync(h.nvramPath(VM)));
const freeBytes = (dir: string) => {
  const s = statfsSync(dir);
  return s.bavail * s.bsize;
};
/** Fill the file system of `dir` up to `leave` free bytes with one filler file. */
function fill(dir: string, leave = 0): string {
  const filler = path.join(dir, 'filler');
  writeFileSync(filler, Buffer.alloc(Math.max(0, freeBytes(dir) - leave)));
  return filler;
}

/** The archive holds exactly these contents (oldest first), every generation verifies, no debris. */
function expectArchive(h: HookHost, shas: string[]) {
  const a = checkArchive(h.archiveDir, DEFAULT_UUID);
  expect(a.bad).toEqual([]);
  expect(a.leftovers).toEqual([]);
  expect(a.generations.map((g) => g.sha256)).toEqual(shas);
  expect(tempFilesUnder(h.dir)).toEqual([]);
}

const suite = mountable.ok ? describe : describe.skip;
if (!mountable.ok) {
  if (ci) describe('archive storage failures', () => it('needs tmpfs mounts (CI must not skip)', () => expect.fail(`cannot mount: ${mountable.why}`)));
  else console.warn(`[storage tests skipped] cannot mount a tmpfs: ${mountable.why}`);
}

suite('archive on a 1 MiB tmpfs that fills up', () => {
  it('release on a full archive exits 0 with one log line and loses nothing; prepare keeps the local NVRAM; space back → archived', async () => {
    const h = hostOnTmpfs('full', '1m');
    expect((await run(h, 'prepare')).code).toBe(0);
    const first = guest(h, 'boot-1');
    expect((await run(h, 'release')).code).toBe(0);
    expectArchive(h, [first]); // 528 KiB of 1 MiB used

    // the second generation does not fit
    expect((await run(h, 'prepare')).code).toBe(0);
    const second = guest(h, 'boot-2');
    const full = await run(h, 'release');
    expect({ code: full.code, stderr: full.stderr }).toEqual({ code: 0, stderr: '' });
    expect(full.logged).toHaveLength(1);
    expect(full.logged[0]).toMatch(/err: vm1: ARCHIVE FAILED, the local NVRAM is kept and the next start retries: .*no space left on device/);
    expect(localSha(h)).toBe(second);
    expectArchive(h, [first]);

    // the next start keeps the unarchived local copy (the claim still protects it)
    const again = await run(h, 'prepare');
    expect(again.code).toBe(0);
    expect(localSha(h)).toBe(second);

    // completely full: even the claim cannot be written
    const filler = fill(h.archiveDir);
    const allow = await run(h, 'prepare', { archiveUnavailable: 'allow' });
    expect({ code: allow.code, stderr: allow.stderr }).toEqual({ code: 0, stderr: '' });
    expect(allow.logged).toHaveLength(1);
    expect(allow.logged[0]).toMatch(/warning: .*archive .* is unavailable .*no space left on device.*starting from the local NVRAM/);
    expect(localSha(h)).toBe(second);
    const refuse = await run(h, 'prepare', { archiveUnavailable: 'refuse' });
    expect(refuse.code).toBe(1);
    expect(lines(refuse.stderr)).toHaveLength(1);
    expect(refuse.stderr).toMatch(/^ovmf-hook: vm1: NVRAM archive .* is unavailable \(.*no space left on device.*\); fix the archive mount/);
    expect(localSha(h)).toBe(second);
    const afterRefusal = await run(h, 'release'); // libvirt's release after the refused start
    expect(afterRefusal.code).toBe(0);
    expect(afterRefusal.logged).toHaveLength(1);
    expect(localSha(h)).toBe(second);

    // a run with the archive still full
    expect((await run(h, 'prepare', { archiveUnavailable: 'allow' })).code).toBe(0);
    const stillFull = await run(h, 'release');
    expect(stillFull.code).toBe(0);
    expect(stillFull.logged).toHaveLength(1);
    expect(stillFull.logged[0]).toMatch(/ARCHIVE FAILED.*no space left on device/);
    expect(localSha(h)).toBe(second);
    expectArchive(h, [first]);

    // space is back (filler gone, volume grown): the next run archives the copy that waited locally
    unlinkSync(filler);
    remount(h.archiveDir, 'rw', 'size=4m');
    expect((await run(h, 'prepare')).code).toBe(0);
    expect(localSha(h)).toBe(second);
    const back = await run(h, 'release');
    expect(back.code).toBe(0);
    expect(back.logged.join('\n')).toMatch(/archived generation 2/);
    expectArchive(h, [first, second]);
  });

  it('ENOSPC at the metadata write (the data fitted): no half generation, the data file is removed again', async () => {
    const h = hostOnTmpfs('meta', '2m');
    expect((await run(h, 'prepare')).code).toBe(0);
    const first = guest(h, 'meta-1');
    expect((await run(h, 'release')).code).toBe(0);
    expect((await run(h, 'prepare')).code).toBe(0);
    const second = guest(h, 'meta-2');
    // room for the data of one generation (and the claim rewrite), not for its metadata
    const filler = fill(h.archiveDir, VARS_SIZE);
    const r = await run(h, 'release');
    expect(r.code).toBe(0);
    expect(r.logged).toHaveLength(1);
    expect(r.logged[0]).toMatch(/ARCHIVE FAILED.*no space left on device/);
    expectArchive(h, [first]);
    expect(freeBytes(h.archiveDir)).toBeGreaterThanOrEqual(VARS_SIZE); // the data file did not stay
    expect(localSha(h)).toBe(second);
    unlinkSync(filler);
    expect((await run(h, 'release')).code).toBe(0);
    expectArchive(h, [first, second]);
  });
});

suite('archive on a read-only mount', () => {
  it('release exits 0 with one log line; prepare starts from the local NVRAM ("allow") or refuses with one line ("refuse"); rw again → archived', async () => {
    const h = hostOnTmpfs('ro', '4m');
    expect((await run(h, 'prepare')).code).toBe(0);
    const first = guest(h, 'ro-1');
    expect((await run(h, 'release')).code).toBe(0);
    const changed = guest(h, 'ro-2'); // the VM ran again elsewhere in time; its copy is not archived
    remount(h.archiveDir, 'ro');

    const rel = await run(h, 'release');
    expect({ code: rel.code, stderr: rel.stderr }).toEqual({ code: 0, stderr: '' });
    expect(rel.logged).toHaveLength(1);
    expect(rel.logged[0]).toMatch(/err: vm1: ARCHIVE FAILED.*read-only file system/);
    expect(localSha(h)).toBe(changed);
    expectArchive(h, [first]);

    const allow = await run(h, 'prepare', { archiveUnavailable: 'allow' });
    expect({ code: allow.code, stderr: allow.stderr }).toEqual({ code: 0, stderr: '' });
    expect(allow.logged).toHaveLength(1);
    expect(allow.logged[0]).toMatch(/warning: .*is unavailable .*read-only file system.*starting from the local NVRAM/);
    expect(localSha(h)).toBe(changed);

    const refuse = await run(h, 'prepare', { archiveUnavailable: 'refuse' });
    expect(refuse.code).toBe(1);
    expect(lines(refuse.stderr)).toHaveLength(1);
    expect(refuse.stderr).toMatch(/is unavailable \(.*read-only file system.*\); fix the archive mount or set "archiveUnavailable": "allow"/);
    expect(localSha(h)).toBe(changed);
    expectArchive(h, [first]);

    remount(h.archiveDir, 'rw');
    expect((await run(h, 'release')).code).toBe(0); // libvirt's release after the refused start: skipped
    expectArchive(h, [first]);
    expect((await run(h, 'prepare', { archiveUnavailable: 'allow' })).code).toBe(0);
    expect(localSha(h)).toBe(changed);
    expect((await run(h, 'release')).code).toBe(0);
    expectArchive(h, [first, changed]);
  });
});

suite('archive that cannot be read', () => {
  const cases = [
    {
      name: 'owned by nobody (a root-squashed NFS export)',
      breakIt: (h: HookHost) => chownSync(h.archiveDir, 65534, 65534),
      why: /owned by uid 65534/,
    },
    {
      name: 'generation metadata unreadable (corrupt)',
      breakIt: (h: HookHost) => writeFileSync(path.join(h.archiveDir, DEFAULT_UUID, 'gen-000001.json'), '{ garbage'),
      why: /gen-000001\.json is unreadable/,
    },
    {
      name: 'the VM directory is not a directory',
      breakIt: (h: HookHost) => {
        rmSync(path.join(h.archiveDir, DEFAULT_UUID), { recursive: true });
        writeFileSync(path.join(h.archiveDir, DEFAULT_UUID), 'not a dir');
      },
      why: /not a directory/,
    },
  ];
  it.each(cases)('$name: prepare starts from the local NVRAM ("allow") or refuses with one line ("refuse"); release exits 0', async ({ breakIt, why }) => {
    const h = makeHost(tmp.root, { firmware: fw });
    mkdirSync(h.archiveDir, { mode: 0o700 });
    expect((await run(h, 'prepare')).code).toBe(0);
    guest(h, 'unreadable-1');
    expect((await run(h, 'release')).code).toBe(0);
    const local = guest(h, 'unreadable-2');
    breakIt(h);

    const allow = await run(h, 'prepare', { archiveUnavailable: 'allow' });
    expect({ code: allow.code, stderr: allow.stderr }).toEqual({ code: 0, stderr: '' });
    expect(allow.logged).toHaveLength(1);
    expect(allow.logged[0]).toMatch(/warning: .*is unavailable .*starting from the local NVRAM/);
    expect(allow.logged[0]).toMatch(why);
    expect(localSha(h)).toBe(local);

    const refuse = await run(h, 'prepare', { archiveUnavailable: 'refuse' });
    expect(refuse.code).toBe(1);
    expect(lines(refuse.stderr)).toHaveLength(1);
    expect(refuse.stderr).toMatch(why);
    expect(localSha(h)).toBe(local);

    const rel = await run(h, 'release');
    expect({ code: rel.code, stderr: rel.stderr }).toEqual({ code: 0, stderr: '' });
    expect(rel.logged).toHaveLength(1);
    expect(rel.logged[0]).toMatch(why);
    expect(localSha(h)).toBe(local);
  });
});
