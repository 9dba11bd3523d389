/**
 * The whole pipeline on realistic i440fx domains: golden outputs, idempotence, options, what must
 * never change, already-UEFI and non-x86 domains, the change report.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseDomain, type Domain } from '../../src/core/domain';
import { UsageError } from '../../src/core/errors';
import { RULES, rewriteDomain, rewriteXml, type RewriteInput } from '../../src/core/rewrite';
import { debianPicker, domainXml, OVMF } from './support';

const PIPELINE = path.join(__dirname, 'fixtures', 'pipeline');
const SHARED = path.join(__dirname, '..', 'fixtures', 'domains'); // libvirt-formatted, from make-fixtures.sh
const read = (file: string) => readFileSync(file, 'utf8');
const pick = { pickFirmware: debianPicker() };

const GOLDEN: [string, string, Omit<RewriteInput, 'pickFirmware'>][] = [
  ['win10-i440fx', 'secure-boot-tpm', { secureBoot: true, tpm: true }],
  ['debian-i440fx', 'defaults', {}],
  ['debian-i440fx', 'auto', { firmware: 'auto' }],
];

/** every domain fixture there is: ours and the shared libvirt-formatted ones */
const FIXTURES: [string, string][] = [
  ...readdirSync(PIPELINE).filter((f) => f.endsWith('.in.xml')).map((f): [string, string] => [f, read(path.join(PIPELINE, f))]),
  ...(existsSync(SHARED) ? readdirSync(SHARED).filter((f) => f.endsWith('.xml')).map((f): [string, string] => [`domains/${f}`, read(path.join(SHARED, f))]) : []),
];

const OPTION_SETS: Record<string, Omit<RewriteInput, 'pickFirmware'>> = {
  defaults: {},
  'q35 only': { uefi: false },
  'secure boot + tpm': { secureBoot: true, tpm: true },
  'auto + secure boot': { firmware: 'auto', secureBoot: true },
  'rootPorts 4': { rootPorts: 4 },
};

describe('rewrite pipeline: golden outputs', () => {
  it.each(GOLDEN)('%s (%s)', (name, label, o) => {
    const r = rewriteXml(read(path.join(PIPELINE, `${name}.in.xml`)), { ...pick, ...o });
    expect(r.xml).toBe(read(path.join(PIPELINE, `${name}.${label}.out.xml`)));
    expect(r.changed).toBe(true);
    expect(r.warnings).toEqual([]);
  });

  it('reports the win10 conversion rule by rule, in RULES order', () => {
    const r = rewriteXml(read(path.join(PIPELINE, 'win10-i440fx.in.xml')), { ...pick, secureBoot: true, tpm: true });
    const count = (rule: string) => r.changes.filter((c) => c.rule === rule).length;
    expect(RULES.map((rule) => [rule.id, count(rule.id)])).toEqual([
      ['remove-pci-ide-controllers', 2],
      ['ide-to-sata', 6], // 2 × (dev, bus, drive address)
      ['strip-pci-addresses', 8], // vda, usb, virtio-serial, nic, sound, video, hostdev, balloon
      ['pcie-root-ports', 15],
      ['nic-e1000e', 1],
      ['sound-ich9', 1],
      ['usb-controller', 2],
      ['video-cirrus', 1],
      ['machine-q35', 1],
      ['secure-boot', 1],
      ['uefi-firmware', 2],
      ['secure-boot-uefi', 0], // a BIOS domain: the firmware rules above give it Secure Boot
      ['tpm-crb', 1],
    ]);
    const order = r.changes.map((c) => RULES.findIndex((rule) => rule.id === c.rule));
    expect(order).toEqual([...order].sort((a, b) => a - b));
    expect(r.changes.find((c) => c.rule === 'machine-q35')).toEqual({ rule: 'machine-q35', path: '/domain/os/type/@machine', action: 'set', detail: "machine 'pc-i440fx-7.2' → 'q35'" });
  });
});

describe('rewrite pipeline: idempotence', () => {
  for (const [label, o] of Object.entries(OPTION_SETS)) {
    it.each(FIXTURES)(`${label}: %s rewrites to itself the second time`, (_f, xml) => {
      const once = rewriteXml(xml, { ...pick, ...o });
      const twice = rewriteXml(once.xml, { ...pick, ...o });
      expect(twice.changes).toEqual([]);
      expect(twice.changed).toBe(false);
      expect(twice.xml).toBe(once.xml);
    });
  }
});

/** Serialized elements that must survive any rewrite byte for byte (R25). */
function invariants(d: Domain) {
  const one = (p: string) => d.root.find(p)?.toString();
  return {
    name: d.name,
    uuid: one('uuid'),
    memory: one('memory'),
    currentMemory: one('currentMemory'),
    vcpu: one('vcpu'),
    cpu: one('cpu'),
    clock: one('clock'),
    sysinfo: one('sysinfo'),
    smbios: one('os/smbios'),
    metadata: one('metadata'),
    hyperv: one('features/hyperv'),
    macs: d.devices('interface').map((i) => i.find('mac')?.toString()),
    diskSources: d.devices('disk').map((x) => x.find('source')?.toString()),
    diskDrivers: d.devices('disk').map((x) => x.find('driver')?.toString()),
    diskSerials: d.devices('disk').map((x) => x.find('serial')?.toString()),
    hostdevSources: d.devices('hostdev').map((h) => h.find('source')?.toString()),
    graphics: d.devices('graphics').map((g) => g.toString()),
  };
}

describe('rewrite pipeline: never changes (R25)', () => {
  for (const [label, o] of Object.entries(OPTION_SETS)) {
    it.each(FIXTURES)(`${label}: %s keeps name, UUID, MACs, disk sources, CPU, memory, clock, sysinfo, metadata`, (_f, xml) => {
      const out = rewriteXml(xml, { ...pick, ...o }).xml;
      expect(invariants(parseDomain(out))).toEqual(invariants(parseDomain(xml)));
    });
  }

  it("keeps a hostdev's host address and the VNC/SPICE password", () => {
    const out = rewriteXml(read(path.join(PIPELINE, 'win10-i440fx.in.xml')), pick).xml;
    expect(out).toContain("      <source>\n        <address domain='0x0000' bus='0x06' slot='0x00' function='0x0'/>\n      </source>\n    </hostdev>");
    expect(out).toContain("passwd='s3cret'");
  });
});

describe('rewrite pipeline: options', () => {
  const WIN10 = read(path.join(PIPELINE, 'win10-i440fx.in.xml'));

  it('uefi off: Q35 only, no firmware, no SMM', () => {
    const r = rewriteXml(WIN10, { ...pick, uefi: false });
    expect(r.xml).toContain("machine='q35'");
    expect(r.xml).not.toMatch(/<loader|<nvram|<smm|firmware=/);
  });

  it('Secure Boot implies UEFI, even with uefi off', () => {
    const r = rewriteXml(WIN10, { ...pick, uefi: false, secureBoot: true });
    expect(r.xml).toContain(`<loader readonly='yes' type='pflash' secure='yes'>${OVMF.msCode}</loader>`);
    expect(r.xml).toContain("<smm state='on'/>");
  });

  it('auto form with Secure Boot: firmware=efi, both features yes, SMM on, no loader', () => {
    const r = rewriteXml(WIN10, { ...pick, firmware: 'auto', secureBoot: true });
    expect(r.xml).toContain("<os firmware='efi'>\n    <type arch='x86_64' machine='q35'>hvm</type>\n    <firmware>\n      <feature enabled='yes' name='secure-boot'/>\n      <feature enabled='yes' name='enrolled-keys'/>\n    </firmware>\n");
    expect(r.xml).toContain("<smm state='on'/>");
    expect(r.xml).not.toMatch(/<loader|<nvram/);
  });

  it.each([0, 1, 14, 30])('rootPorts %i', (rootPorts) => {
    const r = rewriteXml(WIN10, { ...pick, rootPorts });
    expect(r.xml.match(/model='pcie-root-port'/g)?.length ?? 0).toBe(rootPorts);
    expect(r.xml.match(/model='pcie-root'/g)).toHaveLength(1);
  });

  it('tpm off by default, tpm-crb when asked', () => {
    expect(rewriteXml(WIN10, pick).xml).not.toContain('<tpm');
    expect(rewriteXml(WIN10, { ...pick, tpm: true }).xml).toContain("<tpm model='tpm-crb'>\n      <backend type='emulator' version='2.0'/>\n    </tpm>\n");
  });

  it('nvramDir', () => {
    expect(rewriteXml(WIN10, { ...pick, nvramDir: '/srv/nvram' }).xml).toContain('>/srv/nvram/win10_VARS.fd</nvram>');
  });

  it.each([
    [{ rootPorts: -1 }, 'root ports must be an integer from 0 to 64, got -1'],
    [{ rootPorts: 65 }, 'root ports must be an integer from 0 to 64, got 65'],
    [{ rootPorts: 1.5 }, 'root ports must be an integer from 0 to 64, got 1.5'],
    [{ nvramDir: 'nvram' }, "nvram directory must be an absolute path, got 'nvram'"],
    [{ firmware: 'efi' as 'auto' }, "firmware form must be 'manual' or 'auto', got 'efi'"],
  ])('refuses bad options %o', (o, message) => {
    const run = () => rewriteXml(WIN10, { ...pick, ...o });
    expect(run).toThrow(UsageError);
    expect(run).toThrow(message);
  });

  it('does not modify the Domain it is given', () => {
    const d = parseDomain(WIN10);
    const r = rewriteDomain(d, { ...pick, secureBoot: true, tpm: true });
    expect(r.changed).toBe(true);
    expect(d.toXml()).toBe(WIN10);
    expect(d.machine).toBe('pc-i440fx-7.2');
  });
});

describe('rewrite pipeline: domains it leaves alone', () => {
  const UEFI_Q35 = domainXml({
    machine: 'pc-q35-7.2',
    os: `    <loader readonly='yes' type='pflash'>${OVMF.code}</loader>\n    <nvram template='${OVMF.vars}'>/var/lib/libvirt/qemu/nvram/vm1_VARS.fd</nvram>\n    <boot dev='hd'/>\n`,
    devices: "    <controller type='pci' index='0' model='pcie-root'/>\n    <controller type='pci' index='1' model='pcie-root-port'>\n      <model name='pcie-root-port'/>\n      <target chassis='1' port='0x10'/>\n      <address type='pci' domain='0x0000' bus='0x00' slot='0x02' function='0x0' multifunction='on'/>\n    </controller>\n",
  });

  it('already-UEFI q35 domain: untouched without Secure Boot; with it the firmware is switched in place, the NVRAM path kept (R21)', () => {
    const plain = rewriteXml(UEFI_Q35, pick);
    expect(plain).toEqual({ xml: UEFI_Q35, changes: [], changed: false, warnings: [] });
    const sb = rewriteXml(UEFI_Q35, { ...pick, secureBoot: true });
    expect(sb.xml).toBe(
      UEFI_Q35.replace(`<loader readonly='yes' type='pflash'>${OVMF.code}`, `<loader readonly='yes' type='pflash' secure='yes'>${OVMF.msCode}`)
        .replace(`<nvram template='${OVMF.vars}'>`, `<nvram template='${OVMF.msVars}'>`)
        .replace('    <apic/>\n', "    <apic/>\n    <smm state='on'/>\n"),
    );
    expect(sb.changes.map((c) => c.rule)).toEqual(['secure-boot-uefi', 'secure-boot-uefi', 'secure-boot-uefi', 'secure-boot-uefi']);
    expect(sb.warnings).toEqual([]);
    expect(sb.secureBootSwitched).toBe(true);
    // and it is done: a second run changes nothing
    expect(rewriteXml(sb.xml, { ...pick, secureBoot: true })).toEqual({ xml: sb.xml, changes: [], changed: false, warnings: [] });
  });

  it('already-UEFI i440fx domain: chipset converted, then the firmware switched in place, the NVRAM path kept', () => {
    const input = UEFI_Q35.replace('pc-q35-7.2', 'pc-i440fx-7.2').replace(/    <controller type='pci'[\s\S]*<\/controller>\n/, "    <controller type='pci' index='0' model='pci-root'/>\n");
    const r = rewriteXml(input, { ...pick, secureBoot: true });
    const os = (x: string) => /<os>[\s\S]*<\/os>/.exec(x)![0];
    expect(os(r.xml)).toBe(
      os(input)
        .replace('pc-i440fx-7.2', 'q35')
        .replace(`<loader readonly='yes' type='pflash'>${OVMF.code}`, `<loader readonly='yes' type='pflash' secure='yes'>${OVMF.msCode}`)
        .replace(`<nvram template='${OVMF.vars}'>`, `<nvram template='${OVMF.msVars}'>`),
    );
    expect(r.changes.map((c) => c.rule)).not.toContain('uefi-firmware');
    expect(r.changes.map((c) => c.rule)).toContain('secure-boot-uefi');
    expect(r.warnings).toEqual([]);
  });

  it.each([
    ['aarch64', domainXml({ arch: 'aarch64', machine: 'virt' }), "vm1: architecture 'aarch64' is not x86_64; left untouched"],
    ['s390x', domainXml({ arch: 's390x', machine: 's390-ccw-virtio' }), "vm1: architecture 's390x' is not x86_64; left untouched"],
    ['ppc64', domainXml({ arch: 'ppc64', machine: 'pseries' }), "vm1: architecture 'ppc64' is not x86_64; left untouched"],
    ['i686', domainXml({ arch: 'i686', machine: 'pc' }), "vm1: architecture 'i686' is not x86_64; left untouched"],
    ['xen', domainXml({ type: 'xen', machine: 'xenfv' }), "vm1: domain type 'xen' is not qemu or kvm; left untouched"],
    ['lxc', "<domain type='lxc'>\n  <name>vm1</name>\n  <os>\n    <type>exe</type>\n    <init>/sbin/init</init>\n  </os>\n</domain>\n", "vm1: domain type 'lxc' is not qemu or kvm; left untouched"],
    ['qemu exe', "<domain type='qemu'>\n  <name>vm1</name>\n  <os>\n    <type>exe</type>\n  </os>\n</domain>\n", "vm1: os type 'exe' is not hvm; left untouched"],
  ])('%s: untouched, with the reason', (_label, xml, skipped) => {
    expect(rewriteXml(xml, { ...pick, secureBoot: true, tpm: true })).toEqual({ xml, changes: [], changed: false, warnings: [], skipped });
  });
});

describe('rewrite engine layout', () => {
  it('RULES lists every rule file of src/core/rewrite, each once', async () => {
    const dir = path.join(__dirname, '..', '..', 'src', 'core', 'rewrite');
    const support = new Set(['index.ts', 'types.ts', 'change.ts', 'guards.ts']);
    const ruleFiles = readdirSync(dir).filter((f) => f.endsWith('.ts') && !support.has(f));
    const ids = ruleFiles.map((f) => f.replace(/\.ts$/, '')).sort();
    expect(RULES.map((r) => r.id).sort()).toEqual(ids);
    for (const f of ruleFiles) {
      const mod = (await import(path.join(dir, f))) as Record<string, unknown>;
      const exported = Object.values(mod).filter((v) => RULES.includes(v as never));
      expect(exported, f).toHaveLength(1);
    }
  });
});
