/**
 * Pure writer for edk2/OVMF variable stores: the inverse of parse.ts. No I/O.
 *
 * editVarstore(image) gives an editable model of the store's live variables; toBuffer() writes them
 * back into a copy of the image:
 *   - an unchanged store comes back byte for byte (deleted records and all);
 *   - a changed store is written compacted like edk2's Reclaim(): live records only, in store order
 *     (a replaced variable keeps its place, a new one goes last), each header 4-byte aligned, state
 *     VAR_ADDED (0x3F), everything after the last record 0xFF up to the store end;
 *   - the FV header, the variable store header and everything after the store (event log,
 *     fault-tolerant-write working block and spare area) are never touched;
 *   - a record that is not changed keeps its header bytes (Reserved, MonotonicCount, TimeStamp with
 *     TimeZone/Daylight, PubKeyIndex) and its raw name bytes.
 *
 * Records (MdeModulePkg/Include/Guid/VariableFormat.h):
 *   VARIABLE_HEADER (32 B): StartId u16 0x55AA, State u8, Reserved u8, Attributes u32, NameSize u32,
 *     DataSize u32, VendorGuid
 *   AUTHENTICATED_VARIABLE_HEADER (60 B): StartId, State, Reserved, Attributes, MonotonicCount u64,
 *     TimeStamp EFI_TIME (16 B), PubKeyIndex u32, NameSize, DataSize, VendorGuid
 *   then the UTF-16LE NUL-terminated name and the data, unpadded (ALIGNMENT 1); the next header
 *   starts at the next multiple of 4 (HEADER_ALIGNMENT).
 *
 * Time-based authenticated variables (PK, KEK, db, dbx …) are written unsigned: the firmware
 * trusts its own store. Their timestamp decides which later signed updates the firmware accepts
 * (a non-append update must be newer), so appendSignatures() moves it only as far as needed: to
 * the newest added certificate's notBefore, never back.
 *
 * Every refusal is a one-line VarstoreError, and the editor is left as it was.
 */
import { VarstoreError } from '../errors';
import { mergeSignatureLists, normalizeGuid, readSignatureLists, writeGuid } from './certs';
import { EFI_GLOBAL_VARIABLE } from './guids';
import { AUTH_HEADER_SIZE, decodeAttributes, HEADER_ALIGNMENT, parseVarstore, PLAIN_HEADER_SIZE, readGuid, START_ID, STORE_HEADER_SIZE, type Layout, type ParsedVarstore, type Variable } from './parse';

const VAR_ADDED = 0x3f;

/** EFI_VARIABLE_* attribute bits. */
export const VariableAttribute = {
  NON_VOLATILE: 0x01,
  BOOTSERVICE_ACCESS: 0x02,
  RUNTIME_ACCESS: 0x04,
  HARDWARE_ERROR_RECORD: 0x08,
  AUTHENTICATED_WRITE_ACCESS: 0x10,
  TIME_BASED_AUTHENTICATED_WRITE_ACCESS: 0x20,
  APPEND_WRITE: 0x40,
  ENHANCED_AUTHENTICATED_ACCESS: 0x80,
} as const;
const A = VariableAttribute;

/** NV + BS + RT + time-based authenticated: the attributes of PK, KEK, db, dbx. */
export const SECURE_BOOT_DB_ATTRIBUTES = A.NON_VOLATILE | A.BOOTSERVICE_ACCESS | A.RUNTIME_ACCESS | A.TIME_BASED_AUTHENTICATED_WRITE_ACCESS;

/**
 * The firmware's limits for one variable (header + name + data), from OvmfPkgX64.dsc:
 * PcdMaxVariableSize / PcdMaxAuthVariableSize (0x2000 / 0x2800 for the 2 MB build, 0x8400 for 4 MB)
 * and MdeModulePkg's PcdMaxHardwareErrorVariableSize (0x8000). A bigger variable could not be
 * read back through OVMF's SMM variable service nor updated by the guest.
 */
export interface VariableLimits {
  maxVariableSize: number;
  maxAuthVariableSize: number;
  maxHwErrVariableSize: number;
}

export const OVMF_VARIABLE_LIMITS: Readonly<Record<Exclude<Layout, 'unknown'>, VariableLimits>> = {
  '2M': { maxVariableSize: 0x2000, maxAuthVariableSize: 0x2800, maxHwErrVariableSize: 0x8000 },
  '4M': { maxVariableSize: 0x8400, maxAuthVariableSize: 0x8400, maxHwErrVariableSize: 0x8000 },
};

export interface EditOptions {
  /** Per-variable size limits; default OVMF's for a 2M/4M layout, none for an unknown layout. */
  limits?: VariableLimits | null;
}

/** `YYYY-MM-DDTHH:MM:SS[.fraction][Z]` (the parser's format, UTC) or a Date. */
export type EfiTimeInput = string | Date;

export interface SetOptions {
  /** TimeStamp to store (authenticated stores only). Default: the current one (none for a new variable). */
  timestamp?: EfiTimeInput;
  /** MonotonicCount to store (authenticated stores only). Default: the current one (0 for a new variable). */
  monotonicCount?: number | bigint;
}

export interface AppendOptions {
  /** Attributes for a variable that does not exist yet (appendSignatures: default NV|BS|RT|AT). */
  attributes?: number;
  /**
   * A time the variable's timestamp must reach (e.g. a signed update's); like every added
   * certificate's notBefore it only ever moves the timestamp forward. Time-based authenticated
   * variables in authenticated stores only.
   */
  timestamp?: EfiTimeInput;
}

export interface AppendResult {
  /** Entries (certificates, hashes) added. */
  added: number;
  /** Entries left out because the variable (or the input before them) already held them. */
  duplicates: number;
  changed: boolean;
  /** The variable's timestamp afterwards (authenticated stores, when not all zero). */
  timestamp?: string;
}

export interface VarstoreUsage {
  /** Bytes available for variable records (store size minus its header). */
  capacity: number;
  /** Bytes the live records take when written compacted (the parser's `used` of the result). */
  needed: number;
  free: number;
}

export interface VarstoreEditor {
  /** The parse of the image the editor was made from. */
  readonly original: ParsedVarstore;
  readonly authenticated: boolean;
  /** The live variables as they are now (offset: the original record's, -1 for a new or changed one). */
  readonly variables: Variable[];
  /** True when toBuffer() would differ from the input image. */
  readonly changed: boolean;
  get(name: string, vendorGuid: string): Variable | undefined;
  /** Add or replace a variable. */
  set(name: string, vendorGuid: string, attributes: number, data: Uint8Array, options?: SetOptions): void;
  /** Delete a variable; false when there was none. */
  delete(name: string, vendorGuid: string): boolean;
  /** Append bytes to a variable (EFI_VARIABLE_APPEND_WRITE semantics, no de-duplication); creates it with options.attributes. */
  append(name: string, vendorGuid: string, data: Uint8Array, options?: AppendOptions): void;
  /**
   * Append EFI_SIGNATURE_LISTs to a signature database (PK, KEK, db, dbx, MokList …), leaving out
   * certificates and hashes already present; applies the timestamp rule (see the file comment).
   */
  appendSignatures(name: string, vendorGuid: string, signatureLists: Uint8Array, options?: AppendOptions): AppendResult;
  usage(): VarstoreUsage;
  /** The written image (a new buffer; the input is never modified). */
  toBuffer(): Buffer;
}

export type VarChange =
  | { op: 'set'; name: string; vendorGuid: string; attributes: number; data: Uint8Array; timestamp?: EfiTimeInput; monotonicCount?: number | bigint }
  | { op: 'delete'; name: string; vendorGuid: string }
  | { op: 'append'; name: string; vendorGuid: string; data: Uint8Array; attributes?: number; timestamp?: EfiTimeInput }
  | { op: 'appendSignatures'; name: string; vendorGuid: string; signatureLists: Uint8Array; attributes?: number; timestamp?: EfiTimeInput };

// ---------------------------------------------------------------- EFI_TIME

type TimeFields = [year: number, month: number, day: number, hour: number, minute: number, second: number, nanosecond: number];

const timeFields = (t: Uint8Array): TimeFields => {
  const dv = new DataView(t.buffer, t.byteOffset, 16);
  return [dv.getUint16(0, true), t[2], t[3], t[4], t[5], t[6], dv.getUint32(8, true)];
};

const compareTime = (a: TimeFields, b: TimeFields): number => {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return 0;
};

const isZero = (b: Uint8Array): boolean => b.every((x) => x === 0);

/** An EFI_TIME as the parser shows it, undefined when all 16 bytes are zero. */
export const formatEfiTime = (t: Uint8Array): string | undefined => {
  if (isZero(t.subarray(0, 16))) return undefined;
  const [y, mo, d, h, mi, s, ns] = timeFields(t);
  const p = (n: number, w = 2) => String(n).padStart(w, '0');
  return `${p(y, 4)}-${p(mo)}-${p(d)}T${p(h)}:${p(mi)}:${p(s)}${ns ? `.${p(ns, 9)}` : ''}`;
};

const TIME_RE = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?Z?$/;

/** Encode a time as an EFI_TIME (UTC: TimeZone 0, Daylight 0, pads 0 — what authenticated variables require). */
export const encodeEfiTime = (time: EfiTimeInput): Uint8Array => {
  let f: TimeFields;
  if (time instanceof Date) {
    if (Number.isNaN(time.getTime())) throw new VarstoreError('timestamp: invalid date');
    f = [
      time.getUTCFullYear(),
      time.getUTCMonth() + 1,
      time.getUTCDate(),
      time.getUTCHours(),
      time.getUTCMinutes(),
      time.getUTCSeconds(),
      time.getUTCMilliseconds() * 1_000_000,
    ];
  } else {
    const m = TIME_RE.exec(time);
    if (!m) throw new VarstoreError(`timestamp "${time}" is not YYYY-MM-DDTHH:MM:SS[.fraction] (UTC)`);
    f = [+m[1], +m[2], +m[3], +m[4], +m[5], +m[6], m[7] ? +m[7].padEnd(9, '0') : 0];
  }
  const [y, mo, d, h, mi, s] = f;
  if (y < 1900 || y > 9999 || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || s > 59)
    throw new VarstoreError(`timestamp ${String(time instanceof Date ? time.toISOString() : time)} is out of the EFI_TIME range`);
  const out = new Uint8Array(16);
  const dv = new DataView(out.buffer);
  dv.setUint16(0, y, true);
  out.set([mo, d, h, mi, s], 2);
  dv.setUint32(8, f[6], true);
  return out;
};

// ---------------------------------------------------------------- fault-tolerant write

const FTW_SIGNATURE = '9e58292b-7c68-497d-a0ce-6500fd9f1b95'; // gEdkiiWorkingBlockSignatureGuid
const FTW_BLOCK = 0x1000;
const FTW_WORKING_HEADER = 32; // Signature, Crc, state byte, Reserved[3], WriteQueueSize u64
const FTW_WRITE_HEADER = 40; // state byte, CallerId (at 4), NumberOfWrites u64 (at 24), PrivateDataSize u64 (at 32)
const FTW_RECORD = 40; // state byte, Lba, Offset, Length, RelativeOffset (u64 each, from 8)

/**
 * Whether the FTW working block records a write whose spare copy is complete but whose
 * destination is not: edk2 (FaultTolerantWriteDxe InitFtwProtocol, and the variable driver via the
 * FTW HOB) then copies the spare block over the variable store at the next boot — which would undo
 * anything written here. State bits are "set" when 0 (FTW_POLARITY_REVERT).
 */
export const hasPendingFaultTolerantWrite = (image: Uint8Array, parsed: ParsedVarstore): boolean => {
  const dv = new DataView(image.buffer, image.byteOffset, image.byteLength);
  const fvEnd = Math.min(parsed.fv.length, image.length);
  const storeEnd = parsed.fv.headerLength + parsed.storeSize;
  for (let at = Math.ceil(storeEnd / FTW_BLOCK) * FTW_BLOCK; at + FTW_WORKING_HEADER <= fvEnd; at += FTW_BLOCK) {
    if (readGuid(image, at) !== FTW_SIGNATURE) continue;
    const state = image[at + 20];
    if ((state & 0x01) !== 0 || (state & 0x02) === 0) return false; // working block not valid: the firmware re-initialises it
    const queueEnd = Math.min(fvEnd, at + FTW_WORKING_HEADER + Number(dv.getBigUint64(at + 24, true) & 0xffffffffn));
    let h = at + FTW_WORKING_HEADER;
    while (h + FTW_WRITE_HEADER <= queueEnd) {
      const hs = image[h];
      if ((hs & 0x01) !== 0) return false; // HeaderAllocated not set: no write in progress
      const writes = dv.getBigUint64(h + 24, true);
      const privateSize = dv.getBigUint64(h + 32, true);
      if (writes > 0x10000n || privateSize > 0x10000n) return false; // damaged queue: not ours to judge
      const recordSize = FTW_RECORD + Number(privateSize);
      if ((hs & 0x04) === 0) {
        h += FTW_WRITE_HEADER + Number(writes) * recordSize; // Complete
        continue;
      }
      for (let i = 0; i < Number(writes); i++) {
        const r = h + FTW_WRITE_HEADER + i * recordSize;
        if (r + FTW_RECORD > queueEnd) return false;
        if ((image[r] & 0x04) !== 0) return (image[r] & 0x02) === 0; // first record not DestinationComplete: SpareComplete?
      }
      return false;
    }
    return false;
  }
  return false;
};

// ---------------------------------------------------------------- the editor

interface Entry {
  name: string;
  guid: string;
  attributes: number;
  data: Uint8Array;
  /** Raw name bytes (UTF-16LE, NUL-terminated). */
  nameBytes: Uint8Array;
  /** Header template: MonotonicCount, TimeStamp, Reserved, PubKeyIndex come from here. */
  header: Uint8Array;
  /** Offset of the original record when this entry is that record, unchanged. */
  raw?: number;
}

const align = (n: number) => (n + HEADER_ALIGNMENT - 1) & ~(HEADER_ALIGNMENT - 1);
const keyOf = (guid: string, name: string) => `${guid}\u0000${name}`;
const sameBytes = (a: Uint8Array, b: Uint8Array) => a.length === b.length && a.every((x, i) => x === b[i]);
const hexAttr = (n: number) => `0x${n.toString(16)}`;

const LAYOUT_TEXT: Record<Layout, string> = { '2M': '2 MB', '4M': '4 MB', unknown: 'unknown-layout' };

/** Open an OVMF VARS image for editing (throws VarstoreError when the parser refuses it). */
export const editVarstore = (input: Uint8Array, options: EditOptions = {}): VarstoreEditor => {
  const image = new Uint8Array(input); // our own copy: later changes to `input` do not leak in
  const original = parseVarstore(image);
  const auth = original.authenticated;
  const hdrSize = auth ? AUTH_HEADER_SIZE : PLAIN_HEADER_SIZE;
  const vs = original.fv.headerLength;
  const start = align(vs + STORE_HEADER_SIZE);
  const end = vs + original.storeSize;
  const capacity = end - start;
  const limits = options.limits === undefined ? (original.layout === 'unknown' ? null : OVMF_VARIABLE_LIMITS[original.layout]) : options.limits;
  const dvImage = new DataView(image.buffer, image.byteOffset, image.byteLength);

  let entries: Entry[] = original.variables.map((v) => {
    const nameSize = dvImage.getUint32(v.offset + hdrSize - 24, true);
    return {
      name: v.name,
      guid: v.vendorGuid,
      attributes: v.attributes.value,
      data: v.data,
      nameBytes: image.slice(v.offset + hdrSize, v.offset + hdrSize + nameSize),
      header: image.slice(v.offset, v.offset + hdrSize),
      raw: v.offset,
    };
  });
  const originalOffsets = entries.map((e) => e.raw);

  const sizeOf = (e: Entry) => hdrSize + e.nameBytes.length + e.data.length;
  /** Bytes the records take, padding after the last one included (what the parser reports as `used`). */
  const alignedSize = (list: readonly Entry[]): number => list.reduce((n, e) => n + align(sizeOf(e)), 0);
  /** Whether the records fit: the last one needs no padding after it. */
  const fits = (list: readonly Entry[]): boolean =>
    list.length === 0 || alignedSize(list) - align(sizeOf(list[list.length - 1])) + sizeOf(list[list.length - 1]) <= capacity;
  const usedBy = (list: readonly Entry[]) => Math.min(alignedSize(list), capacity);

  const toVariable = (e: Entry): Variable => {
    const v: Variable = {
      name: e.name,
      vendorGuid: e.guid,
      attributes: decodeAttributes(e.attributes),
      data: new Uint8Array(e.data),
      offset: e.raw ?? -1,
    };
    if (auth) {
      v.monotonicCount = Number(new DataView(e.header.buffer, e.header.byteOffset, hdrSize).getBigUint64(8, true));
      const ts = formatEfiTime(e.header.subarray(16, 32));
      if (ts !== undefined) v.timestamp = ts;
    }
    return v;
  };

  const checkName = (name: string) => {
    if (typeof name !== 'string' || name.length === 0) throw new VarstoreError('a variable name must not be empty');
    if (name.includes('\u0000')) throw new VarstoreError(`variable name ${JSON.stringify(name)} contains a NUL character`);
  };

  const checkAttributes = (name: string, attributes: number) => {
    if (!Number.isInteger(attributes) || attributes < 0 || attributes > 0xffffffff)
      throw new VarstoreError(`${name}: attributes ${String(attributes)} are not a 32-bit value`);
    if ((attributes & A.NON_VOLATILE) === 0)
      throw new VarstoreError(`${name}: attributes ${hexAttr(attributes)} lack NON_VOLATILE; the variable store holds only non-volatile variables`);
    if ((attributes & A.RUNTIME_ACCESS) !== 0 && (attributes & A.BOOTSERVICE_ACCESS) === 0)
      throw new VarstoreError(`${name}: attributes ${hexAttr(attributes)} have RUNTIME_ACCESS without BOOTSERVICE_ACCESS`);
    if ((attributes & A.APPEND_WRITE) !== 0)
      throw new VarstoreError(`${name}: APPEND_WRITE is a SetVariable() flag, not a stored attribute; use append()`);
  };

  const checkLimit = (e: Entry) => {
    if (!limits) return;
    const size = sizeOf(e);
    const [limit, kind] =
      (e.attributes & A.HARDWARE_ERROR_RECORD) !== 0
        ? [limits.maxHwErrVariableSize, 'hardware error record']
        : (e.attributes & (A.AUTHENTICATED_WRITE_ACCESS | A.TIME_BASED_AUTHENTICATED_WRITE_ACCESS)) !== 0
          ? [limits.maxAuthVariableSize, 'authenticated']
          : [limits.maxVariableSize, 'non-volatile'];
    if (size > limit)
      throw new VarstoreError(
        `${e.name} would be ${size} bytes, over the firmware's ${limit}-byte limit for one ${kind} variable in a ${LAYOUT_TEXT[original.layout]} store`,
      );
  };

  const indexOf = (guid: string, name: string) => entries.findIndex((e) => e.guid === guid && e.name === name);

  /** Put `e` in place of the variable with its key (or last), after the limit and room checks. */
  const commit = (e: Entry, what: string) => {
    checkLimit(e);
    const k = keyOf(e.guid, e.name);
    const i = indexOf(e.guid, e.name);
    const next = entries.filter((x, j) => j === i || keyOf(x.guid, x.name) !== k);
    const at = i < 0 ? next.length : next.indexOf(entries[i]);
    if (i < 0) next.push(e);
    else next[at] = e;
    if (!fits(next)) {
      const before = usedBy(entries);
      throw new VarstoreError(`the variable store is full: ${what} needs ${alignedSize(next) - before} bytes, has ${capacity - before} free`);
    }
    entries = next;
  };

  const newHeader = (): Uint8Array => new Uint8Array(hdrSize);
  const encodeName = (name: string): Uint8Array => new Uint8Array(Buffer.from(`${name}\u0000`, 'utf16le'));

  const equalEntry = (a: Entry, b: Entry) =>
    a.attributes === b.attributes && sameBytes(a.data, b.data) && sameBytes(a.header, b.header) && sameBytes(a.nameBytes, b.nameBytes);

  const editor: VarstoreEditor = {
    original,
    authenticated: auth,
    get variables() {
      return entries.map(toVariable);
    },
    get changed() {
      return entries.length !== originalOffsets.length || entries.some((e, i) => e.raw === undefined || e.raw !== originalOffsets[i]);
    },

    get(name, vendorGuid) {
      const i = indexOf(normalizeGuid(vendorGuid), name);
      return i < 0 ? undefined : toVariable(entries[i]);
    },

    set(name, vendorGuid, attributes, data, opts = {}) {
      checkName(name);
      const guid = normalizeGuid(vendorGuid);
      checkAttributes(name, attributes);
      if (!(data instanceof Uint8Array)) throw new VarstoreError(`${name}: data must be bytes`);
      if (!auth && (opts.timestamp !== undefined || opts.monotonicCount !== undefined))
        throw new VarstoreError(`${name}: this variable store is not authenticated; its records have no timestamp or monotonic count`);
      const i = indexOf(guid, name);
      const old = i < 0 ? undefined : entries[i];
      const header = old ? old.header.slice() : newHeader();
      if (opts.timestamp !== undefined) header.set(encodeEfiTime(opts.timestamp), 16);
      if (opts.monotonicCount !== undefined) {
        const mc = BigInt(opts.monotonicCount);
        if (mc < 0n || mc > 0xffffffffffffffffn) throw new VarstoreError(`${name}: monotonic count ${mc} is not a 64-bit value`);
        new DataView(header.buffer).setBigUint64(8, mc, true);
      }
      const e: Entry = { name, guid, attributes, data: new Uint8Array(data), nameBytes: old ? old.nameBytes : encodeName(name), header };
      if (old && equalEntry(old, e)) return;
      commit(e, `${old ? 'replacing' : 'adding'} ${name}`);
    },

    delete(name, vendorGuid) {
      const guid = normalizeGuid(vendorGuid);
      const before = entries.length;
      entries = entries.filter((e) => !(e.guid === guid && e.name === name));
      return entries.length !== before;
    },

    append(name, vendorGuid, data, opts = {}) {
      checkName(name);
      const guid = normalizeGuid(vendorGuid);
      const old = entries[indexOf(guid, name)];
      const attributes = old?.attributes ?? opts.attributes;
      if (attributes === undefined) throw new VarstoreError(`${name} does not exist; appending to it needs its attributes`);
      if (old && opts.attributes !== undefined && opts.attributes !== old.attributes)
        throw new VarstoreError(`${name} has attributes ${hexAttr(old.attributes)}, not ${hexAttr(opts.attributes)}`);
      checkAttributes(name, attributes);
      if (data.length === 0) return;
      const joined = new Uint8Array((old?.data.length ?? 0) + data.length);
      if (old) joined.set(old.data);
      joined.set(data, old?.data.length ?? 0);
      const header = old ? old.header.slice() : newHeader();
      if (opts.timestamp !== undefined) laterTime(header, attributes, [encodeEfiTime(opts.timestamp)]);
      commit({ name, guid, attributes, data: joined, nameBytes: old ? old.nameBytes : encodeName(name), header }, `appending to ${name}`);
    },

    appendSignatures(name, vendorGuid, signatureLists, opts = {}) {
      checkName(name);
      const guid = normalizeGuid(vendorGuid);
      const old = entries[indexOf(guid, name)];
      const attributes = old?.attributes ?? opts.attributes ?? SECURE_BOOT_DB_ATTRIBUTES;
      if (old && opts.attributes !== undefined && opts.attributes !== old.attributes)
        throw new VarstoreError(`${name} has attributes ${hexAttr(old.attributes)}, not ${hexAttr(opts.attributes)}`);
      checkAttributes(name, attributes);
      const merged = mergeSignatureLists(old?.data ?? new Uint8Array(0), signatureLists, name);
      const result = (changed: boolean, header: Uint8Array | undefined): AppendResult => {
        const r: AppendResult = { added: changed ? merged.added.length : 0, duplicates: merged.duplicates, changed };
        const ts = header && auth ? formatEfiTime(header.subarray(16, 32)) : undefined;
        if (ts !== undefined) r.timestamp = ts;
        return r;
      };
      if (merged.added.length === 0) return result(false, old?.header);
      if (guid === EFI_GLOBAL_VARIABLE && name === 'PK' && readSignatureLists(merged.data, name).reduce((n, l) => n + l.entries.length, 0) > 1)
        throw new VarstoreError('PK holds exactly one certificate (the firmware refuses more); replace it with set() instead of appending');
      const header = old ? old.header.slice() : newHeader();
      const times = merged.addedCertificates.map((c) => encodeEfiTime(new Date(Math.floor(c.notBefore.getTime() / 1000) * 1000)));
      if (opts.timestamp !== undefined) times.push(encodeEfiTime(opts.timestamp));
      laterTime(header, attributes, times);
      commit(
        { name, guid, attributes, data: merged.data, nameBytes: old ? old.nameBytes : encodeName(name), header },
        `adding ${merged.added.length} ${merged.added.length === 1 ? 'entry' : 'entries'} to ${name}`,
      );
      return result(true, header);
    },

    usage() {
      const needed = usedBy(entries);
      return { capacity, needed, free: capacity - needed };
    },

    toBuffer() {
      if (!editor.changed) return Buffer.from(image);
      if (hasPendingFaultTolerantWrite(image, original))
        throw new VarstoreError(
          'the variable store has an unfinished fault-tolerant write that the firmware would copy over any change at the next boot; start the VM once and shut it down cleanly, then retry',
        );
      const out = Buffer.from(image);
      const dv = new DataView(out.buffer, out.byteOffset, out.byteLength);
      out.fill(0xff, start, end);
      let off = start;
      for (const e of entries) {
        out.set(e.header, off);
        dv.setUint16(off, START_ID, true);
        out[off + 2] = VAR_ADDED;
        dv.setUint32(off + 4, e.attributes, true);
        dv.setUint32(off + hdrSize - 24, e.nameBytes.length, true);
        dv.setUint32(off + hdrSize - 20, e.data.length, true);
        writeGuid(out, off + hdrSize - 16, e.guid);
        out.set(e.nameBytes, off + hdrSize);
        out.set(e.data, off + hdrSize + e.nameBytes.length);
        off = align(off + sizeOf(e));
      }
      // Self-check: the result must read back as exactly these variables.
      const back = parseVarstore(out).variables;
      if (back.length !== entries.length || back.some((v, i) => v.name !== entries[i].name || v.vendorGuid !== entries[i].guid || !sameBytes(v.data, entries[i].data)))
        throw new VarstoreError('internal error: the written variable store does not read back as written');
      return out;
    },
  };

  /** Move the header's timestamp to the latest of `candidates` if that is later (AT variables in authenticated stores). */
  function laterTime(header: Uint8Array, attributes: number, candidates: readonly Uint8Array[]) {
    if (!auth || (attributes & A.TIME_BASED_AUTHENTICATED_WRITE_ACCESS) === 0) return;
    let best: Uint8Array | undefined;
    for (const c of candidates) if (compareTime(timeFields(c), timeFields(best ?? header.subarray(16, 32))) > 0) best = c;
    if (best) header.set(best, 16);
  }

  return editor;
};

/** Apply `changes` in order to a VARS image and return the written image (see editVarstore). */
export const writeVarstore = (image: Uint8Array, changes: readonly VarChange[], options: EditOptions = {}): Buffer => {
  const ed = editVarstore(image, options);
  for (const c of changes) {
    switch (c.op) {
      case 'set':
        ed.set(c.name, c.vendorGuid, c.attributes, c.data, { timestamp: c.timestamp, monotonicCount: c.monotonicCount });
        break;
      case 'delete':
        ed.delete(c.name, c.vendorGuid);
        break;
      case 'append':
        ed.append(c.name, c.vendorGuid, c.data, { attributes: c.attributes, timestamp: c.timestamp });
        break;
      case 'appendSignatures':
        ed.appendSignatures(c.name, c.vendorGuid, c.signatureLists, { attributes: c.attributes, timestamp: c.timestamp });
        break;
    }
  }
  return ed.toBuffer();
};
