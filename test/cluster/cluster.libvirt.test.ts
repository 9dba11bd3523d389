/**
 * Issue 7: the NVRAM follows a VM across two real libvirt hosts (A = the system libvirtd, B = a
 * second libvirtd in its own mount namespace with a different OVMF path) through an archive on a
 * real GlusterFS volume. See scripts/cluster-testbed.sh and docs/CLUSTER.md.
 *
 * VMs are transient (`virsh create`): a cold move is destroy here + create there, a live migration
 * moves the running domain, and nothing persistent is left to undefine on either host. The guest
 * changes its UEFI variables by booting OVMF to its boot manager (each boot rewrites variables);
 * `--paused` starts show what `prepare` put in place before the firmware ran.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { closeSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import {
  ARCHIVE_DIR,
  ARCHIVE_MOUNT,
  CLUSTER_ROOT,
  archiveClaim,
  archiveData,
  archiveFiles,
  archiveGenerations,
  bLibvirtdPid,
  clusterDomainXml,
  createOn,
  createOnAsync,
  describeCluster,
  destroyOn,
  hookLog,
  hookLogSince,
  hostA,
  hostB,
  newClusterVm,
  newestRestorable,
  nvramOf,
  patchConfig,
  qemuPid,
  restartBLibvirtd,
  runHookOn,
  runOn,
  runningOn,
  sha256,
  virshOn,
  virshOnAsync,
  waitForBoot,
  waitUntil,
  type ClusterHost,
  type ClusterVm,
} from '../support/cluster';

const marks = () => ({ A: hookLog(hostA).length, B: hookLog(hostB).length });
const logOf = (host: ClusterHost, m: Record<string, number>, vm: ClusterVm) => hookLogSince(host, m[host.name] ?? 0, vm.name).join('\n');
const timings: Record<string, number> = {};
const timed = <T>(what: string, f: () => T): T => {
  const t0 = Date.now();
  const r = f();
  timings[what] = Date.now() - t0;
  return r;
};
/** The hook's line inside virsh's error ("… unexpected exit status 1: ovmf-hook: …"). */
const hookError = (stderr: string): string => {
  const m = /unexpected exit status \d+: (ovmf-hook: [^]*)$/.exec(stderr.trim());
  if (!m) throw new Error(`no hook error in: ${stderr}`);
  return m[1];
};

/**
 * After a live migration `from` → `to` (log marks `m` taken before it): the claim names `to`, no
 * incoming record is left, and a start of the same VM on `from` is refused by the hook in one line
 * naming `to`; that refused start's release archives nothing.
 */
async function handedOver(vm: ClusterVm, from: ClusterHost, to: ClusterHost, m: Record<string, number>): Promise<void> {
  expect(logOf(from, m, vm)).toMatch(new RegExp(`release: .*; claim handed over to host \\S+ \\(host id ${to.hostId}\\) \\(live migration\\)`));
  expect(archiveClaim(vm.uuid)).toMatchObject({ hostId: to.hostId });
  expect(archiveFiles(vm.uuid)).not.toContain('incoming.json');
  const before = archiveGenerations(vm.uuid).length;
  const mark = marks();
  const r = createOn(from, vm, { paused: true, allowFail: true });
  expect(r.code).not.toBe(0);
  expect(hookError(r.stderr)).toMatch(new RegExp(`^ovmf-hook: ${vm.name}: NVRAM is claimed by host ${hostname()} \\(host id ${to.hostId}\\) since \\S+ \\(the VM may run there\\); if it does not, run: ovmf-hook nvram unlock ${vm.name}$`));
  await waitUntil(() => /release: skipped: this host's prepare refused the start/.test(logOf(from, mark, vm)), 10_000, `${from.name}'s release after the refused start`);
  expect(archiveGenerations(vm.uuid)).toHaveLength(before);
  expect(runningOn(to)).toContain(vm.name);
}

describeCluster('two libvirt hosts, one NVRAM archive on GlusterFS', () => {
  it('cold move A → B → A: restores byte-identical, archives n+1 on B, A replaces its stale copy and keeps the old one recoverable', async () => {
    const vm = newClusterVm('cold');
    // 1. run on A (OVMF writes its variables), stop: release archives generation n
    createOn(hostA, vm);
    await waitForBoot(vm, 1, hostA);
    destroyOn(hostA, vm);
    const gn = archiveGenerations(vm.uuid).at(-1)!;
    const aCopy = nvramOf(hostA, vm);
    expect(gn).toMatchObject({ kind: 'archive', hostId: hostA.hostId, sha256: sha256(aCopy), size: aCopy.length });
    expect(archiveData(vm.uuid, gn.generation).equals(aCopy)).toBe(true);
    expect(archiveClaim(vm.uuid)).toBeNull();

    // 2. start on B (paused: the firmware has not run yet): prepare restored generation n
    let m = marks();
    timed('cold: create on B (prepare restores from GlusterFS)', () => createOn(hostB, vm, { paused: true }));
    expect(nvramOf(hostB, vm).equals(aCopy)).toBe(true);
    expect(logOf(hostB, m, vm)).toContain(`prepare: restore generation ${gn.generation}`);
    expect(archiveClaim(vm.uuid)).toMatchObject({ hostId: hostB.hostId });

    // 3. the guest runs on B, stop: generation n+1 with B's content
    virshOn(hostB, ['resume', vm.name]);
    await waitForBoot(vm, 2, hostB);
    destroyOn(hostB, vm);
    const bCopy = nvramOf(hostB, vm);
    const gn1 = archiveGenerations(vm.uuid).at(-1)!;
    expect(gn1).toMatchObject({ generation: gn.generation + 1, kind: 'archive', hostId: hostB.hostId, sha256: sha256(bCopy), basedOn: gn.generation });
    expect(bCopy.equals(aCopy)).toBe(false);
    expect(archiveClaim(vm.uuid)).toBeNull();

    // 3b. a start on A that the hook itself refuses (here: a loader path A does not have) is
    //     followed by libvirt's release; that release must not archive A's stale copy (bug fix)
    m = marks();
    const refused = createOn(hostA, vm, { paused: true, loaderDir: hostB.ovmfDir, allowFail: true });
    expect(refused.code).not.toBe(0);
    expect(hookError(refused.stderr)).toMatch(new RegExp(`^ovmf-hook: ${vm.name}: firmware ${hostB.ovmfDir}/OVMF_CODE_4M.fd does not exist; [^\\n]+$`));
    await waitUntil(() => /release: skipped: this host's prepare refused the start/.test(logOf(hostA, m, vm)), 10_000, "A's release after the refused start");
    expect(archiveGenerations(vm.uuid).map((g) => g.generation)).toEqual([gn.generation, gn1.generation]);
    expect(nvramOf(hostA, vm).equals(aCopy)).toBe(true);

    // 4. start on A: the stale local copy (= generation n) is replaced by n+1; it stays
    //    recoverable as generation n (already archived, so nothing had to be displaced)
    m = marks();
    createOn(hostA, vm, { paused: true });
    expect(nvramOf(hostA, vm).equals(bCopy)).toBe(true);
    expect(logOf(hostA, m, vm)).toContain(`prepare: restore generation ${gn1.generation}: local NVRAM is an older archived copy`);
    expect(archiveGenerations(vm.uuid).find((g) => g.sha256 === sha256(aCopy))).toMatchObject({ generation: gn.generation, kind: 'archive' });
    destroyOn(hostA, vm);
    expect(archiveGenerations(vm.uuid)).toHaveLength(2); // nothing changed: nothing new archived
  });

  it('live migration A → B → A → B: the filter maps the firmware paths, QEMU carries the NVRAM, the newest generation is always the running copy', async () => {
    const vm = newClusterVm('live');
    createOn(hostA, vm);
    await waitForBoot(vm, 1, hostA);
    const migrate = (from: ClusterHost, to: ClusterHost) =>
      timed(`live: migrate ${from.name} → ${to.name}`, () => virshOn(from, ['migrate', '--live', '--unsafe', vm.name, to.uri], { timeoutSec: 180 }));
    const loaderOn = (h: ClusterHost) => /<loader[^>]*>([^<]+)<\/loader>/.exec(virshOn(h, ['dumpxml', vm.name]).stdout)?.[1];
    const sources: number[] = [];

    // A → B
    let m = marks();
    migrate(hostA, hostB);
    expect(runningOn(hostB)).toContain(vm.name);
    expect(runningOn(hostA)).not.toContain(vm.name);
    const bLog = logOf(hostB, m, vm);
    expect(bLog).toContain(`migrate: loader ${hostA.ovmfDir}/OVMF_CODE_4M.fd -> ${hostB.ovmfDir}/OVMF_CODE_4M.fd`);
    expect(bLog).toContain(`migrate: nvram template ${hostA.ovmfDir}/OVMF_VARS_4M.fd -> ${hostB.ovmfDir}/OVMF_VARS_4M.fd`);
    expect(bLog).toContain('prepare: incoming migration, keep');
    expect(loaderOn(hostB)).toBe(`${hostB.ovmfDir}/OVMF_CODE_4M.fd`);
    const aAtMigration = nvramOf(hostA, vm);
    expect(sha256(nvramOf(hostB, vm))).toBe(sha256(aAtMigration)); // QEMU streamed the flash
    // libvirt 9.0 gives release no reason: A archived its state at migration time
    const g1 = archiveGenerations(vm.uuid).at(-1)!;
    expect(g1).toMatchObject({ kind: 'archive', hostId: hostA.hostId, sha256: sha256(aAtMigration) });
    sources.push(g1.generation);
    // the source handed its claim over to the destination (issue 15): a start on A is refused naming B
    await handedOver(vm, hostA, hostB, m);

    // the guest keeps running on B and changes its variables there (a reset reboots OVMF)
    virshOn(hostB, ['reset', vm.name]);
    await waitForBoot(vm, 2, hostB);
    const bRunning = nvramOf(hostB, vm);
    expect(sha256(bRunning)).not.toBe(g1.sha256);

    // B → A (this virsh client talks to both daemons: A needs no TCP listener)
    m = marks();
    migrate(hostB, hostA);
    expect(runningOn(hostA)).toContain(vm.name);
    expect(logOf(hostA, m, vm)).toContain(`migrate: loader ${hostB.ovmfDir}/OVMF_CODE_4M.fd -> ${hostA.ovmfDir}/OVMF_CODE_4M.fd`);
    expect(loaderOn(hostA)).toBe(`${hostA.ovmfDir}/OVMF_CODE_4M.fd`);
    // A's stale file (= g1) was overwritten by QEMU with the state the guest had on B
    expect(sha256(nvramOf(hostA, vm))).toBe(sha256(bRunning));
    const g2 = archiveGenerations(vm.uuid).at(-1)!;
    expect(g2).toMatchObject({ generation: g1.generation + 1, hostId: hostB.hostId, sha256: sha256(bRunning), kind: 'archive' });
    sources.push(g2.generation);
    await handedOver(vm, hostB, hostA, m);

    // changes on A, then A → B again, and the VM finally stops on B
    virshOn(hostA, ['reset', vm.name]);
    await waitForBoot(vm, 3, hostA);
    m = marks();
    migrate(hostA, hostB);
    const g3 = archiveGenerations(vm.uuid).at(-1)!;
    expect(g3).toMatchObject({ hostId: hostA.hostId, sha256: sha256(nvramOf(hostA, vm)) });
    sources.push(g3.generation);
    await handedOver(vm, hostA, hostB, m);
    virshOn(hostB, ['reset', vm.name]);
    await waitForBoot(vm, 4, hostB);
    destroyOn(hostB, vm);

    const all = archiveGenerations(vm.uuid);
    const newest = newestRestorable(vm.uuid)!;
    // after the VM stops on B, the newest generation is B's file; no source's release is newer
    expect(newest).toMatchObject({ hostId: hostB.hostId, sha256: sha256(nvramOf(hostB, vm)) });
    expect(sources.every((g) => g < newest.generation)).toBe(true);
    expect(all.map((g) => g.kind)).toEqual(all.map(() => 'archive'));
    expect(all.map((g) => g.generation)).toEqual([...all.map((g) => g.generation)].sort((a, b) => a - b));
    expect(archiveClaim(vm.uuid)).toBeNull();
  });

  it('live migration B → A that fails halfway (QEMU on A killed): A drops its incoming record, the claim stays with B, which keeps running; a start on A is refused naming B; B\'s stop archives', async () => {
    const vm = newClusterVm('failmig');
    createOn(hostB, vm);
    await waitForBoot(vm, 1, hostB);
    expect(archiveClaim(vm.uuid)).toMatchObject({ hostId: hostB.hostId });
    const m = marks();
    // 1 MiB/s: the RAM OVMF touched takes seconds to copy, time enough to kill the destination's QEMU
    const migration = virshOnAsync(hostB, ['migrate', '--live', '--unsafe', '--bandwidth', '1', vm.name, hostA.uri], { timeoutSec: 180, allowFail: true });
    await waitUntil(() => /prepare: incoming migration/.test(logOf(hostA, m, vm)), 60_000, "A's incoming prepare");
    // during the migration the archive names A as the destination; a start elsewhere would be refused naming both hosts
    const incoming = JSON.parse(readFileSync(join(ARCHIVE_DIR, vm.uuid, 'incoming.json'), 'utf8'));
    expect(incoming).toMatchObject({ hostId: hostA.hostId, vmName: vm.name });
    expect(archiveClaim(vm.uuid)).toMatchObject({ hostId: hostB.hostId });
    const pidOf = (): number | null => {
      try {
        return qemuPid(hostA, vm);
      } catch {
        return null;
      }
    };
    await waitUntil(() => pidOf() !== null, 30_000, "the destination's QEMU");
    process.kill(pidOf()!, 'SIGKILL');
    const r = await migration;
    expect(r.code, 'the migration finished before the kill').not.toBe(0);
    await waitUntil(() => /release: /.test(logOf(hostA, m, vm)), 30_000, "A's release after the failed incoming migration");
    expect(runningOn(hostB)).toContain(vm.name);
    expect(runningOn(hostA)).not.toContain(vm.name);
    expect(archiveClaim(vm.uuid)).toMatchObject({ hostId: hostB.hostId });
    expect(archiveFiles(vm.uuid)).not.toContain('incoming.json');
    // a start on A now: refused by the claim, naming B
    const refused = createOn(hostA, vm, { paused: true, allowFail: true });
    expect(refused.code).not.toBe(0);
    expect(hookError(refused.stderr)).toMatch(new RegExp(`^ovmf-hook: ${vm.name}: NVRAM is claimed by host ${hostname()} \\(host id ${hostB.hostId}\\) since `));
    // B keeps running and changes its variables; its stop archives them as the newest generation
    virshOn(hostB, ['reset', vm.name]);
    await waitForBoot(vm, 2, hostB);
    destroyOn(hostB, vm);
    expect(newestRestorable(vm.uuid)).toMatchObject({ kind: 'archive', hostId: hostB.hostId, sha256: sha256(nvramOf(hostB, vm)) });
    expect(archiveGenerations(vm.uuid).every((g) => g.hostId === hostB.hostId || g.kind === 'fenced')).toBe(true);
    expect(archiveClaim(vm.uuid)).toBeNull();
  });

  it('the same VM started on both hosts at the same moment: exactly one proceeds, the other is refused naming the holder', async () => {
    const winners: string[] = [];
    for (let round = 0; round < 3; round++) {
      const vm = newClusterVm(`twin${round}`);
      const m = marks();
      const [ra, rb] = await Promise.all([createOnAsync(hostA, vm, { paused: true, allowFail: true }), createOnAsync(hostB, vm, { paused: true, allowFail: true })]);
      const ok = [ra.code === 0 ? hostA : null, rb.code === 0 ? hostB : null].filter((h): h is ClusterHost => h !== null);
      expect(ok).toHaveLength(1);
      const [winner] = ok;
      const loser = winner === hostA ? hostB : hostA;
      const err = hookError((winner === hostA ? rb : ra).stderr);
      // one line, naming the holder (both hosts are called the same here: the host id tells them apart)
      expect(err).toMatch(new RegExp(`^ovmf-hook: ${vm.name}: NVRAM is claimed by host ${hostname()} \\(host id ${winner.hostId}\\) since \\S+ \\(the VM may run there\\); if it does not, run: ovmf-hook nvram unlock ${vm.name}$`));
      expect(runningOn(winner)).toContain(vm.name);
      expect(runningOn(loser)).not.toContain(vm.name);
      expect(archiveClaim(vm.uuid)).toMatchObject({ hostId: winner.hostId });
      await waitUntil(() => /release: skipped/.test(logOf(loser, m, vm)), 10_000, "the loser's release");
      expect(logOf(loser, m, vm)).toContain("release: skipped: this host's prepare refused the start");
      destroyOn(winner, vm);
      expect(archiveClaim(vm.uuid)).toBeNull();
      expect(archiveGenerations(vm.uuid).map((g) => g.hostId)).toEqual([winner.hostId]); // the template, archived by the winner
      winners.push(winner.name);
    }
    console.info(`[cluster] simultaneous starts won by: ${winners.join(', ')}`);
  });

  it('QEMU killed with SIGKILL: libvirt runs release, the claim is given back at once and the other host starts the VM', async () => {
    const vm = newClusterVm('qemukill');
    createOn(hostA, vm);
    await waitForBoot(vm, 1, hostA);
    const m = marks();
    process.kill(qemuPid(hostA, vm), 'SIGKILL');
    await waitUntil(() => /release: archived generation 1/.test(logOf(hostA, m, vm)), 30_000, "A's release after the QEMU crash");
    expect(archiveClaim(vm.uuid)).toBeNull();
    expect(archiveGenerations(vm.uuid)[0]).toMatchObject({ generation: 1, kind: 'archive', sha256: sha256(nvramOf(hostA, vm)) });
    createOn(hostB, vm, { paused: true });
    expect(nvramOf(hostB, vm).equals(nvramOf(hostA, vm))).toBe(true);
    destroyOn(hostB, vm);
  });

  it("host crash without libvirt's lock manager: a configured lease is ignored, the claim stays until nvram unlock; the crashed host's late release is fenced", async () => {
    const LEASE = 8;
    const undo = [patchConfig(hostA, { claimLeaseSeconds: LEASE }), patchConfig(hostB, { claimLeaseSeconds: LEASE })];
    const vm = newClusterVm('hostcrash');
    try {
      createOn(hostA, vm, { paused: true });
      destroyOn(hostA, vm); // generation 1: the template, archived by A
      const mb = marks();
      createOn(hostB, vm);
      const claim = archiveClaim(vm.uuid)!;
      // no lock_manager in B's qemu.conf: the lease is not in effect (docs/CLUSTER.md, "Leases need libvirt's lock manager")
      expect(claim).toMatchObject({ hostId: hostB.hostId, expires: null });
      expect(logOf(hostB, mb, vm)).toContain(`"claimLeaseSeconds": ${LEASE} is ignored: libvirt's lock manager is off`);
      await waitForBoot(vm, 1, hostB);
      const bUnarchived = nvramOf(hostB, vm);
      // host B dies: its libvirtd and the VM's QEMU are gone, nobody runs release
      const qemu = qemuPid(hostB, vm);
      process.kill(bLibvirtdPid(), 'SIGKILL');
      process.kill(qemu, 'SIGKILL');
      try {
        // refused now and still after the configured lease has run out: nothing would refuse a start of a VM that still runs on B
        const leaseEnd = Date.parse(claim.since) + LEASE * 1000;
        for (const when of ['before', 'after']) {
          if (when === 'after') await waitUntil(() => Date.now() > leaseEnd + 1000, (LEASE + 5) * 1000, 'the configured lease to run out');
          const r = createOn(hostA, vm, { paused: true, allowFail: true });
          expect(r.code, when).not.toBe(0);
          expect(hookError(r.stderr)).toMatch(new RegExp(`^ovmf-hook: ${vm.name}: NVRAM is claimed by host \\S+ \\(host id ${hostB.hostId}\\) since ${claim.since} \\(the VM may run there\\)`));
        }
        // the admin checked that B is down
        const u = runOn(hostA, ['/usr/local/bin/ovmf-hook', 'nvram', 'unlock', vm.uuid, '--force']);
        expect(u.stdout).toContain(`unlocked: removed the claim of host`);
        createOn(hostA, vm, { paused: true });
        expect(nvramOf(hostA, vm).equals(archiveData(vm.uuid, 1))).toBe(true);
        expect(archiveClaim(vm.uuid)).toMatchObject({ hostId: hostA.hostId });
        expect(archiveFiles(vm.uuid).some((n) => n.startsWith(`claim.stale-${claim.token}-unlocked-`))).toBe(true);
      } finally {
        // host B comes back: libvirtd finds the QEMU dead and runs release for it
        const m = marks();
        await restartBLibvirtd();
        await waitUntil(() => /release: /.test(logOf(hostB, m, vm)), 30_000, "B's release after its restart");
      }
      const gens = archiveGenerations(vm.uuid);
      expect(gens.at(-1)).toMatchObject({ kind: 'fenced', hostId: hostB.hostId, sha256: sha256(bUnarchived) });
      expect(newestRestorable(vm.uuid)).toMatchObject({ generation: 1 }); // never auto-restored
      expect(archiveClaim(vm.uuid)).toMatchObject({ hostId: hostA.hostId }); // B's release left A's claim alone
      destroyOn(hostA, vm);
      expect(archiveClaim(vm.uuid)).toBeNull();
    } finally {
      undo.forEach((u) => u());
    }
  });

  it('archive mount down on host B: refuse (or, with "allow", start from the local NVRAM); back up, the unarchived copy is kept as a displaced generation', async () => {
    const vm = newClusterVm('mountdown');
    createOn(hostA, vm, { paused: true });
    destroyOn(hostA, vm); // generation 1 (the template)
    createOn(hostB, vm, { paused: true });
    destroyOn(hostB, vm); // B synced with generation 1
    const undo = patchConfig(hostB, { archiveUnavailable: 'refuse' });
    runOn(hostB, ['umount', ARCHIVE_MOUNT]);
    try {
      // refuse: one line naming the archive; nothing written to the local disk under the mount point
      let r = createOn(hostB, vm, { paused: true, allowFail: true });
      expect(r.code).not.toBe(0);
      expect(hookError(r.stderr)).toMatch(new RegExp(`^ovmf-hook: ${vm.name}: NVRAM archive ${ARCHIVE_DIR} is unavailable \\([^)]*\\); fix the archive mount or set "archiveUnavailable": "allow"$`));
      expect(runOn(hostB, ['ls', '-A', ARCHIVE_MOUNT]).stdout.trim()).toBe('');

      // allow: the VM runs from B's local NVRAM (unclaimed); its release cannot archive and keeps it
      patchConfig(hostB, { archiveUnavailable: 'allow' });
      let m = marks();
      r = createOn(hostB, vm);
      expect(logOf(hostB, m, vm)).toMatch(/is unavailable .*starting from the local NVRAM/);
      await waitForBoot(vm, 1, hostB);
      // OVMF is deterministic: one boot from the same variables gives the same bytes on any host;
      // boot twice here so B's copy differs from what A will archive after its single boot
      virshOn(hostB, ['reset', vm.name]);
      await waitForBoot(vm, 2, hostB);
      destroyOn(hostB, vm);
      // (release cannot fail the stop: one loud ARCHIVE FAILED line, the local file stays as it is)
      await waitUntil(() => /err: .*ARCHIVE FAILED, the local NVRAM is kept.*EPERM/.test(logOf(hostB, m, vm)), 10_000, "B's release failing to reach the archive");
      const bUnarchived = nvramOf(hostB, vm);
      expect(runOn(hostB, ['ls', '-A', ARCHIVE_MOUNT]).stdout.trim()).toBe('');

      // meanwhile the VM runs on A, which archives generation 2
      createOn(hostA, vm);
      await waitForBoot(vm, 3, hostA);
      destroyOn(hostA, vm);
      expect(archiveGenerations(vm.uuid).at(-1)).toMatchObject({ generation: 2, hostId: hostA.hostId });
      expect(archiveGenerations(vm.uuid).at(-1)!.sha256).not.toBe(sha256(bUnarchived));

      // the mount is back: B restores generation 2 and keeps its own copy as a displaced generation
      runOn(hostB, ['mount', '-t', 'glusterfs', `${hostname()}:/ovmfhook`, ARCHIVE_MOUNT]);
      m = marks();
      createOn(hostB, vm, { paused: true });
      expect(logOf(hostB, m, vm)).toContain('prepare: restore generation 2 (local copy kept as generation 3)');
      expect(nvramOf(hostB, vm).equals(archiveData(vm.uuid, 2))).toBe(true);
      expect(archiveGenerations(vm.uuid).at(-1)).toMatchObject({ generation: 3, kind: 'displaced', hostId: hostB.hostId, sha256: sha256(bUnarchived) });
      expect(newestRestorable(vm.uuid)).toMatchObject({ generation: 2 });
      destroyOn(hostB, vm);
    } finally {
      undo();
      if (runOn(hostB, ['mountpoint', '-q', ARCHIVE_MOUNT], { allowFail: true }).code !== 0) runOn(hostB, ['mount', '-t', 'glusterfs', `${hostname()}:/ovmfhook`, ARCHIVE_MOUNT]);
    }
  });

  it('churn: 20 VMs cycling between the hosts at once through the built hook (racing starts included), plus real libvirt cycles: chains strictly increasing, every archived sha256 is what the releasing host had', async () => {
    const VMS = 20;
    const CYCLES = 6;
    const PARALLEL = 6;
    const churn = join(CLUSTER_ROOT, 'churn');
    const hostConf = (h: ClusterHost) => {
      const dir = join(churn, h.name);
      mkdirSync(join(dir, 'nvram'), { recursive: true });
      const config = {
        mode: 'off',
        policy: { archive: 'yes' },
        archiveDir: ARCHIVE_DIR,
        stateDir: join(dir, 'state'),
        nvramDir: join(dir, 'nvram'),
        hostId: `churn-${h.name.toLowerCase()}`,
        logFile: join(dir, 'hook.log'),
        archiveUnavailable: 'refuse',
        keepGenerations: 1000,
      };
      writeFileSync(join(dir, 'config.json'), JSON.stringify(config));
      return { host: h, config: join(dir, 'config.json'), nvramDir: config.nvramDir, hostId: config.hostId };
    };
    const hosts = [hostConf(hostA), hostConf(hostB)];
    // a small semaphore: at most PARALLEL hook processes at a time (2 cores)
    let free = PARALLEL;
    const queue: Array<() => void> = [];
    const hook = async (h: (typeof hosts)[0], vm: ClusterVm, op: string, subop: string) => {
      if (free === 0) await new Promise<void>((r) => queue.push(r));
      else free--;
      try {
        return await runHookOn(h.host, h.config, [vm.name, op, subop, '-'], clusterDomainXml(vm, h.host));
      } finally {
        const next = queue.shift();
        if (next) next();
        else free++;
      }
    };
    const template = readFileSync('/usr/share/OVMF/OVMF_VARS_4M.fd');
    const stats = { cycles: 0, races: 0, hookRuns: 0 };

    const cycleVm = async (i: number) => {
      const vm: ClusterVm = { name: `ovmfhook-t-cl-churn-${i}-${randomBytes(3).toString('hex')}`, uuid: randomUUID(), serialLog: '/dev/null' };
      const expected: { generation: number; sha256: string; hostId: string }[] = [];
      for (let c = 0; c < CYCLES; c++) {
        const race = c % 3 === 2;
        const preferred = hosts[(i + c) % 2];
        // prepare (both hosts at once on a racing cycle: exactly one may win)
        const tries = race ? hosts : [preferred];
        const results = await Promise.all(tries.map((h) => hook(h, vm, 'prepare', 'begin')));
        stats.hookRuns += results.length;
        const won = tries.filter((_, k) => results[k].code === 0);
        expect(won, `${vm.name} cycle ${c}: ${results.map((r) => r.stderr.trim()).join(' | ')}`).toHaveLength(1);
        const winner = won[0];
        if (race) {
          stats.races++;
          const loser = hosts.find((h) => h !== winner)!;
          expect(results[hosts.indexOf(loser)].stderr).toMatch(new RegExp(`NVRAM is claimed by host \\S+ \\(host id ${winner.hostId}\\)`));
          // libvirt runs release after the refused start: it must not archive anything
          const before = archiveGenerations(vm.uuid).length;
          expect((await hook(loser, vm, 'release', 'end')).code).toBe(0);
          stats.hookRuns++;
          expect(archiveGenerations(vm.uuid)).toHaveLength(before);
        }
        // prepare put the newest generation (or the template) in place, byte for byte
        const file = join(winner.nvramDir, `${vm.name}_VARS.fd`);
        const newest = expected.at(-1);
        expect(sha256(readFileSync(file))).toBe(newest?.sha256 ?? sha256(template));
        // the "guest" changes some variables
        const fd = openSync(file, 'r+');
        writeSync(fd, randomBytes(64), 0, 64, 4096 + Math.floor(Math.random() * 60_000));
        closeSync(fd);
        const sha = sha256(readFileSync(file));
        expect((await hook(winner, vm, 'release', 'end')).code).toBe(0);
        stats.hookRuns++;
        const g = archiveGenerations(vm.uuid).at(-1)!;
        expect(g).toMatchObject({ kind: 'archive', sha256: sha, hostId: winner.hostId, basedOn: newest?.generation ?? null });
        expect(g.generation).toBeGreaterThan(newest?.generation ?? 0);
        expected.push({ generation: g.generation, sha256: sha, hostId: winner.hostId });
        stats.cycles++;
      }
      // the whole chain: strictly increasing, each generation = what its releasing host had
      const chain = archiveGenerations(vm.uuid);
      expect(chain.map((g) => ({ generation: g.generation, sha256: g.sha256, hostId: g.hostId }))).toEqual(expected);
      for (const g of chain) expect(sha256(archiveData(vm.uuid, g.generation))).toBe(g.sha256);
      expect(archiveFiles(vm.uuid).filter((n) => !/^gen-\d{6}\.(fd|json)$/.test(n))).toEqual([]); // no claim, no leftovers
      return vm;
    };

    // real libvirt cycles alongside: two VMs alternating between the hosts, booting each time
    const realCycles = async (vm: ClusterVm, first: ClusterHost) => {
      let host = first;
      for (let c = 0; c < 3; c++) {
        createOn(host, vm);
        await waitForBoot(vm, c + 1, host);
        const had = sha256(nvramOf(host, vm));
        destroyOn(host, vm);
        expect(newestRestorable(vm.uuid)).toMatchObject({ sha256: had, hostId: host.hostId });
        host = host === hostA ? hostB : hostA;
      }
      const gens = archiveGenerations(vm.uuid).map((g) => g.generation);
      expect(gens).toEqual([1, 2, 3]);
    };

    const t0 = Date.now();
    const vms = await Promise.all(Array.from({ length: VMS }, (_, i) => cycleVm(i)));
    timings['churn: 20 VMs × 6 hook-driven cycles'] = Date.now() - t0;
    expect(stats.cycles).toBe(VMS * CYCLES);
    const t1 = Date.now();
    await Promise.all([realCycles(newClusterVm('real1'), hostA), realCycles(newClusterVm('real2'), hostB)]);
    timings['churn: 2 VMs × 3 real libvirt cycles'] = Date.now() - t1;
    console.info(`[cluster] churn: ${stats.cycles} cycles, ${stats.races} racing starts, ${stats.hookRuns} hook runs in ${timings['churn: 20 VMs × 6 hook-driven cycles']} ms`);
    rmSync(churn, { recursive: true, force: true });
    for (const vm of vms) rmSync(join(ARCHIVE_DIR, vm.uuid), { recursive: true, force: true });
  });

  afterAll(() => console.info(`[cluster] timings (ms): ${JSON.stringify(timings)}`));
});
