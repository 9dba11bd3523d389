import { describe, expect, it } from 'vitest';
import type { FirmwareRequest } from '../../src/core/firmware';
import { secureBootUefi } from '../../src/core/rewrite/secure-boot-uefi';
import { OVMF, debianPicker, domainXml, runRule } from './support';

const NVRAM = '/var/lib/libvirt/qemu/nvram/vm1_VARS.fd';
const BOOT = "    <boot dev='hd'/>\n";
const q35 = (os: string, features?: string | null, firmware = '') => {
  const doc = domainXml({ machine: 'pc-q35-7.2', os, features });
  return firmware ? doc.replace('<os>', `<os firmware='${firmware}'>`) : doc;
};
const SMM = "    <acpi/>\n    <apic/>\n    <smm state='on'/>\n";

describe('secure-boot-uefi (R21): an already-UEFI domain switched to Secure Boot in place', () => {
  it('manual form: the Secure Boot build with enrolled keys, secure loader, its template, SMM on; the NVRAM path kept', () => {
    const requests: FirmwareRequest[] = [];
    const input = q35(`    <loader readonly='yes' type='pflash'>${OVMF.code}</loader>\n    <nvram template='${OVMF.vars}'>${NVRAM}</nvram>\n${BOOT}`);
    const r = runRule(secureBootUefi, input, { secureBoot: true, pickFirmware: debianPicker(requests) });
    expect(r.applies).toBe(true);
    expect(r.xml).toBe(q35(`    <loader readonly='yes' type='pflash' secure='yes'>${OVMF.msCode}</loader>\n    <nvram template='${OVMF.msVars}'>${NVRAM}</nvram>\n${BOOT}`, SMM));
    expect(requests).toEqual([{ arch: 'x86_64', machine: 'pc-q35-7.2', secureBoot: true, enrolledKeys: true }]);
    expect(r.changes).toEqual([
      { rule: 'secure-boot-uefi', path: '/domain/os/loader', action: 'set', detail: `loader '${OVMF.code}' → '${OVMF.msCode}'` },
      { rule: 'secure-boot-uefi', path: '/domain/os/loader/@secure', action: 'set', detail: "secure (none) → 'yes'" },
      { rule: 'secure-boot-uefi', path: '/domain/os/nvram/@template', action: 'set', detail: `template '${OVMF.vars}' → '${OVMF.msVars}'` },
      { rule: 'secure-boot-uefi', path: '/domain/features/smm', action: 'add', detail: "<smm state='on'/>" },
    ]);
    // done: it has Secure Boot now
    expect(runRule(secureBootUefi, r.xml, { secureBoot: true })).toMatchObject({ applies: false, warning: undefined });
  });

  it('manual form without <nvram>: one with the template and no path (libvirt names it as before)', () => {
    const r = runRule(secureBootUefi, q35(`    <loader readonly='yes' type='pflash'>${OVMF.code}</loader>\n${BOOT}`), { secureBoot: true });
    expect(r.xml).toContain(`    <loader readonly='yes' type='pflash' secure='yes'>${OVMF.msCode}</loader>\n    <nvram template='${OVMF.msVars}'/>\n`);
  });

  it("auto form (virt-install's <os firmware='efi'>): the secure-boot and enrolled-keys features on, SMM on", () => {
    const r = runRule(secureBootUefi, q35(BOOT, undefined, 'efi'), { secureBoot: true });
    expect(r.xml).toBe(
      q35(`    <firmware>\n      <feature enabled='yes' name='secure-boot'/>\n      <feature enabled='yes' name='enrolled-keys'/>\n    </firmware>\n${BOOT}`, SMM, 'efi'),
    );
  });

  it('auto form as libvirt ≥ 9.2 records it: features turned on, the pinned loader and the template dropped so libvirt selects again, the NVRAM path kept', () => {
    const input = q35(
      "    <firmware>\n      <feature enabled='no' name='enrolled-keys'/>\n      <feature enabled='no' name='secure-boot'/>\n    </firmware>\n" +
        `    <loader readonly='yes' type='pflash' format='raw'>${OVMF.code}</loader>\n    <nvram template='${OVMF.vars}' templateFormat='raw' format='raw'>${NVRAM}</nvram>\n${BOOT}`,
      "    <acpi/>\n    <apic/>\n    <smm state='off'/>\n",
      'efi',
    );
    const r = runRule(secureBootUefi, input, { secureBoot: true });
    expect(r.xml).toBe(
      q35(
        "    <firmware>\n      <feature enabled='yes' name='enrolled-keys'/>\n      <feature enabled='yes' name='secure-boot'/>\n    </firmware>\n" +
          `    <nvram format='raw'>${NVRAM}</nvram>\n${BOOT}`,
        SMM,
        'efi',
      ),
    );
    expect(r.changes.map((c) => `${c.action} ${c.path}`)).toEqual([
      'set /domain/os/firmware/feature[2]/@enabled',
      'set /domain/os/firmware/feature[1]/@enabled',
      'remove /domain/os/loader',
      'remove /domain/os/nvram/@template',
      'remove /domain/os/nvram/@templateFormat',
      'set /domain/features/smm/@state',
    ]);
  });

  it.each([
    ['a combined read-write image', `    <loader type='pflash'>/usr/share/OVMF/OVMF.fd</loader>\n${BOOT}`, 'its firmware is a combined read-write image (no separate NVRAM to hold Secure Boot keys)'],
    ['stateless firmware', `    <loader readonly='yes' type='pflash' stateless='yes'>${OVMF.code}</loader>\n${BOOT}`, 'its firmware is stateless (no NVRAM to hold Secure Boot keys)'],
    ['a network NVRAM', `    <loader readonly='yes' type='pflash'>${OVMF.code}</loader>\n    <nvram type='network'>\n      <source protocol='iscsi' name='x/0'/>\n    </nvram>\n${BOOT}`, "its NVRAM is of type 'network', not a local file"],
  ])('not switched, with a warning saying why and how: %s', (_label, os, why) => {
    const input = q35(os);
    const r = runRule(secureBootUefi, input, { secureBoot: true });
    expect(r).toMatchObject({ applies: false, xml: input });
    expect(r.warning).toContain(`vm1: already boots UEFI without Secure Boot, and ${why}; its firmware is left as it is.`);
    expect(r.warning).toMatch(/virsh start --reset-nvram vm1$/);
  });

  it.each([
    ['no --secure-boot', q35(`    <loader readonly='yes' type='pflash'>${OVMF.code}</loader>\n${BOOT}`), false],
    ['a BIOS domain (uefi-firmware gives it Secure Boot)', q35(BOOT), true],
    ['a secure loader already', q35(`    <loader readonly='yes' type='pflash' secure='yes'>${OVMF.msCode}</loader>\n${BOOT}`, SMM), true],
    ['the secure-boot feature already', q35("    <firmware>\n      <feature enabled='yes' name='secure-boot'/>\n    </firmware>\n" + BOOT, SMM, 'efi'), true],
  ])('does nothing for %s', (_label, input, secureBoot) => {
    expect(runRule(secureBootUefi, input, { secureBoot })).toMatchObject({ applies: false, xml: input, warning: undefined });
  });
});
