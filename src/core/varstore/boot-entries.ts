/**
 * Boot entries of a variable store (`nvram boot`): read BootOrder / BootNext / BootCurrent and every
 * Boot####, and edit them offline — add an entry for a file on the VM's disk, set BootNext or
 * BootOrder, remove an entry. Pure; every refusal is one line (UsageError for a request that cannot
 * be met, VarstoreError for a store that cannot take it), and nothing is returned then.
 *
 * EFI_LOAD_OPTION (UEFI 2.10 §3.1.3): Attributes u32, FilePathListLength u16, Description
 * (UCS-2, NUL-terminated), FilePathList (device paths), OptionalData (the rest). Boot#### names use
 * upper-case hex (§3.1.1; edk2's PrintLib prints %04x with A–F too, so the firmware finds them).
 * Every variable written here is NV+BS+RT in the EFI global variable namespace, as edk2's boot
 * manager writes them (UefiBootManagerLib EfiBootManagerLoadOptionToVariable).
 *
 * The device path of an added entry is a short form the firmware expands at boot (UEFI §3.1.2,
 * edk2 UefiBootManagerLib BmGetNextLoadOptionDevicePath):
 *   - `File(\EFI\…)` alone: edk2 appends it to every file system (removable media first, then
 *     fixed disks; BmExpandFileDevicePath) and boots the first that holds the file. Works for a
 *     partitioned disk and for a whole-disk FAT image alike, on any bus, whatever the image format.
 *   - `HD(n,GPT|MBR,signature,start,size)/File(\EFI\…)` (`--disk`): the partition is found by its
 *     signature (GPT unique partition GUID, or MBR disk signature) and number on whichever disk holds
 *     it (BmExpandPartitionDevicePath, MatchPartitionDevicePathNode), as efibootmgr writes entries.
 *     Read from the disk's partition table (readPartitionTable below).
 * OVMF's own entries (test/nvram/varstore/fixtures/booted-4m.fd) are full paths for devices it
 * enumerated (`PciRoot(0x0)/Pci(…)/…`) or FvFile() paths for its built-in applications; a full PCI
 * path would depend on QEMU's device layout, which the short forms do not.
 */
import { UsageError, VarstoreError } from '../errors';
import type { Domain } from '../domain';
import { writeGuid } from './certs';
import { decodeLoadOption, decodeOrder, decodeU16, findVariable, optionName, type LoadOption } from './decode';
import { EFI_GLOBAL_VARIABLE } from './guids';
import { readGuid, readUtf16z, type Variable } from './parse';
import { requireWholeVolume } from './enroll';
import { editVarstore, VariableAttribute } from './write';

/** NV + BS + RT: the attributes of BootOrder, BootNext and Boot#### (UEFI §3.3). */
export const BOOT_VARIABLE_ATTRIBUTES = VariableAttribute.NON_VOLATILE | VariableAttribute.BOOTSERVICE_ACCESS | VariableAttribute.RUNTIME_ACCESS;
/** EFI_LOAD_OPTION attribute: the boot manager may boot it. */
export const LOAD_OPTION_ACTIVE = 0x1;

const BOOT_N = /^Boot([0-9A-F]{4})$/;
const view = (d: Uint8Array) => new DataView(d.buffer, d.byteOffset, d.byteLength);
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

// ---------------------------------------------------------------- reading

/** A Boot#### entry: the decoded load option's fields (decode.ts) and where it stands in BootOrder. */
export interface BootEntry extends Pick<LoadOption, 'attributes' | 'active' | 'hidden' | 'category' | 'description' | 'devicePath'> {
  /** The option number (the #### of Boot####). */
  number: number;
  /** `Boot0003` */
  name: string;
  /** OptionalData as lowercase hex ('' when none). */
  optionalData: string;
  /** Position in BootOrder (0 = first), null when BootOrder does not list it. */
  position: number | null;
  /** Why the variable could not be decoded (the other fields are then empty). */
  error?: string;
}

export interface BootConfig {
  /** BootOrder's option numbers ([] when BootOrder is absent or undecodable). */
  order: number[];
  /** BootNext: the option the next start boots first, once (the firmware deletes it). */
  next: number | null;
  /** BootCurrent (volatile in edk2: normally absent from a stored NVRAM). */
  current: number | null;
  /** Entries in BootOrder order, then the ones BootOrder does not list, by number. */
  entries: BootEntry[];
  /** Numbers in BootOrder (or BootNext) without a Boot#### variable. */
  missing: number[];
  /** Variables that could not be decoded (one line each). */
  problems: string[];
}

const globalVar = (vars: readonly Variable[], name: string) => findVariable(vars, EFI_GLOBAL_VARIABLE, name);

const optionalU16 = (vars: readonly Variable[], name: string, problems: string[]): number | null => {
  const v = globalVar(vars, name);
  if (!v) return null;
  try {
    return decodeU16(v.data, name);
  } catch (e) {
    problems.push((e as Error).message);
    return null;
  }
};

/** The boot configuration held by `vars` (a parsed store's live variables). Never throws: undecodable data goes to `problems`. */
export const readBootConfig = (vars: readonly Variable[]): BootConfig => {
  const problems: string[] = [];
  let order: number[] = [];
  const bootOrder = globalVar(vars, 'BootOrder');
  if (bootOrder)
    try {
      order = decodeOrder(bootOrder.data);
    } catch (e) {
      problems.push((e as Error).message);
    }
  const next = optionalU16(vars, 'BootNext', problems);
  const current = optionalU16(vars, 'BootCurrent', problems);
  const entries: BootEntry[] = [];
  for (const v of vars) {
    const m = v.vendorGuid === EFI_GLOBAL_VARIABLE ? BOOT_N.exec(v.name) : null;
    if (!m) continue;
    const number = parseInt(m[1], 16);
    const at = order.indexOf(number);
    const base = { number, name: v.name, position: at < 0 ? null : at };
    try {
      const o = decodeLoadOption(v.data, v.name);
      entries.push({
        ...base,
        attributes: o.attributes,
        active: o.active,
        hidden: o.hidden,
        category: o.category,
        description: o.description,
        devicePath: o.devicePath,
        optionalData: hex(v.data.subarray(v.data.length - o.optionalDataLength)),
      });
    } catch (e) {
      const error = (e as Error).message;
      problems.push(error);
      entries.push({ ...base, attributes: 0, active: false, hidden: false, category: '', description: '', devicePath: '', optionalData: '', error });
    }
  }
  entries.sort((a, b) => (a.position ?? 0x10000 + a.number) - (b.position ?? 0x10000 + b.number));
  const known = new Set(entries.map((e) => e.number));
  const missing = [...new Set([...order, ...(next === null ? [] : [next])])].filter((n) => !known.has(n));
  return { order, next, current, entries, missing, problems };
};

// ---------------------------------------------------------------- encoding

/** The End Entire Device Path node. */
const END_ENTIRE = Uint8Array.of(0x7f, 0xff, 0x04, 0x00);
/** Longest file path and description accepted (characters): far below the variable size limits. */
const MAX_PATH = 512;
const MAX_LABEL = 256;

const node = (type: number, subType: number, body: Uint8Array): Uint8Array => {
  const n = new Uint8Array(4 + body.length);
  n.set([type, subType], 0);
  view(n).setUint16(2, n.length, true);
  n.set(body, 4);
  return n;
};

const ucs2z = (s: string): Uint8Array => new Uint8Array(Buffer.from(`${s}\u0000`, 'utf16le'));

/** Characters a FAT long file name cannot hold (and the ones a device path text cannot carry). */
const BAD_PATH_CHAR = /[\u0000-\u001f"*:<>?|\u007f]/;
/** Not representable in UCS-2 (a surrogate, i.e. a character beyond U+FFFF). */
const NON_UCS2 = /[\ud800-\udfff]/;

/**
 * A file path on the ESP as the firmware wants it: backslashes (a '/' is taken as one, as
 * efibootmgr does), absolute. Refuses (UsageError) what no FAT file system can hold.
 */
export const normalizeBootFilePath = (path: string): string => {
  const p = path.trim().replace(/\//g, '\\');
  const says = `--add ${JSON.stringify(path)}`;
  if (p === '') throw new UsageError(`--add needs the path of an EFI binary on the VM's EFI system partition, e.g. '\\EFI\\debian\\shimx64.efi'`);
  if (!p.startsWith('\\')) throw new UsageError(`${says}: the path must be absolute on the EFI system partition, e.g. '\\EFI\\debian\\shimx64.efi' (quote the backslashes for the shell)`);
  if (p.endsWith('\\')) throw new UsageError(`${says} names a directory; give the EFI binary in it, e.g. '\\EFI\\BOOT\\BOOTX64.EFI'`);
  if (BAD_PATH_CHAR.test(p) || NON_UCS2.test(p)) throw new UsageError(`${says}: a FAT file name cannot hold control characters, " * : < > ? | or characters beyond U+FFFF`);
  if (p.split('\\').some((part, i) => i > 0 && (part === '' || part === '.' || part === '..')))
    throw new UsageError(`${says}: empty, "." and ".." path components are not allowed; give the plain path from the root of the partition`);
  if (p.length > MAX_PATH) throw new UsageError(`${says}: ${p.length} characters is longer than the ${MAX_PATH} allowed`);
  return p;
};

/** A boot entry's description (the label the firmware and boot menus show). */
export const checkBootLabel = (label: string): string => {
  if (label.trim() === '') throw new UsageError('--label needs the text the boot menu shows for the entry, e.g. --label "debian"');
  if (/[\u0000-\u001f\u007f]/.test(label) || NON_UCS2.test(label)) throw new UsageError(`--label ${JSON.stringify(label)}: control characters and characters beyond U+FFFF cannot be stored in a UEFI description`);
  if (label.length > MAX_LABEL) throw new UsageError(`--label is ${label.length} characters, longer than the ${MAX_LABEL} allowed`);
  return label;
};

/** A partition as a Hard Drive media device path node names it (UEFI §10.3.5.1). */
export interface PartitionRef {
  /** 1-based: the GPT entry index + 1, or the MBR primary slot + 1 (edk2 PartitionDxe). */
  number: number;
  /** First LBA and length in LBAs. */
  start: bigint;
  size: bigint;
  signature: { type: 'gpt'; guid: string } | { type: 'mbr'; id: number };
}

/** Media File Path node (type 4, subtype 4) for `path` (already normalised). */
export const filePathNode = (path: string): Uint8Array => node(4, 4, ucs2z(path));

/** Media Hard Drive node (type 4, subtype 1, 42 bytes). */
export const hardDriveNode = (p: PartitionRef): Uint8Array => {
  const body = new Uint8Array(38);
  const dv = view(body);
  dv.setUint32(0, p.number, true);
  dv.setBigUint64(4, p.start, true);
  dv.setBigUint64(12, p.size, true);
  if (p.signature.type === 'gpt') writeGuid(body, 20, p.signature.guid);
  else dv.setUint32(20, p.signature.id, true);
  body[36] = p.signature.type === 'gpt' ? 2 : 1; // MBRType: 1 PC-AT MBR, 2 GPT
  body[37] = p.signature.type === 'gpt' ? 2 : 1; // SignatureType: 1 MBR 32-bit signature, 2 GUID
  return node(4, 1, body);
};

/** The device path (End node included) of an entry for `file`, on `partition` when given. */
export const bootFileDevicePath = (file: string, partition?: PartitionRef): Uint8Array => {
  const nodes = [...(partition ? [hardDriveNode(partition)] : []), filePathNode(normalizeBootFilePath(file)), END_ENTIRE];
  const out = new Uint8Array(nodes.reduce((n, x) => n + x.length, 0));
  nodes.reduce((at, x) => (out.set(x, at), at + x.length), 0);
  return out;
};

/** Encode an EFI_LOAD_OPTION. */
export const encodeLoadOption = (o: { description: string; devicePath: Uint8Array; attributes?: number; optionalData?: Uint8Array }): Uint8Array => {
  const description = ucs2z(o.description);
  const optional = o.optionalData ?? new Uint8Array(0);
  if (o.devicePath.length > 0xffff) throw new VarstoreError(`device path of ${o.devicePath.length} bytes does not fit a load option (at most 65535)`);
  const out = new Uint8Array(6 + description.length + o.devicePath.length + optional.length);
  const dv = view(out);
  dv.setUint32(0, o.attributes ?? LOAD_OPTION_ACTIVE, true);
  dv.setUint16(4, o.devicePath.length, true);
  out.set(description, 6);
  out.set(o.devicePath, 6 + description.length);
  out.set(optional, 6 + description.length + o.devicePath.length);
  return out;
};

const encodeOrder = (numbers: readonly number[]): Uint8Array => {
  const out = new Uint8Array(numbers.length * 2);
  numbers.forEach((n, i) => view(out).setUint16(i * 2, n, true));
  return out;
};

// ---------------------------------------------------------------- command-line numbers

/**
 * An option number as typed: hex like efibootmgr and like the names show it — `3`, `0003`, `000A`,
 * `Boot000A` (case-insensitive). `flag` names the option in the error.
 */
export const parseBootNumber = (text: string, flag: string): number => {
  const t = text.trim();
  const m = /^(?:boot)?([0-9a-f]{1,4})$/i.exec(t);
  if (!m) throw new UsageError(`${flag} ${JSON.stringify(text)} is not a boot entry number: give its hex number as nvram boot lists it (3, 0003, Boot000A)`);
  return parseInt(m[1], 16);
};

/** `--order 3,1,0`: comma-separated option numbers, each at most once. */
export const parseBootOrder = (text: string): number[] => {
  const parts = text.split(',').map((s) => s.trim());
  if (parts.length === 1 && parts[0] === '') throw new UsageError('--order needs the entries in boot order, comma-separated, e.g. --order 3,1,0');
  const numbers = parts.map((p) => parseBootNumber(p, '--order'));
  const dup = numbers.find((n, i) => numbers.indexOf(n) !== i);
  if (dup !== undefined) throw new UsageError(`--order names ${optionName(dup)} twice; list each entry once`);
  return numbers;
};

// ---------------------------------------------------------------- editing

export interface BootEdit {
  /** Add an entry for `path` on the ESP, labelled `label`; appended to BootOrder. */
  add?: { path: string; label: string; partition?: PartitionRef };
  /** Set BootNext: an option number, or 'added' for the entry `add` creates. */
  next?: number | 'added';
  /** Set BootOrder to exactly these entries (each must exist). */
  order?: readonly number[];
  /** Delete Boot#### and drop it from BootOrder and BootNext. */
  remove?: number;
}

export interface BootEditResult {
  /** The new image (the input unchanged when nothing changed). */
  data: Buffer;
  changed: boolean;
  /** The number the added entry got. */
  added: number | null;
  before: BootConfig;
  after: BootConfig;
  /** What changed, one phrase each, in the order applied. */
  changes: string[];
}

/** The lowest number free for a new Boot####: no such variable, not in BootOrder, not BootNext (as edk2 also avoids). */
export const freeBootNumber = (vars: readonly Variable[]): number => {
  const c = readBootConfig(vars);
  const used = new Set([...c.entries.map((e) => e.number), ...c.order, ...(c.next === null ? [] : [c.next])]);
  for (let n = 0; n <= 0xffff; n++) if (!used.has(n)) return n;
  throw new VarstoreError('every boot entry number (0000-FFFF) is taken; remove an entry first');
};

const names = (ns: readonly number[]) => (ns.length ? ns.map((n) => optionName(n)).join(', ') : '(empty)');

/**
 * Apply `edit` to the VARS image `image`, in this order: remove, add, order, next (so `--add …
 * --next` can name the new entry, and `--order` can leave out the removed one). The input is never
 * modified.
 */
export const editBootEntries = (image: Uint8Array, edit: BootEdit): BootEditResult => {
  const ed = editVarstore(image);
  requireWholeVolume(ed, image);
  const before = readBootConfig(ed.original.variables);
  const changes: string[] = [];
  const bootOrder = findVariable(ed.original.variables, EFI_GLOBAL_VARIABLE, 'BootOrder');
  if (bootOrder && bootOrder.data.length % 2 !== 0 && (edit.remove !== undefined || edit.add) && !edit.order)
    throw new VarstoreError(`BootOrder is ${bootOrder.data.length} bytes, not a list of 2-byte entries; set it anew with --order`);
  const set = (name: string, data: Uint8Array) => ed.set(name, EFI_GLOBAL_VARIABLE, BOOT_VARIABLE_ATTRIBUTES, data);
  const current = () => readBootConfig(ed.variables);
  const exists = (n: number) => ed.get(optionName(n), EFI_GLOBAL_VARIABLE) !== undefined;
  const available = () => current().entries.map((e) => e.name).join(', ') || 'none';

  if (edit.remove !== undefined) {
    const n = edit.remove;
    const c = current();
    if (!exists(n) && !c.order.includes(n) && c.next !== n)
      throw new UsageError(`--remove: there is no ${optionName(n)} (entries: ${available()})`);
    ed.delete(optionName(n), EFI_GLOBAL_VARIABLE);
    const dropped = c.order.includes(n);
    if (dropped) set('BootOrder', encodeOrder(c.order.filter((x) => x !== n)));
    if (c.next === n) ed.delete('BootNext', EFI_GLOBAL_VARIABLE);
    changes.push(`removed ${optionName(n)}${dropped ? ' (and from BootOrder)' : ''}${c.next === n ? ', BootNext cleared' : ''}`);
  }

  let added: number | null = null;
  if (edit.add) {
    const path = normalizeBootFilePath(edit.add.path);
    const label = checkBootLabel(edit.add.label);
    const n = freeBootNumber(ed.variables);
    const devicePath = bootFileDevicePath(path, edit.add.partition);
    set(optionName(n), encodeLoadOption({ description: label, devicePath }));
    const order = current().order;
    set('BootOrder', encodeOrder([...order, n]));
    added = n;
    changes.push(`added ${optionName(n)} ${JSON.stringify(label)} (${decodeLoadOption(ed.get(optionName(n), EFI_GLOBAL_VARIABLE)!.data).devicePath}), last in BootOrder`);
  }

  if (edit.order) {
    const missing = edit.order.filter((n) => !exists(n));
    if (missing.length)
      throw new UsageError(`--order: there is no ${missing.map((n) => optionName(n)).join(', ')} (entries: ${available()})`);
    const old = current().order;
    set('BootOrder', encodeOrder(edit.order));
    if (old.join() !== edit.order.join()) changes.push(`BootOrder ${names(edit.order)} (was ${names(old)})`);
  }

  if (edit.next !== undefined) {
    if (edit.next === 'added' && added === null) throw new UsageError('--next without a number names the entry --add creates; give --add too, or the number of an existing entry');
    const n = edit.next === 'added' ? added! : edit.next;
    if (!exists(n)) throw new UsageError(`--next: there is no ${optionName(n)} (entries: ${available()})`);
    const old = current().next;
    const data = new Uint8Array(2);
    view(data).setUint16(0, n, true);
    set('BootNext', data);
    if (old !== n) changes.push(`BootNext ${optionName(n)} (the next start boots it once)`);
  }

  const data = ed.toBuffer();
  return { data, changed: ed.changed, added, before, after: readBootConfig(ed.variables), changes };
};

// ---------------------------------------------------------------- the disk for --disk

export interface DomainDisk {
  /** 1-based position among the domain's `<disk device='disk'>` elements. */
  index: number;
  /** `<target dev>` (vda, sdb …). */
  target: string;
  /** `<disk type>`: file, block, network, volume … */
  type: string;
  /** The host path (`<source file>` / `<source dev>`), when the disk has one. */
  source?: string;
  /** `<driver type>` (raw, qcow2 …); undefined: libvirt's default, raw. */
  format?: string;
}

/** The domain's disks (not cdroms or floppies), in document order. */
export const domainDisks = (domain: Domain): DomainDisk[] =>
  domain
    .devices('disk')
    .filter((d) => (d.attr('device') ?? 'disk') === 'disk')
    .map((d, i) => {
      const src = d.find('source');
      const source = src?.attr('file') ?? src?.attr('dev');
      const format = d.find('driver')?.attr('type');
      return { index: i + 1, target: d.find('target')?.attr('dev') ?? '', type: d.attr('type') ?? 'file', ...(source ? { source } : {}), ...(format ? { format } : {}) };
    });

/**
 * `--disk N|TARGET` → the disk whose partition table `--add` reads: a raw file or block device
 * (ovmf-hook does not read qcow2 or network disks). `vm` names the domain in errors.
 */
export const selectDisk = (disks: readonly DomainDisk[], spec: string, vm: string): DomainDisk & { source: string } => {
  const list = disks.map((d) => `${d.index} ${d.target}`).join(', ') || 'none';
  const t = spec.trim();
  const d = /^\d+$/.test(t) ? disks.find((x) => x.index === Number(t)) : disks.find((x) => x.target === t);
  if (!d) throw new UsageError(`--disk ${JSON.stringify(spec)}: ${vm} has no such disk (disks: ${list})`);
  const what = `--disk ${t}: ${vm}'s disk ${d.index} (${d.target})`;
  const leaveOut = 'leave out --disk: the file path alone is found on whichever file system holds it';
  if ((d.type !== 'file' && d.type !== 'block') || !d.source) throw new UsageError(`${what} is a ${d.type} disk; ovmf-hook reads the partition table of a local file or block device only; ${leaveOut}`);
  if (d.format !== undefined && d.format !== 'raw') throw new UsageError(`${what} is ${d.format}; ovmf-hook reads the partition table of raw images and block devices only; ${leaveOut}`);
  return { ...d, source: d.source };
};

// ---------------------------------------------------------------- partition tables

/** Bytes of the start of a disk readPartitionTable needs: MBR, GPT header and a 128-entry array, for 512- or 4096-byte sectors. */
export const PARTITION_TABLE_BYTES = 1024 * 1024;

const ESP_TYPE = 'c12a7328-f81f-11d2-ba4b-00a0c93ec93b';
const MBR_ESP = 0xef;
const MBR_PROTECTIVE = 0xee;

export interface Partition extends PartitionRef {
  /** GPT partition type GUID, or the MBR type byte as `0xEF`. */
  type: string;
  /** The EFI system partition (GPT type C12A7328-…, MBR type 0xEF). */
  esp: boolean;
  /** GPT partition name ('' for MBR). */
  label: string;
}

export interface PartitionTable {
  scheme: 'gpt' | 'mbr' | 'none';
  sectorSize: number;
  partitions: Partition[];
}

let crcTable: Uint32Array | undefined;
/** CRC-32 (IEEE 802.3, as the GPT header and entry array checksums use). */
const crc32 = (b: Uint8Array): number => {
  const t = (crcTable ??= Uint32Array.from({ length: 256 }, (_, n) => {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  }));
  let c = 0xffffffff;
  for (const x of b) c = t[(c ^ x) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
};

/**
 * The partition table at the start of a disk (`head`: at least its first PARTITION_TABLE_BYTES, or
 * the whole disk if smaller): GPT (header checksums verified; 512- or 4096-byte sectors) or MBR
 * (primary partitions, 512-byte sectors); 'none' for a disk without one (a whole-disk file system).
 * `what` names the disk in errors.
 */
export const readPartitionTable = (head: Uint8Array, what: string): PartitionTable => {
  const dv = view(head);
  const hasMbr = head.length >= 512 && head[510] === 0x55 && head[511] === 0xaa;
  for (const sectorSize of [512, 4096]) {
    const h = sectorSize;
    if (head.length < h + 92 || Buffer.from(head.subarray(h, h + 8)).toString('latin1') !== 'EFI PART') continue;
    const headerSize = dv.getUint32(h + 12, true);
    if (headerSize < 92 || headerSize > sectorSize) throw new VarstoreError(`${what}: GPT header size ${headerSize} is invalid`);
    const header = new Uint8Array(head.subarray(h, h + headerSize)); // a copy (Buffer#slice would not be one)
    view(header).setUint32(16, 0, true);
    if (crc32(header) !== dv.getUint32(h + 16, true)) throw new VarstoreError(`${what}: the GPT header checksum is wrong (a damaged partition table; the firmware would use the backup copy)`);
    const entriesAt = Number(dv.getBigUint64(h + 72, true)) * sectorSize;
    const count = dv.getUint32(h + 80, true);
    const entrySize = dv.getUint32(h + 84, true);
    if (entrySize < 128 || entrySize % 8 !== 0 || count > 1024) throw new VarstoreError(`${what}: GPT entry array (${count} × ${entrySize} bytes) is invalid`);
    const end = entriesAt + count * entrySize;
    if (end > head.length) throw new VarstoreError(`${what}: the GPT entry array ends at byte ${end}, beyond the first ${head.length} bytes ovmf-hook reads`);
    if (crc32(head.subarray(entriesAt, end)) !== dv.getUint32(h + 88, true)) throw new VarstoreError(`${what}: the GPT entry array checksum is wrong (a damaged partition table)`);
    const partitions: Partition[] = [];
    for (let i = 0; i < count; i++) {
      const e = entriesAt + i * entrySize;
      const type = readGuid(head, e);
      if (type === '00000000-0000-0000-0000-000000000000') continue;
      const start = dv.getBigUint64(e + 32, true);
      const last = dv.getBigUint64(e + 40, true);
      partitions.push({
        number: i + 1,
        start,
        size: last - start + 1n,
        signature: { type: 'gpt', guid: readGuid(head, e + 16) },
        type,
        esp: type === ESP_TYPE,
        label: readUtf16z(head, e + 56, e + 128),
      });
    }
    return { scheme: 'gpt', sectorSize, partitions };
  }
  if (!hasMbr) return { scheme: 'none', sectorSize: 512, partitions: [] };
  const slots = [0, 1, 2, 3].map((i) => 446 + i * 16);
  const types = slots.map((s) => head[s + 4]);
  // a FAT boot sector also ends in 55 AA: an MBR has status bytes 0x00/0x80 and sane entries
  const looksLikeMbr = slots.every((s, i) => (head[s] === 0 || head[s] === 0x80) && (types[i] === 0 || dv.getUint32(s + 12, true) > 0));
  if (!looksLikeMbr || types.every((t) => t === 0)) return { scheme: 'none', sectorSize: 512, partitions: [] };
  if (types.includes(MBR_PROTECTIVE)) throw new VarstoreError(`${what}: a protective MBR without a readable GPT header (a damaged GPT disk?)`);
  const id = dv.getUint32(440, true);
  const partitions = slots.flatMap((s, i): Partition[] =>
    types[i] === 0
      ? []
      : [
          {
            number: i + 1,
            start: BigInt(dv.getUint32(s + 8, true)),
            size: BigInt(dv.getUint32(s + 12, true)),
            signature: { type: 'mbr', id },
            type: `0x${types[i].toString(16).toUpperCase().padStart(2, '0')}`,
            esp: types[i] === MBR_ESP,
            label: '',
          },
        ],
  );
  return { scheme: 'mbr', sectorSize: 512, partitions };
};

/** The EFI system partition of `table` (exactly one), or a UsageError naming what the disk holds. */
export const espOf = (table: PartitionTable, what: string): Partition => {
  if (table.scheme === 'none')
    throw new UsageError(`${what} has no partition table (a whole-disk file system?); leave out --disk: the file path alone is found on whichever file system holds it`);
  const esps = table.partitions.filter((p) => p.esp);
  const list = table.partitions.map((p) => `${p.number} ${p.type}`).join(', ') || 'none';
  if (esps.length === 0) throw new UsageError(`${what} has no EFI system partition (${table.scheme.toUpperCase()} partitions: ${list}); give the disk that holds the ESP, or leave out --disk`);
  if (esps.length > 1) throw new UsageError(`${what} has ${esps.length} EFI system partitions (${esps.map((p) => p.number).join(', ')}); leave out --disk: the file path alone is found on whichever holds it`);
  return esps[0];
};
