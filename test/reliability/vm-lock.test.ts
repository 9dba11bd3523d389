/**
 * The per-VM lock (src/io/vm-lock.ts) of both kinds: abstract sockets (node >= 20) and socket
 * files in the state directory (node < 20, whose `net` cannot bind an abstract name; forced here
 * with `lockKind`). Locks of two VMs never meet; the same VM's second taker is refused with the
 * holder's line; a socket file left by a holder that died is taken over by exactly one of many
 * takers at once.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { RefusedError } from '../../src/core/errors';
import { lockKind, lockVm, type VmLock } from '../../src/io/vm-lock';

const A = '0a0a0a0a-0000-4000-8000-00000000000a';
const B = '0b0b0b0b-0000-4000-8000-00000000000b';
const base = mkdtempSync(join(tmpdir(), 'ovmfhook-vmlock-'));
let n = 0;
const stateDir = () => {
  const dir = join(base, `state-${++n}`);
  mkdirSync(dir, { mode: 0o700 });
  return dir;
};
const busy = (other: string) => `busy: ${other}`;
const abstractBefore = lockKind.abstract;
const held: VmLock[] = [];
const take = async (dir: string, uuid: string, holder = `holder of ${uuid}`) => {
  const lock = await lockVm(dir, uuid, holder, busy);
  held.push(lock);
  return lock;
};

afterEach(async () => {
  await Promise.all(held.splice(0).map((l) => l.release()));
  lockKind.abstract = abstractBefore;
});
afterAll(() => rmSync(base, { recursive: true, force: true }));

describe.each([
  ['abstract sockets', true],
  ['socket files (node < 20)', false],
])('VM lock: %s', (_kind, abstract) => {
  it('two VMs are locked at once; a second taker of the same VM is refused with the holder line; release frees it', async () => {
    lockKind.abstract = abstract;
    const dir = stateDir();
    const a = await take(dir, A, 'the start of vm-a (pid 1)');
    await take(dir, B);
    const refused = await lockVm(dir, A, 'nvram restore', busy).then(() => 'taken', (e: unknown) => e);
    expect(refused).toBeInstanceOf(RefusedError);
    expect((refused as Error).message).toBe('busy: the start of vm-a (pid 1)');
    // another state directory is another host (tests simulate several in one namespace)
    await take(stateDir(), A);
    await a.release();
    held.splice(held.indexOf(a), 1);
    await take(dir, A);
  });
});

describe('VM lock: socket files (node < 20)', () => {
  it('keeps its socket file in the state directory (created if missing) and removes it on release', async () => {
    lockKind.abstract = false;
    const dir = join(base, 'created', 'state');
    const lock = await lockVm(dir, A, 'x', busy);
    const file = join(dir, `.vm-lock-${A}`);
    expect(statSync(file).isSocket()).toBe(true);
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    await lock.release();
    expect(existsSync(file)).toBe(false);
  });

  it("a dead holder's socket file is taken over, by exactly one of eight takers at once", async () => {
    lockKind.abstract = false;
    const dir = stateDir();
    const file = join(dir, `.vm-lock-${A}`);
    // a holder killed while holding: its socket file stays, nobody listens on it
    const child = spawnSync(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(file)}, () => process.kill(process.pid, 'SIGKILL'))`]);
    expect(child.signal).toBe('SIGKILL');
    expect(statSync(file).isSocket()).toBe(true);

    const results = await Promise.allSettled(Array.from({ length: 8 }, (_, i) => lockVm(dir, A, `taker ${i}`, busy)));
    const won = results.filter((r): r is PromiseFulfilledResult<VmLock> => r.status === 'fulfilled');
    held.push(...won.map((r) => r.value));
    expect(won).toHaveLength(1);
    for (const r of results) if (r.status === 'rejected') expect(r.reason).toBeInstanceOf(RefusedError);
  });
});
