/**
 * Crash safety, measured two ways:
 *
 * 1. In process, by fault injection at every named step an NVRAM operation reaches (archive add,
 *    claim, prune, claim release, local NVRAM write, per-host state write — in the order a real
 *    run reaches them, found by a recorded dry run): at each step the operation either fails
 *    there ("error") or freezes forever as if the process died there ("kill"). Then: every
 *    listed generation verifies, old generations are intact, the local NVRAM is the old or the
 *    new content (never partial, never lost), and after a repair the next run succeeds and
 *    leaves no debris.
 * 2. With the real hook binary: `kill -9` mid-archive of a 4 MiB varstore, at seeded delays.
 */
import { existsSync, promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { dropLocksOfThisProcess } from '../../src/io/vm-lock';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { prepareNvram, releaseNvram, restoreGeneration } from '../../src/io/lifecycle';
import type { Faults } from '../../src/io/safe-fs';
import { domainXml, ensureBuilt, makeFirmware, makeHost, pattern, tempRoot, type HookHost } from '../hook/harness';
import { checkArchive, prng, sha256, tempFilesUnder } from './support';
import { simHost, type SimHost } from '../nvram/helpers';

const UUID = 'c0ffee00-1b2c-4d3e-8f90-a1b2c3d4e5f6';
const SIZE = 128 * 1024;
const content = (seed: number): Buffer => pattern(SIZE, `content-${seed}`);
const TEMPLATE = pattern(SIZE, 'template');

// ---------------------------------------------------------------------------------------------
// A cluster of two hosts sharing one archive, in a directory that can be cloned per case

interface Host extends SimHost {
  templatePath: string;
}
interface World {
  base: string;
  root: string;
  a: Host;
  b: Host;
}

async function world(base: string, faults?: Faults): Promise<World> {
  const root = path.join(base, 'archive');
  const host = async (name: string, f?: Faults): Promise<Host> => ({
    ...(await simHost(base, root, name, 'vm1_VARS.fd', f)),
    templatePath: path.join(base, 'OVMF_VARS.fd'),
  });
  return { base, root, a: await host('alpha', faults), b: await host('beta') };
}

interface Channels {
  archive?: Faults;
  nvram?: Faults;
  state?: Faults;
}
const common = (h: Host, f: Channels = {}) => ({
  archive: h.archive,
  stateDir: h.stateDir,
  nvramPath: h.nvramPath,
  uuid: UUID,
  vmName: 'vm1',
  faults: f.nvram,
  stateFaults: f.state,
  leftoverAgeMs: 0,
});
const prep = (h: Host, f?: Channels) =>
  prepareNvram({ ...common(h, f), templatePath: h.templatePath, owner: { mode: 0o600 }, expectedSize: SIZE, incomingMigration: false });
const rel = async (h: Host, f?: Channels, keep = 10) => {
  const r = await releaseNvram({ ...common(h, f), reason: 'shutdown', keep });
  if (r.action === 'failed') throw r.error;
  return r;
};
const write = (h: Host, data: Buffer) => fs.writeFile(h.nvramPath, data);

// ---------------------------------------------------------------------------------------------
// Scenarios: a "before" state and one operation of host alpha

interface Scenario {
  name: string;
  setup(w: World): Promise<void>;
  /** The operation, run by alpha with faulty channels. */
  op(a: Host, f: Channels): Promise<unknown>;
  /** alpha's local NVRAM after a successful run. */
  after: Buffer | null;
  /** Contents that may appear as new generations. */
  added: Buffer[];
  /** Generations the operation may remove (prune). */
  mayDrop?: number[];
}

const SCENARIOS: Scenario[] = [
  {
    name: 'release: archive a changed NVRAM',
    async setup({ a }) {
      await prep(a);
      await write(a, content(1));
      await rel(a);
      await prep(a);
      await write(a, content(2));
    },
    op: (a, f) => rel(a, f),
    after: content(2),
    added: [content(2)],
  },
  {
    name: 'release: archive and prune to 2 generations',
    async setup({ a }) {
      await prep(a);
      for (const i of [1, 2, 3]) {
        await write(a, content(i));
        await rel(a, {}, 10);
        await prep(a);
      }
      await write(a, content(4));
    },
    op: (a, f) => rel(a, f, 2),
    after: content(4),
    added: [content(4)],
    mayDrop: [1, 2],
  },
  {
    name: 'prepare: provision from the template',
    async setup() {},
    op: (a, f) => prep(a, f),
    after: TEMPLATE,
    added: [],
  },
  {
    name: 'prepare: restore a missing local NVRAM',
    async setup({ b }) {
      await prep(b);
      await write(b, content(3));
      await rel(b);
    },
    op: (a, f) => prep(a, f),
    after: content(3),
    added: [],
  },
  {
    name: 'prepare: displace an unarchived local copy, then restore',
    async setup({ a, b }) {
      await prep(b);
      await write(b, content(2));
      await rel(b);
      await write(a, content(9));
    },
    op: (a, f) => prep(a, f),
    after: content(2),
    added: [content(9)],
  },
  {
    name: 'nvram restore --generation (displace + manual generation + local write)',
    async setup({ a }) {
      await prep(a);
      await write(a, content(1));
      await rel(a);
      await prep(a);
      await write(a, content(2));
      await rel(a);
      await write(a, content(5));
    },
    op: (a, f) => restoreGeneration({ ...common(a, f), generation: 1, owner: { mode: 0o600 } }),
    after: content(1),
    added: [content(5), content(1)],
  },
];

// ---------------------------------------------------------------------------------------------
// Fault taps: count every step reached (all channels), fail or freeze at the n-th

type Mode = 'error' | 'kill';
interface Tap extends Required<Channels> {
  steps: string[];
  /** Resolves when the target step is reached. */
  reached: Promise<void>;
  /** Wake a frozen operation (with an error) so it releases its file handles. */
  wake(): void;
}

function tap(target: number | null, mode: Mode): Tap {
  const steps: string[] = [];
  let hit!: () => void;
  let wake!: () => void;
  const reached = new Promise<void>((r) => (hit = r));
  const asleep = new Promise<void>((_, reject) => (wake = () => reject(new Error('woken after the simulated kill'))));
  asleep.catch(() => {});
  const channel = (ch: string): Faults => ({
    at: (s) => {
      steps.push(`${ch}:${s}`);
      if (steps.length - 1 !== target) return;
      hit();
      if (mode === 'error') throw new Error(`injected fault at ${ch}:${s}`);
      return asleep;
    },
  });
  return { steps, reached, wake, archive: channel('archive'), nvram: channel('nvram'), state: channel('state') };
}

const made: string[] = [];
const perCase: string[] = [];
const frozen: Array<{ wake: () => void; op: Promise<unknown> }> = [];
afterEach(async () => {
  for (const f of frozen.splice(0)) {
    f.wake();
    await f.op.catch(() => {});
  }
  for (const d of perCase.splice(0)) await fs.rm(d, { recursive: true, force: true });
});
afterAll(async () => {
  for (const d of made.splice(0)) await fs.rm(d, { recursive: true, force: true });
});
// tmpfs when there is one: fsync is free there, and a simulated crash does not depend on it
const SCRATCH = existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir();
const newBase = async (): Promise<string> => {
  const d = await fs.mkdtemp(path.join(SCRATCH, 'ovmfhook-crash-'));
  made.push(d);
  return d;
};

/** The "before" tree of each scenario, built once; every case runs on a fresh copy. */
async function beforeTree(s: Scenario): Promise<string> {
  const base = await newBase();
  await fs.writeFile(path.join(base, 'OVMF_VARS.fd'), TEMPLATE);
  await s.setup(await world(base));
  return base;
}

/** Record the steps a fault-free run reaches (the kill points), at module load. */
async function dryRun(s: Scenario): Promise<string[]> {
  const base = await beforeTree(s);
  const t = tap(null, 'error');
  const w = await world(path.join(base), t.archive);
  await s.op(w.a, t);
  await fs.rm(base, { recursive: true, force: true });
  made.splice(made.indexOf(base), 1);
  return t.steps;
}

const plans = await Promise.all(SCENARIOS.map(async (s) => ({ s, steps: await dryRun(s) })));
const KILL_POINTS = plans.reduce((n, p) => n + p.steps.length, 0);

const readOrNull = (p: string) => fs.readFile(p).catch(() => null);

describe(`crash safety: ${KILL_POINTS} kill points in ${SCENARIOS.length} NVRAM operations, each as an error and as a kill (${2 * KILL_POINTS} cases)`, () => {
  const trees = new Map<Scenario, string>();
  beforeAll(async () => {
    for (const { s } of plans) trees.set(s, await beforeTree(s));
  });

  describe.each(plans.map((p) => ({ ...p, n: p.steps.length })))('$s.name ($n kill points)', ({ s, steps }) => {
    const cases = steps.flatMap((step, i) => (['error', 'kill'] as const).map((mode) => ({ i, step, mode })));
    it.each(cases)('$mode at #$i $step', async ({ i, mode }) => {
      const base = await newBase();
      perCase.push(base);
      await fs.cp(trees.get(s)!, base, { recursive: true, preserveTimestamps: true });
      const w0 = await world(base);
      const before = { gens: checkArchive(w0.root, UUID).generations, local: await readOrNull(w0.a.nvramPath) };

      const t = tap(i, mode);
      const w = await world(base, t.archive);
      const op = s.op(w.a, t);
      op.catch(() => {});
      if (mode === 'kill') {
        frozen.push({ wake: t.wake, op });
        const first = await Promise.race([t.reached.then(() => 'frozen'), op.then(() => 'finished', () => 'failed')]);
        expect(first, 'the kill point is reached').toBe('frozen');
      } else {
        await op.catch(() => {});
      }

      // Right after the crash: old or new, never partial, nothing lost
      const mid = checkArchive(w.root, UUID);
      expect(mid.bad, 'every listed generation verifies').toEqual([]);
      const midBySha = new Map(mid.generations.map((g) => [g.generation, g.sha256]));
      for (const g of before.gens) if (!s.mayDrop?.includes(g.generation)) expect(midBySha.get(g.generation), `generation ${g.generation} intact`).toBe(g.sha256);
      const allowedNew = new Set(s.added.map(sha256));
      for (const g of mid.generations.filter((g) => !before.gens.some((b) => b.generation === g.generation))) expect(allowedNew.has(g.sha256)).toBe(true);
      const local = await readOrNull(w.a.nvramPath);
      const localSha = local && sha256(local);
      expect([before.local && sha256(before.local), s.after && sha256(s.after)], 'local NVRAM is the old or the new content').toContain(localSha);
      if (before.local) {
        const kept = localSha === sha256(before.local) || mid.generations.some((g) => g.sha256 === sha256(before.local!));
        expect(kept, 'the old local NVRAM is still local or in the archive').toBe(true);
      }

      // The next run (another process: the crashed one's VM locks are gone): repair the
      // leftovers, run again, succeed, leave no debris
      await dropLocksOfThisProcess();
      const clean = await world(base);
      const repaired = await clean.a.archive.repair(UUID, { olderThanMs: 0 });
      expect(repaired.corrupt).toEqual([]);
      await s.op(clean.a, {});
      const end = checkArchive(clean.root, UUID);
      expect(end.bad).toEqual([]);
      expect(end.leftovers).toEqual([]);
      expect(tempFilesUnder(base)).toEqual([]);
      expect(sha256((await readOrNull(clean.a.nvramPath))!)).toBe(sha256(s.after!));
      const fresh = end.generations.filter((g) => !before.gens.some((b) => b.generation === g.generation));
      for (const c of s.added) expect(fresh.filter((g) => g.sha256 === sha256(c)).length, 'each new content archived once').toBe(1);
    });
  });
});

// ---------------------------------------------------------------------------------------------
// kill -9 of the real hook in the middle of archiving / restoring a 4 MiB varstore

const BIG = 4 * 1024 * 1024;
const KILLS = 30;
const PREPARE_KILLS = 8;
const PREPARE_WINDOW_MS = 100;

describe(`kill -9 of the real hook on a ${BIG / 1048576} MiB varstore`, () => {
  const tmp = tempRoot();
  let host: HookHost;
  let xml: string;
  const uuid = '4b1d0000-1b2c-4d3e-8f90-a1b2c3d4e5f6';
  const vm = 'bigvars';
  const nvram = () => host.nvramPath(vm);

  beforeAll(async () => {
    ensureBuilt();
    const fw = makeFirmware(path.join(tmp.root, 'fw'));
    // a 1 MiB CODE + 4 MiB VARS pair (QEMU accepts any 4 KiB multiple up to 8 MiB in total)
    const code = path.join(fw.dir, 'CODE_1M.fd');
    const vars = path.join(fw.dir, 'VARS_4M_BIG.fd');
    await fs.writeFile(code, pattern(1024 * 1024, 'code-1m'));
    await fs.writeFile(vars, pattern(BIG, 'vars-big'));
    host = makeHost(tmp.root, { firmware: fw, name: 'hostA' });
    xml = domainXml({ name: vm, uuid, firmware: 'ovmf', loader: code, template: vars, nvram: path.join(host.nvramDir, `${vm}_VARS.fd`) }, fw);
  });
  afterAll(() => tmp.cleanup());

  /**
   * Spawn the hook (through `sh -c 'echo $$ > pidfile; exec hook'`, so the pid is the hook's) and
   * SIGKILL it `delayMs` after the first change it makes in the VM's archive directory.
   */
  async function killMid(argv: string[], delayMs: number): Promise<{ killed: boolean; code: number | null; sinceChangeMs: number }> {
    const dir = path.join(host.archiveDir, uuid);
    await fs.mkdir(dir, { recursive: true, mode: 0o700 });
    const pidFile = path.join(tmp.root, 'hook.pid');
    await fs.rm(pidFile, { force: true });
    const ac = new AbortController();
    const watcher = fs.watch(dir, { signal: ac.signal });
    let done = false;
    let changedAt = NaN;
    const p = host.run(argv, xml, { wrap: ['/bin/sh', '-c', 'echo $$ > "$0"; exec "$@"', pidFile] });
    const armed = (async () => {
      try {
        for await (const _ of watcher) break;
      } catch {
        return; // aborted: the hook finished without touching the directory
      }
      changedAt = performance.now();
      await new Promise((r) => setTimeout(r, delayMs));
      const pid = Number(await fs.readFile(pidFile, 'utf8').catch(() => '0'));
      if (!done && pid > 0) process.kill(pid, 'SIGKILL');
    })();
    const r = await p;
    const sinceChangeMs = performance.now() - changedAt;
    done = true;
    ac.abort();
    await armed;
    return { killed: r.signal === 'SIGKILL', code: r.code, sinceChangeMs };
  }

  /** Make every leftover (archive debris, temps of the state/NVRAM writes) look 2 hours old: what the sweep waits for. */
  async function ageLeftovers(): Promise<number> {
    const dir = path.join(host.archiveDir, uuid);
    const old = new Date(Date.now() - 2 * 3600_000);
    const files = [...checkArchive(host.archiveDir, uuid).leftovers.map((f) => path.join(dir, f)), ...tempFilesUnder(host.dir).map((f) => path.join(host.dir, f))];
    const unique = [...new Set(files)];
    for (const f of unique) await fs.utimes(f, old, old);
    return unique.length;
  }

  it(`release end: after each of ${KILLS} kills at 0–30 ms into the archive write the archive verifies and the local NVRAM is intact; the next run archives it`, async () => {
    const rnd = prng(0x0f7e);
    const outcomes = { beforeCommit: 0, afterCommit: 0, finished: 0, debris: 0 };
    for (let i = 0; i < KILLS; i++) {
      const data = pattern(BIG, `guest-${i}`);
      await fs.writeFile(nvram(), data);
      const debrisBefore = checkArchive(host.archiveDir, uuid).leftovers.length;
      const delay = Math.floor(rnd() * 31);
      const r = await killMid([vm, 'release', 'end', 'shutdown'], delay);
      const mid = checkArchive(host.archiveDir, uuid);
      expect(mid.bad, `kill #${i} at ${delay} ms`).toEqual([]);
      expect(sha256(await fs.readFile(nvram())), 'the local NVRAM is never touched by release').toBe(sha256(data));
      const committed = mid.generations.some((g) => g.sha256 === sha256(data));
      if (!r.killed) {
        expect(r.code).toBe(0);
        outcomes.finished++;
      } else if (committed) outcomes.afterCommit++;
      else outcomes.beforeCommit++;
      if (mid.leftovers.length > debrisBefore) outcomes.debris++;

      const next = await host.run([vm, 'release', 'end', 'shutdown'], xml);
      expect(next.code).toBe(0);
      const end = checkArchive(host.archiveDir, uuid);
      expect(end.bad).toEqual([]);
      expect(end.generations.at(-1)?.sha256, 'newest generation = the local NVRAM').toBe(sha256(data));
      expect(end.generations.filter((g) => g.sha256 === sha256(data)).length, 'archived once').toBe(1);
    }
    // leftovers of killed runs are swept by the next run once they are older than an hour
    const debris = await ageLeftovers();
    await fs.writeFile(nvram(), pattern(BIG, 'final'));
    expect((await host.run([vm, 'release', 'end', 'shutdown'], xml)).code).toBe(0);
    expect(checkArchive(host.archiveDir, uuid).leftovers).toEqual([]);
    expect(tempFilesUnder(host.dir)).toEqual([]);
    console.info(
      `[kill -9 release, ${BIG / 1048576} MiB] ${KILLS} kills: ${outcomes.beforeCommit} before the commit, ${outcomes.afterCommit} after it, ${outcomes.finished} too late (run finished); ` +
        `${outcomes.debris} left debris (${debris} files, swept by a later run); 0 corrupt generations, local NVRAM intact every time`,
    );
    expect(outcomes.beforeCommit + outcomes.afterCommit, 'a good share of the kills land mid-run').toBeGreaterThanOrEqual(KILLS / 3);
   }, 180_000);

  it(`prepare begin (displace + restore): after each of ${PREPARE_KILLS} kills at 0–${PREPARE_WINDOW_MS} ms (1.5 × one run) the archive verifies and the local NVRAM is the old or the restored copy, never lost`, async () => {
    const rnd = prng(0x5eed);
    const b = makeHost(tmp.root, { firmware: makeFirmware(path.join(tmp.root, 'fw-b')), name: 'hostB', archiveDir: host.archiveDir });
    const xmlB = xml.replaceAll(host.nvramDir, b.nvramDir);
    const outcomes = { old: 0, restored: 0, finished: 0 };
    // the window: 1.5 × how long one unkilled prepare works after its first archive change, on this
    // machine now (fsync times vary tenfold between disks and loads), at most PREPARE_WINDOW_MS;
    // kills then land before, during and after the restore
    const oneRun = async (tag: string) => {
      await fs.writeFile(b.nvramPath(vm), pattern(BIG, `host-b-${tag}`));
      expect((await b.run([vm, 'release', 'end', 'shutdown'], xmlB)).code).toBe(0);
      await fs.writeFile(nvram(), pattern(BIG, `host-a-local-${tag}`));
      const r = await killMid([vm, 'prepare', 'begin', '-'], 60_000);
      expect(r.code).toBe(0);
      expect((await host.run([vm, 'release', 'end', 'shutdown'], xml)).code).toBe(0);
      return r.sinceChangeMs;
    };
    const window = Math.min(PREPARE_WINDOW_MS, Math.max(5, Math.floor(1.5 * Math.min(await oneRun('probe-1'), await oneRun('probe-2')))));
    for (let i = 0; i < PREPARE_KILLS; i++) {
      const fromB = pattern(BIG, `host-b-${i}`);
      const unarchived = pattern(BIG, `host-a-local-${i}`);
      await fs.writeFile(b.nvramPath(vm), fromB);
      expect((await b.run([vm, 'release', 'end', 'shutdown'], xmlB)).code).toBe(0); // newest generation: fromB
      await fs.writeFile(nvram(), unarchived); // alpha's copy changed outside any sync

      // the displaced copy is archived first, then the local file is written: a wider window
      const delay = Math.floor(rnd() * window);
      const r = await killMid([vm, 'prepare', 'begin', '-'], delay);
      const mid = checkArchive(host.archiveDir, uuid);
      expect(mid.bad, `kill #${i} at ${delay} ms`).toEqual([]);
      const local = sha256(await fs.readFile(nvram()));
      expect([sha256(unarchived), sha256(fromB)]).toContain(local);
      if (local === sha256(fromB)) expect(mid.generations.map((g) => g.sha256), 'displaced before overwritten').toContain(sha256(unarchived));
      if (!r.killed) outcomes.finished++;
      else if (local === sha256(fromB)) outcomes.restored++;
      else outcomes.old++;

      const next = await host.run([vm, 'prepare', 'begin', '-'], xml);
      expect(next.code, next.stderr).toBe(0);
      expect(sha256(await fs.readFile(nvram()))).toBe(sha256(fromB));
      expect(checkArchive(host.archiveDir, uuid).generations.map((g) => g.sha256)).toContain(sha256(unarchived));
      expect((await host.run([vm, 'release', 'end', 'shutdown'], xml)).code).toBe(0); // gives the claim back
    }
    console.info(
      `[kill -9 prepare, ${BIG / 1048576} MiB] ${PREPARE_KILLS} kills at 0–${window} ms: ${outcomes.old} left the old local copy, ${outcomes.restored} the restored one, ${outcomes.finished} too late; never partial, never lost`,
    );
    expect(outcomes.old + outcomes.restored, 'a good share of the kills land mid-run').toBeGreaterThanOrEqual(PREPARE_KILLS / 3);
   }, 180_000);
});
