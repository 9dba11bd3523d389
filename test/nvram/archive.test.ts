import { promises as fs } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ArchiveCorruptError, UnsafePathError, UsageError } from '../../src/core/errors';
import { ARCHIVE_ADD_STEPS, openArchive, type AddOptions } from '../../src/io/archive';
import type { Faults } from '../../src/io/safe-fs';
import type { GenerationMeta } from '../../src/core/nvram/types';
import { bytes, io, killAt, recorder, tempDir, throwAt } from './helpers';

const UUID = '0f6c7e0a-1b2c-4d3e-8f90-a1b2c3d4e5f6';
const opts = (kind: AddOptions['kind'] = 'archive'): AddOptions => ({ kind, reason: 'test', vmName: 'vm1' });

async function setup(faults?: Faults) {
  const root = path.join(await tempDir(), 'archive');
  const archive = await openArchive({ root, host: 'host-a', hostId: 'id-a', faults, io });
  return { root, archive, dir: path.join(root, UUID) };
}
const meta = (r: unknown): GenerationMeta => {
  if (!r || typeof r !== 'object' || 'skipped' in r) throw new Error(`expected a new generation, got ${JSON.stringify(r)}`);
  return r as GenerationMeta;
};

describe('archive store', () => {
  it('creates root and VM directories 0700 and files 0600', async () => {
    const { root, archive, dir } = await setup();
    await archive.add(UUID, bytes(1), opts());
    expect((await fs.stat(root)).mode & 0o777).toBe(0o700);
    expect((await fs.stat(dir)).mode & 0o777).toBe(0o700);
    for (const f of await fs.readdir(dir)) expect((await fs.stat(path.join(dir, f))).mode & 0o777).toBe(0o600);
    expect((await fs.readdir(dir)).sort()).toEqual(['gen-000001.fd', 'gen-000001.json']);
  });

  it('adds, lists ascending, picks the newest auto-restorable and reads verified data', async () => {
    const { archive } = await setup();
    const g1 = meta(await archive.add(UUID, bytes(1), opts()));
    const g2 = meta(await archive.add(UUID, bytes(2), opts('displaced')));
    const g3 = meta(await archive.add(UUID, bytes(3), opts('fenced')));
    expect([g1.generation, g2.generation, g3.generation]).toEqual([1, 2, 3]);
    expect((await archive.list(UUID)).map((m) => m.kind)).toEqual(['archive', 'displaced', 'fenced']);
    expect((await archive.newest(UUID))?.generation).toBe(1);
    expect((await archive.newest(UUID, { kinds: ['fenced'] }))?.generation).toBe(3);
    expect((await archive.read(UUID, 2)).equals(bytes(2))).toBe(true);
    expect(g1).toMatchObject({ host: 'host-a', hostId: 'id-a', vmName: 'vm1', size: 4096, reason: 'test' });
    await expect(archive.read(UUID, 9)).rejects.toBeInstanceOf(UsageError);
  });

  it('skips content identical to the newest auto-restorable generation (and known displaced/fenced copies)', async () => {
    const { archive } = await setup();
    await archive.add(UUID, bytes(1), opts());
    expect(await archive.add(UUID, bytes(1), opts('archive'))).toEqual({ skipped: 'identical', generation: 1 });
    expect(await archive.add(UUID, bytes(1), opts('fenced'))).toEqual({ skipped: 'identical', generation: 1 });
    await archive.add(UUID, bytes(2), opts());
    // content of gen 1 again after gen 2: a real change back, must be archived
    expect(meta(await archive.add(UUID, bytes(1), opts())).generation).toBe(3);
  });

  it('new numbers skip numbers held by the leftover data file of a crashed writer', async () => {
    const { archive, dir } = await setup();
    for (let i = 1; i <= 4; i++) await archive.add(UUID, bytes(i), opts());
    await fs.writeFile(path.join(dir, 'gen-000007.fd'), 'orphan'); // a crashed writer's reservation
    expect(meta(await archive.add(UUID, bytes(9), opts())).generation).toBe(8);
  });

  it('prune keeps the newest N and always the newest auto-restorable generation', async () => {
    const { archive } = await setup();
    await archive.add(UUID, bytes(1), opts());
    await archive.add(UUID, bytes(2), opts());
    await archive.add(UUID, bytes(3), opts('displaced'));
    await archive.add(UUID, bytes(4), opts('fenced'));
    expect(await archive.prune(UUID, 1)).toEqual([1, 3]);
    expect((await archive.list(UUID)).map((m) => m.generation)).toEqual([2, 4]);
    await expect(archive.prune(UUID, 0)).rejects.toBeInstanceOf(UsageError);
  });

  it('detects corrupt data on read and in repair', async () => {
    const { archive, dir } = await setup();
    await archive.add(UUID, bytes(1), opts());
    await archive.add(UUID, bytes(2), opts());
    const f = path.join(dir, 'gen-000002.fd');
    const buf = await fs.readFile(f);
    buf[100] ^= 0xff;
    await fs.writeFile(f, buf);
    await fs.truncate(path.join(dir, 'gen-000001.fd'), 10);
    await expect(archive.read(UUID, 2)).rejects.toThrow(/generation 2 of vm1 is corrupt \(sha256 mismatch\)/);
    await expect(archive.read(UUID, 1)).rejects.toBeInstanceOf(ArchiveCorruptError);
    expect((await archive.repair(UUID, { olderThanMs: 0 })).corrupt).toEqual([1, 2]);
  });

  it('an unreadable metadata file makes list() fail instead of hiding the generation; repair reports it', async () => {
    const { archive, dir } = await setup();
    await archive.add(UUID, bytes(1), opts());
    await archive.add(UUID, bytes(2), opts());
    await fs.writeFile(path.join(dir, 'gen-000002.json'), '{"generation": 2, "sha');
    await expect(archive.list(UUID)).rejects.toThrow(/gen-000002.json is unreadable/);
    await expect(archive.newest(UUID)).rejects.toBeInstanceOf(ArchiveCorruptError);
    await expect(archive.prune(UUID, 1)).rejects.toBeInstanceOf(ArchiveCorruptError);
    expect((await archive.repair(UUID, { olderThanMs: 0 })).corrupt).toEqual([2]);
    expect(meta(await archive.add(UUID, bytes(3), opts())).generation).toBe(3);
  });

  it('repair removes leftovers (temps, orphan data) older than the threshold, never committed generations', async () => {
    const { archive, dir } = await setup();
    await archive.add(UUID, bytes(1), opts());
    const leftovers = ['.gen.fd.ovmf-hook-tmp-abc', '.gen.json.ovmf-hook-tmp-def', 'gen-000002.fd', 'claim.released-x.json'];
    for (const n of leftovers) await fs.writeFile(path.join(dir, n), 'x');
    const young = await archive.repair(UUID); // young: maybe another host's writer
    expect(young.removed).toEqual([]);
    expect(young.kept).toEqual(leftovers.map((n) => path.join(dir, n)).sort()); // and said so
    const report = await archive.repair(UUID, { olderThanMs: 0 });
    expect(report.removed.map((p) => path.basename(p)).sort()).toEqual([...leftovers].sort());
    expect((await fs.readdir(dir)).sort()).toEqual(['gen-000001.fd', 'gen-000001.json']);
    expect(report.corrupt).toEqual([]);
  });

  it('20 concurrent adds on one VM get distinct, gap-free, increasing generations', async () => {
    const { archive } = await setup();
    const results = await Promise.all(Array.from({ length: 20 }, (_, i) => archive.add(UUID, bytes(i + 1), opts())));
    const gens = results.map((r) => meta(r).generation);
    expect(new Set(gens).size).toBe(20);
    expect((await archive.list(UUID)).map((m) => m.generation)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    for (const [i, g] of gens.entries()) expect((await archive.read(UUID, g)).equals(bytes(i + 1))).toBe(true);
  });

  it('two hosts adding concurrently to one shared root never share a number', async () => {
    const { root } = await setup();
    const a = await openArchive({ root, host: 'a', hostId: 'id-a', io });
    const b = await openArchive({ root, host: 'b', hostId: 'id-b', io });
    const rs = await Promise.all(Array.from({ length: 10 }, (_, i) => (i % 2 ? a : b).add(UUID, bytes(i + 1), opts())));
    expect(new Set(rs.map((r) => meta(r).generation)).size).toBe(10);
  });

  it('walks the add steps in the documented order', async () => {
    const rec = recorder();
    const { archive } = await setup(rec);
    await archive.add(UUID, bytes(1), opts());
    expect(rec.steps).toEqual([...ARCHIVE_ADD_STEPS]);
  });

  const preSteps = async (faults: Faults) => {
    const s = await setup();
    await s.archive.add(UUID, bytes(1), opts());
    const faulty = await openArchive({ root: s.root, host: 'host-a', hostId: 'id-a', faults, io });
    return { ...s, faulty };
  };
  const assertOldOrNew = async (archive: Awaited<ReturnType<typeof setup>>['archive']) => {
    const gens = await archive.list(UUID);
    expect(gens.length === 1 || gens.length === 2).toBe(true);
    expect((await archive.read(UUID, 1)).equals(bytes(1))).toBe(true);
    if (gens.length === 2) expect((await archive.read(UUID, 2)).equals(bytes(2))).toBe(true);
    return gens.length;
  };

  describe(`an error at each of the ${ARCHIVE_ADD_STEPS.length} add steps leaves the old generations or the complete new one, and no debris`, () => {
    it.each([...ARCHIVE_ADD_STEPS])('error at %s', async (s) => {
      const { faulty, archive, dir } = await preSteps(throwAt(s));
      await expect(faulty.add(UUID, bytes(2), opts())).rejects.toThrow(/injected/);
      const n = await assertOldOrNew(archive);
      expect(n).toBe(s === 'dir-fsync' ? 2 : 1);
      const expected = n === 2 ? ['gen-000001.fd', 'gen-000001.json', 'gen-000002.fd', 'gen-000002.json'] : ['gen-000001.fd', 'gen-000001.json'];
      expect((await fs.readdir(dir)).sort()).toEqual(expected);
    });
  });

  describe(`a kill at each of the ${ARCHIVE_ADD_STEPS.length} add steps leaves old or new, never partial; repair + next add recover`, () => {
    it.each([...ARCHIVE_ADD_STEPS])('kill at %s', async (s) => {
      const k = killAt(s);
      const { faulty, archive, dir } = await preSteps(k.faults);
      await k.start(faulty.add(UUID, bytes(2), opts()));
      const n = await assertOldOrNew(archive);
      await archive.repair(UUID, { olderThanMs: 0 });
      const names = (await fs.readdir(dir)).sort();
      expect(names.filter((x) => !/^gen-\d{6}\.(fd|json)$/.test(x))).toEqual([]);
      expect(names.length).toBe(2 * n);
      const next = meta(await archive.add(UUID, bytes(3), opts()));
      expect(next.generation).toBeGreaterThan(n);
      expect((await archive.newest(UUID))?.generation).toBe(next.generation);
    });
  });

  it('listVms lists UUID directories only', async () => {
    const { archive, root } = await setup();
    await archive.add(UUID, bytes(1), opts());
    await fs.mkdir(path.join(root, 'not-a-uuid'));
    expect(await archive.listVms()).toEqual([UUID]);
  });

  it.each(['../etc', 'vm1', '', '0f6c7e0a-1b2c-4d3e-8f90-a1b2c3d4e5f6/..', '0F6C7E0A-1B2C-4D3E-8F90-A1B2C3D4E5F'])(
    'rejects the VM id %j with UsageError',
    async (bad) => {
      const { archive } = await setup();
      await expect(archive.list(bad)).rejects.toBeInstanceOf(UsageError);
      await expect(archive.add(bad, bytes(1), opts())).rejects.toBeInstanceOf(UsageError);
    },
  );

  it('normalises an upper-case UUID to the lower-case directory', async () => {
    const { archive, root } = await setup();
    await archive.add(UUID.toUpperCase(), bytes(1), opts());
    expect(await fs.readdir(root)).toEqual([UUID]);
  });
});

describe('unsafe archive roots are refused with the fix', () => {
  const cases: Array<[string, (root: string) => Promise<void>, RegExp]> = [
    ['a symlink', async (root) => { await fs.mkdir(`${root}.real`, { mode: 0o700 }); await fs.symlink(`${root}.real`, root); }, /symlink/],
    ['group/other-writable', async (root) => { await fs.mkdir(root); await fs.chmod(root, 0o777); }, /chmod 700/],
    ['owned by someone else', async (root) => { await fs.mkdir(root, { mode: 0o700 }); await fs.chown(root, 4242, 4242); }, /chown/],
    ['under a group-writable parent', async (root) => { await fs.chmod(path.dirname(root), 0o770); }, /chmod go-w/],
  ];
  it.each(cases)('%s', async (_n, make, msg) => {
    if (_n === 'owned by someone else' && process.geteuid?.() !== 0) return;
    const root = path.join(await tempDir(), 'archive');
    await make(root);
    const err = await openArchive({ root, host: 'a', hostId: 'id-a', io }).catch((e) => e);
    expect(err).toBeInstanceOf(UnsafePathError);
    expect(err.message).toMatch(msg);
    expect(err.exitCode).toBe(1);
  });

  it('refuses a VM directory that is a symlink', async () => {
    const { archive, root } = await setup();
    await fs.mkdir(path.join(root, 'elsewhere'), { mode: 0o700 });
    await fs.symlink(path.join(root, 'elsewhere'), path.join(root, UUID));
    await expect(archive.add(UUID, bytes(1), opts())).rejects.toBeInstanceOf(UnsafePathError);
    await expect(archive.list(UUID)).rejects.toBeInstanceOf(UnsafePathError);
  });
});
