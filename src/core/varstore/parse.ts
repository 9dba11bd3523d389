/**
 * Pure parser for edk2/OVMF variable store images (raw `OVMF_VARS*.fd`, or a combined `OVMF.fd`
 * whose first firmware volume is the NV store). No I/O.
 *
 * Layout (edk2 MdePkg/Include/Pi/PiFirmwareVolume.h, MdeModulePkg/Include/Guid/VariableFormat.h,
 * OvmfPkg/VarStore.fdf.inc):
 *   EFI_FIRMWARE_VOLUME_HEADER  (FileSystemGuid = EFI_SYSTEM_NV_DATA_FV_GUID, "_FVH", HeaderLength)
 *   VARIABLE_STORE_HEADER       (Signature GUID, Size, Format 0x5A, State 0xFE)
 *   [AUTHENTICATED_]VARIABLE_HEADER + UTF-16LE name + data, each 4-byte aligned, until StartId != 0x55AA
 *   (then the fault-tolerant-write working block and spare area, which we do not read).
 *
 * Every offset and length read from the image is checked against the store; a corrupt or hostile
 * image raises VarstoreError.
 */
import { VarstoreError } from '../errors';

export type Layout = '2M' | '4M' | 'unknown';

export type AttributeFlag = 'NV' | 'BS' | 'RT' | 'HR' | 'AW' | 'AT' | 'AP' | 'EA';

export interface Attributes {
  value: number;
  flags: AttributeFlag[];
}

export interface Variable {
  name: string;
  /** Lowercase registry-format GUID. */
  vendorGuid: string;
  attributes: Attributes;
  data: Uint8Array;
  /** Authenticated stores only. */
  monotonicCount?: number;
  /** Authenticated stores only, when the EFI_TIME is not all zero: `YYYY-MM-DDTHH:MM:SS[.nnnnnnnnn]`. */
  timestamp?: string;
  /** Byte offset of the variable header in the image (for diagnostics). */
  offset: number;
}

export interface Skipped {
  deleted: number;
  inTransition: number;
  headerOnly: number;
}

export interface ParsedVarstore {
  layout: Layout;
  authenticated: boolean;
  /** VARIABLE_STORE_HEADER.Size (bytes, header included). */
  storeSize: number;
  /** FV header length, checksum validity, total FV length. */
  fv: { length: number; headerLength: number; checksumOk: boolean };
  /** Bytes used by variable records (live and dead), and bytes left before the store end. */
  used: number;
  free: number;
  variables: Variable[];
  skipped: Skipped;
}

export const EFI_SYSTEM_NV_DATA_FV_GUID = 'fff12b8d-7696-4c8b-a985-2747075b4f50';
export const EFI_AUTHENTICATED_VARIABLE_GUID = 'aaf32c78-947b-439a-a180-2e144ec37792';
export const EFI_VARIABLE_GUID = 'ddcf3616-3275-4164-98b6-fe85707ffe7d';

const FVH_SIGNATURE = 0x4856465f; // "_FVH" little-endian
const QCOW2_MAGIC = 0x514649fb; // "QFI\xfb" big-endian
const FV_HEADER_MIN = 0x38 + 8; // fixed part + one block-map entry (the terminator)
export const STORE_HEADER_SIZE = 28;
const VARIABLE_FORMATTED = 0x5a;
const VARIABLE_STORE_HEALTHY = 0xfe;
export const START_ID = 0x55aa;
export const AUTH_HEADER_SIZE = 60;
export const PLAIN_HEADER_SIZE = 32;
export const HEADER_ALIGNMENT = 4;

// State bits are cleared as a record progresses: 0xFF → 0x7F VAR_HEADER_VALID_ONLY → 0x3F VAR_ADDED;
// deletion clears bit 0 (VAR_IN_DELETED_TRANSITION, 0xFE) and then bit 1 (VAR_DELETED, 0xFD).
const BIT_IN_TRANSITION = 0x01;
const BIT_DELETED = 0x02;
const BIT_ADDED = 0x40;

const FV_LENGTH_2M = 0x20000;
const FV_LENGTH_4M = 0x84000;

const ATTRIBUTE_FLAGS: ReadonlyArray<[number, AttributeFlag]> = [
  [0x01, 'NV'], // NON_VOLATILE
  [0x02, 'BS'], // BOOTSERVICE_ACCESS
  [0x04, 'RT'], // RUNTIME_ACCESS
  [0x08, 'HR'], // HARDWARE_ERROR_RECORD
  [0x10, 'AW'], // AUTHENTICATED_WRITE_ACCESS (deprecated count-based)
  [0x20, 'AT'], // TIME_BASED_AUTHENTICATED_WRITE_ACCESS
  [0x40, 'AP'], // APPEND_WRITE
  [0x80, 'EA'], // ENHANCED_AUTHENTICATED_ACCESS
];

export const decodeAttributes = (value: number): Attributes => ({
  value,
  flags: ATTRIBUTE_FLAGS.filter(([bit]) => (value & bit) !== 0).map(([, flag]) => flag),
});

const hex = (b: Uint8Array, from: number, to: number): string => {
  let s = '';
  for (let i = from; i < to; i++) s += b[i].toString(16).padStart(2, '0');
  return s;
};

/** Read a mixed-endian EFI_GUID at `off` as a lowercase registry-format string (caller checks bounds). */
export const readGuid = (b: Uint8Array, off: number): string => {
  const le = (from: number, len: number): string => {
    let s = '';
    for (let i = from + len - 1; i >= from; i--) s += b[i].toString(16).padStart(2, '0');
    return s;
  };
  return `${le(off, 4)}-${le(off + 4, 2)}-${le(off + 6, 2)}-${hex(b, off + 8, off + 10)}-${hex(b, off + 10, off + 16)}`;
};

/** Decode UTF-16LE up to the first NUL (or the end of the range). */
export const readUtf16z = (b: Uint8Array, from: number, to: number): string => {
  const units: number[] = [];
  for (let i = from; i + 1 < to; i += 2) {
    const u = b[i] | (b[i + 1] << 8);
    if (u === 0) break;
    units.push(u);
  }
  let s = '';
  for (let i = 0; i < units.length; i += 4096) s += String.fromCharCode(...units.slice(i, i + 4096));
  return s;
};

const fail = (what: string): never => {
  throw new VarstoreError(`not a usable OVMF variable store: ${what}`);
};

const efiTime = (b: Uint8Array, dv: DataView, off: number): string | undefined => {
  let zero = true;
  for (let i = off; i < off + 16; i++) if (b[i] !== 0) zero = false;
  if (zero) return undefined;
  const p = (n: number, w = 2) => String(n).padStart(w, '0');
  const ns = dv.getUint32(off + 8, true);
  return (
    `${p(dv.getUint16(off, true), 4)}-${p(b[off + 2])}-${p(b[off + 3])}` +
    `T${p(b[off + 4])}:${p(b[off + 5])}:${p(b[off + 6])}${ns ? `.${p(ns, 9)}` : ''}`
  );
};

const layoutOf = (fvLength: number): Layout =>
  fvLength === FV_LENGTH_2M ? '2M' : fvLength === FV_LENGTH_4M ? '4M' : 'unknown';

type RecordState = 'added' | 'inTransition' | 'deleted' | 'headerOnly';

const classify = (state: number): RecordState =>
  (state & BIT_DELETED) === 0
    ? 'deleted'
    : (state & BIT_ADDED) !== 0
      ? 'headerOnly' // data never committed
      : (state & BIT_IN_TRANSITION) === 0
        ? 'inTransition'
        : 'added';

/**
 * Parse an OVMF VARS image. Throws VarstoreError when the image is not a well-formed
 * variable store; never reads outside `bytes`.
 */
export const parseVarstore = (bytes: Uint8Array): ParsedVarstore => {
  const b = bytes;
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  if (b.length >= 4 && dv.getUint32(0, false) === QCOW2_MAGIC)
    fail('this is a qcow2 image; only raw VARS files are read (qemu-img convert -O raw FILE FILE.fd)');
  if (b.length < FV_HEADER_MIN) fail(`file is ${b.length} bytes, too small for a firmware volume header`);
  if (dv.getUint32(0x28, true) !== FVH_SIGNATURE) fail('no "_FVH" firmware volume signature at offset 0x28');
  const fsGuid = readGuid(b, 0x10);
  if (fsGuid !== EFI_SYSTEM_NV_DATA_FV_GUID)
    fail(`firmware volume ${fsGuid} is not an NV data volume (expected ${EFI_SYSTEM_NV_DATA_FV_GUID}); is this a CODE image?`);

  const fvLengthBig = dv.getBigUint64(0x20, true);
  const headerLength = dv.getUint16(0x30, true);
  if (headerLength < FV_HEADER_MIN || headerLength % 2 !== 0 || headerLength > b.length)
    fail(`firmware volume header length ${headerLength} is invalid`);
  if (fvLengthBig < BigInt(headerLength + STORE_HEADER_SIZE) || fvLengthBig > BigInt(b.length))
    fail(`firmware volume length ${fvLengthBig} does not fit the ${b.length}-byte file (truncated?)`);
  const fvLength = Number(fvLengthBig);
  let sum = 0;
  for (let i = 0; i < headerLength; i += 2) sum = (sum + dv.getUint16(i, true)) & 0xffff;

  // Variable store header right after the FV header (OVMF has no FV extension header here).
  const vs = headerLength;
  const sig = readGuid(b, vs);
  const authenticated = sig === EFI_AUTHENTICATED_VARIABLE_GUID;
  if (!authenticated && sig !== EFI_VARIABLE_GUID) fail(`unknown variable store signature ${sig}`);
  const storeSize = dv.getUint32(vs + 16, true);
  const format = b[vs + 20];
  const state = b[vs + 21];
  if (format !== VARIABLE_FORMATTED) fail(`variable store format 0x${format.toString(16)} (expected 0x5a, formatted)`);
  if (state !== VARIABLE_STORE_HEALTHY) fail(`variable store state 0x${state.toString(16)} (expected 0xfe, healthy)`);
  if (storeSize < STORE_HEADER_SIZE || vs + storeSize > fvLength)
    fail(`variable store size ${storeSize} does not fit the ${fvLength}-byte firmware volume`);

  const end = vs + storeSize;
  const hdrSize = authenticated ? AUTH_HEADER_SIZE : PLAIN_HEADER_SIZE;
  const records: Array<Variable & { state: RecordState }> = [];
  const skipped: Skipped = { deleted: 0, inTransition: 0, headerOnly: 0 };

  // Offsets strictly increase (each record is ≥ hdrSize bytes), so the walk ends in ≤ storeSize/hdrSize steps.
  let off = (vs + STORE_HEADER_SIZE + HEADER_ALIGNMENT - 1) & ~(HEADER_ALIGNMENT - 1);
  while (off + 2 <= end && dv.getUint16(off, true) === START_ID) {
    if (off + hdrSize > end) fail(`variable header at 0x${off.toString(16)} runs past the store end`);
    const recState = classify(b[off + 2]);
    const attributes = dv.getUint32(off + 4, true);
    const sizes = off + hdrSize - 24;
    const nameSize = dv.getUint32(sizes, true);
    const dataSize = dv.getUint32(sizes + 4, true);
    const nameAt = off + hdrSize;
    // Plain numbers: all terms < 2^33, so no overflow.
    const dataAt = nameAt + nameSize;
    const next = dataAt + dataSize;
    if (next > end)
      fail(`variable at 0x${off.toString(16)} (name ${nameSize} B, data ${dataSize} B) runs past the store end`);
    const v: Variable & { state: RecordState } = {
      state: recState,
      name: readUtf16z(b, nameAt, dataAt),
      vendorGuid: readGuid(b, sizes + 8),
      attributes: decodeAttributes(attributes),
      data: new Uint8Array(b.subarray(dataAt, next)), // a copy, and a plain Uint8Array even for Buffer input
      offset: off,
    };
    if (authenticated) {
      v.monotonicCount = Number(dv.getBigUint64(off + 8, true));
      const ts = efiTime(b, dv, off + 16);
      if (ts !== undefined) v.timestamp = ts;
    }
    records.push(v);
    off = (next + HEADER_ALIGNMENT - 1) & ~(HEADER_ALIGNMENT - 1);
  }
  const used = Math.min(off, end) - vs - STORE_HEADER_SIZE;

  // edk2 FindVariableEx: a VAR_ADDED record wins; an in-deleted-transition record is live only
  // when no VAR_ADDED record with the same name and vendor exists.
  const key = (v: Variable) => `${v.vendorGuid}\u0000${v.name}`;
  const added = new Set(records.filter((r) => r.state === 'added').map(key));
  const variables: Variable[] = [];
  for (const { state: s, ...v } of records) {
    if (s === 'added') variables.push(v);
    else if (s === 'inTransition' && !added.has(key(v))) {
      added.add(key(v));
      variables.push(v);
    } else skipped[s] += 1;
  }

  return {
    layout: layoutOf(fvLength),
    authenticated,
    storeSize,
    fv: { length: fvLength, headerLength, checksumOk: sum === 0 },
    used,
    free: end - vs - STORE_HEADER_SIZE - used,
    variables,
    skipped,
  };
};
