/**
 * Lease decision (docs/CLUSTER.md, "Leases need libvirt's lock manager"): a claim lease is in
 * effect, and an expired claim of another host taken over, only when libvirt's lock manager is on.
 */
import { promises as fs } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { RefusedError } from '../../src/core/errors';
import { leasePolicy, parseLockManager } from '../../src/core/config/lock-manager';
import { at, fill, start, stop, UUID, worldPerTest, write, type World } from './handover-world';
import { prepareNvram } from '../../src/io/lifecycle';

const newWorld = worldPerTest();

describe('qemu.conf lock_manager', () => {
  it.each([
    { text: '#lock_manager = "lockd"\n', want: null },
    { text: 'user = "libvirt-qemu"\n', want: null },
    { text: 'lock_manager = "lockd"\n', want: 'lockd' },
    { text: '  lock_manager="sanlock"  # cluster\n', want: 'sanlock' },
    { text: 'lock_manager = "nop"\n', want: null },
    { text: 'lock_manager = ""\n', want: null },
  ])('$text → $want', ({ text, want }) => expect(parseLockManager(text)).toBe(want));
});

describe('lease policy', () => {
  it('a lease without a lock manager is ignored (never expires, no take-over), with a one-line reason naming the fix', () => {
    const p = leasePolicy(60, null);
    expect(p).toMatchObject({ leaseSeconds: 0, takeOver: false });
    expect(p.ignored).toMatch(/^"claimLeaseSeconds": 60 is ignored: .*set lock_manager = "lockd" in \/etc\/libvirt\/qemu.conf on every host, or "claimLeaseSeconds": 0$/);
    expect(p.ignored).not.toContain('\n');
  });
  it('with a lock manager the lease is in effect and expired claims are taken over', () => {
    expect(leasePolicy(60, 'lockd')).toEqual({ leaseSeconds: 60, takeOver: true });
    expect(leasePolicy(0, 'lockd')).toEqual({ leaseSeconds: 0, takeOver: true });
  });
  it('no lease, no lock manager: nothing to report, no take-over', () => expect(leasePolicy(0, null)).toEqual({ leaseSeconds: 0, takeOver: false }));
});

describe('take-over of an expired claim', () => {
  const startWith = (w: World, h: World['a'], now: Date, takeOverExpired: boolean) =>
    prepareNvram({ archive: h.archive, stateDir: h.stateDir, nvramPath: h.nvramPath, uuid: UUID, vmName: 'vm', templatePath: w.template, owner: { mode: 0o600 }, incomingMigration: false, now, takeOverExpired, leftoverAgeMs: 0 });

  it('is refused without the lock manager (naming the expiry), done with it', async () => {
    const w = await newWorld();
    await prepareNvram({ archive: w.a.archive, stateDir: w.a.stateDir, nvramPath: w.a.nvramPath, uuid: UUID, vmName: 'vm', templatePath: w.template, owner: { mode: 0o600 }, incomingMigration: false, now: at(0), claimLeaseSeconds: 10 });
    const err = await startWith(w, w.b, at(60), false).catch((e) => e);
    expect(err).toBeInstanceOf(RefusedError);
    expect(err.message).toBe(
      `vm: NVRAM is claimed by host a (host id id-a) since ${at(0).toISOString()} (its lease expired at ${at(10).toISOString()}, but without libvirt's lock manager this host does not take a claim over) (the VM may run there); if it does not, run: ovmf-hook nvram unlock vm`,
    );
    expect(await w.a.archive.claimInfo(UUID)).toMatchObject({ hostId: 'id-a' });
    await expect(startWith(w, w.b, at(60), true)).resolves.toMatchObject({ claim: 'took-over' });
    await expect(start(w, w.c, at(61))).rejects.toBeInstanceOf(RefusedError);
  });

  /** A holds the claim with a 10 s lease and runs the VM (gen 1 archived before); at 60 s B takes the expired claim over. */
  async function tookOver(w: World) {
    const prepA = (now: Date) =>
      prepareNvram({ archive: w.a.archive, stateDir: w.a.stateDir, nvramPath: w.a.nvramPath, uuid: UUID, vmName: 'vm', templatePath: w.template, owner: { mode: 0o600 }, incomingMigration: false, now, claimLeaseSeconds: 10 });
    await prepA(at(0));
    await write(w.a, fill(1));
    await stop(w.a, at(1));
    await prepA(at(2));
    await write(w.a, fill(2)); // A runs on, unarchived
    const old = await w.a.archive.claimInfo(UUID);
    expect(await startWith(w, w.b, at(60), true)).toMatchObject({ action: 'restore', generation: 1, claim: 'took-over' });
    return old!;
  }

  it('a start libvirt refuses after prepare took the claim over (the file untouched): release archives nothing and gives the claim back', async () => {
    const w = await newWorld();
    const old = await tookOver(w);
    const r = await stop(w.b, at(61));
    expect(r).toMatchObject({ action: 'skip', takeOverUndone: 'a (host id id-a)' });
    expect(await w.a.archive.claimInfo(UUID)).toEqual(old); // byte for byte: A is not fenced
    expect((await w.a.archive.list(UUID)).map((m) => m.generation)).toEqual([1]);
    // A, still running, archives as the owner
    expect(await stop(w.a, at(70))).toMatchObject({ action: 'archived', kind: 'archive', generation: 2 });
    // and the claim can be taken over again later (the tombstone went back with it)
    await w.a.archive.claim(UUID, { vmName: 'vm', now: at(80), leaseSeconds: 10 });
    await expect(startWith(w, w.b, at(100), true)).resolves.toMatchObject({ claim: 'took-over' });
  });

  it('a start that ran (the file changed) keeps the take-over: the old holder is fenced', async () => {
    const w = await newWorld();
    await tookOver(w);
    await write(w.b, fill(3));
    expect(await stop(w.b, at(61))).toMatchObject({ action: 'archived', kind: 'archive', generation: 2 });
    expect(await stop(w.a, at(70))).toMatchObject({ action: 'archived', kind: 'fenced' });
  });
});

describe('doctor: the claim lease row', () => {
  /** The `claim lease` row of doctor on a temp config with `lease` and a qemu.conf of `qemuConf` text. */
  async function leaseRow(lease: number, qemuConf: string) {
    const { runDoctor } = await import('../../src/cli/commands/doctor');
    const w = await newWorld();
    const config = `${w.base}/config.json`;
    await fs.writeFile(config, JSON.stringify({ archiveDir: `${w.base}/archive`, stateDir: `${w.base}/state`, claimLeaseSeconds: lease }));
    await fs.writeFile(`${w.base}/qemu.conf`, qemuConf);
    const checks = await runDoctor({ configPath: config, qemuConf: `${w.base}/qemu.conf`, hooksDir: `${w.base}/hooks`, procDir: `${w.base}/proc`, runDir: `${w.base}/run`, pidFiles: [], passwdFile: `${w.base}/passwd`, groupFile: `${w.base}/group`, firmwareExists: () => false, nodeVersion: process.versions.node, execPath: process.execPath });
    return checks.filter((c) => c.check === 'claim lease');
  }
  it('FAIL with a lease and no lock manager, naming the fix', async () => {
    const [row] = await leaseRow(60, '#lock_manager = "lockd"\n');
    expect(row).toMatchObject({ verdict: 'FAIL', detail: expect.stringMatching(/^"claimLeaseSeconds": 60 is ignored: libvirt's lock manager is off/), fix: expect.stringMatching(/set lock_manager = "lockd" in .*qemu.conf on every host/) });
  });
  it('ok with the lock manager on; no row without a lease', async () => {
    expect(await leaseRow(60, 'lock_manager = "lockd"\n')).toEqual([expect.objectContaining({ verdict: 'ok', detail: expect.stringContaining('"lockd"') })]);
    expect(await leaseRow(0, '')).toEqual([]);
  });
});
