import { chmodSync, promises as fs, realpathSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { makeDoctorCommand, runDoctor, type DoctorCheck, type DoctorOptions } from '../../src/cli/commands/doctor';
import { openArchive } from '../../src/io';
import { runCommand, tempDir } from './nvram-support';

const MARKER = '// ovmf-hook: libvirt QEMU hook (installed by ovmf-hook\'s install.sh; do not edit, re-run it)';
const BTIME = 1_700_000_000;
const DAEMON_PID = 4242;
/** Where this test's node lives decides the AppArmor verdict of a healthy tree. */
const NODE_DIR_OK = ['/usr/bin', '/bin'].includes(path.dirname(realpathSync(process.execPath)));

const descriptor = (code: string, vars: string, features = ['acpi-s3', 'requires-smm', 'secure-boot']) =>
  JSON.stringify({
    description: 'test OVMF',
    'interface-types': ['uefi'],
    mapping: { device: 'flash', executable: { filename: code, format: 'raw' }, 'nvram-template': { filename: vars, format: 'raw' } },
    targets: [{ architecture: 'x86_64', machines: ['pc-q35-*'] }],
    features,
    tags: [],
  });

interface Tree {
  base: string;
  opts: DoctorOptions;
  hook: string;
  hooksDir: string;
  archive: string;
  state: string;
  firmware: string;
  ovmf: string;
  configPath: string;
  /** set the hook's mtime (seconds since the epoch) */
  hookAt: (sec: number) => Promise<void>;
}

/** A healthy host under a temp dir: hook + qemu.d, daemon started after the hook, OVMF 4M pair, private dirs, config, accounts. */
async function tree(): Promise<Tree> {
  const base = await tempDir('ovmfhook-doctor-');
  const p = (...s: string[]) => path.join(base, ...s);
  const hooksDir = p('hooks');
  await fs.mkdir(p('hooks', 'qemu.d'), { recursive: true });
  const hook = p('hooks', 'qemu');
  await fs.writeFile(hook, `#!${process.execPath}\n${MARKER}\n"use strict";\n`, { mode: 0o755 });
  await fs.writeFile(p('hooks', 'qemu.d', '00-original-qemu'), '#!/bin/sh\nexit 0\n', { mode: 0o755 });
  // daemon started at BTIME + 1000 s; the hook was written before that
  await fs.mkdir(p('proc', String(DAEMON_PID)), { recursive: true });
  await fs.writeFile(p('proc', 'stat'), `cpu  1 2 3 4\nbtime ${BTIME}\nprocesses 9\n`);
  await fs.writeFile(p('proc', String(DAEMON_PID), 'stat'), `${DAEMON_PID} (libvirtd) S 1 ${DAEMON_PID} ${DAEMON_PID} 0 -1 4194560 1 0 0 0 5 3 0 0 20 0 18 0 100000 1 2\n`);
  await fs.mkdir(p('run'));
  await fs.writeFile(p('run', 'libvirtd.pid'), `${DAEMON_PID}\n`);
  const hookAt = async (sec: number) => {
    await fs.utimes(hook, sec, sec);
    for (const n of await fs.readdir(p('hooks', 'qemu.d'))) await fs.utimes(p('hooks', 'qemu.d', n), sec, sec);
  };
  await hookAt(BTIME + 500);
  // firmware: a 4M CODE/VARS pair (sparse files of the real sizes)
  await fs.mkdir(p('ovmf'));
  await fs.mkdir(p('firmware'));
  await fs.writeFile(p('ovmf', 'CODE.fd'), '');
  await fs.truncate(p('ovmf', 'CODE.fd'), 3_653_632);
  await fs.writeFile(p('ovmf', 'VARS.fd'), '');
  await fs.truncate(p('ovmf', 'VARS.fd'), 540_672);
  await fs.writeFile(p('firmware', '50-ovmf.json'), descriptor(p('ovmf', 'CODE.fd'), p('ovmf', 'VARS.fd')));
  // private dirs, config, accounts
  await fs.mkdir(p('archive'), { mode: 0o700 });
  await fs.mkdir(p('state'), { mode: 0o700 });
  const configPath = p('config.json');
  await fs.writeFile(
    configPath,
    JSON.stringify({ archiveDir: p('archive'), stateDir: p('state'), firmwareDirs: [p('firmware')], qemuUser: 'tqemu', qemuGroup: 'tkvm' }),
  );
  await fs.writeFile(p('passwd'), 'root:x:0:0::/root:/bin/sh\ntqemu:x:1234:1234::/:/usr/sbin/nologin\n');
  await fs.writeFile(p('group'), 'root:x:0:\ntkvm:x:1235:\n');
  const opts: DoctorOptions = {
    configPath,
    hooksDir,
    pidFiles: [p('run', 'libvirtd.pid'), p('run', 'virtqemud.pid')],
    procDir: p('proc'),
    runDir: p('run', 'ovmf-hook'),
    qemuConf: p('qemu.conf'),
    passwdFile: p('passwd'),
    groupFile: p('group'),
    firmwareExists: () => false,
  };
  return { base, opts, hook, hooksDir, archive: p('archive'), state: p('state'), firmware: p('firmware'), ovmf: p('ovmf'), configPath, hookAt };
}

const byName = (checks: DoctorCheck[]) => Object.fromEntries(checks.map((c) => [c.check, c]));

describe('doctor', () => {
  it('passes every check on a healthy tree, one line per check', async () => {
    const t = await tree();
    const checks = await runDoctor(t.opts);
    expect(checks.map((c) => c.check)).toEqual(['config', 'node', 'hook', 'qemu.d', 'daemon', 'firmware', 'descriptors', 'secure boot template', 'archive', 'archive integrity', 'state', 'qemu user']);
    expect(checks.filter((c) => c.check !== 'node').map((c) => `${c.check}:${c.verdict}`)).toEqual(
      ['config', 'hook', 'qemu.d', 'daemon', 'firmware', 'descriptors', 'secure boot template', 'archive', 'archive integrity', 'state', 'qemu user'].map((c) => `${c}:ok`),
    );
    expect(byName(checks).node.verdict).toBe(NODE_DIR_OK ? 'ok' : 'warn');
    const c = byName(checks);
    expect(c.hook.detail).toBe(`${t.hook} is ovmf-hook's, runs ${process.execPath}`);
    expect(c['qemu.d'].detail).toBe('1 other hook run after ovmf-hook: 00-original-qemu');
    expect(c.daemon.detail).toBe(`libvirtd (pid ${DAEMON_PID}) started after the hook was installed`);
    expect(c.firmware.detail).toBe('1 firmware build (descriptors), files present: 4M');
    expect(c['qemu user'].detail).toBe('NVRAM files are owned by tqemu:tkvm (1234:1235)');
    expect(c['archive integrity'].detail).toBe('no generations moved aside as corrupt in 0 VM archives (data not verified here: ovmf-hook nvram repair does that)');
    expect(checks.every((x) => (x.verdict === 'ok') === (x.fix === undefined))).toBe(true);
  });

  type Case = { what: string; check: string; verdict: 'warn' | 'FAIL'; detail: RegExp; fix: RegExp; change: (t: Tree) => Promise<void | DoctorOptions> };
  const cases: Case[] = [
    { what: 'an invalid config', check: 'config', verdict: 'FAIL', detail: /invalid JSON .*the checks below use the defaults/, fix: /fix .*config\.json or remove it/, change: (t) => fs.writeFile(t.configPath, '{ "mode": ') },
    { what: 'an unknown config key', check: 'config', verdict: 'FAIL', detail: /unknown key "archvieDir"/, fix: /remove it to use the defaults/, change: (t) => fs.writeFile(t.configPath, '{"archvieDir": "/x"}') },
    { what: 'no hook', check: 'hook', verdict: 'FAIL', detail: /hooks\/qemu is missing/, fix: /install\.sh.*systemctl reload libvirtd/, change: (t) => fs.rm(t.hook) },
    { what: 'a foreign hook', check: 'hook', verdict: 'FAIL', detail: /is not ovmf-hook's \(a foreign hook\)/, fix: /moves the foreign hook to qemu\.d/, change: (t) => fs.writeFile(t.hook, '#!/bin/sh\nexit 0\n') },
    { what: 'a hook that is not executable', check: 'hook', verdict: 'FAIL', detail: /is not executable \(mode 0644\)/, fix: /chmod 755 .*hooks\/qemu/, change: async (t) => chmodSync(t.hook, 0o644) },
    { what: 'a group-writable hook', check: 'hook', verdict: 'FAIL', detail: /writable by group\/other/, fix: /chmod go-w/, change: async (t) => chmodSync(t.hook, 0o775) },
    { what: 'a hook whose interpreter is gone', check: 'hook', verdict: 'FAIL', detail: /runs \/nonexistent\/node, which does not exist/, fix: /install Node\.js 18\+ as \/usr\/bin\/node/, change: (t) => fs.writeFile(t.hook, `#!/nonexistent/node\n${MARKER}\n`, { mode: 0o755 }) },
    { what: 'an old node', check: 'node', verdict: 'FAIL', detail: /version 16\.20\.2; ovmf-hook needs 18 or newer/, fix: /install Node\.js 18\+/, change: async (t) => ({ ...t.opts, nodeVersion: '16.20.2' }) },
    {
      what: 'a node outside /usr/bin',
      check: 'node',
      verdict: 'warn',
      detail: /lives in .*: AppArmor's libvirtd profile only lets hooks run interpreters from \/usr\/bin or \/bin/,
      fix: /install Node\.js as \/usr\/bin\/node/,
      change: async (t) => {
        const wrapper = path.join(t.base, 'node');
        await fs.writeFile(wrapper, `#!/bin/sh\nexec ${process.execPath} "$@"\n`, { mode: 0o755 });
        await fs.writeFile(t.hook, `#!${wrapper}\n${MARKER}\n`, { mode: 0o755 });
        await t.hookAt(BTIME + 500);
      },
    },
    { what: 'hooks run through env', check: 'node', verdict: 'warn', detail: /runs "env node": libvirt's bare PATH decides/, fix: /absolute path/, change: async (t) => { await fs.writeFile(t.hook, `#!/usr/bin/env node\n${MARKER}\n`, { mode: 0o755 }); await t.hookAt(BTIME + 500); } },
    { what: 'an executable backup in qemu.d', check: 'qemu.d', verdict: 'warn', detail: /qemu\.dpkg-old in .* looks like a backup but is executable/, fix: /chmod -x/, change: (t) => fs.writeFile(path.join(t.hooksDir, 'qemu.d', 'qemu.dpkg-old'), '#!/bin/sh\n', { mode: 0o755 }) },
    { what: 'a copy of ovmf-hook in qemu.d', check: 'qemu.d', verdict: 'warn', detail: /is a copy of ovmf-hook: the hook runs twice/, fix: /^remove it: rm /, change: (t) => fs.copyFile(t.hook, path.join(t.hooksDir, 'qemu.d', '50-ovmf-hook')) },
    { what: 'a hook newer than the daemon', check: 'daemon', verdict: 'warn', detail: /libvirtd \(pid 4242\) started at 2023-11-14T22:30:00Z, before .*hooks\/qemu was installed or changed \(2023-11-14T22:40:00Z\)/, fix: /^run: systemctl reload libvirtd$/, change: (t) => t.hookAt(BTIME + 1600) },
    { what: 'no firmware', check: 'firmware', verdict: 'FAIL', detail: /no OVMF firmware on this host/, fix: /install the OVMF package/, change: (t) => fs.rm(path.join(t.firmware, '50-ovmf.json')) },
    { what: 'firmware files missing', check: 'firmware', verdict: 'FAIL', detail: /1 firmware build \(descriptors\), none usable: 50-ovmf\.json: files missing/, fix: /install the OVMF package/, change: (t) => fs.rm(path.join(t.ovmf, 'CODE.fd')) },
    {
      what: 'a CODE/VARS size mismatch next to a good build',
      check: 'firmware',
      verdict: 'warn',
      detail: /2 firmware builds \(descriptors\), 1 unusable: 40-small\.json: CODE\/VARS sizes do not pair/,
      fix: /remove the stale descriptor/,
      change: async (t) => {
        await fs.writeFile(path.join(t.ovmf, 'VARS-2M.fd'), Buffer.alloc(131_072));
        await fs.writeFile(path.join(t.firmware, '40-small.json'), descriptor(path.join(t.ovmf, 'CODE.fd'), path.join(t.ovmf, 'VARS-2M.fd')));
      },
    },
    { what: 'descriptor warnings', check: 'descriptors', verdict: 'warn', detail: /secure-boot and requires-smm should come together/, fix: /ovmf-hook firmware list/, change: (t) => fs.writeFile(path.join(t.firmware, '50-ovmf.json'), descriptor(path.join(t.ovmf, 'CODE.fd'), path.join(t.ovmf, 'VARS.fd'), ['secure-boot'])) },
    { what: 'no archive dir', check: 'archive', verdict: 'warn', detail: /archive does not exist; the hook creates it/, fix: /mount it first; else run: install -d -m 0700/, change: (t) => fs.rmdir(t.archive) },
    { what: 'a world-readable archive', check: 'archive', verdict: 'warn', detail: /readable by others \(mode 0755\)/, fix: /^run: chmod 700 /, change: async (t) => chmodSync(t.archive, 0o755) },
    { what: 'a group-writable archive', check: 'archive', verdict: 'FAIL', detail: /archive is writable by group\/other \(mode 0770\)/, fix: /^run: chmod 700 /, change: async (t) => chmodSync(t.archive, 0o770) },
    { what: 'a group-writable state dir', check: 'state', verdict: 'FAIL', detail: /state is writable by group\/other/, fix: /^run: chmod 700 /, change: async (t) => chmodSync(t.state, 0o777) },
    { what: 'an unknown qemu user', check: 'qemu user', verdict: 'FAIL', detail: /user tqemu is not in .*passwd: NVRAM files could not be given to QEMU/, fix: /"qemuUser"/, change: (t) => fs.writeFile(path.join(t.base, 'passwd'), 'root:x:0:0::/root:/bin/sh\n') },
  ];
  if (process.geteuid?.() === 0)
    cases.push({ what: 'an archive owned by another user', check: 'archive', verdict: 'FAIL', detail: /archive is owned by uid 1234, not 0/, fix: /^run: chown 0 /, change: (t) => fs.chown(t.archive, 1234, 0) });

  it.each(cases)('$what → $check $verdict with the fix', async ({ check, verdict, detail, fix, change }) => {
    const t = await tree();
    const opts = (await change(t)) || t.opts;
    const c = byName(await runDoctor(opts))[check];
    expect(c.verdict).toBe(verdict);
    expect(c.detail).toMatch(detail);
    expect(c.fix).toMatch(fix);
  });

  it('a daemon that install.sh reloaded after the hook changed is current; a note about another process (a restarted daemon) does not count', async () => {
    const t = await tree();
    await t.hookAt(BTIME + 1600); // the hook is newer than the daemon's start
    const note = (pid: number, sec: number) => fs.writeFile(path.join(t.base, 'run', 'ovmf-hook', 'reload-libvirtd'), `pid=${pid}\ntime_ms=${sec * 1000}\n`);
    await fs.mkdir(path.join(t.base, 'run', 'ovmf-hook'));
    await note(DAEMON_PID, BTIME + 1601);
    expect(byName(await runDoctor(t.opts)).daemon).toMatchObject({ verdict: 'ok', detail: 'libvirtd (pid 4242) was reloaded at 2023-11-14T22:40:01Z after the hook was installed' });
    await note(DAEMON_PID + 1, BTIME + 1601);
    expect(byName(await runDoctor(t.opts)).daemon.verdict).toBe('warn');
    await note(DAEMON_PID, BTIME + 1599); // reloaded before the hook changed
    expect(byName(await runDoctor(t.opts)).daemon.verdict).toBe('warn');
  });

  it('falls back to the daemon pid file mtime when /proc has no start time', async () => {
    const t = await tree();
    await fs.rm(path.join(t.base, 'proc', String(DAEMON_PID), 'stat'));
    await fs.utimes(path.join(t.base, 'run', 'libvirtd.pid'), BTIME + 100, BTIME + 100);
    expect(byName(await runDoctor(t.opts)).daemon).toMatchObject({ verdict: 'warn', detail: expect.stringMatching(/^libvirtd \(pid 4242\) started at 2023-11-14T22:15:00Z/) });
    await fs.rm(path.join(t.base, 'proc', String(DAEMON_PID)), { recursive: true });
    expect(byName(await runDoctor(t.opts)).daemon).toMatchObject({ verdict: 'ok', detail: expect.stringMatching(/no libvirtd\/virtqemud running/) });
  });

  it('the command prints one line per check and exits 0 without FAIL, 1 with one line on stderr otherwise', async () => {
    const t = await tree();
    const good = await runCommand(makeDoctorCommand(t.opts), ['doctor']);
    expect(good.code).toBe(0);
    const lines = good.stdout.trimEnd().split('\n');
    expect(lines).toHaveLength(12);
    expect(lines[0]).toMatch(/^ok\s+config\s+.*config\.json is valid$/);
    await fs.rm(t.hook);
    const bad = await runCommand(makeDoctorCommand(t.opts), ['doctor']);
    expect(bad.code).toBe(1);
    expect(bad.stdout).toMatch(/^FAIL\s+hook\s+.*hooks\/qemu is missing; fix: run: sudo \.\/install\.sh/m);
    expect(bad.stderr).toBe('ovmf-hook: doctor: 1 check failed (hook); see the fixes above\n');
    const asJson = await runCommand(makeDoctorCommand(t.opts), ['doctor', '--json']);
    const doc = JSON.parse(asJson.stdout);
    expect(asJson.code).toBe(1);
    expect(doc.ok).toBe(false);
    expect(doc.checks.find((c: DoctorCheck) => c.check === 'hook')).toMatchObject({ verdict: 'FAIL', fix: expect.stringContaining('install.sh') });
  });
});

describe('doctor: log file and archive integrity lines', () => {
  /** Merge `extra` into the tree's config file. */
  const setConfig = async (t: Tree, extra: object) => fs.writeFile(t.configPath, JSON.stringify({ ...JSON.parse(await fs.readFile(t.configPath, 'utf8')), ...extra }));

  it('no log file line without logFile; ok for a safe one, right after the config line', async () => {
    const t = await tree();
    expect((await runDoctor(t.opts)).map((c) => c.check)).not.toContain('log file');
    const log = path.join(t.base, 'hook.log');
    await setConfig(t, { logFile: log });
    const checks = await runDoctor(t.opts);
    expect(checks.map((c) => c.check).slice(0, 2)).toEqual(['config', 'log file']);
    expect(byName(checks)['log file']).toEqual({ check: 'log file', verdict: 'ok', detail: `${log}: the hook can write it` });
  });

  it('an unsafe log file (a symlink) → log file FAIL with the fix from logFileProblem', async () => {
    const t = await tree();
    const log = path.join(t.base, 'hook.log');
    await fs.symlink('/etc/shadow-not-really', log);
    await setConfig(t, { logFile: log });
    const c = byName(await runDoctor(t.opts))['log file'];
    expect(c).toEqual({ check: 'log file', verdict: 'FAIL', detail: `${log}: the hook will not write it: ${log} is a symlink`, fix: `remove it (rm ${log}), the hook creates the log file itself` });
  });

  it('archive integrity: counts generations moved aside as corrupt across VMs, with the fix', async () => {
    const t = await tree();
    const archive = await openArchive({ root: t.archive, host: 'h', hostId: 'h' });
    const vms = ['5a5a5a5a-0000-4000-8000-000000000001', '5a5a5a5a-0000-4000-8000-000000000002', '5a5a5a5a-0000-4000-8000-000000000003'];
    for (const [i, uuid] of vms.entries())
      for (const n of [1, 2, 3]) await archive.add(uuid, Buffer.alloc(4096, n), { kind: 'archive', reason: 'release (shutdown)', vmName: `vm${i + 1}` });
    expect(byName(await runDoctor(t.opts))['archive integrity']).toMatchObject({ verdict: 'ok', detail: expect.stringMatching(/^no generations moved aside as corrupt in 3 VM archives/) });

    await archive.quarantine(vms[0]!, 1);
    await archive.quarantine(vms[0]!, 2);
    await archive.quarantine(vms[2]!, 3);
    expect(byName(await runDoctor(t.opts))['archive integrity']).toEqual({
      check: 'archive integrity',
      verdict: 'warn',
      detail: `3 generations moved aside as corrupt in 2 VMs (${vms[0]} (vm1): 1, 2; ${vms[2]} (vm3): 3)`,
      fix: `look at a VM's generations: ovmf-hook nvram list <VM> (the corrupt files stay in ${t.archive}/<uuid>/ for inspection); ovmf-hook nvram repair verifies every generation`,
    });
  });

  it('archive integrity: ok without an archive, not checked when the archive line fails', async () => {
    const t = await tree();
    await fs.rmdir(t.archive);
    expect(byName(await runDoctor(t.opts))['archive integrity']).toMatchObject({ verdict: 'ok', detail: `no archive yet at ${t.archive}: nothing moved aside as corrupt` });
    await fs.mkdir(t.archive, { mode: 0o700 });
    chmodSync(t.archive, 0o777);
    const c = byName(await runDoctor(t.opts));
    expect(c.archive.verdict).toBe('FAIL');
    expect(c['archive integrity']).toMatchObject({ verdict: 'warn', detail: 'not checked: the archive is not usable (see the archive line)' });
  });
});
