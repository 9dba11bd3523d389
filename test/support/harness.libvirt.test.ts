import { existsSync, readdirSync } from 'node:fs';
import { beforeAll, expect, it } from 'vitest';
import {
  DOMAIN_FIXTURES_DIR,
  cleanupDomains,
  defineDomain,
  destroyDomain,
  describeLibvirt,
  domainFixture,
  libvirtAvailable,
  domainState,
  listTestDomains,
  makeDomainXml,
  renameDomainXml,
  scratchPath,
  startDomain,
  trackedDomains,
  uniqueVmName,
  virsh,
  virtXmlValidate,
  waitForFile,
  withTempDomain,
  type Firmware,
  type Machine,
} from './libvirt';
import { describePlatform, platform, secureBootRefusal, unsignedEfiDisk, usesSpice } from './platform';

const nvramOf = (name: string) => `/var/lib/libvirt/qemu/nvram/${name}_VARS.fd`;
const created: string[] = [];

describeLibvirt('libvirt test harness', () => {
  beforeAll(() => console.info(`[harness] ${describePlatform()}`));
  // learned while collecting (test names show it); a file skipped for want of libvirt asks nothing
  const refusal = libvirtAvailable() ? secureBootRefusal() : { text: /Security Violation|Access Denied/, needsUnsignedDisk: false };
  const boots: Array<{ machine: Machine; firmware: Firmware; expect: RegExp; loader: RegExp; unsignedDisk?: boolean }> = [
    { machine: 'q35', firmware: 'ovmf', expect: /BdsDxe/, loader: /OVMF_CODE_4M\.fd/ },
    { machine: 'pc', firmware: 'ovmf', expect: /BdsDxe/, loader: /OVMF_CODE_4M\.fd/ },
    // Secure Boot refuses an unsigned image: OVMF's built-in shell, or (no shell in its Secure Boot images) BOOTX64.EFI on a disk
    { machine: 'q35', firmware: 'ovmf-secure', expect: refusal.text, loader: /OVMF_CODE_4M\.ms\.fd/, unsignedDisk: refusal.needsUnsignedDisk },
    { machine: 'q35', firmware: 'efi-auto', expect: /BdsDxe/, loader: /OVMF_CODE_4M(\.ms|\.secboot)?\.fd/ },
  ];

  it.each(boots)('$machine/$firmware domain boots and its serial log shows $expect', async (c) => {
    const name = uniqueVmName(`boot-${c.machine}-${c.firmware}`);
    created.push(name);
    const serialLog = scratchPath(`${name}.log`);
    const disks = c.unsignedDisk ? [{ path: unsignedEfiDisk(scratchPath(`${name}-efi.img`)), format: 'raw' }] : undefined;
    defineDomain(makeDomainXml({ name, machine: c.machine, firmware: c.firmware, serialLog, disks }));
    const t0 = Date.now();
    startDomain(name);
    await waitForFile(serialLog, c.expect, 50_000);
    console.info(`[harness] ${name}: start → ${c.expect} in ${Date.now() - t0} ms`);
    expect(domainState(name)).toBe('running');
    // The live XML names the firmware libvirt actually loaded (autoselection included).
    expect(virsh(['dumpxml', name]).stdout).toMatch(c.loader);
    expect(existsSync(nvramOf(name))).toBe(true);
    destroyDomain(name); // 2 cores: keep at most one TCG guest running
  }, 60_000);

  it('a BIOS domain starts and runs', () => {
    const name = uniqueVmName('boot-bios');
    created.push(name);
    defineDomain(makeDomainXml({ name, machine: 'pc', firmware: 'bios', serialLog: scratchPath(`${name}.log`) }));
    startDomain(name);
    expect(domainState(name)).toBe('running');
    destroyDomain(name);
    expect(domainState(name)).toBe('shut off');
  });

  it('withTempDomain removes the domain and its NVRAM even when the callback throws', async () => {
    const name = uniqueVmName('temp');
    created.push(name);
    const xml = makeDomainXml({ name, machine: 'q35', firmware: 'ovmf', serialLog: scratchPath(`${name}.log`) });
    await expect(
      withTempDomain(xml, (n) => {
        startDomain(n);
        expect(existsSync(nvramOf(n))).toBe(true);
        throw new Error('boom');
      }),
    ).rejects.toThrow('boom');
    expect(listTestDomains()).not.toContain(name);
    expect(existsSync(nvramOf(name))).toBe(false);
  });

  it('refuses to touch domains not named ovmfhook-t-*', () => {
    const xml = makeDomainXml({ name: 'someones-vm', machine: 'pc', firmware: 'bios', serialLog: '/dev/null' });
    expect(() => defineDomain(xml)).toThrow(/ovmfhook-t-/);
    expect(() => startDomain('someones-vm')).toThrow(/ovmfhook-t-/);
  });

  it('virsh throws with stderr on failure and returns it with allowFail', () => {
    expect(() => virsh(['domstate', 'ovmfhook-t-does-not-exist'])).toThrow(/failed to get domain/);
    const r = virsh(['domstate', 'ovmfhook-t-does-not-exist'], { allowFail: true });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/failed to get domain/);
  });

  const variants = (['pc', 'q35'] as const).flatMap((machine) =>
    (['bios', 'ovmf', 'ovmf-secure', 'efi-auto'] as const).map((firmware) => ({ machine, firmware })),
  );
  it.each(variants)('makeDomainXml($machine, $firmware) passes virt-xml-validate', (v) => {
    const xml = makeDomainXml({
      ...v,
      name: 'ovmfhook-t-validate',
      serialLog: '/tmp/x.log',
      nvramPath: '/var/lib/libvirt/qemu/nvram/x_VARS.fd',
      uuid: '0a1f4f0e-0b1d-4c2e-9e01-00000000ffff',
      disks: [{ path: '/tmp/a.qcow2' }, { device: 'cdrom' }, { path: "/tmp/b&'.img", bus: 'sata', format: 'raw' }],
    });
    expect(virtXmlValidate(xml)).toEqual({ ok: true, message: expect.stringContaining('validates') });
  });

  it('virtXmlValidate reports a schema violation', () => {
    const r = virtXmlValidate("<domain type='qemu'><name>x</name><bogus/></domain>");
    expect(r.ok).toBe(false);
    expect(r.message).toMatch(/fails to validate|Relax-NG validity error/);
  });

  const fixtures = readdirSync(DOMAIN_FIXTURES_DIR).filter((f) => f.endsWith('.xml'));
  // a fixture with spice graphics/channels cannot be defined where QEMU has no spice module
  const noSpice = libvirtAvailable() && !platform().spice;
  const needSpice = noSpice ? fixtures.filter((f) => usesSpice(domainFixture(f))) : [];
  if (needSpice.length) it.skip.each(needSpice)('fixture %s passes virt-xml-validate and defines under a test name — skipped: this QEMU has no spice module', () => {});
  it.each(fixtures.filter((f) => !needSpice.includes(f)))('fixture %s passes virt-xml-validate and defines under a test name', (file) => {
    const xml = domainFixture(file);
    expect(virtXmlValidate(xml).ok).toBe(true);
    const name = uniqueVmName('fixture');
    created.push(name);
    defineDomain(renameDomainXml(xml, name));
    expect(domainState(name)).toBe('shut off');
  });

  // Runs last in this file: cleanupDomains is what afterAll runs too, checked here so a leak fails a test.
  it('cleanupDomains leaves none of the ovmfhook-t- domains this file created', () => {
    expect(created.length).toBeGreaterThan(5);
    cleanupDomains();
    expect(trackedDomains()).toEqual([]);
    const left = listTestDomains();
    expect(created.filter((n) => left.includes(n))).toEqual([]);
    expect(created.filter((n) => existsSync(nvramOf(n)))).toEqual([]);
  });
});
