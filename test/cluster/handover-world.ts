/**
 * Three hosts (a, b, c) sharing one archive on local directories, for the claim hand-over tests
 * (handover.test.ts, handover-crash.test.ts): the hook's lifecycle calls as libvirt makes them on
 * a live migration, without libvirt.
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { prepareNvram, releaseNvram, type ReleaseResult } from '../../src/io/lifecycle';
import { markIncomingMigration } from '../../src/io/local-state';
import type { Faults } from '../../src/io/safe-fs';
import { afterEach } from 'vitest';
import { simHost, type SimHost } from '../nvram/helpers';

export const UUID = '7a1c0d2e-3f4a-4b5c-8d6e-9f0a1b2c3d4e';
export const SIZE = 4096;
export const T0 = new Date('2026-03-01T10:00:00Z');
export const at = (s: number): Date => new Date(T0.getTime() + s * 1000);
export const fill = (b: number): Buffer => Buffer.alloc(SIZE, b);

export type Host = SimHost;
export interface World {
  base: string;
  dir: string;
  template: string;
  a: Host;
  b: Host;
  c: Host;
}

/** A fresh world under a new temp dir (the caller removes `base`); `faults` go to host `a`'s archive, `bFaults` to b's. */
export async function world(faults?: { a?: Faults; b?: Faults }, scratch = os.tmpdir()): Promise<World> {
  const base = await fs.mkdtemp(path.join(scratch, 'ovmfhook-handover-'));
  const root = path.join(base, 'archive');
  const template = path.join(base, 'VARS.fd');
  await fs.writeFile(template, fill(0xee));
  const host = (name: string, f?: Faults): Promise<Host> => simHost(base, root, name, 'vm_VARS.fd', f);
  return { base, dir: path.join(root, UUID), template, a: await host('a', faults?.a), b: await host('b', faults?.b), c: await host('c') };
}

const common = (h: Host) => ({ archive: h.archive, stateDir: h.stateDir, nvramPath: h.nvramPath, uuid: UUID, vmName: 'vm', leftoverAgeMs: 0 });

/** An ordinary start (`prepare begin`). */
export const start = (w: World, h: Host, now: Date) =>
  prepareNvram({ ...common(h), templatePath: w.template, owner: { mode: 0o600 }, expectedSize: SIZE, incomingMigration: false, now });

/** The destination's side of a live migration up to the running VM: `migrate begin` (its state mark), `prepare begin` (incoming: writes the record). */
export async function receive(w: World, h: Host, now: Date, content: Buffer): Promise<void> {
  await markIncomingMigration(h.stateDir, UUID, now);
  await prepareNvram({ ...common(h), templatePath: w.template, owner: { mode: 0o600 }, expectedSize: SIZE, incomingMigration: true, now });
  await fs.writeFile(h.nvramPath, content); // what QEMU writes from the migration stream
}

/** `release end <reason>`; a failed release throws. */
export async function stop(h: Host, now: Date, reason = '-'): Promise<Exclude<ReleaseResult, { action: 'failed' }>> {
  const r = await releaseNvram({ ...common(h), reason, keep: 50, now });
  if (r.action === 'failed') throw r.error;
  return r;
}

export const write = (h: Host, data: Buffer): Promise<void> => fs.writeFile(h.nvramPath, data);

/** world() for the calling test file: every world made through it is removed after each test. */
export function worldPerTest(): () => Promise<World> {
  const made: string[] = [];
  afterEach(async () => {
    for (const d of made.splice(0)) await fs.rm(d, { recursive: true, force: true });
  });
  return async () => {
    const w = await world();
    made.push(w.base);
    return w;
  };
}
