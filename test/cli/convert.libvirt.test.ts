/**
 * `ovmf-hook convert` (and `rewrite`) against the real libvirtd: every BIOS fixture converts and is
 * accepted by `virsh define` and virt-xml-validate; a converted i440fx/SeaBIOS domain boots OVMF
 * under TCG (and Secure Boot refuses the EFI shell); convert round-trips; running and managed-save
 * domains are refused; `--all --dry-run --match` reports progress for this run's domains only.
 * Every domain here is named ovmfhook-t-cv<run id>-… and removed when the block ends.
 */
import { beforeAll, expect, it } from 'vitest';
import {
  defineDomain,
  describeLibvirt,
  destroyDomain,
  domainFixture,
  domainState,
  libvirtAvailable,
  makeDomainXml,
  renameDomainXml,
  scratchPath,
  startDomain,
  undefineDomain,
  uniqueVmName,
  virsh,
  virtXmlValidate,
  waitForFile,
} from '../support/libvirt';
import { firmwareAtDefine, loaderFormatAttr, platform, secureBootRefusal, unsignedEfiDisk, usesSpice, withoutSpice } from '../support/platform';
import { BIOS_FIXTURES, inactiveXml, scratchCli } from '../support/libvirt-cli';
import { runCli, type CliRun } from './support';

/** This run's domains share a prefix, so `--all --match` can be aimed at them alone. */
const RUN = `cv${Math.random().toString(16).slice(2, 8)}`;
const vmName = (what: string) => uniqueVmName(`${RUN}-${what}`);

let cli: string;
let env: Record<string, string>;
const convert = (args: string[]): CliRun => runCli(cli, ['convert', ...args], { env });

describeLibvirt('ovmf-hook convert against libvirt', () => {
  beforeAll(async () => {
    ({ cli, env } = await scratchCli('cli')); // built-in defaults: the host's firmware descriptors, libvirt's nvram dir
  }, 60_000);

  const FLAG_SETS: string[][] = [[], ['--secure-boot'], ['--firmware', 'auto']];
  // learned while collecting (test names show it); a file skipped for want of libvirt asks nothing
  const noSpice = libvirtAvailable() && !platform().spice;
  const spiceNote = (file: string) => (noSpice && usesSpice(domainFixture(file)) ? ' (spice devices replaced: this QEMU has no spice module)' : '');
  it.each(BIOS_FIXTURES.map((f) => [f, spiceNote(f)]))('%s%s: convert defines it (no flags, --secure-boot, --firmware auto), the result validates, a second convert is unchanged', (file, note) => {
    for (const flags of FLAG_SETS) {
      const name = vmName('fix');
      const original = renameDomainXml(note ? withoutSpice(domainFixture(file)) : domainFixture(file), name);
      defineDomain(original);
      const rewritten = runCli(cli, ['rewrite', ...flags], { env, input: inactiveXml(name) });
      expect(rewritten.code, rewritten.stderr).toBe(0);
      const valid = virtXmlValidate(rewritten.stdout);
      expect(valid.ok, valid.message).toBe(true);

      const first = convert([name, ...flags]);
      expect(first.code, first.stderr).toBe(0);
      expect(first.stdout).toBe('');
      expect(first.stderr).toMatch(new RegExp(`^${name}: converted \\(\\d+ changes\\)\\n$`));
      const defined = inactiveXml(name);
      expect(defined).toMatch(/machine='pc-q35-[\d.]+'/);
      // the loader as libvirt records it (` format='raw'` added where it selects firmware at define time)
      const loader =
        flags.includes('--secure-boot') || file.startsWith('edge-')
          ? new RegExp(`<loader readonly='yes' secure='yes' type='pflash'${loaderFormatAttr()}>[^<]*\\.ms\\.fd<`)
          : new RegExp(`<loader readonly='yes' type='pflash'${loaderFormatAttr()}>/usr/share/OVMF/OVMF_CODE_4M\\.fd<`);
      if (flags.includes('auto')) {
        expect(defined).toContain("<os firmware='efi'>");
        if (firmwareAtDefine()) expect(defined).toMatch(loader); // libvirt ≥ 9.2 fills it in at define time
      } else expect(defined).toMatch(loader);
      const check = virtXmlValidate(defined);
      expect(check.ok, check.message).toBe(true);

      const second = convert([name, ...flags]);
      expect(second).toEqual({ code: 0, stdout: '', stderr: `${name}: unchanged\n` });
      expect(inactiveXml(name)).toBe(defined);
      undefineDomain(name);
    }
  }, 120_000);

  it.each([[['--tpm']], [['--secure-boot', '--tpm']]])('rewrite %j of every BIOS fixture gives a TPM domain that virt-xml-validate accepts (no swtpm here: not defined)', (flags) => {
    for (const file of BIOS_FIXTURES) {
      const r = runCli(cli, ['rewrite', ...flags], { env, input: domainFixture(file) });
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toContain("<tpm model='tpm-crb'>");
      const valid = virtXmlValidate(r.stdout);
      expect(valid.ok, `${file}: ${valid.message}`).toBe(true);
    }
  });

  it('a converted i440fx/SeaBIOS domain boots OVMF (BdsDxe on the serial console)', async () => {
    const name = vmName('boot');
    const serialLog = scratchPath(`${name}.log`);
    defineDomain(makeDomainXml({ name, machine: 'pc', firmware: 'bios', serialLog }));
    const r = convert([name]);
    expect(r.code, r.stderr).toBe(0);
    startDomain(name);
    await waitForFile(serialLog, /BdsDxe/, 60_000);
    expect(virsh(['dumpxml', name]).stdout).toMatch(/<loader[^>]*type='pflash'[^>]*>\/usr\/share\/OVMF\/OVMF_CODE_4M\.fd</);
    destroyDomain(name); // 2 cores: at most one TCG guest at a time
  }, 90_000);

  // OVMF's built-in shell where its Secure Boot images have one, else BOOTX64.EFI on a disk
  const refusal = libvirtAvailable() ? secureBootRefusal() : { text: /Security Violation|Access Denied/, needsUnsignedDisk: false };
  it(`convert --secure-boot: the firmware refuses the unsigned ${refusal.needsUnsignedDisk ? 'BOOTX64.EFI on a disk' : 'EFI shell'} (${refusal.text.source})`, async () => {
    const name = vmName('sb');
    const serialLog = scratchPath(`${name}.log`);
    const disks = refusal.needsUnsignedDisk ? [{ path: unsignedEfiDisk(scratchPath(`${name}-efi.img`)), format: 'raw' }] : undefined;
    defineDomain(makeDomainXml({ name, machine: 'pc', firmware: 'bios', serialLog, disks }));
    const r = convert([name, '--secure-boot']);
    expect(r.code, r.stderr).toBe(0);
    startDomain(name);
    await waitForFile(serialLog, refusal.text, 60_000);
    destroyDomain(name);
    // shut off again and converted: a second run changes nothing
    const before = inactiveXml(name);
    expect(convert([name, '--secure-boot'])).toEqual({ code: 0, stdout: '', stderr: `${name}: unchanged\n` });
    expect(inactiveXml(name)).toBe(before);
  }, 90_000);

  it('refuses a running domain, then its managed-save image (exit 1, one line); --force converts it', () => {
    const name = vmName('state');
    defineDomain(makeDomainXml({ name, machine: 'pc', firmware: 'bios', serialLog: scratchPath(`${name}.log`) }));
    const original = inactiveXml(name);
    startDomain(name);
    try {
      const running = convert([name]);
      expect(running).toEqual({ code: 1, stdout: '', stderr: `ovmf-hook: ${name}: the domain is running; shut it down first (virsh shutdown ${name}), then run the convert again\n` });

      virsh(['managedsave', name], { timeoutSec: 120 });
      expect(domainState(name)).toBe('shut off');
      const saved = convert([name]);
      expect(saved.code).toBe(1);
      expect(saved.stdout).toBe('');
      expect(saved.stderr).toMatch(new RegExp(`^ovmf-hook: ${name}: the domain has a managed-save image, which cannot be restored after the conversion; [^\\n]*virsh managedsave-remove ${name}[^\\n]*--force\\n$`));
      expect(inactiveXml(name)).toBe(original);

      const forced = convert([name, '--force']);
      expect(forced.code, forced.stderr).toBe(0);
      expect(inactiveXml(name)).toMatch(/machine='pc-q35-/);
    } finally {
      virsh(['managedsave-remove', name], { allowFail: true });
      destroyDomain(name);
    }
  }, 180_000);

  it("--all --dry-run --match '<this run>-*' reports progress for this run's domains only and changes nothing", () => {
    const bios = vmName('all-a');
    const uefi = vmName('all-b');
    defineDomain(makeDomainXml({ name: bios, machine: 'pc', firmware: 'bios', serialLog: scratchPath(`${bios}.log`) }));
    defineDomain(makeDomainXml({ name: uefi, machine: 'q35', firmware: 'ovmf', serialLog: scratchPath(`${uefi}.log`) }));
    const before = [inactiveXml(bios), inactiveXml(uefi)];
    const r = convert(['--all', '--dry-run', '--match', `ovmfhook-t-${RUN}-all-*`]);
    expect(r.code, r.stderr).toBe(0);
    const [first, second] = [bios, uefi].sort();
    const line = (n: string) => (n === bios ? `${n}: would convert \\(\\d+ changes\\)` : `${n}: unchanged`);
    expect(r.stderr).toMatch(new RegExp(`^\\[1/2\\] ${line(first)}\\n\\[2/2\\] ${line(second)}\\n2 domains: 1 would convert, 1 unchanged\\n$`));
    expect(r.stdout.match(/^--- .*$/gm)).toEqual([`--- ${bios}.xml`]);
    expect(r.stdout).toContain("+    <type arch='x86_64' machine='q35'>hvm</type>");
    expect([inactiveXml(bios), inactiveXml(uefi)]).toEqual(before);
  });
});
