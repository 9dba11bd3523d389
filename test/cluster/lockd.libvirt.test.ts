/**
 * Issue 15, lock-manager mode (`scripts/cluster-testbed.sh up --lockd`): hosts B and C both run
 * virtlockd with `lock_manager = "lockd"` and the lockspace on the GlusterFS volume, so libvirt itself
 * refuses a second start of a VM whose disk another host's QEMU holds. With it, claim leases are in
 * effect (docs/CLUSTER.md, "Leases need libvirt's lock manager"): the tests show a take-over that
 * libvirt then refuses being given back, and a real host crash recovered without `nvram unlock`.
 * The test VMs have a 1 MiB raw disk: what virtlockd locks.
 */
import { expect, it } from 'vitest';
import {
  archiveClaim,
  archiveFiles,
  archiveGenerations,
  createOn,
  daemonPid,
  describeCluster,
  destroyOn,
  hookLog,
  hookLogSince,
  hostB,
  hostC,
  newClusterVm,
  newestRestorable,
  nvramOf,
  patchConfig,
  qemuPid,
  restartLibvirtd,
  runningOn,
  sha256,
  virshOn,
  waitForBoot,
  waitUntil,
  type ClusterHost,
  type ClusterVm,
} from '../support/cluster';

const marks = () => ({ B: hookLog(hostB).length, C: hookLog(hostC).length });
const logOf = (host: ClusterHost, m: Record<string, number>, vm: ClusterVm) => hookLogSince(host, m[host.name] ?? 0, vm.name).join('\n');
/**
 * libvirt's own refusal of a start whose disk another host's virtlockd holds (not the hook's, and
 * not QEMU's own image locking, "Is another process using the image"). Only a running VM holds its
 * locks: a `--paused` start merely registers them until it resumes.
 */
const LOCK_REFUSAL = /Failed to acquire lock|resource busy/;
/** Run `fn` with `claimLeaseSeconds` set on B and C (undone before the testbed goes down). */
async function withLease(seconds: number, fn: () => Promise<void>): Promise<void> {
  const undo = [patchConfig(hostB, { claimLeaseSeconds: seconds }), patchConfig(hostC, { claimLeaseSeconds: seconds })];
  try {
    await fn();
  } finally {
    undo.forEach((u) => u());
  }
}

describeCluster(
  'lock-manager mode: hosts B and C with virtlockd, the lockspace on GlusterFS',
  () => {
    it('a second start of a running VM on the other host is refused by libvirt itself (virtlockd), not by the hook', () => {
      const vm = newClusterVm('lockd-twice', { disk: true, archive: false });
      createOn(hostB, vm);
      const r = createOn(hostC, vm, { allowFail: true });
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(LOCK_REFUSAL);
      expect(r.stderr).not.toContain('ovmf-hook');
      console.info(`[lockd] C's start refused by libvirt: ${r.stderr.trim().split('\n').at(-1)}`);
      expect(runningOn(hostC)).not.toContain(vm.name);
      destroyOn(hostB, vm);
      createOn(hostC, vm); // B's lock went with its QEMU
      destroyOn(hostC, vm);
    });

    it('live migration B → C → B with the lock manager: the claim is handed over each time, a start on the source is refused by the hook naming the destination, the newest generation is the last running copy', async () => {
      const vm = newClusterVm('lockd-mig', { disk: true });
      createOn(hostB, vm);
      await waitForBoot(vm, 1, hostB);
      let boots = 1;
      const gens: number[] = [];
      for (const [from, to] of [
        [hostB, hostC],
        [hostC, hostB],
      ] as const) {
        const m = marks();
        virshOn(from, ['migrate', '--live', '--unsafe', vm.name, to.uri], { timeoutSec: 180 });
        expect(runningOn(to)).toContain(vm.name);
        expect(logOf(from, m, vm)).toMatch(new RegExp(`claim handed over to host \\S+ \\(host id ${to.hostId}\\) \\(live migration\\)`));
        expect(archiveClaim(vm.uuid)).toMatchObject({ hostId: to.hostId });
        const refused = createOn(from, vm, { allowFail: true });
        expect(refused.code).not.toBe(0);
        expect(refused.stderr).toMatch(new RegExp(`ovmf-hook: ${vm.name}: NVRAM is claimed by host \\S+ \\(host id ${to.hostId}\\)`));
        gens.push(archiveGenerations(vm.uuid).at(-1)!.generation); // the source's copy at migration time (libvirt 9.0: no reason)
        virshOn(to, ['reset', vm.name]);
        await waitForBoot(vm, ++boots, to);
      }
      destroyOn(hostB, vm);
      const all = archiveGenerations(vm.uuid);
      expect(all.map((g) => g.kind)).toEqual(all.map(() => 'archive'));
      expect(all.map((g) => g.generation)).toEqual([...gens, all.at(-1)!.generation]);
      expect(newestRestorable(vm.uuid)).toMatchObject({ hostId: hostB.hostId, sha256: sha256(nvramOf(hostB, vm)) });
      expect(archiveClaim(vm.uuid)).toBeNull();
    });

    it("a lease take-over that virtlockd refuses after the hook's prepare: nothing is archived, the claim goes back to the running host, which is not fenced", () =>
      withLease(5, async () => {
        const LEASE = 5;
        const vm = newClusterVm('lockd-lease', { disk: true });
        createOn(hostB, vm);
        await waitForBoot(vm, 1, hostB);
        const claim = archiveClaim(vm.uuid)!;
        // with the lock manager on, the lease is in effect (and not renewed while B runs the VM)
        expect(claim).toMatchObject({ hostId: hostB.hostId });
        expect(Date.parse(claim.expires!) - Date.parse(claim.since)).toBe(LEASE * 1000);
        await waitUntil(() => Date.now() > Date.parse(claim.expires!) + 500, (LEASE + 5) * 1000, "B's lease to run out");
        const before = archiveGenerations(vm.uuid);
        const m = marks();
        const r = createOn(hostC, vm, { allowFail: true });
        expect(r.code).not.toBe(0);
        expect(r.stderr).toMatch(LOCK_REFUSAL);
        expect(r.stderr).not.toContain('ovmf-hook');
        await waitUntil(() => /release: /.test(logOf(hostC, m, vm)), 30_000, "C's release after libvirt's refusal");
        const cLog = logOf(hostC, m, vm);
        expect(cLog).toMatch(/prepare: (provision|restore)/); // the hook let the start go ahead, having taken the claim over
        expect(cLog).toMatch(/release: skipped: .*the expired claim taken over at prepare went back to host \S+ \(host id ovmfhook-host-b\)/);
        expect(archiveClaim(vm.uuid)).toEqual(claim); // byte for byte: B keeps its claim
        expect(archiveFiles(vm.uuid).filter((n) => n.startsWith('claim.stale-'))).toEqual([]);
        expect(archiveGenerations(vm.uuid)).toEqual(before);
        expect(runningOn(hostB)).toContain(vm.name);
        // B, still the owner, archives its running copy as the newest generation
        virshOn(hostB, ['reset', vm.name]);
        await waitForBoot(vm, 2, hostB);
        destroyOn(hostB, vm);
        expect(newestRestorable(vm.uuid)).toMatchObject({ kind: 'archive', hostId: hostB.hostId, sha256: sha256(nvramOf(hostB, vm)) });
        expect(archiveClaim(vm.uuid)).toBeNull();
      }));

    it("host B's libvirtd, virtlockd and QEMU killed: C starts the VM once B's lease has run out, without nvram unlock; B's late release is fenced", () =>
      withLease(8, async () => {
        const LEASE = 8;
        const vm = newClusterVm('lockd-crash', { disk: true });
        createOn(hostB, vm);
        await waitForBoot(vm, 1, hostB);
        const claim = archiveClaim(vm.uuid)!;
        const bUnarchived = nvramOf(hostB, vm);
        // host B dies: its daemons and the VM's QEMU are gone, nobody runs release; its fcntl locks drop
        const qemu = qemuPid(hostB, vm);
        for (const pid of [daemonPid(hostB, 'libvirtd'), daemonPid(hostB, 'virtlockd'), qemu]) process.kill(pid, 'SIGKILL');
        try {
          const early = createOn(hostC, vm, { paused: true, allowFail: true });
          if (Date.now() < Date.parse(claim.expires!)) {
            expect(early.code).not.toBe(0);
            expect(early.stderr).toMatch(/ovmf-hook: .*NVRAM is claimed by host \S+ \(host id ovmfhook-host-b\)/);
          } else destroyOn(hostC, vm); // the boot outlasted the lease: nothing to show here
          await waitUntil(() => Date.now() > Date.parse(claim.expires!) + 500, (LEASE + 5) * 1000, "B's lease to run out");
          const m = marks();
          createOn(hostC, vm); // no nvram unlock
          expect(logOf(hostC, m, vm)).toMatch(/prepare: /);
          await waitForBoot(vm, 2, hostC);
          expect(archiveClaim(vm.uuid)).toMatchObject({ hostId: hostC.hostId, tookOverFrom: claim.token });
          expect(archiveFiles(vm.uuid)).toContain(`claim.stale-${claim.token}.json`);
        } finally {
          // host B comes back: libvirtd finds the QEMU dead and runs release for it
          const m = marks();
          await restartLibvirtd(hostB, { virtlockd: true });
          await waitUntil(() => /release: /.test(logOf(hostB, m, vm)), 30_000, "B's release after its restart");
        }
        expect(archiveGenerations(vm.uuid).at(-1)).toMatchObject({ kind: 'fenced', hostId: hostB.hostId, sha256: sha256(bUnarchived) });
        expect(archiveClaim(vm.uuid)).toMatchObject({ hostId: hostC.hostId }); // B's release left C's claim alone
        destroyOn(hostC, vm);
        expect(newestRestorable(vm.uuid)).toMatchObject({ kind: 'archive', hostId: hostC.hostId, sha256: sha256(nvramOf(hostC, vm)) });
        expect(archiveClaim(vm.uuid)).toBeNull();
      }));
  },
  { lockd: true },
);
