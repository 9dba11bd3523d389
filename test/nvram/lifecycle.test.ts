import { promises as fs } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { RefusedError, UnsafePathError } from '../../src/core/errors';
import { openArchive } from '../../src/io/archive';
import { prepareNvram, releaseNvram, resetNvram, restoreGeneration, type PrepareOptions, type ReleaseOptions } from '../../src/io/lifecycle';
import { getLocalState } from '../../src/io/local-state';
import { ATOMIC_WRITE_STEPS, sha256 } from '../../src/io/safe-fs';
import { bytes, io, ioFor, killAt, tempDir, throwAt } from './helpers';

const UUID = 'aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee';
const SIZE = 64 * 1024;
const T0 = new Date('2025-03-01T08:00:00Z');
const at = (s: number) => new Date(T0.getTime() + s * 1000);
const isRoot = process.geteuid?.() === 0;
const OWNER = isRoot ? { uid: 1234, gid: 5678, mode: 0o600 } : { mode: 0o600 };
const TEMPLATE = bytes(0xee, SIZE);

type Host = Awaited<ReturnType<typeof cluster>>['a'];

async function cluster() {
  const base = await tempDir();
  const root = path.join(base, 'archive');
  const templatePath = path.join(base, 'OVMF_VARS.fd');
  await fs.writeFile(templatePath, TEMPLATE);
  const host = async (name: string) => {
    const archive = await openArchive({ root, host: name, hostId: `id-${name}`, io });
    await fs.mkdir(path.join(base, name, 'nvram'), { recursive: true });
    return { archive, stateDir: path.join(base, name, 'state'), nvramPath: path.join(base, name, 'nvram', 'vm1_VARS.fd'), templatePath, io: ioFor };
  };
  return { base, root, templatePath, a: await host('alpha'), b: await host('beta') };
}

const prep = (h: Host, extra: Partial<PrepareOptions> = {}) =>
  prepareNvram({ ...h, uuid: UUID, vmName: 'vm1', owner: OWNER, expectedSize: SIZE, incomingMigration: false, now: T0, ...extra });
const rel = (h: Host, extra: Partial<ReleaseOptions> = {}) =>
  releaseNvram({ ...h, uuid: UUID, vmName: 'vm1', reason: 'shutdown', keep: 10, now: T0, ...extra });
/** The guest changes its UEFI variables. */
const guestWrites = (h: Host, fill: number) => fs.writeFile(h.nvramPath, bytes(fill, SIZE));
const localSha = async (h: Host) => sha256(await fs.readFile(h.nvramPath));

describe('prepare / release across hosts', () => {
  it('provisions a new VM from the template, owned as asked (0600), and claims it', async () => {
    const { a } = await cluster();
    const r = await prep(a);
    expect(r).toMatchObject({ action: 'provision', claim: 'new' });
    expect((await fs.readFile(a.nvramPath)).equals(TEMPLATE)).toBe(true);
    const st = await fs.stat(a.nvramPath);
    expect(st.mode & 0o777).toBe(0o600);
    if (isRoot) expect([st.uid, st.gid]).toEqual([1234, 5678]);
    expect((await a.archive.claimInfo(UUID))?.host).toBe('alpha');
    expect(await getLocalState(a.stateDir, UUID, { io })).toMatchObject({ generation: null, sha256: sha256(TEMPLATE) });
  });

  it('follows the VM: archive on stop, keep when unchanged, restore the newer generation on another host', async () => {
    const { a, b } = await cluster();
    await prep(a);
    await guestWrites(a, 1);
    expect(await rel(a)).toMatchObject({ action: 'archived', generation: 1, kind: 'archive' });
    expect(await a.archive.claimInfo(UUID)).toBeNull();
    expect(await prep(a)).toMatchObject({ action: 'keep' });
    expect(await rel(a)).toMatchObject({ action: 'skip' });

    expect(await prep(b)).toMatchObject({ action: 'restore', generation: 1 });
    expect((await fs.readFile(b.nvramPath)).equals(bytes(1, SIZE))).toBe(true);
    await guestWrites(b, 2);
    expect(await rel(b)).toMatchObject({ action: 'archived', generation: 2 });

    // alpha's copy is an older archived generation: restored without displacing
    expect(await prep(a)).toMatchObject({ action: 'restore', generation: 2, displaced: undefined });
    expect(await localSha(a)).toBe(sha256(bytes(2, SIZE)));
    expect((await a.archive.list(UUID)).map((g) => g.kind)).toEqual(['archive', 'archive']);
  });

  it('keeps an unarchived local copy after a failed archive, claim kept meanwhile, archives it next time', async () => {
    const { root, a, b } = await cluster();
    await prep(a);
    await guestWrites(a, 1);
    await rel(a); // gen 1
    await prep(a);
    await guestWrites(a, 2);
    const broken = { ...a, archive: await openArchive({ root, host: 'alpha', hostId: 'id-alpha', faults: throwAt('data-temp-write'), io }) };
    const failed = await rel(broken);
    expect(failed).toMatchObject({ action: 'failed' });
    expect(failed.action === 'failed' && failed.why).toMatch(/archiving the NVRAM of vm1 failed: injected/);
    expect(await localSha(a)).toBe(sha256(bytes(2, SIZE)));
    await expect(prep(b)).rejects.toBeInstanceOf(RefusedError); // claim still protects the only copy
    await expect(prep(a, { expectedSize: 1 })).rejects.toBeInstanceOf(RefusedError); // a refused start keeps it too
    expect((await a.archive.claimInfo(UUID))?.host).toBe('alpha');
    expect(await prep(a)).toMatchObject({ action: 'keep', claim: 'refreshed' });
    expect(await rel(a)).toMatchObject({ action: 'archived', generation: 2 });
  });

  it('displaces an unknown local copy before restoring a newer generation', async () => {
    const { a, b } = await cluster();
    await prep(a);
    await guestWrites(a, 1);
    await rel(a); // gen 1
    await prep(b);
    await guestWrites(b, 2);
    await rel(b); // gen 2
    await guestWrites(a, 9); // alpha's copy changed outside any sync (e.g. edited by hand)
    const r = await prep(a);
    expect(r).toMatchObject({ action: 'restore', generation: 2, displaced: 3 });
    const gens = await a.archive.list(UUID);
    expect(gens.at(-1)).toMatchObject({ generation: 3, kind: 'displaced', basedOn: 1 });
    expect((await a.archive.read(UUID, 3)).equals(bytes(9, SIZE))).toBe(true);
    expect((await a.archive.newest(UUID))?.generation).toBe(2);
  });

  it('replaces a wrong-size local NVRAM via displace instead of deleting it', async () => {
    const { a } = await cluster();
    await fs.writeFile(a.nvramPath, bytes(5, 4096));
    expect(await prep(a)).toMatchObject({ action: 'provision', displaced: 1 });
    expect((await a.archive.read(UUID, 1)).equals(bytes(5, 4096))).toBe(true);
    expect((await fs.readFile(a.nvramPath)).equals(TEMPLATE)).toBe(true);
  });

  it('refuses a host while another holds the claim, leaving its local file alone', async () => {
    const { a, b } = await cluster();
    await prep(a);
    await guestWrites(b, 7);
    const err = await prep(b).catch((e) => e);
    expect(err).toBeInstanceOf(RefusedError);
    expect(err.message).toMatch(/claimed by host alpha \(host id id-alpha\) since 2025-03-01T08:00:00.000Z.*ovmf-hook nvram unlock vm1/);
    expect(await localSha(b)).toBe(sha256(bytes(7, SIZE)));
  });

  it('expired lease: the other host takes over and the old holder later archives as fenced, never newest', async () => {
    const { a, b } = await cluster();
    await prep(a, { claimLeaseSeconds: 60 });
    await guestWrites(a, 1);
    expect(await prep(b, { claimLeaseSeconds: 60, now: at(120) })).toMatchObject({ action: 'provision', claim: 'took-over' });
    await guestWrites(b, 2);
    expect(await rel(b, { now: at(200) })).toMatchObject({ action: 'archived', generation: 1, kind: 'archive' });
    // alpha comes back from its hang and stops its VM: its copy is kept, but fenced
    expect(await rel(a, { now: at(300) })).toMatchObject({ action: 'archived', generation: 2, kind: 'fenced' });
    expect((await a.archive.newest(UUID))?.generation).toBe(1);
    expect(await getLocalState(a.stateDir, UUID, { io })).toBeNull();
    // next start on alpha restores beta's generation
    expect(await prep(a, { now: at(400) })).toMatchObject({ action: 'restore', generation: 1, displaced: undefined });
    expect(await localSha(a)).toBe(sha256(bytes(2, SIZE)));
  });

  it('admin unlock while a host runs the VM fences that host', async () => {
    const { a } = await cluster();
    await prep(a);
    await a.archive.breakClaim(UUID);
    await guestWrites(a, 3);
    expect(await rel(a)).toMatchObject({ action: 'archived', kind: 'fenced' });
  });

  it('live migration: destination keeps and takes no claim; source skips on "migrated" and hands the claim over (test/cluster/handover.test.ts)', async () => {
    const { a, b } = await cluster();
    await prep(a);
    await guestWrites(a, 1);
    expect(await prep(b, { incomingMigration: true })).toMatchObject({ action: 'keep', claim: undefined });
    expect(await getLocalState(b.stateDir, UUID, { io })).toMatchObject({ incomingMigration: true, generation: null });
    expect(await rel(a, { reason: 'migrated' })).toMatchObject({ action: 'skip' });
    expect(await a.archive.claimInfo(UUID)).toMatchObject({ hostId: b.archive.hostId });
    expect(await getLocalState(a.stateDir, UUID, { io })).toBeNull();
    expect(await a.archive.list(UUID)).toEqual([]);
    await guestWrites(b, 2); // QEMU on beta writes the migrated flash
    expect(await rel(b)).toMatchObject({ action: 'archived', kind: 'archive', generation: 1 });
    expect(await a.archive.claimInfo(UUID)).toBeNull();
  });

  it('release with a missing local NVRAM skips and keeps the archive', async () => {
    const { a } = await cluster();
    await prep(a);
    await guestWrites(a, 1);
    await rel(a);
    await fs.unlink(a.nvramPath);
    expect(await rel(a)).toMatchObject({ action: 'skip' });
    expect(await a.archive.list(UUID)).toHaveLength(1);
  });

  it('release prunes to `keep` and never modifies the local file', async () => {
    const { a } = await cluster();
    for (let i = 1; i <= 4; i++) {
      await prep(a);
      await guestWrites(a, i);
      const before = await fs.stat(a.nvramPath);
      await rel(a, { keep: 2 });
      const after = await fs.stat(a.nvramPath);
      expect([after.ino, after.mtimeMs, after.size]).toEqual([before.ino, before.mtimeMs, before.size]);
    }
    expect((await a.archive.list(UUID)).map((g) => g.generation)).toEqual([3, 4]);
  });
});

describe('planted links in the NVRAM directory', () => {
  const plants: Array<[string, (target: string, p: string) => Promise<void>]> = [
    ['symlink', (t, p) => fs.symlink(t, p)],
    ['hard link', (t, p) => fs.link(t, p)],
  ];
  it.each(plants)('a %s to a foreign file is refused by prepare and release; the target stays untouched', async (_n, plant) => {
    const { base, a } = await cluster();
    const shadow = path.join(base, 'shadow');
    await fs.writeFile(shadow, 'root:$6$secret:19000:0:99999:7:::\n', { mode: 0o640 });
    await plant(shadow, a.nvramPath);
    await expect(prep(a)).rejects.toBeInstanceOf(UnsafePathError);
    expect(await a.archive.claimInfo(UUID)).toBeNull(); // failed prepare gives the claim back
    const r = await rel(a);
    expect(r).toMatchObject({ action: 'failed' });
    expect(r.action === 'failed' && r.error).toBeInstanceOf(UnsafePathError);
    expect(await fs.readFile(shadow, 'utf8')).toBe('root:$6$secret:19000:0:99999:7:::\n');
    expect((await fs.stat(shadow)).mode & 0o777).toBe(0o640);
    expect(await a.archive.list(UUID)).toEqual([]);
  });
});

describe(`kill during the local write of a displacing restore (${ATOMIC_WRITE_STEPS.length} kill points): no data lost`, () => {
  it.each([...ATOMIC_WRITE_STEPS])('kill at %s', async (s) => {
    const { a, b } = await cluster();
    await prep(b);
    await guestWrites(b, 2);
    await rel(b); // gen 1 = content 2
    await guestWrites(a, 9); // unknown local copy on alpha
    const k = killAt(s);
    await k.start(prep(a, { faults: k.faults }));
    const shas = new Set((await a.archive.list(UUID)).map((g) => g.sha256));
    expect(shas.has(sha256(bytes(9, SIZE)))).toBe(true); // displaced before the write began
    expect([sha256(bytes(9, SIZE)), sha256(bytes(2, SIZE))]).toContain(await localSha(a));
  });
});

describe('CLI helpers', () => {
  it('reset: keeps the old NVRAM as a manual generation and makes the template the newest everywhere', async () => {
    const { a, b, templatePath } = await cluster();
    await prep(a);
    await guestWrites(a, 4);
    await rel(a); // gen 1
    await guestWrites(a, 5);
    const r = await resetNvram({ ...a, uuid: UUID, vmName: 'vm1', templatePath, owner: OWNER, now: T0 });
    expect(r).toEqual({ action: 'reset', generation: 3, saved: 2 });
    expect((await a.archive.list(UUID)).map((g) => g.kind)).toEqual(['archive', 'manual', 'reset']);
    expect((await fs.readFile(a.nvramPath)).equals(TEMPLATE)).toBe(true);
    expect(await a.archive.claimInfo(UUID)).toBeNull();
    expect(await prep(b)).toMatchObject({ action: 'restore', generation: 3 });
    expect((await fs.readFile(b.nvramPath)).equals(TEMPLATE)).toBe(true);
  });

  it('restore --generation: a displaced copy becomes the newest (as manual), the current local is displaced', async () => {
    const { a } = await cluster();
    await prep(a);
    await guestWrites(a, 1);
    await rel(a); // gen 1
    const fenced = await a.archive.add(UUID, bytes(6, SIZE), { kind: 'fenced', reason: 'x', vmName: 'vm1' }); // gen 2
    await guestWrites(a, 8);
    const r = await restoreGeneration({ ...a, uuid: UUID, vmName: 'vm1', generation: 2, owner: OWNER, now: T0 });
    expect(fenced).toMatchObject({ generation: 2 });
    expect(r).toEqual({ action: 'restore', generation: 4, from: 2, displaced: 3 });
    expect((await a.archive.newest(UUID))).toMatchObject({ generation: 4, kind: 'manual', basedOn: 2 });
    expect(await localSha(a)).toBe(sha256(bytes(6, SIZE)));
    expect(await prep(a)).toMatchObject({ action: 'keep' });
  });

  it('refuse while another host holds the claim', async () => {
    const { a, b, templatePath } = await cluster();
    await prep(a);
    await expect(resetNvram({ ...b, uuid: UUID, vmName: 'vm1', templatePath, owner: OWNER })).rejects.toBeInstanceOf(RefusedError);
  });
});
