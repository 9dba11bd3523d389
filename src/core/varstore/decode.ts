/**
 * Pure decoders for the UEFI variables an admin cares about: boot configuration
 * (BootOrder, Boot####, Timeout …) and Secure Boot (PK/KEK/db/dbx, mode switches),
 * plus a store-to-store diff. Malformed data raises VarstoreError.
 */
import { x509 } from '../crypto';
import { VarstoreError } from '../errors';
import { devicePathsToText } from './devicepath';
import {
  EFI_CERT_SHA256,
  EFI_CERT_X509,
  EFI_CUSTOM_MODE_ENABLE,
  EFI_GLOBAL_VARIABLE,
  EFI_IMAGE_SECURITY_DATABASE,
  EFI_SECURE_BOOT_ENABLE_DISABLE,
  signatureTypeName,
} from './guids';
import { readGuid, readUtf16z, type Variable } from './parse';

const bad = (what: string, why: string): never => {
  throw new VarstoreError(`${what}: ${why}`);
};
const view = (d: Uint8Array) => new DataView(d.buffer, d.byteOffset, d.byteLength);
const hex4 = (n: number) => n.toString(16).toUpperCase().padStart(4, '0');

// ---------------------------------------------------------------- scalars and BootOrder

/** `BootOrder` / `DriverOrder`: little-endian u16 option numbers. */
export const decodeOrder = (data: Uint8Array, what = 'BootOrder'): number[] => {
  if (data.length % 2 !== 0) bad(what, `length ${data.length} is not a multiple of 2`);
  const dv = view(data);
  return Array.from({ length: data.length / 2 }, (_, i) => dv.getUint16(i * 2, true));
};

/** `Boot0001`-style name of option number `n` (`prefix` = Boot, Driver, SysPrep …). */
export const optionName = (n: number, prefix = 'Boot'): string => `${prefix}${hex4(n)}`;

/** u8 switches (SecureBoot, SetupMode, AuditMode, DeployedMode, SecureBootEnable, CustomMode). */
export const decodeU8 = (data: Uint8Array, what: string): number => {
  if (data.length !== 1) bad(what, `expected 1 byte, found ${data.length}`);
  return data[0];
};

/** u16 values (Timeout in seconds, BootCurrent, BootNext). */
export const decodeU16 = (data: Uint8Array, what: string): number => {
  if (data.length !== 2) bad(what, `expected 2 bytes, found ${data.length}`);
  return view(data).getUint16(0, true);
};

// ---------------------------------------------------------------- EFI_LOAD_OPTION

export interface LoadOption {
  attributes: number;
  active: boolean;
  hidden: boolean;
  /** LOAD_OPTION_CATEGORY: 'boot' (0) or 'app' (0x100); other values as hex. */
  category: string;
  description: string;
  /** First device path of the FilePathList, as text (what firmware boots). */
  devicePath: string;
  /** Every device path in the FilePathList (usually one). */
  devicePaths: string[];
  optionalDataLength: number;
}

/** Decode an EFI_LOAD_OPTION (Boot####, Driver####, SysPrep####, PlatformRecovery####). */
export const decodeLoadOption = (data: Uint8Array, what = 'load option'): LoadOption => {
  if (data.length < 6) bad(what, `${data.length} bytes is too short for a load option`);
  const dv = view(data);
  const attributes = dv.getUint32(0, true);
  const pathLength = dv.getUint16(4, true);
  let end = 6;
  while (end + 1 < data.length && (data[end] | data[end + 1]) !== 0) end += 2;
  if (end + 1 >= data.length) bad(what, 'description is not NUL-terminated');
  const description = readUtf16z(data, 6, end);
  const pathAt = end + 2;
  if (pathAt + pathLength > data.length)
    bad(what, `device path list (${pathLength} bytes) runs past the ${data.length}-byte option`);
  const devicePaths = devicePathsToText(data.subarray(pathAt, pathAt + pathLength));
  const cat = attributes & 0x1f00;
  return {
    attributes,
    active: (attributes & 0x1) !== 0,
    hidden: (attributes & 0x8) !== 0,
    category: cat === 0 ? 'boot' : cat === 0x100 ? 'app' : `0x${cat.toString(16)}`,
    description,
    devicePath: devicePaths[0] ?? '',
    devicePaths,
    optionalDataLength: data.length - pathAt - pathLength,
  };
};

// ---------------------------------------------------------------- EFI_SIGNATURE_LIST

export interface CertificateInfo {
  subject: string;
  /** Common name of the subject (the part people recognise), '' if none. */
  subjectCN: string;
  issuer: string;
  issuerCN: string;
  /** ISO 8601. */
  validFrom: string;
  validTo: string;
  /** Lowercase hex SHA-256 of the DER certificate. */
  sha256: string;
}

export type SignatureEntry =
  | { owner: string; kind: 'x509'; certificate: CertificateInfo }
  | { owner: string; kind: 'x509-unparsable'; size: number; error: string }
  | { owner: string; kind: 'sha256'; hash: string }
  | { owner: string; kind: 'other'; size: number };

export interface SignatureList {
  type: string;
  /** X509, SHA256 … or the raw GUID when unknown. */
  typeName: string;
  entries: SignatureEntry[];
}

const cnOf = (dn: string): string => /(?:^|\n)CN=([^\n]*)/.exec(dn)?.[1] ?? '';
const isoDate = (s: string): string => {
  const d = new Date(s);
  return Number.isNaN(d.getTime()) ? s : d.toISOString();
};

/** Summarise one DER certificate with Node's X509Certificate. */
export const certificateInfo = (der: Uint8Array): CertificateInfo => {
  const c = x509(der);
  return {
    subject: c.subject,
    subjectCN: cnOf(c.subject),
    issuer: c.issuer,
    issuerCN: cnOf(c.issuer),
    validFrom: isoDate(c.validFrom),
    validTo: isoDate(c.validTo),
    sha256: c.fingerprint256.replace(/:/g, '').toLowerCase(),
  };
};

/** Decode a PK/KEK/db/dbx (or MokList) payload: a sequence of EFI_SIGNATURE_LISTs. */
export const decodeSignatureLists = (data: Uint8Array, what = 'signature database'): SignatureList[] => {
  const dv = view(data);
  const lists: SignatureList[] = [];
  let o = 0;
  while (o < data.length) {
    if (o + 28 > data.length) bad(what, `signature list header at byte ${o} is truncated`);
    const type = readGuid(data, o);
    const listSize = dv.getUint32(o + 16, true);
    const headerSize = dv.getUint32(o + 20, true);
    const sigSize = dv.getUint32(o + 24, true);
    if (listSize < 28 || listSize > data.length - o)
      bad(what, `signature list at byte ${o} has size ${listSize}, beyond the ${data.length}-byte variable`);
    const body = listSize - 28 - headerSize;
    if (headerSize > listSize - 28 || sigSize < 16 || body % sigSize !== 0)
      bad(what, `signature list at byte ${o} is inconsistent (header ${headerSize}, entry ${sigSize}, list ${listSize})`);
    const entries: SignatureEntry[] = [];
    for (let e = o + 28 + headerSize; e < o + listSize; e += sigSize) {
      const owner = readGuid(data, e);
      const payload = data.subarray(e + 16, e + sigSize);
      if (type === EFI_CERT_X509) {
        try {
          entries.push({ owner, kind: 'x509', certificate: certificateInfo(payload) });
        } catch (err) {
          entries.push({ owner, kind: 'x509-unparsable', size: payload.length, error: (err as Error).message });
        }
      } else if (type === EFI_CERT_SHA256 && payload.length === 32) {
        entries.push({ owner, kind: 'sha256', hash: Buffer.from(payload).toString('hex') });
      } else {
        entries.push({ owner, kind: 'other', size: payload.length });
      }
    }
    lists.push({ type, typeName: signatureTypeName(type) ?? type, entries });
    o += listSize;
  }
  return lists;
};

// ---------------------------------------------------------------- Secure Boot summary

export type Switch = 'on' | 'off' | 'absent';

export interface SignatureCounts {
  present: boolean;
  x509: number;
  sha256: number;
  other: number;
}

export interface SecureBootSummary {
  /** The `SecureBoot` variable. edk2 keeps it volatile, so a VARS file normally has none ('absent'). */
  secureBoot: Switch;
  /** OVMF's persistent switch (`SecureBootEnable`, SecureBootEnableDisable vendor). */
  secureBootEnable: Switch;
  /**
   * What edk2 will set SecureBoot to at the next boot of a Secure-Boot-capable CODE image:
   * 'on' when a PK is enrolled and SecureBootEnable is not off.
   */
  effective: 'on' | 'off';
  /** From `SetupMode` when stored, else derived: no PK = 'setup'. */
  setupMode: 'setup' | 'user';
  auditMode: Switch;
  deployedMode: Switch;
  customMode: Switch;
  pk: SignatureCounts;
  kek: SignatureCounts;
  db: SignatureCounts;
  dbx: SignatureCounts;
  /** Microsoft certificates found (KEKs in KEK, CAs in db), matched by subject CN. */
  microsoft: {
    kek2011: boolean;
    kek2023: boolean;
    uefiCa2011: boolean;
    uefiCa2023: boolean;
    windowsPca2011: boolean;
    windowsUefiCa2023: boolean;
    optionRomUefiCa2023: boolean;
  };
  /** Certificate subjects per database, for display. */
  subjects: { pk: string[]; kek: string[]; db: string[]; dbx: string[] };
  /** Variables that could not be decoded (one line each). */
  problems: string[];
}

const MS_KEK: Record<'kek2011' | 'kek2023', string> = {
  kek2011: 'Microsoft Corporation KEK CA 2011',
  kek2023: 'Microsoft Corporation KEK 2K CA 2023',
};
const MS_DB: Record<'uefiCa2011' | 'uefiCa2023' | 'windowsPca2011' | 'windowsUefiCa2023' | 'optionRomUefiCa2023', string> = {
  uefiCa2011: 'Microsoft Corporation UEFI CA 2011',
  uefiCa2023: 'Microsoft UEFI CA 2023',
  windowsPca2011: 'Microsoft Windows Production PCA 2011',
  windowsUefiCa2023: 'Windows UEFI CA 2023',
  optionRomUefiCa2023: 'Microsoft Option ROM UEFI CA 2023',
};

/** Find a live variable by vendor GUID and name. */
export const findVariable = (vars: readonly Variable[], vendor: string, name: string): Variable | undefined =>
  vars.find((v) => v.vendorGuid === vendor && v.name === name);

/** Secure Boot state as far as the NVRAM determines it. Never throws; undecodable data goes to `problems`. */
export const secureBootSummary = (vars: readonly Variable[]): SecureBootSummary => {
  const problems: string[] = [];
  const sw = (vendor: string, name: string): Switch => {
    const v = findVariable(vars, vendor, name);
    if (!v) return 'absent';
    try {
      return decodeU8(v.data, name) === 0 ? 'off' : 'on';
    } catch (e) {
      problems.push((e as Error).message);
      return 'absent';
    }
  };
  const db = (vendor: string, name: string) => {
    const v = findVariable(vars, vendor, name);
    const counts: SignatureCounts = { present: v !== undefined, x509: 0, sha256: 0, other: 0 };
    const cns: string[] = [];
    if (!v) return { counts, cns };
    try {
      for (const list of decodeSignatureLists(v.data, name))
        for (const e of list.entries) {
          if (e.kind === 'x509') {
            counts.x509 += 1;
            cns.push(e.certificate.subjectCN || e.certificate.subject.replace(/\n/g, ', '));
          } else if (e.kind === 'sha256') counts.sha256 += 1;
          else counts.other += 1;
        }
    } catch (e) {
      problems.push((e as Error).message);
    }
    return { counts, cns };
  };

  const pk = db(EFI_GLOBAL_VARIABLE, 'PK');
  const kek = db(EFI_GLOBAL_VARIABLE, 'KEK');
  const dbv = db(EFI_IMAGE_SECURITY_DATABASE, 'db');
  const dbx = db(EFI_IMAGE_SECURITY_DATABASE, 'dbx');
  const secureBootEnable = sw(EFI_SECURE_BOOT_ENABLE_DISABLE, 'SecureBootEnable');
  const storedSetup = sw(EFI_GLOBAL_VARIABLE, 'SetupMode');
  const pkEnrolled = pk.counts.present && pk.counts.x509 + pk.counts.other > 0;
  const pick = <K extends string>(table: Record<K, string>, cns: string[]) =>
    Object.fromEntries(Object.entries<string>(table).map(([k, cn]) => [k, cns.includes(cn)])) as Record<K, boolean>;

  return {
    secureBoot: sw(EFI_GLOBAL_VARIABLE, 'SecureBoot'),
    secureBootEnable,
    effective: pkEnrolled && secureBootEnable !== 'off' ? 'on' : 'off',
    setupMode: storedSetup === 'absent' ? (pkEnrolled ? 'user' : 'setup') : storedSetup === 'on' ? 'setup' : 'user',
    auditMode: sw(EFI_GLOBAL_VARIABLE, 'AuditMode'),
    deployedMode: sw(EFI_GLOBAL_VARIABLE, 'DeployedMode'),
    customMode: sw(EFI_CUSTOM_MODE_ENABLE, 'CustomMode'),
    pk: pk.counts,
    kek: kek.counts,
    db: dbv.counts,
    dbx: dbx.counts,
    microsoft: { ...pick(MS_KEK, kek.cns), ...pick(MS_DB, dbv.cns) },
    subjects: { pk: pk.cns, kek: kek.cns, db: dbv.cns, dbx: dbx.cns },
    problems,
  };
};

// ---------------------------------------------------------------- per-variable dispatcher

export type Decoded =
  | { kind: 'order'; options: string[] }
  | { kind: 'u16'; value: number; option?: string }
  | { kind: 'switch'; value: number }
  | { kind: 'load-option'; option: LoadOption }
  | { kind: 'device-path'; paths: string[] }
  | { kind: 'signatures'; lists: SignatureList[] }
  | { kind: 'string'; value: string }
  | { kind: 'error'; error: string };

const LOAD_OPTION = /^(Boot|Driver|SysPrep|PlatformRecovery)[0-9A-F]{4}$/;
const ORDER = /^(Boot|Driver|SysPrep)Order$/;

/**
 * Decode a variable whose meaning is known (global boot/console/Secure Boot variables, db/dbx,
 * OVMF switches); undefined for anything else. Malformed data gives `{ kind: 'error' }`.
 */
export const decodeVariable = (v: Variable): Decoded | undefined => {
  const { name, data, vendorGuid: g } = v;
  try {
    if (g === EFI_GLOBAL_VARIABLE) {
      const order = ORDER.exec(name);
      if (order) return { kind: 'order', options: decodeOrder(data, name).map((n) => optionName(n, order[1])) };
      if (LOAD_OPTION.test(name)) return { kind: 'load-option', option: decodeLoadOption(data, name) };
      if (name === 'BootCurrent' || name === 'BootNext') {
        const value = decodeU16(data, name);
        return { kind: 'u16', value, option: optionName(value) };
      }
      if (name === 'Timeout') return { kind: 'u16', value: decodeU16(data, name) };
      if (['SecureBoot', 'SetupMode', 'AuditMode', 'DeployedMode', 'VendorKeys'].includes(name))
        return { kind: 'switch', value: decodeU8(data, name) };
      if (['PK', 'KEK', 'PKDefault', 'KEKDefault', 'dbDefault', 'dbxDefault'].includes(name))
        return { kind: 'signatures', lists: decodeSignatureLists(data, name) };
      if (/^(ConIn|ConOut|ErrOut)(Dev)?$/.test(name)) return { kind: 'device-path', paths: devicePathsToText(data) };
      if (['Lang', 'PlatformLang', 'LangCodes', 'PlatformLangCodes'].includes(name)) {
        let s = '';
        for (const c of data) {
          if (c === 0) break;
          s += String.fromCharCode(c);
        }
        return { kind: 'string', value: s };
      }
      return undefined;
    }
    if (g === EFI_IMAGE_SECURITY_DATABASE && ['db', 'dbx', 'dbt', 'dbr'].includes(name))
      return { kind: 'signatures', lists: decodeSignatureLists(data, name) };
    if ((g === EFI_SECURE_BOOT_ENABLE_DISABLE && name === 'SecureBootEnable') || (g === EFI_CUSTOM_MODE_ENABLE && name === 'CustomMode'))
      return { kind: 'switch', value: decodeU8(data, name) };
    return undefined;
  } catch (e) {
    if (e instanceof VarstoreError) return { kind: 'error', error: e.message };
    throw e;
  }
};

// ---------------------------------------------------------------- diff

export interface VariableChange {
  before: Variable;
  after: Variable;
  dataChanged: boolean;
  attributesChanged: boolean;
}

export interface VarstoreDiff {
  added: Variable[];
  removed: Variable[];
  changed: VariableChange[];
  unchanged: number;
}

const sameBytes = (a: Uint8Array, b: Uint8Array): boolean => a.length === b.length && a.every((x, i) => x === b[i]);

/** Compare two stores' live variables, keyed by vendor GUID + name. */
export const diffVarstores = (a: { variables: readonly Variable[] }, b: { variables: readonly Variable[] }): VarstoreDiff => {
  const key = (v: Variable) => `${v.vendorGuid}\u0000${v.name}`;
  const before = new Map(a.variables.map((v) => [key(v), v]));
  const after = new Map(b.variables.map((v) => [key(v), v]));
  const diff: VarstoreDiff = { added: [], removed: [], changed: [], unchanged: 0 };
  for (const [k, v] of before) if (!after.has(k)) diff.removed.push(v);
  for (const [k, v] of after) {
    const old = before.get(k);
    if (!old) {
      diff.added.push(v);
      continue;
    }
    const dataChanged = !sameBytes(old.data, v.data);
    const attributesChanged = old.attributes.value !== v.attributes.value;
    if (dataChanged || attributesChanged) diff.changed.push({ before: old, after: v, dataChanged, attributesChanged });
    else diff.unchanged += 1;
  }
  return diff;
};
