/**
 * Crash matrix of the claim hand-over (docs/CLUSTER.md, "Live migration"): each operation of a
 * live migration that touches the claim or the incoming record is stopped at every named step it
 * reaches (found by a recorded dry run) — failing there ("error") or frozen forever as if the
 * hook were killed there ("kill") — and the migration then goes on as libvirt would. Checked
 * after every case: there is never more than one owner (every start other than the running
 * host's is refused, and at most one host's release archives as the owner), and no generation
 * and no running copy is ever lost.
 */
import { existsSync, promises as fs } from 'node:fs';
import os from 'node:os';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { RefusedError } from '../../src/core/errors';
import { markIncomingMigration, markStartRefused } from '../../src/io/local-state';
import { prepareNvram } from '../../src/io/lifecycle';
import type { Faults } from '../../src/io/safe-fs';
import { sha256 } from '../../src/io/safe-fs';
import { at, fill, receive, start, stop, UUID, world, write, type Host, type World } from './handover-world';

type Mode = 'error' | 'kill';
interface Tap {
  faults: Faults;
  steps: string[];
  wake(): void;
}
/** Count every step; fail or freeze at the `target`-th. */
function tap(target: number | null, mode: Mode): Tap {
  const steps: string[] = [];
  let wake!: () => void;
  const asleep = new Promise<void>((_, reject) => (wake = () => reject(new Error('woken after the simulated kill'))));
  asleep.catch(() => {});
  return {
    steps,
    wake,
    faults: {
      at: (s) => {
        steps.push(s);
        if (steps.length - 1 !== target) return;
        if (mode === 'error') throw new Error(`injected fault at ${s}`);
        return asleep;
      },
    },
  };
}

/** Run `op` until it ends or reaches its fault: a frozen op is left behind (woken after the test). */
async function runUntilFault(op: Promise<unknown>, t: Tap, target: number | null, frozen: Tap[]): Promise<'done' | 'failed' | 'killed'> {
  const reached = new Promise<'killed'>((resolve) => {
    const orig = t.faults.at;
    t.faults.at = (s) => {
      const r = orig(s);
      if (t.steps.length - 1 === target && r instanceof Promise) resolve('killed');
      return r;
    };
  });
  const ended = op.then(
    () => 'done' as const,
    () => 'failed' as const,
  );
  const how = await Promise.race([ended, reached]);
  if (how === 'killed') frozen.push(t);
  return how;
}

const isRefused = (p: Promise<unknown>): Promise<boolean> =>
  p.then(
    () => false,
    (e) => {
      if (!(e instanceof RefusedError)) throw e;
      return true;
    },
  );

interface Scenario {
  name: string;
  /** Which host's archive the faults hit. */
  faulty: 'a' | 'b';
  setup(w: World): Promise<void>;
  op(w: World): Promise<unknown>;
  /** After the op succeeded, failed or was killed: libvirt's next calls, then the checks. */
  after(w: World, how: 'done' | 'failed' | 'killed'): Promise<void>;
}

/** A ran the VM (gen 1 = 0x01), runs it again with 0x02; B is receiving it by live migration. */
async function migrating(w: World): Promise<void> {
  await start(w, w.a, at(0));
  await write(w.a, fill(1));
  await stop(w.a, at(1));
  await start(w, w.a, at(2));
  await write(w.a, fill(2));
  await receive(w, w.b, at(10), fill(2));
}

const contents = async (h: Host): Promise<string[]> => (await h.archive.list(UUID)).map((m) => m.sha256);

/** The migration to B failed and A resumed: A still owns the VM, C's start is refused, A's stop archives A's copy (0x04) as the newest. */
async function aKeepsIt(w: World): Promise<void> {
  expect(await w.a.archive.claimInfo(UUID)).toMatchObject({ hostId: 'id-a' });
  expect(await isRefused(start(w, w.c, at(12)))).toBe(true);
  await write(w.a, fill(4));
  const r = await stop(w.a, at(20));
  expect(r).toMatchObject({ action: 'archived', kind: 'archive' });
  expect((await w.a.archive.newest(UUID))?.sha256).toBe(sha256(fill(4)));
}

/** Nobody but B may start the VM while B runs it; then B stops (its copy 0x03) and must not be lost. */
async function bRunsIt(w: World, aCopyArchivedOrLocal: boolean): Promise<void> {
  const claim = await w.a.archive.claimInfo(UUID);
  expect(['id-a', 'id-b']).toContain(claim?.hostId); // never absent, never a third host
  expect(await isRefused(start(w, w.c, at(20)))).toBe(true);
  expect(await isRefused(start(w, w.a, at(20)))).toBe(true);
  expect(await contents(w.a)).toContain(sha256(fill(1)));
  if (aCopyArchivedOrLocal)
    expect((await contents(w.a)).includes(sha256(fill(2))) || (await fs.readFile(w.a.nvramPath)).equals(fill(2))).toBe(true);
  await write(w.b, fill(3));
  const r = await stop(w.b, at(30));
  expect(r).toMatchObject({ action: 'archived' });
  expect(await contents(w.a)).toContain(sha256(fill(3)));
  // the owner's archive is the newest restorable; a fenced one (hand-over cut short) is kept
  if (r.action === 'archived' && r.kind === 'archive') expect((await w.a.archive.newest(UUID))?.sha256).toBe(sha256(fill(3)));
  expect(claim?.hostId === 'id-b').toBe(r.action === 'archived' && r.kind === 'archive');
}

const SCENARIOS: Scenario[] = [
  {
    name: 'source release hands the claim over (libvirt < 10.5: archive, then hand over)',
    faulty: 'a',
    setup: migrating,
    op: (w) => stop(w.a, at(12), '-'),
    after: (w) => bRunsIt(w, true),
  },
  {
    name: 'source release hands the claim over (reason migrated)',
    faulty: 'a',
    setup: migrating,
    op: (w) => stop(w.a, at(12), 'migrated'),
    after: (w) => bRunsIt(w, false),
  },
  {
    name: 'destination prepare writes its incoming record',
    faulty: 'b',
    async setup(w) {
      await start(w, w.a, at(0));
      await write(w.a, fill(1));
      await stop(w.a, at(1));
      await start(w, w.a, at(2));
      await write(w.a, fill(2));
      await markIncomingMigration(w.b.stateDir, UUID, at(10));
    },
    op: (w) => prepareNvram({ archive: w.b.archive, stateDir: w.b.stateDir, nvramPath: w.b.nvramPath, uuid: UUID, vmName: 'vm', templatePath: w.template, owner: { mode: 0o600 }, incomingMigration: true, now: at(10), leftoverAgeMs: 0 }),
    async after(w, how) {
      if (how === 'done') {
        await write(w.b, fill(2));
        await stop(w.a, at(12), '-');
        return bRunsIt(w, true);
      }
      // the failed prepare aborts the migration; libvirt runs B's release (after an error the hook marked the refusal), A keeps running
      if (how === 'failed') await markStartRefused(w.b.stateDir, UUID, at(11));
      await stop(w.b, at(11));
      // a record left by the kill points B out, never C; A's stop then still keeps its copy
      await aKeepsIt(w);
      expect([null, 'id-b']).toContain((await w.a.archive.claimInfo(UUID))?.hostId ?? null);
    },
  },
  {
    name: 'destination release after a failed migration removes its record',
    faulty: 'b',
    setup: migrating,
    op: (w) => stop(w.b, at(11)),
    async after(w) {
      await aKeepsIt(w);
      expect(await contents(w.a)).toContain(sha256(fill(1)));
    },
  },
];

const SCRATCH = existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir();
const made: string[] = [];
const frozen: Tap[] = [];
afterEach(() => {
  for (const t of frozen.splice(0)) t.wake();
});
afterAll(async () => {
  for (const d of made.splice(0)) await fs.rm(d, { recursive: true, force: true });
});

async function caseWorld(s: Scenario, t?: Tap): Promise<World> {
  const w = await world(t ? { [s.faulty]: t.faults } : undefined, SCRATCH);
  made.push(w.base);
  return w;
}

/** The steps a fault-free run reaches: the kill points. The setup runs without faults (a second world). */
async function dryRun(s: Scenario): Promise<string[]> {
  const t = tap(null, 'error');
  const w = await caseWorld(s, t);
  await s.setup(w);
  t.steps.length = 0;
  await s.op(w);
  return [...t.steps];
}

const plans = await Promise.all(SCENARIOS.map(async (s) => ({ s, steps: await dryRun(s) })));
const KILL_POINTS = plans.reduce((n, p) => n + p.steps.length, 0);

describe(`hand-over crash matrix: ${KILL_POINTS} kill points in ${SCENARIOS.length} operations, each as an error and as a kill`, () => {
  it('the hand-over steps are among the kill points', () => {
    const all = plans.flatMap((p) => p.steps);
    for (const name of ['claim-handover-tombstone-link', 'claim-handover-rename', 'claim-incoming-rename', 'claim-incoming-drop-rename', 'claim-incoming-drop-unlink'])
      expect(all).toContain(name);
  });

  describe.each(plans.map((p) => ({ ...p, n: p.steps.length })))('$s.name ($n kill points)', ({ s, steps }) => {
    it.each(steps.flatMap((step, i) => (['error', 'kill'] as const).map((mode) => ({ step, i, mode }))))('$mode at #$i $step', async ({ i, mode }) => {
      // the fault counts from the op on: the setup's steps pass
      let armed = false;
      const t = tap(i, mode);
      const gate: Tap = { steps: t.steps, wake: t.wake, faults: { at: (x) => (armed ? t.faults.at(x) : undefined) } };
      const w = await caseWorld(s, gate);
      await s.setup(w);
      armed = true;
      const how = await runUntilFault(s.op(w), gate, i, frozen);
      armed = false; // the continuation (other calls of the same host) runs fault-free
      // a release reports a failed claim step as a warning: an error there may end as 'done'
      expect(mode === 'error' ? ['failed', 'done'] : ['killed']).toContain(how);
      await s.after(w, how);
    });
  });
});
