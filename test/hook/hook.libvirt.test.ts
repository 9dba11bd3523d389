/**
 * The hook installed into the real libvirtd by install.sh, for the duration of this file:
 * coexistence with a foreign hook, NVRAM provisioning / archive / restore through real VM starts,
 * `<os firmware='efi'>`, the restore filter accepted by libvirt, the policy guard refusing a start,
 * and `install.sh --uninstall` putting the foreign hook back.
 *
 * Isolation: everything install.sh touches (/etc/libvirt/hooks/qemu{,.d}, /etc/ovmf-hook,
 * /usr/local/lib/ovmf-hook, /usr/local/bin/ovmf-hook, /var/lib/ovmf-hook) is saved first and put
 * back afterwards. The test config has `policy: {uefi: no, archive: no}`, so VMs of other sessions
 * starting meanwhile are left alone; this file's VMs opt in with `<ovmf:policy archive="yes"/>`.
 * Archive, state and log live in a temp directory.
 */
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import {
  describeLibvirt,
  destroyDomain,
  domainState,
  makeDomainXml,
  OVMF,
  scratchPath,
  startDomain,
  uniqueVmName,
  virsh,
  waitForFile,
  withTempDomain,
} from '../support/libvirt';
import { releaseArg } from '../support/platform';
import { CLI_BIN, ensureBuilt, ROOT, sha256 } from './harness';
import { archived, HOOK, HOOK_D, nvramOf, reloadLibvirt, sh, TestInstall } from '../support/host-install';
import { CONF_DIR, exists, HOOKS_DIR, STATE_LIB } from '../../scripts/host-guard.mjs';

const MARKER = 'ovmf-hook: libvirt QEMU hook';

const t = new TestInstall();
let installed = false;

const hookLog = () => t.hookLog();
const foreignCalls = () => t.foreignCalls();

const liveXml = (vm: string) => virsh(['dumpxml', vm]).stdout;

interface NvramList {
  generations: Array<{ generation: number; sha256: string; kind: string }>;
  local: { exists?: boolean; sha256?: string; equalsNewest?: boolean };
}
/** `ovmf-hook nvram list <vm> --json` (reads the installed test config). */
function nvramList(vm: string): NvramList {
  const r = spawnSync('timeout', ['60', 'node', CLI_BIN, 'nvram', 'list', vm, '--json'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`ovmf-hook nvram list ${vm} --json: exit ${r.status}: ${r.stderr}`);
  return JSON.parse(r.stdout) as NvramList;
}

/** Another session reinstalling on this host mid-run would make every later failure a riddle. */
function expectOurInstall(): void {
  const hook = exists(HOOK) ? readFileSync(HOOK, 'utf8') : '';
  const conf = exists(join(CONF_DIR, 'config.json')) ? readFileSync(join(CONF_DIR, 'config.json'), 'utf8') : '';
  if (!hook.includes(MARKER) || conf !== JSON.stringify(t.config, null, 2))
    throw new Error(`the hook install or ${CONF_DIR}/config.json changed under this test (another session installing on this host?)`);
}

/** Start and wait for the firmware's boot manager on the serial console. */
async function boot(vm: string, serial: string): Promise<void> {
  startDomain(vm);
  await waitForFile(serial, /BdsDxe/, 60_000);
}

describeLibvirt('the hook in the real libvirtd (installed by install.sh)', () => {
  beforeAll(async () => {
    ensureBuilt();
    await t.guard('[hook.libvirt]');
    t.tmp = mkdtempSync(join(tmpdir(), 'ovmfhook-hooklv-'));
    t.setUp();
    // a clean starting point: a foreign hook, no qemu.d, no earlier install, our config
    t.startingPoint();
    mkdirSync(t.archiveDir, { mode: 0o700 });
  }, 400_000);

  afterAll(() => {
    t.release(() => {
      if (t.guarded && installed && exists(HOOK) && readFileSync(HOOK, 'utf8').includes(MARKER)) sh('bash', [join(ROOT, 'install.sh'), '--uninstall', '--no-reload']);
    });
  }, 200_000);

  it('install.sh installs the hook, keeps the foreign hook running from qemu.d and keeps the config', () => {
    const r = sh('bash', [join(ROOT, 'install.sh'), '--no-build'], 120);
    installed = true;
    if (process.env.OVMFHOOK_DEBUG) console.info(r.out);
    expect(r.code, r.out).toBe(0);
    expect(readFileSync(HOOK, 'utf8').split('\n')[1]).toContain(MARKER);
    expect(readFileSync(HOOK, 'utf8').split('\n')[0]).toBe('#!/usr/bin/node');
    expect(readFileSync(`${HOOK_D}/00-original-qemu`, 'utf8')).toBe(t.foreign);
    expect(lstatSync(`${HOOK_D}/00-original-qemu`).mode & 0o111).not.toBe(0);
    expect(JSON.parse(readFileSync(join(CONF_DIR, 'config.json'), 'utf8'))).toEqual(t.config);
    expect(r.out).toMatch(/kept existing \/etc\/ovmf-hook\/config\.json/);
    expect(existsSync(`${STATE_LIB}/archive`) && existsSync(`${STATE_LIB}/state`)).toBe(true);
    expect(r.out).toMatch(/sent SIGHUP to libvirtd|reloaded libvirtd/);
    // doctor (run by install.sh) knows that reload: the daemon is current, not "started before the hook"
    expect(r.out).toMatch(/daemon\s+libvirtd \(pid \d+\) (was reloaded at \S+|started) after the hook was installed/);
    // the daemon rescans hooks on SIGHUP; wait until it answers again
    reloadLibvirt();
  });

  it('install.sh again (an upgrade) is idempotent: the foreign hook is not moved twice', () => {
    const r = sh('bash', [join(ROOT, 'install.sh'), '--no-build', '--no-reload'], 120);
    expect(r.code, r.out).toBe(0);
    expect(r.out).not.toMatch(/moved the existing hook/);
    expect(readFileSync(HOOK, 'utf8')).toContain(MARKER);
    expect(readdirSync(HOOK_D)).toEqual(['00-original-qemu']);
    expect(readFileSync(`${HOOK_D}/00-original-qemu`, 'utf8')).toBe(t.foreign);
    expect(readdirSync(HOOKS_DIR).filter((f) => f.includes('ovmf-hook-new'))).toEqual([]);
  });

  it('a UEFI VM: NVRAM provisioned by the hook, archived at destroy, restored (not re-provisioned) after it is deleted', async () => {
    const vm = uniqueVmName('hook-life');
    expectOurInstall();
    const serial = scratchPath(`${vm}.log`);
    await withTempDomain(archived(makeDomainXml({ name: vm, machine: 'q35', firmware: 'ovmf', serialLog: serial })), async () => {
      await boot(vm, serial);
      expect(hookLog()).toContain(`${vm}: prepare: provision`);
      // the foreign hook still runs, after ours, for every operation
      expect(foreignCalls()).toContain(`${vm} prepare begin -\n${vm} start begin -\n${vm} started begin -\n`);
      destroyDomain(vm);
      // libvirt ≥ 10.5 passes release the reason, `-` before
      expect(foreignCalls()).toContain(`${vm} stopped end -\n${vm} release end ${releaseArg('destroyed')}\n`);
      const local = sha256(readFileSync(nvramOf(vm)));
      const listed = nvramList(vm);
      expect(listed.generations.map((g) => [g.generation, g.kind])).toEqual([[1, 'archive']]);
      expect(listed.generations[0].sha256).toBe(local);
      expect(listed.local).toMatchObject({ exists: true, sha256: local, equalsNewest: true });
      expect(local).not.toBe(sha256(readFileSync(OVMF.vars))); // the firmware wrote to it

      // as if the VM came from another host: no local NVRAM; start paused so the firmware cannot change it
      rmSync(nvramOf(vm));
      virsh(['start', '--paused', vm]);
      expect(hookLog()).toContain(`${vm}: prepare: restore generation 1`);
      expect(sha256(readFileSync(nvramOf(vm)))).toBe(local);
      destroyDomain(vm);
      expect(nvramList(vm).generations).toHaveLength(1); // unchanged content is not archived again
    });
  });

  // --- reliability round 2 (issue 11): the findings that came through libvirt, through libvirt

  /** Start paused (the firmware never runs, so the NVRAM stays as prepare left it) and destroy: one prepare + release. */
  const cycle = (vm: string) => {
    virsh(['start', '--paused', vm]);
    destroyDomain(vm);
  };
  const uidOf = (user: string) => Number(sh('id', ['-u', user]).out.trim());

  it('finding 1: `virsh start` while `nvram restore` replaces the file is refused naming the restore; the restore lands, owned by the QEMU user before and after the next run', async () => {
    const vm = uniqueVmName('hook-race');
    expectOurInstall();
    await withTempDomain(archived(makeDomainXml({ name: vm, machine: 'q35', firmware: 'ovmf', serialLog: scratchPath(`${vm}.log`) })), async () => {
      cycle(vm); // generation 1: the template as provisioned
      const gen1 = sha256(readFileSync(nvramOf(vm)));
      writeFileSync(nvramOf(vm), Buffer.alloc(readFileSync(nvramOf(vm)).length, 0x5a)); // the guest changed it
      cycle(vm); // generation 2
      expect(nvramList(vm).generations.map((g) => g.generation)).toEqual([1, 2]);

      // every rename of the CLI waits 3 s: the window between "shut off?" and the rename, made wide
      const restore = spawn('strace', ['-f', '-qq', '-o', '/dev/null', '-e', 'trace=rename,renameat,renameat2', '-e', 'inject=rename,renameat,renameat2:delay_enter=3000000', 'node', CLI_BIN, 'nvram', 'restore', vm, '--generation', '1'], { stdio: ['ignore', 'pipe', 'pipe'] });
      let err = '';
      restore.stderr.on('data', (d) => (err += d));
      const restored = new Promise<number | null>((r) => restore.on('close', r));
      await new Promise((r) => setTimeout(r, 2000));
      const start = virsh(['start', vm], { allowFail: true });
      expect(start.code).not.toBe(0);
      expect(start.stderr).toMatch(/not started: its NVRAM is being changed by ovmf-hook nvram restore \(pid \d+\); start it again once that has finished/);
      expect(domainState(vm)).toBe('shut off');
      expect(await restored, err).toBe(0);

      const qemuUid = uidOf('libvirt-qemu');
      expect(sha256(readFileSync(nvramOf(vm)))).toBe(gen1);
      expect(lstatSync(nvramOf(vm)).uid).toBe(qemuUid);
      cycle(vm); // runs on the restored file; libvirt hands the file back to its owner at stop
      expect(sha256(readFileSync(nvramOf(vm)))).toBe(gen1);
      expect(lstatSync(nvramOf(vm)).uid, 'not root:root after the stop').toBe(qemuUid);
    });
  }, 120_000);

  it('finding 2: the newest generation corrupt and no local NVRAM: `virsh start` restores the newest valid one (not a template copy) and the log says why', async () => {
    const vm = uniqueVmName('hook-corrupt');
    expectOurInstall();
    await withTempDomain(archived(makeDomainXml({ name: vm, machine: 'q35', firmware: 'ovmf', serialLog: scratchPath(`${vm}.log`) })), async () => {
      cycle(vm);
      const size = readFileSync(nvramOf(vm)).length;
      writeFileSync(nvramOf(vm), Buffer.alloc(size, 0x11));
      cycle(vm); // generation 2 = 0x11…
      writeFileSync(nvramOf(vm), Buffer.alloc(size, 0x22));
      cycle(vm); // generation 3 = 0x22…
      const uuid = virsh(['domuuid', vm]).stdout.trim();
      const gen3 = join(t.archiveDir, uuid, 'gen-000003.fd');
      const b = readFileSync(gen3);
      b[4096] ^= 0x01;
      writeFileSync(gen3, b);
      rmSync(nvramOf(vm));

      virsh(['start', '--paused', vm]);
      expect(sha256(readFileSync(nvramOf(vm)))).toBe(sha256(Buffer.alloc(size, 0x11)));
      expect(hookLog()).toMatch(new RegExp(`${vm}: archive generation 3 is corrupt, moved aside \\(never restored\\)`));
      expect(hookLog()).toContain(`${vm}: prepare: restore generation 2`);
      destroyDomain(vm);
      const listed = nvramList(vm) as NvramList & { corrupt?: Array<{ generation: number }> };
      expect(listed.generations.map((g) => g.generation)).toEqual([1, 2]);
      expect(listed.corrupt?.map((g) => g.generation)).toEqual([3]);
    });
  }, 120_000);

  it("finding 3: a domain whose <nvram> points at another domain's file does not start, and that file is neither archived as its own nor overwritten", async () => {
    const a = uniqueVmName('hook-own-a');
    const b = uniqueVmName('hook-own-b');
    expectOurInstall();
    await withTempDomain(archived(makeDomainXml({ name: b, machine: 'q35', firmware: 'ovmf', serialLog: scratchPath(`${b}.log`) })), async () => {
      cycle(b);
      writeFileSync(nvramOf(b), Buffer.alloc(readFileSync(nvramOf(b)).length, 0x33));
      const bBytes = sha256(readFileSync(nvramOf(b)));
      const wrong = archived(makeDomainXml({ name: a, machine: 'q35', firmware: 'ovmf', nvramPath: nvramOf(b), serialLog: scratchPath(`${a}.log`) }));
      await withTempDomain(wrong, async () => {
        const start = virsh(['start', a], { allowFail: true });
        expect(start.code).not.toBe(0);
        expect(start.stderr).toMatch(new RegExp(`${a}: its <nvram> ${nvramOf(b)} is the NVRAM of domain ${b} \\(`));
        expect(domainState(a)).toBe('shut off');
        expect(sha256(readFileSync(nvramOf(b)))).toBe(bBytes);
      });
    });
  }, 120_000);

  it("<os firmware='efi'>: the hook provisions libvirt's NVRAM path from the template libvirt then picks, and the VM boots", async () => {
    const vm = uniqueVmName('hook-efi');
    expectOurInstall();
    const serial = scratchPath(`${vm}.log`);
    await withTempDomain(archived(makeDomainXml({ name: vm, machine: 'q35', firmware: 'efi-auto', serialLog: serial })), async () => {
      virsh(['start', '--paused', vm]);
      expect(hookLog()).toContain(`${vm}: prepare: provision`);
      const m = /<nvram template='([^']+)'[^>]*>([^<]+)<\/nvram>/.exec(liveXml(vm));
      expect(m, liveXml(vm)).not.toBeNull();
      const [, template, path] = m!;
      expect(path).toBe(nvramOf(vm));
      expect(template).toBe(OVMF.msVars); // the first descriptor, Secure Boot with MS keys (libvirt 9.0 at start, 11.3 at define)
      expect(readFileSync(path).equals(readFileSync(template))).toBe(true);
      virsh(['resume', vm]);
      await waitForFile(serial, /BdsDxe/, 60_000);
      destroyDomain(vm);
    });
  });

  it('virsh save / restore passes through the restore filter; a missing firmware path is mapped and libvirt accepts it', async () => {
    const vm = uniqueVmName('hook-save');
    expectOurInstall();
    const serial = scratchPath(`${vm}.log`);
    const fwCopy = mkdtempSync(join(tmpdir(), 'ovmfhook-fwcopy-'));
    chmodSync(fwCopy, 0o755);
    const code = join(fwCopy, 'OVMF_CODE_4M.fd');
    const vars = join(fwCopy, 'OVMF_VARS_4M.fd');
    copyFileSync(OVMF.code, code);
    copyFileSync(OVMF.vars, vars);
    chmodSync(code, 0o644);
    chmodSync(vars, 0o644);
    const image = join(t.tmp, `${vm}.save`);
    const xml = makeDomainXml({ name: vm, machine: 'q35', firmware: 'ovmf', serialLog: serial }).replace(OVMF.code, code).replace(OVMF.vars, vars);
    try {
      await withTempDomain(archived(xml), async () => {
        await boot(vm, serial);
        // 1. paths exist: the filter prints nothing and libvirt restores the image as saved
        virsh(['save', vm, image], { timeoutSec: 120 });
        expect(domainState(vm)).toBe('shut off');
        virsh(['restore', image], { timeoutSec: 120 });
        expect(domainState(vm)).toBe('running');
        expect(foreignCalls()).toContain(`${vm} restore begin -\n`);
        expect(liveXml(vm)).toContain(`>${code}</loader>`);
        // 2. the firmware copy disappears (another host, an upgraded package): the hook maps it
        virsh(['save', vm, image], { timeoutSec: 120 });
        rmSync(fwCopy, { recursive: true, force: true });
        virsh(['restore', image], { timeoutSec: 120 });
        expect(domainState(vm)).toBe('running');
        expect(hookLog()).toContain(`${vm}: restore: loader ${code} -> ${OVMF.code}`);
        expect(hookLog()).toContain(`${vm}: restore: nvram template ${vars} -> ${OVMF.vars}`);
        const live = liveXml(vm);
        expect(live).toContain(`>${OVMF.code}</loader>`);
        expect(live).toContain(`template='${OVMF.vars}'`);
        destroyDomain(vm);
      });
    } finally {
      rmSync(fwCopy, { recursive: true, force: true });
      rmSync(image, { force: true });
    }
  });

  it('enforce mode: a BIOS VM whose policy asks for Secure Boot does not start, and virsh shows the fix', async () => {
    const vm = uniqueVmName('hook-enforce');
    expectOurInstall();
    await withTempDomain(makeDomainXml({ name: vm, machine: 'q35', firmware: 'bios', serialLog: scratchPath(`${vm}.log`) }), () => {
      virsh(['metadata', vm, '--uri', 'urn:ovmf-hook:policy:1', '--key', 'ovmf', '--set', '<policy secure-boot="yes"/>', '--config']);
      const r = virsh(['start', vm], { allowFail: true });
      expect(r.code).not.toBe(0);
      expect(r.stderr).toContain(`ovmf-hook convert ${vm} --secure-boot`);
      expect(domainState(vm)).toBe('shut off');
      expect(existsSync(nvramOf(vm))).toBe(false);
    });
  });

  it('install.sh --uninstall removes the hook and puts the foreign hook back', () => {
    const r = sh('bash', [join(ROOT, 'install.sh'), '--uninstall']);
    expect(r.code, r.out).toBe(0);
    expect(readFileSync(HOOK, 'utf8')).toBe(t.foreign);
    expect(existsSync(HOOK_D)).toBe(false);
    expect(exists('/usr/local/bin/ovmf-hook')).toBe(false);
    expect(JSON.parse(readFileSync(join(CONF_DIR, 'config.json'), 'utf8'))).toEqual(t.config); // config kept
  });

  it('install.sh refuses before writing anything when the foreign hook cannot be moved aside', () => {
    mkdirSync(HOOK_D);
    writeFileSync(`${HOOK_D}/00-original-qemu`, '#!/bin/sh\n# some other hook, not executable\n', { mode: 0o644 });
    try {
      const r = sh('bash', [join(ROOT, 'install.sh'), '--no-build']);
      expect(r.code).toBe(1);
      expect(r.out).toMatch(/qemu is not ours and .*00-original-qemu already exists; move one of them away and retry/);
      expect(readFileSync(HOOK, 'utf8')).toBe(t.foreign);
      expect(exists('/usr/local/bin/ovmf-hook') || exists('/usr/local/lib/ovmf-hook')).toBe(false);
    } finally {
      rmSync(HOOK_D, { recursive: true, force: true });
    }
  });
});
