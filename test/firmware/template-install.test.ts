/**
 * `ovmf-hook firmware template --ms-2023 | --remove` against a temp host (src/io/firmware-template.ts,
 * src/cli/commands/firmware-template.ts, in process): the distro's descriptors in `usr/` (Debian's,
 * their Microsoft-keys template a copy of the real one in `ovmf/`), ovmf-hook's descriptor dir
 * `etc/`, the copy under the state dir; libvirt a fake virsh. Install, idempotence, rebuild after a
 * package upgrade or a moved selection, `--remove` of exactly ovmf-hook's files, the refusals, the
 * catalog's pick afterwards, and doctor's line.
 */
import { chmodSync, copyFileSync, mkdirSync, readdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { makeFirmwareCommand } from '../../src/cli/commands/firmware';
import { runDoctor } from '../../src/cli/commands/doctor';
import type { Config } from '../../src/core/config';
import { parseDomain, uefiFiles } from '../../src/core/domain';
import { matchFirmware, parseDescriptor, SECURE_BOOT_MS_REQUEST } from '../../src/core/firmware';
import { certificateReadiness, enrollSignatures } from '../../src/core/varstore';
import { loadCatalog, sha256 } from '../../src/io';
import type { VirshRunner } from '../../src/io/virsh';
import { runCommand, tempConfig, tempDir } from '../cli/nvram-support';
import { treeSnapshot } from '../keys/cli-host';
import { enrolledWith2023, MS_VARS_4M } from '../support/ms-2023';

const FIXTURES = join(__dirname, 'fixtures', 'debian');
const NAME = '39-ovmf-hook-ms-2023.json';
const COPY = 'OVMF_VARS_4M.ms.ms-2023.fd';

interface Host {
  base: string;
  usr: string;
  etc: string;
  /** The distro's Microsoft-keys template (a copy of Debian's). */
  msVars: string;
  /** Where the copy goes by default, and the copy. */
  out: string;
  copy: string;
  descriptor: string;
  config: Config;
  /** `ovmf-hook firmware template ARGS…` in process; libvirt knows `domains` (name → inactive XML). */
  run: (args: string[], domains?: Record<string, string> | 'down') => ReturnType<typeof runCommand>;
  /** What a new Secure Boot VM gets from the catalog now (the template path). */
  picked: () => string | undefined;
  snapshot: () => Record<string, string>;
}

/** A fake libvirt: `list --all --name` and `dumpxml --inactive NAME`; 'down': every call fails like an unreachable daemon. */
function fakeLibvirt(domains: Record<string, string> | 'down'): VirshRunner & { calls: string[][] } {
  const calls: string[][] = [];
  const run = async (args: readonly string[]) => {
    calls.push([...args]);
    if (domains === 'down') return { code: 1, stdout: '', stderr: 'error: failed to connect to the hypervisor\n' };
    if (args.join(' ') === 'list --all --name') return { code: 0, stdout: `${Object.keys(domains).join('\n')}\n\n`, stderr: '' };
    const xml = args[0] === 'dumpxml' ? domains[args.at(-1)!] : undefined;
    return xml ? { code: 0, stdout: xml, stderr: '' } : { code: 1, stdout: '', stderr: `error: failed to get domain '${args.at(-1)}'\n` };
  };
  return Object.assign(run, { calls });
}

async function host(): Promise<Host> {
  const base = await tempDir('ovmfhook-template-');
  const usr = join(base, 'usr');
  const etc = join(base, 'etc');
  const ovmf = join(base, 'ovmf');
  for (const d of [usr, etc, ovmf]) mkdirSync(d);
  const msVars = join(ovmf, 'OVMF_VARS_4M.ms.fd');
  copyFileSync(MS_VARS_4M, msVars);
  for (const f of readdirSync(FIXTURES)) writeFileSync(join(usr, f), readFileSync(join(FIXTURES, f), 'utf8').replaceAll('/usr/share/OVMF/OVMF_VARS_4M.ms.fd', msVars));
  const config = tempConfig(base, { firmwareDirs: [usr, etc] });
  const out = config.templateDir;
  const cmd = (virsh?: VirshRunner) => makeFirmwareCommand({ config: () => config, ...(virsh ? { virsh } : {}) });
  return {
    base,
    usr,
    etc,
    msVars,
    out,
    copy: join(out, COPY),
    descriptor: join(etc, NAME),
    config,
    run: (args, domains = {}) => runCommand(cmd(fakeLibvirt(domains)), ['firmware', 'template', ...args]),
    picked: () => matchFirmware(loadCatalog({ roots: config.firmwareDirs }).descriptors, SECURE_BOOT_MS_REQUEST).descriptor.nvramTemplate?.filename,
    snapshot: () =>
      treeSnapshot(base, (p, st) => (st.isFile() ? `file ${(st.mode & 0o777).toString(8)} ${sha256(readFileSync(p))} ${st.ino} ${st.mtimeMs}` : st.isDirectory() ? 'dir' : 'other')),
  };
}

const json = (r: { stdout: string }) => JSON.parse(r.stdout);

describe('firmware template --ms-2023', () => {
  it('writes the copy (0644) and a descriptor that sorts first: the catalog then gives new Secure Boot VMs the copy, with the 2023 certificates', async () => {
    const h = await host();
    expect(h.picked()).toBe(h.msVars);
    const r = await h.run(['--ms-2023']);
    expect(r, r.stderr).toMatchObject({ code: 0, stderr: '' });
    expect(r.stdout.split('\n')).toEqual([
      `source:     ${h.msVars} (${h.usr}/40-edk2-x86_64-secure-enrolled.json, sha256 ${sha256(readFileSync(h.msVars)).slice(0, 12)}…)`,
      `template:   ${h.copy}: + Microsoft Corporation KEK 2K CA 2023 (KEK), + Windows UEFI CA 2023 (db), + Microsoft UEFI CA 2023 (db), + Microsoft Option ROM UEFI CA 2023 (db)`,
      `descriptor: ${h.descriptor} (sorts before 40-edk2-x86_64-secure-enrolled.json, which libvirt picks now)`,
      "installed: new Secure Boot VMs (libvirt's <os firmware='efi'> selection, convert --secure-boot, the hook) get the Microsoft 2023 certificates",
      '',
    ]);
    expect(h.picked()).toBe(h.copy);
    expect(readdirSync(h.etc)).toEqual([NAME]);
    expect(readdirSync(h.out)).toEqual([COPY]);
    for (const f of [h.copy, h.descriptor]) expect([statSync(f).mode & 0o777, statSync(f).uid]).toEqual([0o644, process.getuid!()]);
    expect(statSync(h.out).mode & 0o777).toBe(0o755);
    expect(certificateReadiness(readFileSync(h.copy)).state).toBe('current');
    expect(readFileSync(h.msVars).equals(readFileSync(MS_VARS_4M))).toBe(true);
    const d = parseDescriptor(readFileSync(h.descriptor, 'utf8'), { file: NAME, dir: h.etc });
    expect([d.executable.filename, d.nvramTemplate?.filename]).toEqual(['/usr/share/OVMF/OVMF_CODE_4M.ms.fd', h.copy]);
  });

  it("the hook's provisioning computes the same pick for an <os firmware='efi'> Secure Boot domain: the copy (a plain UEFI one keeps the distro's)", async () => {
    const h = await host();
    const domain = (features: string) =>
      parseDomain(`<domain type='kvm'><name>vm</name><uuid>6f1b1c1e-0000-4000-8000-000000000003</uuid><os firmware='efi'><type arch='x86_64' machine='pc-q35-7.2'>hvm</type>${features}</os><features><smm state='on'/></features></domain>`);
    const sb = domain("<firmware><feature enabled='yes' name='secure-boot'/><feature enabled='yes' name='enrolled-keys'/></firmware>");
    const plain = domain("<firmware><feature enabled='no' name='secure-boot'/></firmware>");
    const files = (d: ReturnType<typeof parseDomain>) => uefiFiles(d, () => loadCatalog({ roots: h.config.firmwareDirs }).descriptors, h.config.nvramDir)?.template;
    expect([files(sb), files(plain)]).toEqual([h.msVars, '/usr/share/OVMF/OVMF_VARS_4M.fd']);
    expect((await h.run(['--ms-2023'])).code).toBe(0);
    expect([files(sb), files(plain)]).toEqual([h.copy, '/usr/share/OVMF/OVMF_VARS_4M.fd']);
  });

  it('again: "up to date", nothing written (same inodes and times); --json says so', async () => {
    const h = await host();
    expect((await h.run(['--ms-2023'])).code).toBe(0);
    const before = h.snapshot();
    const again = await h.run(['--ms-2023']);
    expect(again.code).toBe(0);
    expect(again.stdout).toMatch(/\nup to date: new Secure Boot VMs .* get the Microsoft 2023 certificates; nothing written\n$/);
    const doc = json(await h.run(['--ms-2023', '--json']));
    expect(doc).toMatchObject({ action: 'install', status: 'up-to-date', dryRun: false, reasons: [], template: { path: h.copy, written: false }, descriptor: { path: h.descriptor, written: false }, removed: [] });
    expect(doc.certificates.map((c: { status: string }) => c.status)).toEqual(['added', 'added', 'added', 'added']);
    expect(h.snapshot()).toEqual(before);
  });

  it('--dry-run writes nothing (not even the directories) and says what it would do', async () => {
    const h = await host();
    const before = h.snapshot();
    const r = await h.run(['--ms-2023', '--dry-run']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/\ndry run: would install: .*; nothing written\n$/);
    expect(h.snapshot()).toEqual(before);
    expect(json(await h.run(['--ms-2023', '--dry-run', '--json']))).toMatchObject({ status: 'new', dryRun: true, template: { written: false }, descriptor: { written: false } });
  });

  it("rebuilds after the distro's template changed (a package upgrade), naming both sha256", async () => {
    const h = await host();
    expect((await h.run(['--ms-2023'])).code).toBe(0);
    const old = sha256(readFileSync(h.msVars));
    // the "upgrade": one more db entry in the distro's template
    const upgraded = enrollSignatures(readFileSync(h.msVars), [{ variable: 'db', owner: '11111111-2222-3333-4444-555555555555', source: 'test', kind: 'sha256', hash: 'ab'.repeat(32) }]).data;
    writeFileSync(h.msVars, upgraded);
    const r = await h.run(['--ms-2023']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(`\nrebuilt (${h.msVars} changed since the copy was made (sha256 ${old.slice(0, 12)} → ${sha256(upgraded).slice(0, 12)}: the OVMF package was upgraded); ${h.copy} differs from the copy): new Secure Boot VMs`);
    expect(readFileSync(h.descriptor, 'utf8')).toContain(`ovmf-hook:source-sha256=${sha256(upgraded)}`);
    const copy = readFileSync(h.copy);
    expect(readFileSync(h.descriptor, 'utf8')).toContain(`ovmf-hook:template-sha256=${sha256(copy)}`);
    expect(certificateReadiness(copy).state).toBe('current');
    expect(readdirSync(h.etc)).toEqual([NAME]);
    expect((await h.run(['--ms-2023'])).stdout).toMatch(/\nup to date: /);
  });

  it('follows a moved selection: the distro descriptor renamed 40 → 45, ours becomes 44-… and the 39-… one goes', async () => {
    const h = await host();
    expect((await h.run(['--ms-2023'])).code).toBe(0);
    renameSync(join(h.usr, '40-edk2-x86_64-secure-enrolled.json'), join(h.usr, '45-edk2-x86_64-secure-enrolled.json'));
    const r = await h.run(['--ms-2023']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(`removed: ${h.descriptor}\n`);
    expect(r.stdout).toMatch(/\nrebuilt \(.*39-ovmf-hook-ms-2023\.json was written for an earlier selection .*\): /);
    expect(readdirSync(h.etc)).toEqual(['44-ovmf-hook-ms-2023.json']);
    expect(readdirSync(h.out)).toEqual([COPY]);
    expect(h.picked()).toBe(h.copy);
  });

  it('says so and writes nothing when the distro template holds the 2023 certificates already', async () => {
    const h = await host();
    writeFileSync(h.msVars, enrolledWith2023(readFileSync(h.msVars)));
    const before = h.snapshot();
    const r = await h.run(['--ms-2023']);
    expect(r).toEqual({ code: 0, stderr: '', stdout: `${h.msVars} (${h.usr}/40-edk2-x86_64-secure-enrolled.json) holds every Microsoft 2023 certificate already: new Secure Boot VMs get them without a copy; nothing written\n` });
    expect(h.snapshot()).toEqual(before);
  });

  it('an earlier copy of ovmf-hook left while the distro template gained the certificates: named as redundant, not removed', async () => {
    const h = await host();
    expect((await h.run(['--ms-2023'])).code).toBe(0);
    writeFileSync(h.msVars, enrolledWith2023(readFileSync(h.msVars)));
    const r = await h.run(['--ms-2023']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/holds every Microsoft 2023 certificate already: .*; nothing written\nstill installed: .*39-ovmf-hook-ms-2023\.json \(ovmf-hook's earlier copy, now redundant: ovmf-hook firmware template --remove drops it\)\n$/);
    expect(readdirSync(h.etc)).toEqual([NAME]);
  });

  type Refusal = { what: string; code: 1 | 2; error: RegExp; change: (h: Host) => string[] | void };
  const refusals: Refusal[] = [
    {
      what: 'no Microsoft-keys descriptor on the host',
      code: 1,
      error: /^ovmf-hook: no Secure Boot firmware with Microsoft keys \(features secure-boot \+ enrolled-keys, x86_64 q35\) among 2 descriptors, so there is no template to add the 2023 certificates to; install the distro's OVMF/,
      change: (h) => void renameSync(join(h.usr, '40-edk2-x86_64-secure-enrolled.json'), join(h.base, 'away.json')),
    },
    { what: 'its template missing', code: 1, error: /^ovmf-hook: no Microsoft-keys VARS template to copy: its template .*OVMF_VARS_4M\.ms\.fd .* does not exist; reinstall the OVMF package$/, change: (h) => void renameSync(h.msVars, join(h.base, 'away.fd')) },
    { what: 'its template without Secure Boot keys', code: 1, error: /OVMF_VARS_4M\.ms\.fd: the variable store has no Secure Boot keys/, change: (h) => void copyFileSync('/usr/share/OVMF/OVMF_VARS_4M.fd', h.msVars) },
    { what: 'its template not a varstore', code: 2, error: /^ovmf-hook: .*OVMF_VARS_4M\.ms\.fd: /, change: (h) => void writeFileSync(h.msVars, Buffer.alloc(540_672)) },
    { what: 'a file of our name that is not ours', code: 1, error: /39-ovmf-hook-ms-2023\.json exists and is not a descriptor ovmf-hook wrote \(no ovmf-hook:ms-2023-template tag\); move it away/, change: (h) => void writeFileSync(h.descriptor, '') },
    { what: 'a descriptor dir ovmf-hook does not read', code: 2, error: /^ovmf-hook: --descriptor-dir \/nowhere is not one of the descriptor directories ovmf-hook reads/, change: () => ['--descriptor-dir', '/nowhere'] },
    { what: 'a relative output dir', code: 2, error: /^ovmf-hook: --output-dir out must be an absolute path$/, change: () => ['--output-dir', 'out'] },
    { what: 'a group-writable output dir', code: 1, error: /is writable by group\/other \(mode 0777\); run: chmod 700 /, change: (h) => { mkdirSync(h.out, { recursive: true }); chmodSync(h.out, 0o777); } },
  ];
  it.each(refusals)('refuses $what (exit $code, one line), and the descriptor dir stays as it was', async ({ code, error, change }) => {
    const h = await host();
    const extra = change(h) ?? [];
    const etc = readdirSync(h.etc);
    const r = await h.run(['--ms-2023', ...extra]);
    expect(r.code).toBe(code);
    expect(r.stdout).toBe('');
    expect(r.stderr.trimEnd()).toMatch(error);
    expect(r.stderr.trimEnd().split('\n')).toHaveLength(1);
    expect(readdirSync(h.etc)).toEqual(etc);
  });

  it.each([
    [[], /^ovmf-hook: name what to do: --ms-2023 \(install or update the template\) or --remove$/],
    [['--ms-2023', '--remove'], /^ovmf-hook: give --ms-2023 or --remove, not both$/],
    [['--remove', '--output-dir', '/x'], /^ovmf-hook: --output-dir applies to --ms-2023/],
  ])('usage %j: exit 2, one line', async (args, error) => {
    const h = await host();
    const r = await h.run(args);
    expect([r.code, r.stdout]).toEqual([2, '']);
    expect(r.stderr.trimEnd()).toMatch(error);
  });
});

describe('firmware template --remove', () => {
  it("deletes exactly ovmf-hook's descriptor and copy; a foreign descriptor and files next to them stay; the distro's template is picked again", async () => {
    const h = await host();
    expect((await h.run(['--ms-2023'])).code).toBe(0);
    writeFileSync(join(h.etc, '10-local.json'), readFileSync(join(h.usr, '60-edk2-x86_64.json')));
    writeFileSync(join(h.etc, '38-ovmf-hook-ms-2023.json'), '{"tags": ["ovmf-hook: just a name"]}');
    writeFileSync(join(h.out, 'mine.fd'), 'admin');
    const r = await h.run(['--remove']);
    expect(r, r.stderr).toEqual({
      code: 0,
      stderr: '',
      stdout: `removed: ${h.descriptor}\nremoved: ${h.copy}\nnew Secure Boot VMs get the template of the next descriptor in libvirt's order again (ovmf-hook firmware list)\n`,
    });
    expect(readdirSync(h.etc)).toEqual(['10-local.json', '38-ovmf-hook-ms-2023.json']);
    expect(readdirSync(h.out)).toEqual(['mine.fd']);
    expect(h.picked()).toBe(h.msVars);
    expect(await h.run(['--remove'])).toEqual({ code: 0, stderr: '', stdout: `nothing to remove: no descriptor of ovmf-hook's in ${h.etc}\n` });
  });

  it('keeps a copy that was changed since ovmf-hook wrote it (and says so), removes the descriptor', async () => {
    const h = await host();
    expect((await h.run(['--ms-2023'])).code).toBe(0);
    const changed = readFileSync(h.copy);
    changed[changed.length - 1] ^= 0xff;
    writeFileSync(h.copy, changed);
    const r = await h.run(['--remove']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`kept: ${h.copy} (changed since ovmf-hook wrote it (sha256 differs))\n`);
    expect(readdirSync(h.etc)).toEqual([]);
    expect(readFileSync(h.copy).equals(changed)).toBe(true);
  });

  it('--dry-run lists, removes nothing', async () => {
    const h = await host();
    expect((await h.run(['--ms-2023'])).code).toBe(0);
    const before = h.snapshot();
    const r = await h.run(['--remove', '--dry-run']);
    expect(r.stdout).toBe(`would remove: ${h.descriptor}\nwould remove: ${h.copy}\ndry run: new Secure Boot VMs would get the template of the next descriptor in libvirt's order again (ovmf-hook firmware list); nothing written\n`);
    expect(h.snapshot()).toEqual(before);
  });

  it('refuses while a defined domain names the copy as its <nvram template> (exit 1, naming it); --force removes anyway with a warning', async () => {
    const h = await host();
    expect((await h.run(['--ms-2023'])).code).toBe(0);
    const domains = {
      'win-a': `<domain type='kvm'><name>win-a</name><uuid>6f1b1c1e-0000-4000-8000-000000000001</uuid><os><type arch='x86_64' machine='pc-q35-7.2'>hvm</type><loader readonly='yes' secure='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE_4M.ms.fd</loader><nvram template='${h.copy}'>/var/lib/libvirt/qemu/nvram/win-a_VARS.fd</nvram></os></domain>`,
      other: `<domain type='kvm'><name>other</name><uuid>6f1b1c1e-0000-4000-8000-000000000002</uuid><os><type arch='x86_64' machine='pc-q35-7.2'>hvm</type></os></domain>`,
    };
    const before = h.snapshot();
    const r = await h.run(['--remove'], domains);
    expect([r.code, r.stdout]).toEqual([1, '']);
    expect(r.stderr).toBe(
      `ovmf-hook: 1 defined domain names ${h.copy} as its <nvram template> (win-a): virsh start --reset-nvram and ovmf-hook nvram reset would find no template; point them at another template first (virsh edit), or add --force\n`,
    );
    expect(h.snapshot()).toEqual(before);
    const forced = await h.run(['--remove', '--force'], domains);
    expect(forced.code).toBe(0);
    expect(forced.stderr).toMatch(/^ovmf-hook: warning: 1 defined domain names .* \(win-a\): .*; removing anyway \(--force\)\n$/);
    expect(readdirSync(h.etc)).toEqual([]);
  });

  it('refuses when libvirt cannot be asked (exit 1); --force removes with a warning', async () => {
    const h = await host();
    expect((await h.run(['--ms-2023'])).code).toBe(0);
    const r = await h.run(['--remove'], 'down');
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^ovmf-hook: cannot ask libvirt which domains name .* \(failed to connect to the hypervisor\); --force removes it without asking\n$/);
    expect(readdirSync(h.etc)).toEqual([NAME]);
    const forced = await h.run(['--remove', '--force'], 'down');
    expect(forced.code).toBe(0);
    expect(forced.stderr).toMatch(/^ovmf-hook: warning: cannot ask libvirt .*; removing anyway \(--force\)\n$/);
    expect(readdirSync(h.etc)).toEqual([]);
  });
});

describe("doctor's secure boot template line", () => {
  const line = async (h: Host) => {
    const configPath = join(h.base, 'config.json');
    writeFileSync(configPath, JSON.stringify({ firmwareDirs: h.config.firmwareDirs, stateDir: h.config.stateDir, archiveDir: h.config.archiveDir, templateDir: h.config.templateDir }));
    const checks = await runDoctor({ configPath, hooksDir: join(h.base, 'hooks'), pidFiles: [], procDir: join(h.base, 'proc'), runDir: join(h.base, 'run') });
    return checks.find((c) => c.check === 'secure boot template')!;
  };

  it("2011 only → warn with the fix; after the install → ok naming the copy; after a package upgrade → warn: rebuild", async () => {
    const h = await host();
    expect(await line(h)).toEqual({
      check: 'secure boot template',
      verdict: 'warn',
      detail: `new Secure Boot VMs get ${h.msVars} (${h.usr}/40-edk2-x86_64-secure-enrolled.json): Microsoft 2011 certificates only, without Microsoft Corporation KEK 2K CA 2023, Windows UEFI CA 2023, Microsoft UEFI CA 2023, Microsoft Option ROM UEFI CA 2023 (the 2011 CAs expire in 2026)`,
      fix: 'run: ovmf-hook firmware template --ms-2023',
    });
    expect((await h.run(['--ms-2023'])).code).toBe(0);
    expect(await line(h)).toEqual({ check: 'secure boot template', verdict: 'ok', detail: `new Secure Boot VMs get ${h.copy} (${h.descriptor}): with the Microsoft 2023 certificates` });
    writeFileSync(h.msVars, enrollSignatures(readFileSync(h.msVars), [{ variable: 'db', owner: '11111111-2222-3333-4444-555555555555', source: 'test', kind: 'sha256', hash: 'cd'.repeat(32) }]).data);
    expect(await line(h)).toMatchObject({ verdict: 'warn', detail: expect.stringMatching(/: with the Microsoft 2023 certificates, but copied from .* before it changed \(an OVMF upgrade\)$/), fix: 'run: ovmf-hook firmware template --ms-2023 (it rebuilds the copy)' });
  });

  it('no Secure Boot firmware with enrolled keys → ok, nothing to check; a missing template → warn', async () => {
    const h = await host();
    renameSync(h.msVars, join(h.base, 'away.fd'));
    expect(await line(h)).toMatchObject({ verdict: 'warn', detail: expect.stringMatching(/, which cannot be read: the file does not exist$/), fix: expect.stringMatching(/reinstall the OVMF package/) });
    renameSync(join(h.usr, '40-edk2-x86_64-secure-enrolled.json'), join(h.base, 'away.json'));
    expect(await line(h)).toEqual({ check: 'secure boot template', verdict: 'ok', detail: `no Secure Boot firmware with enrolled keys in ${h.usr}, ${h.etc}: nothing to check` });
  });
});
