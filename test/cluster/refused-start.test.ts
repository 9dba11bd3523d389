/**
 * A start refused by the hook's own `prepare` is followed by libvirt's `release` (qemuProcessStop).
 * That release must not archive: the VM never ran on this host, and its local NVRAM may be an old
 * copy — archived as an `archive` generation it would become the newest and be restored
 * everywhere (found with two real hosts: a start refused on host B for a missing firmware path
 * archived B's copy from two generations ago as the newest generation).
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { openArchive, type Archive } from '../../src/io/archive';
import { prepareNvram, releaseNvram } from '../../src/io/lifecycle';
import { START_WINDOW_MS } from '../../src/core/nvram/types';
import { getLocalState, markStartRefused, setLocalState } from '../../src/io/local-state';
import { planRelease, type ReleaseInput } from '../../src/core/nvram/plan';
import { sha256 } from '../../src/io/safe-fs';

const UUID = '5e1f0a6b-7c2d-4e3f-8a9b-0c1d2e3f4a5b';
const SIZE = 4096;
const T0 = new Date('2025-05-01T10:00:00Z');
const at = (s: number) => new Date(T0.getTime() + s * 1000);
const fill = (b: number) => Buffer.alloc(SIZE, b);
const dirs: string[] = [];
afterEach(async () => {
  for (const d of dirs.splice(0)) await fs.rm(d, { recursive: true, force: true });
});

interface Host {
  archive: Archive;
  stateDir: string;
  nvramPath: string;
}

async function twoHosts(): Promise<{ a: Host; b: Host; template: string }> {
  const base = await fs.mkdtemp(path.join(os.tmpdir(), 'ovmfhook-refused-'));
  dirs.push(base);
  const template = path.join(base, 'VARS.fd');
  await fs.writeFile(template, fill(0xee));
  const host = async (name: string): Promise<Host> => {
    await fs.mkdir(path.join(base, name, 'nvram'), { recursive: true });
    return {
      archive: await openArchive({ root: path.join(base, 'archive'), host: 'same-name', hostId: `id-${name}` }),
      stateDir: path.join(base, name, 'state'),
      nvramPath: path.join(base, name, 'nvram', 'vm_VARS.fd'),
    };
  };
  return { a: await host('a'), b: await host('b'), template };
}

const common = (h: Host) => ({ ...h, uuid: UUID, vmName: 'vm' });
const prep = (h: Host, template: string, now: Date) =>
  prepareNvram({ ...common(h), templatePath: template, owner: { mode: 0o600 }, expectedSize: SIZE, incomingMigration: false, now });
const rel = (h: Host, now: Date) => releaseNvram({ ...common(h), reason: '-', keep: 10, now });

/** B ran the VM (gen 1 = 0x01), then A did (gen 2 = 0x02): B keeps a stale copy of gen 1. */
async function staleCopyOnB() {
  const { a, b, template } = await twoHosts();
  await prep(b, template, at(0));
  await fs.writeFile(b.nvramPath, fill(1));
  expect(await rel(b, at(1))).toMatchObject({ action: 'archived', generation: 1 });
  await prep(a, template, at(2));
  await fs.writeFile(a.nvramPath, fill(2));
  expect(await rel(a, at(3))).toMatchObject({ action: 'archived', generation: 2 });
  return { a, b, template };
}

describe('release after a start refused by prepare', () => {
  const base: ReleaseInput = { local: { sha256: 'x'.repeat(64), size: SIZE }, newest: null, claimHeldByUs: true, reason: '-' };
  it.each([
    { what: 'claim held, unarchived local copy', input: { ...base, startRefused: true } },
    { what: 'claim not held', input: { ...base, claimHeldByUs: false, startRefused: true } },
    { what: 'reason migrated', input: { ...base, reason: 'migrated', startRefused: true } },
  ])('planRelease skips when the start was refused ($what)', ({ input }) => {
    // the state keeps its sync point and (a claim of ours predates the refused start) its claim token
    expect(planRelease(input)).toEqual({ action: 'skip', why: expect.stringMatching(/refused the start/), state: { do: 'forget', marks: ['startRefused', 'preparedAt'] } });
  });

  it('does not archive the stale local copy as the newest generation, and clears the mark', async () => {
    const { b } = await staleCopyOnB();
    await markStartRefused(b.stateDir, UUID, at(10));
    expect(await getLocalState(b.stateDir, UUID)).toMatchObject({ generation: 1, startRefused: at(10).toISOString() });
    expect(await rel(b, at(11))).toMatchObject({ action: 'skip', why: expect.stringMatching(/refused the start/) });
    const metas = await b.archive.list(UUID);
    expect(metas.map((m) => [m.generation, m.sha256])).toEqual([
      [1, sha256(fill(1))],
      [2, sha256(fill(2))],
    ]);
    const after = await getLocalState(b.stateDir, UUID);
    expect(after?.startRefused).toBeUndefined();
    expect(after?.generation).toBe(1);
  });

  it('the next start on that host restores the newest generation (the stale copy is a known one)', async () => {
    const { b, template } = await staleCopyOnB();
    await markStartRefused(b.stateDir, UUID, at(10));
    await rel(b, at(11));
    expect(await prep(b, template, at(12))).toMatchObject({ action: 'restore', generation: 2, displaced: undefined });
    expect(await fs.readFile(b.nvramPath)).toEqual(fill(2));
  });

  it('keeps a claim this host already held before the refused start', async () => {
    const { a, template } = await twoHosts();
    await prep(a, template, at(0));
    const token = (await getLocalState(a.stateDir, UUID))?.claimToken;
    expect(token).toBeTruthy();
    await markStartRefused(a.stateDir, UUID, at(5));
    expect(await rel(a, at(6))).toMatchObject({ action: 'skip' });
    expect(await a.archive.claimInfo(UUID)).toMatchObject({ hostId: 'id-a', token });
  });

  it('a mark older than the window is ignored: a later release archives as usual', async () => {
    const { b } = await staleCopyOnB();
    await setLocalState(b.stateDir, UUID, { ...(await getLocalState(b.stateDir, UUID))!, startRefused: at(10).toISOString() });
    await fs.writeFile(b.nvramPath, fill(3)); // a run that did happen, with new content
    const late = new Date(at(10).getTime() + START_WINDOW_MS + 1000);
    expect(await rel(b, late)).toMatchObject({ action: 'archived', generation: 3, kind: 'archive' });
  });
});
