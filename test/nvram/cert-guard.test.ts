/**
 * The lifecycle's certificate guard: `restoreGeneration` / `resetNvram` tell their caller (which may
 * refuse) before anything is written when the NVRAM to be written trusts fewer Microsoft 2023 Secure
 * Boot certificates than the local one; `prepareNvram` restores anyway and reports them. Contents:
 * Debian's OVMF_VARS_4M.ms.fd and a copy enrolled with the pure enrolment.
 */
import { promises as fs, existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { RefusedError } from '../../src/core/errors';
import { openArchive } from '../../src/io/archive';
import { prepareNvram, resetNvram, restoreGeneration } from '../../src/io/lifecycle';
import { enrolledWith2023, MS_VARS_4M as MS } from '../support/ms-2023';
import { io, ioFor, tempDir } from './helpers';

const UUID = 'aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee';
const OWNER = { mode: 0o600 };
const ALL_2023 = ['Microsoft Corporation KEK 2K CA 2023', 'Windows UEFI CA 2023', 'Microsoft UEFI CA 2023', 'Microsoft Option ROM UEFI CA 2023'];

const old = existsSync(MS) ? readFileSync(MS) : Buffer.alloc(0);

/** One host whose local NVRAM is enrolled; generation 1 is the 2011-only store; the template is 2011-only too. */
async function setUp() {
  const base = await tempDir();
  const templatePath = path.join(base, 'OVMF_VARS_4M.ms.fd');
  await fs.writeFile(templatePath, old);
  const archive = await openArchive({ root: path.join(base, 'archive'), host: 'alpha', hostId: 'id-alpha', io });
  await fs.mkdir(path.join(base, 'nvram'));
  const h = { archive, stateDir: path.join(base, 'state'), nvramPath: path.join(base, 'nvram', 'vm1_VARS.fd'), io: ioFor, uuid: UUID, vmName: 'vm1', owner: OWNER };
  await archive.add(UUID, old, { kind: 'archive', reason: 'release (shutdown)', vmName: 'vm1' }); // gen 1
  const enrolled = enrolledWith2023(old);
  await fs.writeFile(h.nvramPath, enrolled);
  return { h, templatePath, enrolled };
}

describe.skipIf(!existsSync(MS))('lifecycle: Microsoft 2023 certificates about to be lost', () => {
  it('restoreGeneration: the caller hears the names before any write; its throw refuses with nothing written', async () => {
    const { h, enrolled } = await setUp();
    const heard: string[][] = [];
    const refuse = (lost: readonly string[]) => {
      heard.push([...lost]);
      throw new RefusedError('refused by the caller');
    };
    await expect(restoreGeneration({ ...h, generation: 1, onCertificatesLost: refuse })).rejects.toThrow('refused by the caller');
    expect(heard).toEqual([ALL_2023]);
    expect((await fs.readFile(h.nvramPath)).equals(enrolled)).toBe(true);
    expect((await h.archive.list(UUID)).map((g) => g.generation)).toEqual([1]);
    expect(await h.archive.claimInfo(UUID)).toBeNull();

    const r = await restoreGeneration({ ...h, generation: 1, onCertificatesLost: (lost) => void heard.push([...lost]) });
    expect(r).toMatchObject({ action: 'restore', from: 1, displaced: 2 });
    expect((await fs.readFile(h.nvramPath)).equals(old)).toBe(true);
  });

  it('resetNvram: the same for the template; a reset that loses nothing does not call', async () => {
    const { h, templatePath, enrolled } = await setUp();
    const heard: string[][] = [];
    await expect(
      resetNvram({
        ...h,
        templatePath,
        onCertificatesLost: (lost) => {
          heard.push([...lost]);
          throw new RefusedError('no');
        },
      }),
    ).rejects.toBeInstanceOf(RefusedError);
    expect(heard).toEqual([ALL_2023]);
    expect((await fs.readFile(h.nvramPath)).equals(enrolled)).toBe(true);
    await fs.writeFile(h.nvramPath, old);
    await resetNvram({ ...h, templatePath, onCertificatesLost: (lost) => void heard.push([...lost]) });
    expect(heard).toHaveLength(1);
  });

  it('prepareNvram restores a newer 2011-only generation over the enrolled local copy and names what was lost', async () => {
    const { h, templatePath } = await setUp();
    // the local copy was synced with an enrolled generation; another host then archived a 2011-only one
    await h.archive.add(UUID, await fs.readFile(h.nvramPath), { kind: 'archive', reason: 'release (shutdown)', vmName: 'vm1' }); // gen 2
    const first = await prepareNvram({ ...h, templatePath, expectedSize: old.length, incomingMigration: false });
    expect(first).toMatchObject({ action: 'keep' }); // the local copy is generation 2: synced
    expect(first.lostCertificates).toBeUndefined();
    await h.archive.releaseClaim(UUID, h.archive.hostId);
    const other = await openArchive({ root: h.archive.root, host: 'beta', hostId: 'id-beta', io });
    await other.add(UUID, old, { kind: 'archive', reason: 'release (shutdown)', vmName: 'vm1' }); // gen 3, on beta
    const r = await prepareNvram({ ...h, templatePath, expectedSize: old.length, incomingMigration: false });
    expect(r).toMatchObject({ action: 'restore', generation: 3, lostCertificates: ALL_2023 });
    expect((await fs.readFile(h.nvramPath)).equals(old)).toBe(true);
  });
});
