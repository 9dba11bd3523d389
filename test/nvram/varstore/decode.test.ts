import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { VarstoreError } from '../../../src/core/errors';
import {
  decodeLoadOption,
  decodeOrder,
  decodeSignatureLists,
  decodeVariable,
  devicePathsToText,
  diffVarstores,
  findVariable,
  parseVarstore,
  secureBootSummary,
  type ParsedVarstore,
} from '../../../src/core/varstore';
import { buildStore, END, GLOBAL, guidBytes, loadOption, node, u16, u32, u64, utf16z } from './store-builder';

const OVMF = '/usr/share/OVMF';
const haveOvmf = existsSync(OVMF);
if (!haveOvmf) console.warn(`SKIPPED: ${OVMF} is absent (install Debian's "ovmf" package) — Secure Boot template tests do not run`);

const booted = (): ParsedVarstore => parseVarstore(readFileSync(join(__dirname, 'fixtures/booted-4m.fd')));
const template = (file: string): ParsedVarstore => parseVarstore(readFileSync(join(OVMF, file)));
const SEC_DB = 'd719b2cb-3d3a-4596-a3bc-dad00e67656f';
const MS_OWNER = '77fa9abd-0359-4d32-bd60-28f4e78f784b';

describe('boot entries of a VM that reached the OVMF boot manager (fixtures/booted-4m.fd)', () => {
  const p = booted();
  const option = (name: string) => {
    const d = decodeVariable(findVariable(p.variables, GLOBAL, name)!);
    if (d?.kind !== 'load-option') throw new Error(`${name} is ${d?.kind}`);
    return d.option;
  };
  const NIC = 'PciRoot(0x0)/Pci(0x1,0x0)/Pci(0x0,0x0)/MAC(5254000F0001,0x1)';
  const V6 = 'IPv6(0:0:0:0:0:0:0:0,0x0,Static,0:0:0:0:0:0:0:0,0x40,0:0:0:0:0:0:0:0)';
  const V4 = 'IPv4(0.0.0.0,0x0,DHCP,0.0.0.0,0.0.0.0,0.0.0.0)';

  it('BootOrder names Boot0000..Boot0006', () => {
    expect(decodeVariable(findVariable(p.variables, GLOBAL, 'BootOrder')!)).toEqual({
      kind: 'order',
      options: ['Boot0000', 'Boot0001', 'Boot0002', 'Boot0003', 'Boot0004', 'Boot0005', 'Boot0006'],
    });
  });

  it.each([
    { name: 'Boot0000', description: 'UiApp', path: 'Fv(7cb8bdc9-f8eb-4f34-aaea-3ee4af6516a1)/FvFile(462caa21-7614-4503-836e-8ab6f4662331)', hidden: true, category: 'app' },
    { name: 'Boot0001', description: 'UEFI PXEv4 (MAC:5254000F0001)', path: NIC, hidden: false, category: 'boot' },
    { name: 'Boot0002', description: 'UEFI PXEv4 (MAC:5254000F0001) 2', path: `${NIC}/${V4}`, hidden: false, category: 'boot' },
    { name: 'Boot0003', description: 'UEFI PXEv6 (MAC:5254000F0001)', path: `${NIC}/${V6}`, hidden: false, category: 'boot' },
    { name: 'Boot0004', description: 'UEFI HTTPv4 (MAC:5254000F0001)', path: `${NIC}/${V4}/Uri()`, hidden: false, category: 'boot' },
    { name: 'Boot0005', description: 'UEFI HTTPv6 (MAC:5254000F0001)', path: `${NIC}/${V6}/Uri()`, hidden: false, category: 'boot' },
    { name: 'Boot0006', description: 'EFI Internal Shell', path: 'Fv(7cb8bdc9-f8eb-4f34-aaea-3ee4af6516a1)/FvFile(7c04a583-9e3e-4f1c-ad65-e05268d0b4d1)', hidden: false, category: 'boot' },
  ])('$name is "$description" at $path', ({ name, description, path, hidden, category }) => {
    expect(option(name)).toMatchObject({ description, devicePath: path, devicePaths: [path], active: true, hidden, category });
  });

  it('reports the 16-byte optional data of the auto-created network entries', () => {
    expect(option('Boot0001').optionalDataLength).toBe(16);
    expect(option('Boot0006').optionalDataLength).toBe(0);
  });

  it('decodes console device paths with multiple instances, Timeout and PlatformLang', () => {
    const get = (n: string) => decodeVariable(findVariable(p.variables, GLOBAL, n)!);
    expect(get('ConOut')).toEqual({ kind: 'device-path', paths: ['PciRoot(0x0)/Pci(0x1F,0x0)/Serial(0x0)/Uart(115200,8,N,1)/VenPcAnsi()'] });
    expect(get('ConIn')).toMatchObject({ kind: 'device-path', paths: [expect.stringMatching(/^PciRoot\(0x0\)\/Pci\(0x1F,0x0\)\/Acpi\(PNP0303,0x0\),.*,UsbClass\(0xFFFF,0xFFFF,0x3,0x1,0x1\)$/)] });
    expect(get('Timeout')).toEqual({ kind: 'u16', value: 0 });
    expect(get('PlatformLang')).toEqual({ kind: 'string', value: 'en' });
  });
});

describe('device path text', () => {
  const text = (...nodes: number[][]) => devicePathsToText(Uint8Array.from(nodes.flat()));
  const G = '11111111-2222-3333-4444-555555555555';
  it.each([
    { what: 'PciRoot/Pci', nodes: [node(2, 1, [...u32(0x0a0341d0), ...u32(0)]), node(1, 1, [2, 0x1f])], out: 'PciRoot(0x0)/Pci(0x1F,0x2)' },
    { what: 'PcieRoot', nodes: [node(2, 1, [...u32(0x0a0841d0), ...u32(1)])], out: 'PcieRoot(0x1)' },
    { what: 'non-PNP ACPI HID', nodes: [node(2, 1, [...u32(0x12345678), ...u32(0)])], out: 'Acpi(0x12345678,0x0)' },
    { what: 'AcpiAdr', nodes: [node(2, 3, u32(0x80010100))], out: 'AcpiAdr(0x80010100)' },
    { what: 'Sata', nodes: [node(3, 18, [...u16(0), ...u16(0xffff), ...u16(0)])], out: 'Sata(0x0,0xFFFF,0x0)' },
    { what: 'Scsi', nodes: [node(3, 2, [...u16(0), ...u16(1)])], out: 'Scsi(0x0,0x1)' },
    { what: 'Ata', nodes: [node(3, 1, [1, 0, ...u16(0)])], out: 'Ata(Secondary,Master,0x0)' },
    { what: 'USB', nodes: [node(3, 5, [3, 0])], out: 'USB(0x3,0x0)' },
    { what: 'NVMe', nodes: [node(3, 23, [...u32(1), 1, 2, 3, 4, 5, 6, 7, 8])], out: 'NVMe(0x1,08-07-06-05-04-03-02-01)' },
    { what: 'Uri', nodes: [node(3, 24, [...Buffer.from('http://h/x.iso')])], out: 'Uri(http://h/x.iso)' },
    { what: 'Vlan', nodes: [node(3, 20, u16(42))], out: 'Vlan(42)' },
    {
      what: 'HD GPT',
      nodes: [node(4, 1, [...u32(1), ...u64(0x800), ...u64(0x100000), ...guidBytes(G), 2, 2])],
      out: `HD(1,GPT,${G},0x800,0x100000)`,
    },
    {
      what: 'HD MBR',
      nodes: [node(4, 1, [...u32(2), ...u64(63), ...u64(1000), ...u32(0xdeadbeef), ...new Array(12).fill(0), 1, 1])],
      out: 'HD(2,MBR,0xDEADBEEF,0x3F,0x3E8)',
    },
    { what: 'CDROM', nodes: [node(4, 2, [...u32(0), ...u64(0x10), ...u64(0x20)])], out: 'CDROM(0x0,0x10,0x20)' },
    { what: 'file path', nodes: [node(4, 4, utf16z('\\EFI\\BOOT\\BOOTX64.EFI'))], out: '\\EFI\\BOOT\\BOOTX64.EFI' },
    { what: 'Fv/FvFile', nodes: [node(4, 7, guidBytes(G)), node(4, 6, guidBytes(G))], out: `Fv(${G})/FvFile(${G})` },
    { what: 'VenHw with data', nodes: [node(1, 4, [...guidBytes(G), 0xab])], out: `VenHw(${G},AB)` },
    { what: 'VenMsg', nodes: [node(3, 10, guidBytes(G))], out: `VenMsg(${G})` },
    { what: 'VenMedia', nodes: [node(4, 3, guidBytes(G))], out: `VenMedia(${G})` },
    { what: 'BBS', nodes: [node(5, 1, [...u16(2), ...u16(0), ...Buffer.from('disk'), 0])], out: 'BBS(HD,disk,0x0)' },
    { what: 'unknown node', nodes: [node(3, 0x7e, [1, 2])], out: 'Path(3,126,0102)' },
    { what: 'too-short known node falls back to Path', nodes: [node(1, 1, [])], out: 'Path(1,1,)' },
  ])('$what → $out', ({ nodes, out }) => {
    expect(text(...nodes, END)).toEqual([out]);
  });

  it('separates instances with "," and returns each End-terminated path', () => {
    const pci = node(1, 1, [0, 1]);
    expect(text(pci, node(0x7f, 1), pci, END, pci, END)).toEqual(['Pci(0x1,0x0),Pci(0x1,0x0)', 'Pci(0x1,0x0)']);
  });

  it.each([
    { what: 'a node length below 4', bytes: [1, 1, 2, 0] },
    { what: 'a node running past the list', bytes: [1, 1, 9, 0, 0, 0] },
    { what: 'a truncated node header', bytes: [1, 1] },
  ])('throws VarstoreError on $what', ({ bytes }) => {
    expect(() => devicePathsToText(Uint8Array.from(bytes))).toThrow(VarstoreError);
  });
});

describe('load options and orders', () => {
  const path = [...node(4, 4, utf16z('\\EFI\\debian\\shimx64.efi')), ...END];
  it('decodes attributes, description, path and optional data', () => {
    expect(decodeLoadOption(loadOption(0x1, 'debian', path, [1, 2, 3]))).toEqual({
      attributes: 1,
      active: true,
      hidden: false,
      category: 'boot',
      description: 'debian',
      devicePath: '\\EFI\\debian\\shimx64.efi',
      devicePaths: ['\\EFI\\debian\\shimx64.efi'],
      optionalDataLength: 3,
    });
  });
  it.each([
    { what: 'shorter than the fixed header', data: Uint8Array.of(1, 0, 0) },
    { what: 'an unterminated description', data: Uint8Array.from([...u32(1), ...u16(0), 0x41, 0]) },
    { what: 'a FilePathListLength past the end', data: Uint8Array.from([...u32(1), ...u16(200), ...utf16z('x'), ...END]) },
  ])('rejects $what', ({ data }) => {
    expect(() => decodeLoadOption(data)).toThrow(VarstoreError);
  });
  it('rejects an odd-length BootOrder and decodeVariable reports it as an error value', () => {
    expect(() => decodeOrder(Uint8Array.of(1, 0, 2))).toThrow(VarstoreError);
    const [v] = parseVarstore(buildStore({ records: [{ name: 'BootOrder', data: [1, 0, 2] }] })).variables;
    expect(decodeVariable(v)).toEqual({ kind: 'error', error: expect.stringMatching(/^BootOrder: length 3/) });
  });
  it('leaves variables of unknown meaning undecoded', () => {
    const [v] = parseVarstore(buildStore({ records: [{ name: 'Foo', guid: '11111111-2222-3333-4444-555555555555', data: [1] }] })).variables;
    expect(decodeVariable(v)).toBeUndefined();
  });
});

describe('signature lists', () => {
  const list = (type: string, entries: number[][], sigSize: number, listSizeDelta = 0) => [
    ...guidBytes(type),
    ...u32(28 + entries.length * sigSize + listSizeDelta),
    ...u32(0),
    ...u32(sigSize),
    ...entries.flat(),
  ];
  const SHA = 'c1c41626-504c-4092-aca9-41f936934328';
  const X509 = 'a5c059a1-94e4-4aa7-87b5-ab155c2bf072';
  it('counts SHA-256 entries and keeps owners and hashes', () => {
    const e = [...guidBytes(MS_OWNER), ...new Array(32).fill(0xaa)];
    const lists = decodeSignatureLists(Uint8Array.from(list(SHA, [e, e], 48)));
    expect(lists).toEqual([{ type: SHA, typeName: 'SHA256', entries: [0, 1].map(() => ({ owner: MS_OWNER, kind: 'sha256', hash: 'aa'.repeat(32) })) }]);
  });
  it('marks an X.509 entry that is not a certificate as unparsable instead of failing', () => {
    const [l] = decodeSignatureLists(Uint8Array.from(list(X509, [[...guidBytes(MS_OWNER), 0x30, 0x03, 1, 2, 3]], 21)));
    expect(l.entries[0]).toMatchObject({ owner: MS_OWNER, kind: 'x509-unparsable', size: 5 });
  });
  it.each([
    { what: 'a list size beyond the data', bytes: list(SHA, [], 48, 100) },
    { what: 'a SignatureSize below 16', bytes: list(SHA, [], 4) },
    { what: 'a body that is not a whole number of entries', bytes: list(SHA, [[...new Array(20).fill(0)]], 48, -28) },
    { what: 'a truncated list header', bytes: list(SHA, [], 48).slice(0, 20) },
  ])('rejects $what', ({ bytes }) => {
    expect(() => decodeSignatureLists(Uint8Array.from(bytes))).toThrow(VarstoreError);
  });
});

describe.skipIf(!haveOvmf)('Secure Boot state of the Debian templates', () => {
  it('OVMF_VARS_4M.ms.fd enrols Debian PK, Debian + Microsoft 2011 KEK, Microsoft 2011 db CAs and a placeholder dbx', () => {
    const p = template('OVMF_VARS_4M.ms.fd');
    const lists = (vendor: string, name: string) => {
      const d = decodeVariable(findVariable(p.variables, vendor, name)!);
      if (d?.kind !== 'signatures') throw new Error(`${name}: ${d?.kind}`);
      return d.lists.flatMap((l) => l.entries);
    };
    const cns = (entries: ReturnType<typeof lists>) => entries.map((e) => (e.kind === 'x509' ? e.certificate.subjectCN : e.kind));
    expect(cns(lists(GLOBAL, 'PK'))).toEqual(['Debian UEFI Secure Boot (PK/KEK key)']);
    expect(cns(lists(GLOBAL, 'KEK'))).toEqual(['Debian UEFI Secure Boot (PK/KEK key)', 'Microsoft Corporation KEK CA 2011']);
    expect(cns(lists(SEC_DB, 'db'))).toEqual(['Microsoft Windows Production PCA 2011', 'Microsoft Corporation UEFI CA 2011']);
    expect(lists(SEC_DB, 'dbx')).toEqual([{ owner: expect.any(String), kind: 'sha256', hash: expect.stringMatching(/^[0-9a-f]{64}$/) }]);
    const msKek = lists(GLOBAL, 'KEK')[1];
    expect(msKek).toMatchObject({
      owner: MS_OWNER,
      kind: 'x509',
      certificate: {
        issuerCN: 'Microsoft Corporation Third Party Marketplace Root',
        validFrom: '2011-06-24T20:41:29.000Z',
        validTo: '2026-06-24T20:51:29.000Z',
        sha256: expect.stringMatching(/^[0-9a-f]{64}$/),
      },
    });
  });

  it.each([
    {
      file: 'OVMF_VARS_4M.ms.fd',
      expected: {
        secureBoot: 'absent',
        secureBootEnable: 'on',
        effective: 'on',
        setupMode: 'user',
        pk: { present: true, x509: 1, sha256: 0, other: 0 },
        kek: { present: true, x509: 2, sha256: 0, other: 0 },
        db: { present: true, x509: 2, sha256: 0, other: 0 },
        dbx: { present: true, x509: 0, sha256: 1, other: 0 },
        microsoft: { kek2011: true, kek2023: false, uefiCa2011: true, uefiCa2023: false, windowsPca2011: true, windowsUefiCa2023: false, optionRomUefiCa2023: false },
        problems: [],
      },
    },
    {
      file: 'OVMF_VARS_4M.fd',
      expected: {
        secureBoot: 'absent',
        secureBootEnable: 'absent',
        effective: 'off',
        setupMode: 'setup',
        pk: { present: false, x509: 0, sha256: 0, other: 0 },
        microsoft: { kek2011: false, uefiCa2011: false, windowsPca2011: false },
      },
    },
  ])('secureBootSummary($file)', ({ file, expected }) => {
    expect(secureBootSummary(template(file).variables)).toMatchObject(expected);
  });

  it('turns effective Secure Boot off when SecureBootEnable is 0 even with a PK', () => {
    const vars = template('OVMF_VARS_4M.ms.fd').variables.map((v) => (v.name === 'SecureBootEnable' ? { ...v, data: Uint8Array.of(0) } : v));
    expect(secureBootSummary(vars)).toMatchObject({ secureBootEnable: 'off', effective: 'off', setupMode: 'user' });
  });
});

describe('secureBootSummary on damaged data', () => {
  it('reports an undecodable KEK as a problem instead of throwing', () => {
    const p = parseVarstore(buildStore({ records: [{ name: 'KEK', data: [1, 2, 3] }, { name: 'SecureBoot', data: [1, 1] }] }));
    const s = secureBootSummary(p.variables);
    expect(s.kek.present).toBe(true);
    expect(s.problems).toEqual([expect.stringMatching(/^KEK: /), expect.stringMatching(/^SecureBoot: /)]);
  });
  it('uses a stored SetupMode and SecureBoot when present', () => {
    const p = parseVarstore(buildStore({ records: [{ name: 'SetupMode', data: [1] }, { name: 'SecureBoot', data: [0] }] }));
    expect(secureBootSummary(p.variables)).toMatchObject({ setupMode: 'setup', secureBoot: 'off' });
  });
});

describe('diffVarstores', () => {
  it('a store against itself has no differences', () => {
    const p = booted();
    expect(diffVarstores(p, p)).toMatchObject({ added: [], removed: [], changed: [], unchanged: p.variables.length });
  });

  it.skipIf(!haveOvmf)('booted VM against its empty template: the boot manager added BootOrder and Boot0000-Boot0006', () => {
    const d = diffVarstores(template('OVMF_VARS_4M.fd'), booted());
    expect(d.removed).toEqual([]);
    expect(d.changed).toEqual([]);
    expect(d.added.filter((v) => v.vendorGuid === GLOBAL).map((v) => v.name)).toEqual(
      expect.arrayContaining(['BootOrder', 'Boot0000', 'Boot0001', 'Boot0002', 'Boot0003', 'Boot0004', 'Boot0005', 'Boot0006']),
    );
  });

  it.skipIf(!haveOvmf)('booted VM against the ms template: keys removed, Boot0001 changed', () => {
    const d = diffVarstores(template('OVMF_VARS_4M.ms.fd'), booted());
    expect(d.removed.map((v) => v.name)).toEqual(expect.arrayContaining(['PK', 'KEK', 'db', 'dbx']));
    expect(d.changed.find((c) => c.after.name === 'Boot0001')).toMatchObject({ dataChanged: true, attributesChanged: false });
  });

  it('keys by vendor GUID + name and flags attribute-only changes', () => {
    const other = '11111111-2222-3333-4444-555555555555';
    const a = parseVarstore(buildStore({ records: [{ name: 'X', data: [1] }, { name: 'X', guid: other, data: [1] }] }));
    const b = parseVarstore(buildStore({ records: [{ name: 'X', data: [1], attrs: 3 }, { name: 'Y', data: [1] }] }));
    const d = diffVarstores(a, b);
    expect(d.added.map((v) => v.name)).toEqual(['Y']);
    expect(d.removed.map((v) => [v.vendorGuid, v.name])).toEqual([[other, 'X']]);
    expect(d.changed).toMatchObject([{ dataChanged: false, attributesChanged: true, before: { attributes: { value: 7 } }, after: { attributes: { value: 3 } } }]);
  });
});
