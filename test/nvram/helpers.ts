import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach } from 'vitest';
import { openArchive, type Archive } from '../../src/io/archive';
import { asyncIo, syncIo, type Io, type IoFor } from '../../src/io/fs-api';
import type { Faults } from '../../src/io/safe-fs';

const api = process.env.OVMF_HOOK_TEST_FS_API;
if (api !== undefined && api !== 'sync') throw new Error(`OVMF_HOOK_TEST_FS_API=${api}: only "sync" is known`);
/**
 * The file API the NVRAM tests pass to everything they call: fs.promises, or the synchronous one
 * in the `unit-sync-io` project, whose setup (test/support/sync-io.ts) sets OVMF_HOOK_TEST_FS_API.
 */
export const io: Io = api === 'sync' ? syncIo : asyncIo;
/** `io` for every path: what the lifecycle functions take. */
export const ioFor: IoFor = () => io;

const made: string[] = [];

/** A fresh private temp dir, removed after the test. */
export async function tempDir(): Promise<string> {
  const d = await fs.mkdtemp(path.join(os.tmpdir(), 'ovmfhook-nvram-'));
  made.push(d);
  return d;
}

/** Operations frozen by killAt: woken with an error after the test so their file handles close. */
const frozen: Array<{ wake: () => void; op: Promise<unknown> }> = [];

afterEach(async () => {
  for (const f of frozen.splice(0)) {
    f.wake();
    await f.op;
  }
  for (const d of made.splice(0)) await fs.rm(d, { recursive: true, force: true });
});

/** Throw an error when `name` is reached ("the step failed"). */
export const throwAt = (name: string): Faults => ({
  at: (s) => {
    if (s === name) throw new Error(`injected fault at ${s}`);
  },
});

/**
 * Freeze the operation when `name` is reached, as if the process was killed there: `start(op)`
 * runs it and resolves once it is frozen, so the test can look at the files it left. After the
 * test the operation is woken with an error (only to release its file handles).
 */
export function killAt(name: string): { faults: Faults; start: (op: Promise<unknown>) => Promise<void> } {
  let hit!: () => void;
  let wake!: () => void;
  const reached = new Promise<void>((r) => (hit = r));
  const asleep = new Promise<void>((_, reject) => (wake = () => reject(new Error('woken after kill'))));
  asleep.catch(() => {});
  return {
    faults: {
      at: (s) => {
        if (s !== name) return;
        hit();
        return asleep;
      },
    },
    start: (op) => {
      frozen.push({ wake, op: op.catch(() => {}) });
      return reached;
    },
  };
}

/** Records every step name passed through. */
export function recorder(): Faults & { steps: string[] } {
  const steps: string[] = [];
  return { steps, at: (s) => void steps.push(s) };
}

export const bytes = (fill: number, size = 4096): Buffer => Buffer.alloc(size, fill);

/** One host of a cluster simulated in local directories: its handle on the shared archive, its own state dir and NVRAM file. */
export interface SimHost {
  name: string;
  archive: Archive;
  stateDir: string;
  nvramPath: string;
}

/** Host `name` under `base` (`base/name/state`, `base/name/nvram/<nvramFile>`) sharing the archive at `root`; `faults` go to its archive. */
export async function simHost(base: string, root: string, name: string, nvramFile: string, faults?: Faults): Promise<SimHost> {
  await fs.mkdir(path.join(base, name, 'nvram'), { recursive: true });
  return {
    name,
    archive: await openArchive({ root, host: name, hostId: `id-${name}`, faults }),
    stateDir: path.join(base, name, 'state'),
    nvramPath: path.join(base, name, 'nvram', nvramFile),
  };
}
