import { describe, expect, it } from 'vitest';
import { FirmwareNotFoundError, XmlInputError } from '../../src/core/errors';
import type { FirmwareRequest } from '../../src/core/firmware';
import { uefiFirmware } from '../../src/core/rewrite/uefi-firmware';
import { OVMF, debianPicker, domainXml, runRule } from './support';

/** a q35 domain; `firmware` becomes `<os firmware=…>` */
const q35 = (p: Parameters<typeof domainXml>[0] = {}, firmware = '') => {
  const doc = domainXml({ machine: 'q35', ...p });
  return firmware ? doc.replace('<os>', `<os firmware='${firmware}'>`) : doc;
};

const LOADER = `    <loader readonly='yes' type='pflash'>${OVMF.code}</loader>\n    <nvram template='${OVMF.vars}'>/var/lib/libvirt/qemu/nvram/vm1_VARS.fd</nvram>\n`;
const SECURE_LOADER = `    <loader readonly='yes' type='pflash' secure='yes'>${OVMF.msCode}</loader>\n    <nvram template='${OVMF.msVars}'>/var/lib/libvirt/qemu/nvram/vm1_VARS.fd</nvram>\n`;
const BOOT = "    <boot dev='hd'/>\n";
const features = (sb: 'yes' | 'no') => `    <firmware>\n      <feature enabled='${sb}' name='secure-boot'/>\n      <feature enabled='${sb}' name='enrolled-keys'/>\n    </firmware>\n`;

describe('uefi-firmware (R16–R19), manual form', () => {
  it('writes loader and nvram right after <type>, asking the catalog for a non-Secure-Boot build', () => {
    const requests: FirmwareRequest[] = [];
    const r = runRule(uefiFirmware, q35(), { pickFirmware: debianPicker(requests) });
    expect(r.xml).toBe(q35({ os: LOADER + BOOT }));
    expect(requests).toEqual([{ arch: 'x86_64', machine: 'q35', secureBoot: false, enrolledKeys: false }]);
    expect(r.changes).toEqual([
      { rule: 'uefi-firmware', path: '/domain/os/loader', action: 'add', detail: `<loader readonly='yes' type='pflash'>${OVMF.code}</loader>` },
      { rule: 'uefi-firmware', path: '/domain/os/nvram', action: 'add', detail: `<nvram template='${OVMF.vars}'>/var/lib/libvirt/qemu/nvram/vm1_VARS.fd</nvram>` },
    ]);
  });

  it("Secure Boot: the SMM build with secure='yes', SMM passed to the catalog", () => {
    const requests: FirmwareRequest[] = [];
    const input = q35({ features: "    <smm state='on'/>\n" });
    const r = runRule(uefiFirmware, input, { secureBoot: true, pickFirmware: debianPicker(requests) });
    expect(r.xml).toBe(q35({ os: SECURE_LOADER + BOOT, features: "    <smm state='on'/>\n" }));
    expect(requests).toEqual([{ arch: 'x86_64', machine: 'q35', secureBoot: true, enrolledKeys: true, smm: 'on' }]);
  });

  it('turns SMM on when the pick requires it (R19)', () => {
    const r = runRule(uefiFirmware, q35({ machine: 'pc-q35-7.2' }), { secureBoot: true });
    expect(r.xml).toBe(q35({ machine: 'pc-q35-7.2', os: SECURE_LOADER + BOOT, features: "    <acpi/>\n    <apic/>\n    <smm state='on'/>\n" }));
    expect(r.changes.at(-1)).toEqual({ rule: 'uefi-firmware', path: '/domain/features/smm', action: 'add', detail: "<smm state='on'/>" });
  });

  it("passes <smm state='off'> on to the catalog", () => {
    const requests: FirmwareRequest[] = [];
    runRule(uefiFirmware, q35({ features: "    <smm state='off'/>\n" }), { pickFirmware: debianPicker(requests) });
    expect(requests[0]!.smm).toBe('off');
  });

  it('puts the NVRAM in nvramDir, named after the domain (escaped)', () => {
    const r = runRule(uefiFirmware, q35({ name: 'a&amp;b' }), { nvramDir: '/srv/nvram/' });
    expect(r.xml).toContain("<nvram template='/usr/share/OVMF/OVMF_VARS_4M.fd'>/srv/nvram/a&amp;b_VARS.fd</nvram>");
  });

  it("removes BIOS leftovers: ROM loader, firmware='bios' and its features; keeps <bios>", () => {
    const input = q35({ os: `    <firmware>\n      <feature enabled='no' name='secure-boot'/>\n    </firmware>\n    <loader type='rom'>/usr/share/seabios/bios-256k.bin</loader>\n${BOOT}    <bios useserial='yes' rebootTimeout='0'/>\n` }, 'bios');
    const r = runRule(uefiFirmware, input);
    expect(r.xml).toBe(q35({ os: `${LOADER}${BOOT}    <bios useserial='yes' rebootTimeout='0'/>\n` }));
    expect(r.changes.map((c) => `${c.action} ${c.path}`)).toEqual(['remove /domain/os/loader', 'remove /domain/os/firmware', 'remove /domain/os/@firmware', 'add /domain/os/loader', 'add /domain/os/nvram']);
  });

  it('lets a catalog miss through (FirmwareNotFoundError)', () => {
    const pickFirmware = () => {
      throw new FirmwareNotFoundError('no uefi firmware');
    };
    expect(() => runRule(uefiFirmware, q35(), { pickFirmware })).toThrow(FirmwareNotFoundError);
  });

  it("refuses a domain name with '/'", () => {
    expect(() => runRule(uefiFirmware, q35({ name: 'a/b' }))).toThrow(XmlInputError);
  });
});

describe('uefi-firmware (R16/R17), auto form', () => {
  it.each([
    [false, 'no'],
    [true, 'yes'],
  ] as const)("secureBoot %s: <os firmware='efi'> + features %s; the catalog is not asked", (secureBoot, yn) => {
    const requests: FirmwareRequest[] = [];
    const r = runRule(uefiFirmware, q35(), { firmware: 'auto', secureBoot, pickFirmware: debianPicker(requests) });
    expect(r.xml).toBe(q35({ os: features(yn) + BOOT }, 'efi'));
    expect(requests).toEqual([]);
    expect(r.changes).toEqual([
      { rule: 'uefi-firmware', path: '/domain/os/@firmware', action: 'set', detail: "firmware (none) → 'efi'" },
      { rule: 'uefi-firmware', path: '/domain/os/firmware', action: 'add', detail: `<firmware><feature enabled='${yn}' name='secure-boot'/><feature enabled='${yn}' name='enrolled-keys'/></firmware>` },
    ]);
  });

  it("replaces firmware='bios' and its features", () => {
    const input = q35({ os: `    <firmware>\n      <feature enabled='no' name='secure-boot'/>\n    </firmware>\n${BOOT}` }, 'bios');
    expect(runRule(uefiFirmware, input, { firmware: 'auto' }).xml).toBe(q35({ os: features('no') + BOOT }, 'efi'));
  });
});

describe('uefi-firmware: when it does nothing', () => {
  it.each([
    ['already UEFI (pflash loader)', q35({ os: LOADER + BOOT }), {}],
    ['already UEFI (firmware=efi)', q35({}, 'efi'), { secureBoot: true }],
    ['uefi off', q35(), { uefi: false }],
    ['still i440fx (the chipset rules come first)', domainXml({}), {}],
    ['aarch64', domainXml({ arch: 'aarch64', machine: 'virt' }), {}],
  ])('%s', (_label, input, o) => {
    expect(runRule(uefiFirmware, input, o)).toMatchObject({ applies: false, xml: input });
  });

  it('Secure Boot implies UEFI even with uefi off', () => {
    expect(runRule(uefiFirmware, q35(), { uefi: false, secureBoot: true }).applies).toBe(true);
  });
});
