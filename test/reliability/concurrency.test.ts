/**
 * Concurrency through the real hook binary, on two simulated hosts (different `hostId`, own
 * nvram/state dirs) sharing one archive directory:
 *   - 50 VM lifecycles (prepare + release) at once with bounded, overlapping parallelism;
 *   - racing calls on one VM from one host;
 *   - the same VM started on both hosts at the same moment.
 * Promises: no corruption (every generation verifies, no debris), no deadlock (every call ends
 * within a bound, none is killed), generation numbers strictly increasing per VM, and the second
 * host refused at prepare with one line naming the host that holds the VM.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { domainXml, ensureBuilt, makeFirmware, makeHost, pattern, tempRoot, VARS_SIZE, type Firmware, type HookHost, type HookResult } from '../hook/harness';
import { checkArchive, sha256, tempFilesUnder } from './support';

const PARALLEL = 4; // 2 cores: enough to overlap every phase of the hook, not a fork bomb
const BOUND_MS = 10_000; // a call slower than this counts as hung
const tmp = tempRoot();
let fw: Firmware;
let a: HookHost;
let b: HookHost;
let archiveDir: string;
const timings: number[] = [];

beforeAll(() => {
  ensureBuilt();
  fw = makeFirmware(path.join(tmp.root, 'fw'));
  archiveDir = path.join(tmp.root, 'shared-archive');
  a = makeHost(tmp.root, { firmware: fw, name: 'hostA', archiveDir });
  b = makeHost(tmp.root, { firmware: fw, name: 'hostB', archiveDir });
}, 120_000);
afterAll(() => {
  const s = [...timings].sort((x, y) => x - y);
  const q = (p: number) => Math.round(s[Math.min(s.length - 1, Math.floor(p * s.length))]);
  if (s.length) console.info(`[concurrency] ${s.length} hook calls, parallelism ${PARALLEL}: p50 ${q(0.5)} ms, p95 ${q(0.95)} ms, max ${q(1)} ms (bound ${BOUND_MS} ms)`);
  tmp.cleanup();
});

const uuidOf = (i: number) => `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`;
const vmName = (i: number) => `vm-${i}`;
const xmlFor = (h: HookHost, i: number) => domainXml({ name: vmName(i), uuid: uuidOf(i), firmware: 'ovmf', nvram: h.nvramPath(vmName(i)) }, fw);

async function call(h: HookHost, i: number, op: 'prepare' | 'release'): Promise<HookResult> {
  const r = await h.run([vmName(i), op, op === 'prepare' ? 'begin' : 'end', op === 'prepare' ? '-' : 'shutdown'], xmlFor(h, i), { killAfterMs: 3 * BOUND_MS });
  timings.push(r.doneMs);
  expect(r.killed, `${h.name} ${op} ${vmName(i)} hung`).toBe(false);
  expect(r.doneMs, `${h.name} ${op} ${vmName(i)}`).toBeLessThan(BOUND_MS);
  return r;
}

/** Run `jobs` with at most `n` at a time. */
async function pool<T>(n: number, jobs: Array<() => Promise<T>>): Promise<T[]> {
  const out: T[] = new Array(jobs.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: n }, async () => {
      while (next < jobs.length) {
        const i = next++;
        out[i] = await jobs[i]();
      }
    }),
  );
  return out;
}

/** Generation numbers in the order the hook logged them (per VM): must strictly increase. */
function loggedGenerations(h: HookHost, vm: string): number[] {
  return h
    .log()
    .split('\n')
    .filter((l) => l.includes(` ${vm}: release: archived generation `))
    .map((l) => Number(/archived generation (\d+)/.exec(l)![1]));
}

const strictlyIncreasing = (xs: number[]) => xs.every((x, i) => i === 0 || x > xs[i - 1]);

describe('concurrent hook calls on two hosts sharing one archive', () => {
  it('50 VM lifecycles (prepare + release) at once: all succeed, one verified generation each, no debris', async () => {
    const vms = Array.from({ length: 50 }, (_, i) => i + 1);
    const lifecycle = (i: number) => async () => {
      const h = i % 2 ? a : b;
      const p = await call(h, i, 'prepare');
      expect(p.code, p.stderr).toBe(0);
      writeFileSync(h.nvramPath(vmName(i)), pattern(VARS_SIZE, `guest-${i}`));
      const r = await call(h, i, 'release');
      expect(r.code, r.stderr).toBe(0);
    };
    const t0 = performance.now();
    await pool(PARALLEL, vms.map(lifecycle));
    const wall = performance.now() - t0;
    for (const i of vms) {
      const c = checkArchive(archiveDir, uuidOf(i));
      expect(c.bad, vmName(i)).toEqual([]);
      expect(c.leftovers, vmName(i)).toEqual([]);
      expect(c.generations.map((g) => g.sha256), vmName(i)).toEqual([sha256(pattern(VARS_SIZE, `guest-${i}`))]);
    }
    expect(tempFilesUnder(tmp.root)).toEqual([]);
    console.info(`[concurrency] 50 lifecycles (100 hook calls) in ${Math.round(wall)} ms with ${PARALLEL} in flight`);
  });

  // libvirt never overlaps calls for one VM; the CLI may overlap a hook. Overlapping writers of one
  // file lose with one line: the VM's host lock is taken ("being changed by … start it again"),
  // or, past it, their file was replaced ("replaced by someone else … try again"); nothing is
  // deleted or torn.
  it('racing calls on one VM from one host: each succeeds or is refused in one line; generations verify and increase round by round', async () => {
    const i = 100;
    const RACERS = 6;
    const ROUNDS = 2;
    const newestPerRound: number[] = [];
    let seen = 0; // highest generation number of the previous rounds
    let refused = 0;
    for (let round = 1; round <= ROUNDS; round++) {
      const preps = await Promise.all(Array.from({ length: RACERS }, () => call(a, i, 'prepare')));
      for (const p of preps) {
        if (p.code === 0) continue;
        refused++;
        expect(p.stderr.split('\n').filter(Boolean), p.stderr).toHaveLength(1);
        expect(p.stderr).toMatch(/replaced by someone else while it was being written; try again|not started: its NVRAM is being changed by (the start of vm-\d+ \(hook prepare, pid \d+\)|another ovmf-hook process \(a VM start or an nvram restore\/reset\)); start it again once that has finished/);
      }
      expect(preps.some((p) => p.code === 0)).toBe(true);
      const single = await call(a, i, 'prepare'); // the start libvirt would retry
      expect(single.code, single.stderr).toBe(0);
      const content = pattern(VARS_SIZE, `race-${round}`);
      writeFileSync(a.nvramPath(vmName(i)), content);
      const rels = await Promise.all(Array.from({ length: RACERS }, () => call(a, i, 'release')));
      for (const r of rels) expect(r.code, r.stderr).toBe(0);
      const c = checkArchive(archiveDir, uuidOf(i));
      expect(c.bad).toEqual([]);
      expect(c.leftovers).toEqual([]);
      expect(c.generations.at(-1)?.sha256).toBe(sha256(content));
      expect(sha256(readFileSync(a.nvramPath(vmName(i))))).toBe(sha256(content));
      newestPerRound.push(c.generations.at(-1)!.generation);
      const made = c.generations.filter((g) => g.generation > seen);
      expect(made.length, `round ${round} archived its content`).toBeGreaterThan(0);
      expect(made.every((g) => g.sha256 === sha256(content)), 'a round only adds its own content, numbered above every older one').toBe(true);
      seen = c.generations.at(-1)!.generation;
    }
    expect(strictlyIncreasing(newestPerRound)).toBe(true);
    const dup = checkArchive(archiveDir, uuidOf(i)).generations.length - newestPerRound.length;
    console.info(`[concurrency] ${RACERS} racing prepares + ${RACERS} racing releases × ${ROUNDS} rounds on one VM: ${refused} prepare(s) refused in one line, ${dup} duplicate generation(s); 0 corrupt`);
  });

  it('the same VM started on both hosts at the same moment: exactly one starts, the other is refused in one line naming the holder', async () => {
    const ROUNDS = 3;
    for (let round = 0; round < ROUNDS; round++) {
      const i = 200 + round;
      const [ra, rb] = await Promise.all([call(a, i, 'prepare'), call(b, i, 'prepare')]);
      expect([ra.code, rb.code].sort(), `round ${round}: ${ra.stderr}${rb.stderr}`).toEqual([0, 1]);
      const [winner, loser, lost] = ra.code === 0 ? [a, b, rb] : [b, a, ra];
      expect(lost.stderr.split('\n').filter(Boolean)).toHaveLength(1);
      expect(lost.stderr).toMatch(new RegExp(`^ovmf-hook: ${vmName(i)}: NVRAM is claimed by host \\S+ \\(host id ${winner.name}\\) since .*ovmf-hook nvram unlock ${vmName(i)}\\n$`));

      // libvirt runs release on the refused host: exit 0, the winner's claim and archive untouched
      const loserRelease = await call(loser, i, 'release');
      expect(loserRelease.code).toBe(0);
      expect(JSON.parse(readFileSync(path.join(archiveDir, uuidOf(i), 'claim.json'), 'utf8')).hostId).toBe(winner.name);
      const again = await call(loser, i, 'prepare');
      expect(again.code, 'still refused while the winner runs the VM').toBe(1);
      await call(loser, i, 'release');

      // the winner stops; then the VM follows to the other host with the winner's NVRAM
      const content = pattern(VARS_SIZE, `winner-${round}`);
      writeFileSync(winner.nvramPath(vmName(i)), content);
      expect((await call(winner, i, 'release')).code).toBe(0);
      expect((await call(loser, i, 'prepare')).code).toBe(0);
      expect(sha256(readFileSync(loser.nvramPath(vmName(i))))).toBe(sha256(content));
      expect((await call(loser, i, 'release')).code).toBe(0);
      const c = checkArchive(archiveDir, uuidOf(i));
      expect(c.bad).toEqual([]);
      expect(c.leftovers).toEqual([]);
      expect(c.generations.map((g) => [g.sha256, g.kind])).toEqual([[sha256(content), 'archive']]);
    }
    // sequential lifecycles of one VM across both hosts: numbers strictly increase in log order
    const i = 300;
    for (const [n, h] of [a, b, a, b].entries()) {
      expect((await call(h, i, 'prepare')).code).toBe(0);
      writeFileSync(h.nvramPath(vmName(i)), pattern(VARS_SIZE, `hop-${n}`));
      expect((await call(h, i, 'release')).code).toBe(0);
    }
    const logged = [...loggedGenerations(a, vmName(i)).map((g) => ({ g, host: 'a' })), ...loggedGenerations(b, vmName(i)).map((g) => ({ g, host: 'b' }))];
    expect(logged.map((x) => x.g).sort((x, y) => x - y)).toEqual([1, 2, 3, 4]);
    expect(strictlyIncreasing(loggedGenerations(a, vmName(i))) && strictlyIncreasing(loggedGenerations(b, vmName(i)))).toBe(true);
    expect(checkArchive(archiveDir, uuidOf(i)).generations.map((g) => g.sha256)).toEqual([0, 1, 2, 3].map((n) => sha256(pattern(VARS_SIZE, `hop-${n}`))));
  });
});
