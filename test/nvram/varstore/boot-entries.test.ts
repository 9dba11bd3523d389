/**
 * Boot entries (src/core/varstore/boot-entries.ts): reading BootOrder/BootNext/Boot#### from a
 * store OVMF wrote, EFI_LOAD_OPTION and device path encoding against the test's own encoder
 * (store-builder.ts) and our decoder, the edits (add, next, order, remove) with their edge cases and
 * refusals, the choice of a free number, and the GPT/MBR reading behind `--disk`.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseDomain } from '../../../src/core/domain';
import { UsageError, VarstoreError } from '../../../src/core/errors';
import {
  bootFileDevicePath,
  decodeLoadOption,
  devicePathsToText,
  domainDisks,
  editBootEntries,
  encodeLoadOption,
  espOf,
  freeBootNumber,
  parseBootNumber,
  parseBootOrder,
  parseVarstore,
  readBootConfig,
  readPartitionTable,
  selectDisk,
  type BootEdit,
  type Variable,
} from '../../../src/core/varstore';
import { ESP_TYPE, gptHead, haveCrc32, LINUX_TYPE, mbrHead } from '../../keys/boot-disks';
import { buildStore, END, GLOBAL, guidBytes, loadOption, node, u16, u32, u64, utf16z, type RecordSpec } from './store-builder';

const BOOTED = readFileSync(join(__dirname, 'fixtures/booted-4m.fd'));
const OTHER_VENDOR = '0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0';
const PART_GUID = '11223344-5566-7788-99aa-bbccddeeff00';

const varsOf = (image: Uint8Array): Variable[] => parseVarstore(image).variables;
const bootVar = (image: Uint8Array, name: string) => varsOf(image).find((v) => v.vendorGuid === GLOBAL && v.name === name);
const order = (...ns: number[]) => ns.flatMap((n) => u16(n));
const fileOption = (description: string, path: string) => [...loadOption(1, description, [...node(4, 4, utf16z(path)), ...END])];
const entry = (n: number, description = `entry ${n}`, path = `\\EFI\\e${n}.efi`): RecordSpec => ({
  name: `Boot${n.toString(16).toUpperCase().padStart(4, '0')}`,
  data: fileOption(description, path),
});
const store = (...records: RecordSpec[]) => buildStore({ records });
/** The edit's refusal: its class and one-line message. */
const refusal = (image: Uint8Array, edit: BootEdit): Error => {
  try {
    editBootEntries(image, edit);
  } catch (e) {
    expect((e as Error).message).not.toContain('\n');
    return e as Error;
  }
  throw new Error('the edit was not refused');
};

describe('readBootConfig', () => {
  it('reads what OVMF wrote in a booted store: BootOrder, every Boot#### with attributes, description, path and optional data', () => {
    const c = readBootConfig(varsOf(BOOTED));
    expect(c.order).toEqual([0, 1, 2, 3, 4, 5, 6]);
    expect([c.next, c.current, c.missing, c.problems]).toEqual([null, null, [], []]);
    expect(c.entries.map((e) => [e.name, e.position, e.description])).toEqual([
      ['Boot0000', 0, 'UiApp'],
      ['Boot0001', 1, 'UEFI PXEv4 (MAC:5254000F0001)'],
      ['Boot0002', 2, 'UEFI PXEv4 (MAC:5254000F0001) 2'],
      ['Boot0003', 3, 'UEFI PXEv6 (MAC:5254000F0001)'],
      ['Boot0004', 4, 'UEFI HTTPv4 (MAC:5254000F0001)'],
      ['Boot0005', 5, 'UEFI HTTPv6 (MAC:5254000F0001)'],
      ['Boot0006', 6, 'EFI Internal Shell'],
    ]);
    expect(c.entries[0]).toMatchObject({ attributes: 0x109, active: true, hidden: true, category: 'app', optionalData: '' });
    expect(c.entries[0].devicePath).toBe('Fv(7cb8bdc9-f8eb-4f34-aaea-3ee4af6516a1)/FvFile(462caa21-7614-4503-836e-8ab6f4662331)');
    expect(c.entries[1]).toMatchObject({ active: true, hidden: false, category: 'boot', devicePath: 'PciRoot(0x0)/Pci(0x1,0x0)/Pci(0x0,0x0)/MAC(5254000F0001,0x1)' });
    expect(c.entries[1].optionalData).toMatch(/^[0-9a-f]{32}$/);
  });

  it('lists entries BootOrder leaves out after the listed ones, names dangling numbers, and reports undecodable data without throwing', () => {
    const image = store(
      { name: 'BootOrder', data: order(2, 9) },
      { name: 'BootNext', data: u16(0x0c) },
      { name: 'BootCurrent', data: u16(2) },
      entry(0),
      { name: 'Boot0001', data: [1, 2, 3] },
      entry(2),
      { name: 'Boot0002', guid: OTHER_VENDOR, data: [9] }, // another vendor's Boot0002 is no boot entry
    );
    const c = readBootConfig(varsOf(image));
    expect(c.entries.map((e) => [e.name, e.position])).toEqual([
      ['Boot0002', 0],
      ['Boot0000', null],
      ['Boot0001', null],
    ]);
    expect([c.next, c.current, c.missing]).toEqual([0x0c, 2, [9, 0x0c]]);
    expect(c.entries[2].error).toMatch(/^Boot0001: 3 bytes is too short/);
    expect(c.problems).toEqual([c.entries[2].error]);
    expect(readBootConfig(varsOf(store({ name: 'BootOrder', data: [1, 0, 2] }))).problems).toEqual(['BootOrder: length 3 is not a multiple of 2']);
  });
});

describe('encoding', () => {
  it('an EFI_LOAD_OPTION for a file is byte for byte what the test encoder builds, and decodes back', () => {
    const bytes = encodeLoadOption({ description: 'test', devicePath: bootFileDevicePath('\\EFI\\test\\shell.efi') });
    expect(Buffer.from(bytes).equals(Buffer.from(fileOption('test', '\\EFI\\test\\shell.efi')))).toBe(true);
    expect(decodeLoadOption(bytes)).toMatchObject({ attributes: 1, active: true, category: 'boot', description: 'test', devicePath: '\\EFI\\test\\shell.efi', optionalDataLength: 0 });
    const withData = encodeLoadOption({ description: 'ü', devicePath: bootFileDevicePath('/EFI/x.efi'), attributes: 9, optionalData: Uint8Array.of(1, 2, 3) });
    expect(decodeLoadOption(withData)).toMatchObject({ attributes: 9, hidden: true, description: 'ü', devicePath: '\\EFI\\x.efi', optionalDataLength: 3 });
  });

  it('HD() nodes: GPT (partition GUID) and MBR (disk signature), as the firmware renders them', () => {
    const gpt = bootFileDevicePath('\\EFI\\BOOT\\BOOTX64.EFI', { number: 1, start: 2048n, size: 204800n, signature: { type: 'gpt', guid: PART_GUID } });
    expect(gpt.length).toBe(42 + 4 + 2 * 22 + 4); // HD, File (21 characters + NUL), End
    expect(devicePathsToText(gpt)).toEqual([`HD(1,GPT,${PART_GUID},0x800,0x32000)/\\EFI\\BOOT\\BOOTX64.EFI`]);
    // the test encoder's node, field by field (UEFI §10.3.5.1)
    expect([...gpt.subarray(0, 42)]).toEqual(node(4, 1, [...u32(1), ...u64(2048), ...u64(204800), ...guidBytes(PART_GUID), 2, 2]));
    const mbr = bootFileDevicePath('\\EFI\\a.efi', { number: 2, start: 63n, size: 1000n, signature: { type: 'mbr', id: 0x1234abcd } });
    expect(devicePathsToText(mbr)).toEqual(['HD(2,MBR,0x1234ABCD,0x3F,0x3E8)/\\EFI\\a.efi']);
  });

  it.each([
    ['EFI\\x.efi', /must be absolute/],
    ['', /--add needs the path/],
    ['\\EFI\\', /names a directory/],
    ['\\EFI\\..\\x.efi', /"\." and "\.\." path components/],
    ['\\EFI\\\\x.efi', /empty, "\." and "\.\."/],
    ['\\EFI\\a?.efi', /cannot hold control characters/],
    ['\\EFI\\a\u0000.efi', /cannot hold control characters/],
    ['\\EFI\\😀.efi', /beyond U\+FFFF/],
    [`\\${'a'.repeat(600)}`, /longer than the 512 allowed/],
  ])('refuses the file path %j in one line (UsageError)', (path, message) => {
    const e = refusal(BOOTED, { add: { path, label: 'x' } });
    expect(e).toBeInstanceOf(UsageError);
    expect(e.message).toMatch(message);
  });

  it.each([
    ['', /--label needs the text/],
    ['a\nb', /control characters/],
    ['x'.repeat(300), /longer than the 256 allowed/],
  ])('refuses the label %j in one line', (label, message) => {
    const e = refusal(BOOTED, { add: { path: '\\EFI\\x.efi', label } });
    expect(e).toBeInstanceOf(UsageError);
    expect(e.message).toMatch(message);
  });
});

describe('option numbers as typed', () => {
  it.each([
    ['3', 3],
    ['0003', 3],
    ['000a', 10],
    ['Boot000A', 10],
    [' boot00ff ', 0xff],
    ['FFFF', 0xffff],
  ])('%j is Boot%s', (text, n) => expect(parseBootNumber(text, '--next')).toBe(n));

  it.each(['', 'x', '10000', '-1', '3,1', 'Boot'])('%j is refused in one line', (text) => {
    expect(() => parseBootNumber(text, '--remove')).toThrow(new UsageError(`--remove ${JSON.stringify(text)} is not a boot entry number: give its hex number as nvram boot lists it (3, 0003, Boot000A)`));
  });

  it('--order: hex numbers, comma-separated, each once', () => {
    expect(parseBootOrder('3, 1,0,a')).toEqual([3, 1, 0, 10]);
    expect(() => parseBootOrder('')).toThrow(/--order needs the entries/);
    expect(() => parseBootOrder('1,2,0001')).toThrow('--order names Boot0001 twice; list each entry once');
    expect(() => parseBootOrder('1,,2')).toThrow(/--order "" is not a boot entry number/);
  });
});

describe('editBootEntries', () => {
  it('--add on a booted store: the next free Boot####, NV+BS+RT global, appended to BootOrder; --next (the added one) sets BootNext; nothing else changes; reparsable', () => {
    const r = editBootEntries(BOOTED, { add: { path: '\\EFI\\test\\shell.efi', label: 'test' }, next: 'added' });
    expect(r.changed).toBe(true);
    expect(r.added).toBe(7);
    expect(r.changes).toEqual(['added Boot0007 "test" (\\EFI\\test\\shell.efi), last in BootOrder', 'BootNext Boot0007 (the next start boots it once)']);
    const after = parseVarstore(r.data);
    expect(r.data.length).toBe(BOOTED.length);
    const added = bootVar(r.data, 'Boot0007')!;
    expect([added.attributes.value, added.vendorGuid]).toEqual([0x7, GLOBAL]);
    expect(Buffer.from(added.data).equals(Buffer.from(fileOption('test', '\\EFI\\test\\shell.efi')))).toBe(true);
    expect([...bootVar(r.data, 'BootNext')!.data]).toEqual([7, 0]);
    expect(bootVar(r.data, 'BootNext')!.attributes.value).toBe(0x7);
    expect(readBootConfig(after.variables)).toMatchObject({ order: [0, 1, 2, 3, 4, 5, 6, 7], next: 7, missing: [], problems: [] });
    expect(r.after.entries.at(-1)).toMatchObject({ name: 'Boot0007', position: 7, description: 'test', devicePath: '\\EFI\\test\\shell.efi', active: true });
    const others = (vs: Variable[]) => vs.filter((v) => !['Boot0007', 'BootNext', 'BootOrder'].includes(v.name)).map((v) => [v.vendorGuid, v.name, v.attributes.value, Buffer.from(v.data).toString('hex')]);
    expect(others(after.variables)).toEqual(others(varsOf(BOOTED)));
    expect(r.before).toEqual(readBootConfig(varsOf(BOOTED)));
  });

  it('the free number skips numbers used by a variable, listed in BootOrder or named by BootNext; numbers with A–F are named in upper case', () => {
    const image = store({ name: 'BootOrder', data: order(0, 2, 1) }, { name: 'BootNext', data: u16(3) }, entry(0), entry(2), entry(4));
    expect(freeBootNumber(varsOf(image))).toBe(5);
    const ten = store(...Array.from({ length: 10 }, (_, i) => entry(i)), { name: 'BootOrder', data: order(...Array.from({ length: 10 }, (_, i) => i)) });
    const r = editBootEntries(ten, { add: { path: '\\EFI\\x.efi', label: 'x' } });
    expect(r.added).toBe(10);
    expect(bootVar(r.data, 'Boot000A')).toBeDefined();
    expect(bootVar(r.data, 'Boot000a')).toBeUndefined();
    // a store without BootOrder gets one holding the new entry
    const bare = editBootEntries(store(entry(0)), { add: { path: '\\EFI\\x.efi', label: 'x' } });
    expect(readBootConfig(varsOf(bare.data)).order).toEqual([1]);
  });

  it('--order sets exactly the given order; an entry that does not exist is refused naming the existing ones; the same order changes nothing', () => {
    const image = store({ name: 'BootOrder', data: order(0, 1, 2) }, entry(0), entry(1), entry(2));
    const r = editBootEntries(image, { order: [2, 0] });
    expect(readBootConfig(varsOf(r.data)).order).toEqual([2, 0]);
    expect(r.changes).toEqual(['BootOrder Boot0002, Boot0000 (was Boot0000, Boot0001, Boot0002)']);
    const e = refusal(image, { order: [2, 7, 0] });
    expect(e).toEqual(new UsageError('--order: there is no Boot0007 (entries: Boot0000, Boot0001, Boot0002)'));
    const same = editBootEntries(image, { order: [0, 1, 2] });
    expect([same.changed, same.changes]).toEqual([false, []]);
    expect(Buffer.from(same.data).equals(Buffer.from(image))).toBe(true);
  });

  it('--remove deletes the entry and drops it from BootOrder (every occurrence) and BootNext; a number only BootOrder names can be dropped; one nobody names is refused', () => {
    const image = store({ name: 'BootOrder', data: order(1, 0, 1, 5) }, { name: 'BootNext', data: u16(1) }, entry(0), entry(1));
    const r = editBootEntries(image, { remove: 1 });
    expect(bootVar(r.data, 'Boot0001')).toBeUndefined();
    expect(bootVar(r.data, 'BootNext')).toBeUndefined();
    expect(readBootConfig(varsOf(r.data)).order).toEqual([0, 5]);
    expect(r.changes).toEqual(['removed Boot0001 (and from BootOrder), BootNext cleared']);
    const dangling = editBootEntries(r.data, { remove: 5 });
    expect(readBootConfig(varsOf(dangling.data)).order).toEqual([0]);
    expect(refusal(image, { remove: 7 })).toEqual(new UsageError('--remove: there is no Boot0007 (entries: Boot0001, Boot0000)'));
    // removing the last entry leaves an empty BootOrder, not a missing one
    const last = editBootEntries(dangling.data, { remove: 0 });
    expect(bootVar(last.data, 'BootOrder')!.data.length).toBe(0);
  });

  it('applies remove, add, order, next in that order: a removed number is free again, --order may name the new entry, --next may name any', () => {
    const image = store({ name: 'BootOrder', data: order(0, 1) }, entry(0), entry(1));
    const r = editBootEntries(image, { remove: 0, add: { path: '\\EFI\\n.efi', label: 'new' }, order: [0, 1], next: 1 });
    expect(r.added).toBe(0);
    const c = readBootConfig(varsOf(r.data));
    expect([c.order, c.next]).toEqual([[0, 1], 1]);
    expect(c.entries[0]).toMatchObject({ name: 'Boot0000', description: 'new' });
    expect(r.changes).toEqual([
      'removed Boot0000 (and from BootOrder)',
      'added Boot0000 "new" (\\EFI\\n.efi), last in BootOrder',
      'BootOrder Boot0000, Boot0001 (was Boot0001, Boot0000)',
      'BootNext Boot0001 (the next start boots it once)',
    ]);
  });

  it('--next refuses an entry that does not exist, and "the added one" without --add', () => {
    const image = store({ name: 'BootOrder', data: order(0) }, entry(0));
    expect(refusal(image, { next: 4 })).toEqual(new UsageError('--next: there is no Boot0004 (entries: Boot0000)'));
    expect(refusal(image, { next: 'added' }).message).toMatch(/^--next without a number names the entry --add creates/);
    expect(refusal(image, { remove: 0, next: 0 })).toEqual(new UsageError('--next: there is no Boot0000 (entries: none)'));
  });

  it('a store it cannot change safely is refused: a BootOrder of odd length (unless --order replaces it), a full store, a padded file', () => {
    const odd = store({ name: 'BootOrder', data: [0, 0, 1] }, entry(0));
    const e = refusal(odd, { add: { path: '\\EFI\\x.efi', label: 'x' } });
    expect(e).toBeInstanceOf(VarstoreError);
    expect(e.message).toBe('BootOrder is 3 bytes, not a list of 2-byte entries; set it anew with --order');
    expect(readBootConfig(varsOf(editBootEntries(odd, { order: [0] }).data)).order).toEqual([0]);

    const small = buildStore({ storeSize: 0x200, records: [entry(0), { name: 'Fill', guid: OTHER_VENDOR, data: new Array(0x200 - 0x1c - 60 * 2 - 80 - 40).fill(1) }] });
    const full = refusal(small, { add: { path: `\\EFI\\${'x'.repeat(40)}.efi`, label: 'x' } });
    expect(full).toBeInstanceOf(VarstoreError);
    expect(full.message).toMatch(/^the variable store is full: adding Boot0001 needs \d+ bytes, has \d+ free$/);

    const padded = Buffer.concat([BOOTED, Buffer.alloc(4096, 0xff)]);
    expect(refusal(padded, { order: [0] }).message).toMatch(/^the file is \d+ bytes but its variable store volume is \d+ bytes: not a VARS file/);
  });
});

// ---------------------------------------------------------------- partition tables

describe.skipIf(!haveCrc32)('partition tables (--disk)', () => {
  it('GPT: the ESP by its type, numbered by its entry, its unique GUID as the signature; 512- and 4096-byte sectors', () => {
    const parts = [
      { type: LINUX_TYPE, guid: '99999999-8888-7777-6666-555555555555', first: 0x100000, last: 0x1ffde },
      { type: ESP_TYPE, guid: PART_GUID, first: 2048, last: 206847, name: 'EFI System' },
    ];
    const t = readPartitionTable(gptHead(parts), 'disk');
    expect(t.scheme).toBe('gpt');
    expect(t.partitions.map((p) => [p.number, p.esp, p.label])).toEqual([
      [1, false, ''],
      [2, true, 'EFI System'],
    ]);
    const esp = espOf(t, 'disk');
    expect(esp).toMatchObject({ number: 2, start: 2048n, size: 204800n, signature: { type: 'gpt', guid: PART_GUID } });
    expect(devicePathsToText(bootFileDevicePath('\\EFI\\debian\\shimx64.efi', esp))).toEqual([`HD(2,GPT,${PART_GUID},0x800,0x32000)/\\EFI\\debian\\shimx64.efi`]);
    expect(readPartitionTable(gptHead(parts, { sector: 4096 }), 'disk')).toMatchObject({ scheme: 'gpt', sectorSize: 4096 });
    // what the CLI reads is a Buffer (whose slice() is a view): read the same, and leave it as it was
    const buffer = Buffer.from(gptHead(parts));
    const copy = Buffer.from(buffer);
    expect(espOf(readPartitionTable(buffer, 'disk'), 'disk')).toEqual(esp);
    expect(buffer.equals(copy)).toBe(true);
  });

  it('GPT: a wrong header checksum, an entry array beyond what was read, or a protective MBR without a GPT are refused in one line', () => {
    const esp = [{ type: ESP_TYPE, guid: PART_GUID, first: 2048, last: 4095 }];
    expect(() => readPartitionTable(gptHead(esp, { corrupt: true }), 'vda')).toThrow(new VarstoreError('vda: the GPT header checksum is wrong (a damaged partition table; the firmware would use the backup copy)'));
    expect(() => readPartitionTable(gptHead(esp).subarray(0, 4096), 'vda')).toThrow(/^vda: the GPT entry array ends at byte 17408, beyond the first 4096 bytes ovmf-hook reads$/);
    const noGpt = gptHead(esp);
    noGpt.fill(0, 512, 1024);
    expect(() => readPartitionTable(noGpt, 'vda')).toThrow(/^vda: a protective MBR without a readable GPT header/);
  });

  it('MBR: the 0xEF partition, its slot number, the disk signature; no ESP, two ESPs and no table at all are refused naming the way out', () => {
    const t = readPartitionTable(mbrHead([[0x83, 2048, 1000], [0xef, 4096, 8192]]), 'vdb');
    expect(espOf(t, 'vdb')).toMatchObject({ number: 2, start: 4096n, size: 8192n, signature: { type: 'mbr', id: 0x1234abcd }, type: '0xEF' });
    expect(() => espOf(readPartitionTable(mbrHead([[0x83, 2048, 1000]]), 'vdb'), 'vdb')).toThrow(
      new UsageError('vdb has no EFI system partition (MBR partitions: 1 0x83); give the disk that holds the ESP, or leave out --disk'),
    );
    expect(() => espOf(readPartitionTable(mbrHead([[0xef, 2048, 10], [0xef, 4096, 10]]), 'vdb'), 'vdb')).toThrow(/^vdb has 2 EFI system partitions \(1, 2\)/);
    // a whole-disk FAT: a boot sector ends in 55 AA too, with boot code where an MBR has its table
    const fat = new Uint8Array(4096);
    fat.set([0xeb, 0x3c, 0x90, ...Buffer.from('mkfs.fat')], 0);
    fat.set(Buffer.from('This is not a bootable disk.  Please insert a bootable floppy and\r\npress any key to try again ... \r\n'), 0x5a + 330);
    fat.set([0x55, 0xaa], 510);
    expect(readPartitionTable(fat, 'vda')).toEqual({ scheme: 'none', sectorSize: 512, partitions: [] });
    expect(() => espOf(readPartitionTable(new Uint8Array(4096), 'vda'), 'vda')).toThrow(/^vda has no partition table \(a whole-disk file system\?\); leave out --disk/);
  });
});

describe('the disk for --disk', () => {
  const domain = parseDomain(`<domain type='qemu'><name>vm</name><devices>
    <disk type='file' device='cdrom'><driver type='raw'/><source file='/iso/x.iso'/><target dev='sda' bus='sata'/></disk>
    <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='/img/a.qcow2'/><target dev='vda' bus='virtio'/></disk>
    <disk type='block' device='disk'><source dev='/dev/vg/b'/><target dev='vdb' bus='virtio'/></disk>
    <disk type='network' device='disk'><driver type='raw'/><source protocol='rbd' name='pool/c'/><target dev='vdc' bus='virtio'/></disk>
    <disk type='file' device='disk'><driver type='raw'/><source file='/img/d.raw'/><target dev='sdb' bus='sata'/></disk>
  </devices></domain>`);
  const disks = domainDisks(domain);

  it('numbers the disks (not cdroms) from 1 in document order, with source and format', () => {
    expect(disks).toEqual([
      { index: 1, target: 'vda', type: 'file', source: '/img/a.qcow2', format: 'qcow2' },
      { index: 2, target: 'vdb', type: 'block', source: '/dev/vg/b' },
      { index: 3, target: 'vdc', type: 'network', format: 'raw' },
      { index: 4, target: 'sdb', type: 'file', source: '/img/d.raw', format: 'raw' },
    ]);
  });

  it('selects by number or target; refuses qcow2, network disks and unknown ones in one line', () => {
    expect(selectDisk(disks, '4', 'vm').source).toBe('/img/d.raw');
    expect(selectDisk(disks, 'vdb', 'vm').source).toBe('/dev/vg/b');
    expect(() => selectDisk(disks, '1', 'vm')).toThrow(/^--disk 1: vm's disk 1 \(vda\) is qcow2; ovmf-hook reads the partition table of raw images and block devices only; leave out --disk/);
    expect(() => selectDisk(disks, 'vdc', 'vm')).toThrow(/^--disk vdc: vm's disk 3 \(vdc\) is a network disk/);
    expect(() => selectDisk(disks, '9', 'vm')).toThrow(new UsageError('--disk "9": vm has no such disk (disks: 1 vda, 2 vdb, 3 vdc, 4 sdb)'));
  });
});
