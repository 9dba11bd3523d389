/**
 * The Debian package on this host, for real: `apt-get install ./ovmf-hook_<v>_all.deb` (built by
 * scripts/package-deb.sh from dist/) over a foreign hook, a UEFI VM's NVRAM lifecycle through the
 * packaged hook and CLI in the real libvirtd, the same .deb installed again and a newer version
 * over it (upgrades), `apt-get purge` straight from installed, then install → `apt-get remove` →
 * `apt-get purge`.
 *
 * Isolation, as in test/hook/hook.libvirt.test.ts: scripts/host-guard.mjs saves everything an
 * install touches (hooks, /etc/ovmf-hook, /var/lib/ovmf-hook) first and puts it back afterwards;
 * the package is purged at the end in any case. The test config (written before each install, so
 * the package keeps it) has `policy: {uefi: no, archive: no}`: VMs of other sessions starting
 * meanwhile are left alone; this file's VMs opt in with `<ovmf:policy archive="yes"/>`. Archive,
 * state and log live in a temp directory. A package installed on this host by anyone but this file
 * is never touched: the file fails instead. One this file left behind (a killed run; marked by
 * LEFTOVER) is purged first.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { describeLibvirt, destroyDomain, makeDomainXml, OVMF, scratchPath, uniqueVmName, virsh, withTempDomain } from '../support/libvirt';
import { releaseArg } from '../support/platform';
import { ensureBuilt, ROOT, sha256 } from '../hook/harness';
import { archived, CONFIG, HOOK, HOOK_D, nvramOf, RECORD, reloadLibvirt, sh as shIn, TestInstall } from '../support/host-install';
import { CONF_DIR, exists, STATE_LIB } from '../../scripts/host-guard.mjs';

const PKG = 'ovmf-hook';
const SAVED = `${HOOK_D}/00-original-qemu`;
const LIB = '/usr/lib/ovmf-hook';
const BIN = '/usr/bin/ovmf-hook';
/** This file installed the package (pid inside): a later run that finds the package and this purges it. */
const LEFTOVER = '/var/tmp/ovmfhook-deb-libvirt-test.installed';
const VERSION: string = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).version;

const t = new TestInstall();
let deb = '';
let newer = '';
let weInstalled = false;

const sh = (cmd: string, args: string[], timeoutSec = 120) => shIn(cmd, args, timeoutSec, { DEBIAN_FRONTEND: 'noninteractive' });
const apt = (...args: string[]) => sh('apt-get', ['-y', '-q', '-o', 'DPkg::Lock::Timeout=300', ...args], 600);
/** dpkg's two-letter state of the package ('ii', 'rc'), or '' when dpkg knows nothing of it. */
const pkgStatus = () => sh('dpkg-query', ['-W', '-f=${db:Status-Abbrev}', PKG]).out.trim().replace(/^dpkg-query: .*/s, '');
const pkgVersion = () => sh('dpkg-query', ['-W', '-f=${Version}', PKG]).out.trim();

/** Purge the package whatever state it is in (its prerm refuses when the hook it moved is gone: then without the record). */
function purge(): void {
  if (!pkgStatus()) return;
  if (apt('purge', PKG).code === 0 && !pkgStatus()) return;
  rmSync(RECORD, { force: true });
  const r = sh('dpkg', ['--purge', '--force-remove-reinstreq', PKG], 300);
  if (pkgStatus()) throw new Error(`could not purge ${PKG}: ${r.out}`);
}

const hookLog = () => t.hookLog();
const foreignCalls = () => t.foreignCalls();
/** Start paused (the firmware never runs: the NVRAM stays as prepare left it) and destroy: one prepare + release. */
const cycle = (vm: string) => {
  virsh(['start', '--paused', vm]);
  destroyDomain(vm);
};

/** The packaged CLI (/usr/bin/ovmf-hook), which reads the installed test config. */
function cli(args: string[]): { code: number; out: string } {
  return sh(BIN, args, 60);
}
function generations(vm: string): Array<{ generation: number; sha256: string; kind: string }> {
  const r = cli(['nvram', 'list', vm, '--json']);
  if (r.code !== 0) throw new Error(`ovmf-hook nvram list ${vm} --json: exit ${r.code}: ${r.out}`);
  return JSON.parse(r.out).generations;
}

/** Every file under the archive with its content hash: what "kept" means. */
function archiveSnapshot(): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string) => {
    for (const name of readdirSync(d).sort()) {
      const p = join(d, name);
      if (lstatSync(p).isDirectory()) walk(p);
      else out[p.slice(t.archiveDir.length)] = sha256(readFileSync(p));
    }
  };
  walk(t.archiveDir);
  return out;
}

/** `apt-get install ARGS`, as this file's install (LEFTOVER marks it first); the output. */
function aptInstall(...args: string[]): string {
  writeFileSync(LEFTOVER, String(process.pid));
  weInstalled = true;
  // Recommends (ovmf, swtpm) are on this host already; never fetch anything from the network here
  const r = apt('install', '--no-install-recommends', ...args);
  expect(r.code, r.out).toBe(0);
  expect(pkgStatus()).toBe('ii');
  return r.out;
}

/** The packaged hook is libvirt's hook, the foreign hook runs from qemu.d, the package's files are as shipped. */
function expectInstalled(): void {
  expect(readFileSync(HOOK)).toEqual(readFileSync(`${LIB}/dist/hooks/qemu`));
  expect(readFileSync(HOOK, 'utf8').split('\n', 1)[0]).toBe('#!/usr/bin/node');
  expect(readdirSync(HOOK_D)).toEqual(['00-original-qemu']);
  expect(readFileSync(SAVED, 'utf8')).toBe(t.foreign);
  expect(lstatSync(SAVED).mode & 0o111).not.toBe(0);
  expect(readFileSync(RECORD, 'utf8')).toMatch(/^prefix=\/usr\/lib\/ovmf-hook\nbin_link=\/usr\/bin\/ovmf-hook\ninstalled_by=package\nmoved_foreign_hook=1\nforeign_hook_kind=file\n/m);
  expect(readFileSync(CONFIG, 'utf8')).toBe(JSON.stringify(t.config, null, 2));
  const verify = sh('dpkg', ['--verify', PKG]); // no packaged file changed by the maintainer scripts
  expect(verify.out, verify.out).toBe('');
}

/** libvirt's hook is the foreign one again; nothing of the package's install is left in the hooks dir. */
function expectForeignBack(): void {
  expect(readFileSync(HOOK, 'utf8')).toBe(t.foreign);
  expect(lstatSync(HOOK).mode & 0o111).not.toBe(0);
  expect(exists(HOOK_D)).toBe(false);
  expect(exists(RECORD)).toBe(false);
  expect(exists(BIN) || exists(LIB)).toBe(false);
}

describeLibvirt('the Debian package on this host (apt-get install / upgrade / remove / purge)', () => {
  beforeAll(async () => {
    ensureBuilt();
    await t.guard('[deb.libvirt]');
    if (pkgStatus()) {
      if (!existsSync(LEFTOVER)) throw new Error(`the ${PKG} package is installed on this host (dpkg: ${pkgStatus()}), not by this test; it would be purged: remove it first (apt-get purge ${PKG})`);
      console.warn(`[deb.libvirt] purging the ${PKG} package a killed run of this file left installed`);
      weInstalled = true;
      purge();
    }
    rmSync(LEFTOVER, { force: true });

    t.tmp = mkdtempSync(join(tmpdir(), 'ovmfhook-deblv-'));
    chmodSync(t.tmp, 0o755); // apt reads the .deb as user _apt
    const build = (extra: string[]) => {
      const r = spawnSync('bash', [join(ROOT, 'scripts/package-deb.sh'), '--out', join(t.tmp, 'debs'), ...extra], { encoding: 'utf8', timeout: 120_000 });
      if (r.status !== 0) throw new Error(`package-deb.sh: ${r.stdout}${r.stderr}`);
      return r.stdout.trim();
    };
    deb = build([]);
    newer = build(['--version', `${VERSION}+upgrade1`]);
    expect(deb).toMatch(/\/ovmf-hook_[^/]+_all\.deb$/);

    t.setUp(join(t.tmp, 'host'));
    mkdirSync(t.archiveDir, { recursive: true, mode: 0o700 });
    chmodSync(join(t.tmp, 'host'), 0o755);
    t.startingPoint(); // each install starts from the foreign hook alone and the test config
  }, 400_000);

  afterAll(() => {
    t.release(() => {
      if (t.guarded && weInstalled) purge();
      if (!pkgStatus()) rmSync(LEFTOVER, { force: true });
    });
  }, 700_000);

  it('apt-get install ./ovmf-hook_<v>_all.deb: the hook installed, the foreign hook moved to qemu.d, the config kept, libvirtd reloaded, doctor ok', () => {
    const out = aptInstall(deb);
    if (process.env.OVMFHOOK_DEBUG) console.info(out);
    expect(out).toContain(`moved the existing hook to ${SAVED} (it still runs after ours); removing the package puts it back`);
    expect(out).toContain(`kept existing ${CONFIG}`);
    expect(out).toContain(`config check: ${CONFIG}: valid`);
    expect(out).toMatch(/sent SIGHUP to libvirtd|reloaded libvirtd/);
    expectInstalled();
    expect(existsSync(`${STATE_LIB}/archive`) && existsSync(`${STATE_LIB}/state`)).toBe(true);
    reloadLibvirt(); // the daemon rescans hooks on SIGHUP; wait until it answers again

    const doctor = cli(['doctor']);
    expect(doctor.code, doctor.out).toBe(0);
    expect(doctor.out).toMatch(/^ok\s+hook\s+\/etc\/libvirt\/hooks\/qemu is ovmf-hook's, runs \/usr\/bin\/node$/m);
    expect(doctor.out).toMatch(/^ok\s+qemu\.d\s+1 other hook runs? after ovmf-hook: 00-original-qemu$/m);
    expect(doctor.out).toMatch(/^ok\s+daemon\s+libvirtd \(pid \d+\) (was reloaded at \S+|started) after the hook was installed/m);
    expect(cli(['--help']).out).toMatch(/ovmf-hook nvram\s/);
    if (sh('sh', ['-c', 'command -v man']).code === 0) expect(sh('man', ['-w', PKG]).out.trim()).toBe('/usr/share/man/man8/ovmf-hook.8.gz');
  });

  let firstVm = { name: '', gens: 0 };

  it('a UEFI VM through the packaged hook: NVRAM provisioned at start, archived at destroy, restored (not re-provisioned) after it is deleted; the foreign hook runs after ours', async () => {
    const vm = uniqueVmName('deb-life');
    await withTempDomain(archived(makeDomainXml({ name: vm, machine: 'q35', firmware: 'ovmf', serialLog: scratchPath(`${vm}.log`) })), async () => {
      virsh(['start', '--paused', vm]);
      expect(hookLog()).toContain(`${vm}: prepare: provision`);
      expect(sha256(readFileSync(nvramOf(vm)))).toBe(sha256(readFileSync(OVMF.vars)));
      expect(foreignCalls()).toContain(`${vm} prepare begin -\n${vm} start begin -\n`);
      destroyDomain(vm);
      expect(foreignCalls()).toContain(`${vm} release end ${releaseArg('destroyed')}\n`);
      expect(generations(vm).map((g) => [g.generation, g.kind])).toEqual([[1, 'archive']]);

      // the guest changed its variables: the next stop archives generation 2
      const size = readFileSync(nvramOf(vm)).length;
      const changed = sha256(Buffer.alloc(size, 0x5a));
      writeFileSync(nvramOf(vm), Buffer.alloc(size, 0x5a));
      cycle(vm);
      const gens = generations(vm);
      expect(gens.map((g) => [g.generation, g.sha256])).toEqual([
        [1, sha256(readFileSync(OVMF.vars))],
        [2, changed],
      ]);

      // as if the VM came from another host: no local NVRAM
      rmSync(nvramOf(vm));
      virsh(['start', '--paused', vm]);
      expect(hookLog()).toContain(`${vm}: prepare: restore generation 2`);
      expect(sha256(readFileSync(nvramOf(vm)))).toBe(changed);
      destroyDomain(vm);
      expect(generations(vm)).toHaveLength(2); // unchanged content is not archived again
      firstVm = { name: vm, gens: 2 };
    });
  });

  it('the same .deb again (apt-get install --reinstall), then a newer version over it: config, archive and the moved hook kept, nothing moved twice, the hook still works', async () => {
    expect(firstVm.gens).toBe(2);
    const archive = archiveSnapshot();
    const record = readFileSync(RECORD, 'utf8');

    const again = aptInstall('--reinstall', deb);
    expect(again).not.toMatch(/moved the existing hook/);
    expect(again).toContain(`kept existing ${CONFIG}`);
    expectInstalled();
    expect(readFileSync(RECORD, 'utf8')).toBe(record);
    expect(archiveSnapshot()).toEqual(archive);

    const up = aptInstall(newer);
    expect(pkgVersion()).toBe(`${VERSION}+upgrade1`);
    expect(up).not.toMatch(/moved the existing hook/);
    expect(up).toContain(`kept existing ${CONFIG}`);
    expectInstalled();
    expect(readFileSync(RECORD, 'utf8')).toBe(record);
    expect(archiveSnapshot()).toEqual(archive);
    // doctor's fix for a missing hook when the package is installed
    if (sh('sh', ['-c', 'command -v dpkg-reconfigure']).code === 0) {
      rmSync(HOOK);
      expect(cli(['doctor']).out).toMatch(/^FAIL\s+hook\s+\/etc\/libvirt\/hooks\/qemu is missing; fix: run: sudo dpkg-reconfigure ovmf-hook, then/m);
      const re = sh('dpkg-reconfigure', [PKG], 300);
      expect(re.code, re.out).toBe(0);
      expect(re.out).not.toMatch(/moved the existing hook/);
      expectInstalled();
    }
    reloadLibvirt();

    const vm = uniqueVmName('deb-upgraded');
    await withTempDomain(archived(makeDomainXml({ name: vm, machine: 'q35', firmware: 'ovmf', serialLog: scratchPath(`${vm}.log`) })), () => {
      cycle(vm);
      expect(hookLog()).toContain(`${vm}: prepare: provision`);
      expect(generations(vm).map((g) => g.generation)).toEqual([1]);
      expect(foreignCalls()).toContain(`${vm} prepare begin -\n`);
    });
  });

  it('apt-get purge: the foreign hook is back at /etc/libvirt/hooks/qemu, the config is gone, the NVRAM archive and /var/lib/ovmf-hook are kept', () => {
    const archive = archiveSnapshot();
    expect(Object.keys(archive).length).toBeGreaterThanOrEqual(3); // two VMs, three generations
    const others = readdirSync(join(CONF_DIR, 'installs')).filter((f) => f !== 'etc-libvirt-hooks');
    const r = apt('purge', PKG);
    expect(r.code, r.out).toBe(0);
    expect(pkgStatus()).toBe('');
    expect(r.out).toContain(`restored the previous hook to ${HOOK}`);
    expect(r.out).toContain('kept the NVRAM archive and state in /var/lib/ovmf-hook');
    expectForeignBack();
    expect(existsSync(CONFIG)).toBe(others.length > 0); // shared with another install's record, else removed
    expect(archiveSnapshot()).toEqual(archive);
    expect(existsSync(`${STATE_LIB}/archive`) && existsSync(`${STATE_LIB}/state`)).toBe(true);
  });

  it('install → apt-get remove (hook out, foreign hook back, config kept) → apt-get purge (config gone, archive kept)', () => {
    t.startingPoint();
    const archive = archiveSnapshot();
    const out = aptInstall(deb);
    expect(out).toContain(`moved the existing hook to ${SAVED}`);
    expectInstalled();

    const removed = apt('remove', PKG);
    expect(removed.code, removed.out).toBe(0);
    expect(pkgStatus()).toBe('rc');
    expectForeignBack();
    expect(readFileSync(CONFIG, 'utf8')).toBe(JSON.stringify(t.config, null, 2));
    expect(archiveSnapshot()).toEqual(archive);

    const purged = apt('purge', PKG);
    expect(purged.code, purged.out).toBe(0);
    expect(pkgStatus()).toBe('');
    expect(readFileSync(HOOK, 'utf8')).toBe(t.foreign);
    const others = existsSync(join(CONF_DIR, 'installs')) ? readdirSync(join(CONF_DIR, 'installs')) : [];
    expect(existsSync(CONFIG)).toBe(others.length > 0);
    expect(archiveSnapshot()).toEqual(archive);
    expect(existsSync(`${STATE_LIB}/archive`)).toBe(true);
    rmSync(LEFTOVER, { force: true });
    weInstalled = false;
  });
});
