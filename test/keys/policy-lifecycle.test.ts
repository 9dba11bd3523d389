/**
 * prepareNvram's `edit` (src/io/lifecycle.ts), the step the hook's `secure-boot-certs` policy runs
 * through, with a stand-in edit (byte 0 set to 0x42) so the bookkeeping is tested on its own:
 * archive first (an intact generation holding the content is reused), the result the newest
 * generation, the sync point recorded with this start's marks (so the release archives the running
 * VM's changes as usual), never on an incoming migration, and a failure to archive first changes
 * nothing and gives the claim back.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { openArchive } from '../../src/io/archive';
import { prepareNvram, releaseNvram, type NvramEdit, type PrepareOptions } from '../../src/io/lifecycle';
import { getLocalState } from '../../src/io/local-state';
import { sha256 } from '../../src/io/safe-fs';
import { bytes, io, ioFor, tempDir, throwAt } from '../nvram/helpers';

const UUID = 'aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee';
const SIZE = 64 * 1024;
const T0 = new Date('2025-03-01T08:00:00Z');
const TEMPLATE = bytes(0xee, SIZE);
const NAME = 'policy secure-boot-certs=2023';

/** The stand-in edit: byte 0 becomes 0x42 (no change when it is already). */
const mark = (current: Buffer): NvramEdit | null => {
  if (current[0] === 0x42) return null;
  const data = Buffer.from(current);
  data[0] = 0x42;
  return { data, changed: true, reason: `${NAME}: KEK +1, db +3` };
};
const marked = (b: Buffer) => {
  const d = Buffer.from(b);
  d[0] = 0x42;
  return d;
};

async function host(archiveFaults?: ReturnType<typeof throwAt>) {
  const base = await tempDir();
  const templatePath = path.join(base, 'OVMF_VARS.fd');
  await fs.writeFile(templatePath, TEMPLATE);
  await fs.mkdir(path.join(base, 'nvram'));
  const archive = await openArchive({ root: path.join(base, 'archive'), host: 'alpha', hostId: 'id-alpha', io, faults: archiveFaults });
  return { archive, stateDir: path.join(base, 'state'), nvramPath: path.join(base, 'nvram', 'vm1_VARS.fd'), templatePath, io: ioFor };
}
type Host = Awaited<ReturnType<typeof host>>;

const prep = (h: Host, extra: Partial<PrepareOptions> = {}) =>
  prepareNvram({ ...h, uuid: UUID, vmName: 'vm1', owner: { mode: 0o600 }, expectedSize: SIZE, incomingMigration: false, now: T0, edit: { name: NAME, apply: mark }, ...extra });
const rel = (h: Host) => releaseNvram({ ...h, uuid: UUID, vmName: 'vm1', reason: 'shutdown', keep: 10, now: T0 });
const generations = async (h: Host) => (await h.archive.list(UUID)).map((g) => [g.generation, g.kind, g.sha256, g.reason, g.basedOn]);

describe('prepareNvram with an edit (the certificate policy)', () => {
  it('an archived NVRAM: one new generation (the archived copy is the undo point), the local file edited, the sync point the new generation with this start\'s marks', async () => {
    const h = await host();
    await prep(h, { edit: undefined });
    const guest = bytes(1, SIZE);
    await fs.writeFile(h.nvramPath, guest);
    expect(await rel(h)).toMatchObject({ action: 'archived', generation: 1 });

    const r = await prep(h);
    expect(r).toMatchObject({ action: 'keep', edited: { generation: 2, saved: 1, reason: `${NAME}: KEK +1, db +3` } });
    const local = await fs.readFile(h.nvramPath);
    expect(local.equals(marked(guest))).toBe(true);
    expect(await generations(h)).toEqual([
      [1, 'archive', sha256(guest), 'release (shutdown)', null],
      [2, 'manual', sha256(local), `${NAME}: KEK +1, db +3`, 1],
    ]);
    const state = await getLocalState(h.stateDir, UUID, { io });
    expect(state).toMatchObject({ generation: 2, sha256: sha256(local), preparedAt: T0.toISOString() });
    expect(state?.claimToken).toBe((await h.archive.claimInfo(UUID))?.token);
    expect((await fs.stat(h.nvramPath)).mode & 0o777).toBe(0o600);

    // the guest runs and changes its store: archived as usual, based on the edited generation
    const ran = marked(bytes(3, SIZE));
    await fs.writeFile(h.nvramPath, ran);
    expect(await rel(h)).toMatchObject({ action: 'archived', generation: 3, kind: 'archive' });
    expect((await h.archive.list(UUID)).at(-1)).toMatchObject({ sha256: sha256(ran), basedOn: 2 });
    expect(await h.archive.claimInfo(UUID)).toBeNull();

    // the next start: nothing to edit, nothing archived, the file as it was
    const again = await prep(h);
    expect([again.action, again.edited]).toEqual(['keep', undefined]);
    expect((await fs.readFile(h.nvramPath)).equals(ran)).toBe(true);
    expect(await h.archive.list(UUID)).toHaveLength(3);
  });

  it('stopped before the guest changed anything: the release finds the local NVRAM equal to the edited generation and archives nothing', async () => {
    const h = await host();
    await prep(h, { edit: undefined });
    await rel(h); // generation 1: the template as provisioned
    await prep(h);
    expect(await rel(h)).toMatchObject({ action: 'skip', why: 'local NVRAM equals generation 2' });
    expect(await h.archive.list(UUID)).toHaveLength(2);
  });

  it('a first start (provisioned from the template): the template copy archived first, then the edit', async () => {
    const h = await host();
    const r = await prep(h);
    expect(r).toMatchObject({ action: 'provision', edited: { generation: 2, saved: 1 } });
    expect(await generations(h)).toEqual([
      [1, 'manual', sha256(TEMPLATE), `copy taken before ${NAME}`, null],
      [2, 'manual', sha256(marked(TEMPLATE)), `${NAME}: KEK +1, db +3`, 1],
    ]);
    expect((await fs.readFile(h.nvramPath)).equals(marked(TEMPLATE))).toBe(true);
  });

  it('a restore: the restored generation is the undo point', async () => {
    const h = await host();
    await prep(h, { edit: undefined });
    await fs.writeFile(h.nvramPath, bytes(5, SIZE));
    await rel(h); // generation 1
    await fs.rm(h.nvramPath);
    const r = await prep(h);
    expect(r).toMatchObject({ action: 'restore', generation: 1, edited: { generation: 2, saved: 1 } });
    expect((await fs.readFile(h.nvramPath)).equals(marked(bytes(5, SIZE)))).toBe(true);
  });

  it('never on an incoming migration: the NVRAM comes with QEMU\'s stream; edit not even asked', async () => {
    const h = await host();
    await fs.writeFile(h.nvramPath, bytes(7, SIZE));
    let asked = 0;
    const r = await prep(h, { incomingMigration: true, edit: { name: NAME, apply: (c) => (asked++, mark(c)) } });
    expect(r.edited).toBeUndefined();
    expect(asked).toBe(0);
    expect((await fs.readFile(h.nvramPath)).equals(bytes(7, SIZE))).toBe(true);
    expect(await h.archive.list(UUID)).toEqual([]);
  });

  it('no change asked: nothing archived, nothing written', async () => {
    const h = await host();
    const r = await prep(h, { edit: { name: NAME, apply: () => null } });
    expect(r.edited).toBeUndefined();
    expect(await h.archive.list(UUID)).toEqual([]);
    expect((await fs.readFile(h.nvramPath)).equals(TEMPLATE)).toBe(true);
  });

  it('archiving first fails: the prepare fails, the NVRAM is left as the plan wrote it, nothing is archived, the claim is given back', async () => {
    const h = await host(throwAt('data-link'));
    await expect(prep(h)).rejects.toThrow(/injected fault at data-link/);
    expect((await fs.readFile(h.nvramPath)).equals(TEMPLATE)).toBe(true);
    expect(await h.archive.list(UUID)).toEqual([]);
    expect(await h.archive.claimInfo(UUID)).toBeNull();
    expect((await getLocalState(h.stateDir, UUID, { io }))?.claimToken).toBeUndefined();
  });
});
