/**
 * Building and merging EFI_SIGNATURE_LISTs (the payload of PK, KEK, db, dbx, MokList …) and reading
 * the X.509 certificates that go into them. Pure (node:crypto only); malformed input raises a one-line
 * VarstoreError.
 *
 * EFI_SIGNATURE_LIST (UEFI spec 32.4.1, MdePkg/Include/Guid/ImageAuthentication.h):
 *   SignatureType GUID, SignatureListSize u32, SignatureHeaderSize u32, SignatureSize u32,
 *   SignatureHeader[SignatureHeaderSize], then EFI_SIGNATURE_DATA[] of SignatureSize bytes each:
 *   SignatureOwner GUID + SignatureData (an X.509 DER certificate, a SHA-256 hash …).
 */
import { x509, type X509Certificate } from '../crypto';
import { VarstoreError } from '../errors';
import { EFI_CERT_SHA256, EFI_CERT_X509, signatureTypeName } from './guids';
import { readGuid } from './parse';

const LIST_HEADER = 28;
const OWNER = 16;
const GUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

const bad = (message: string): never => {
  throw new VarstoreError(message);
};

/** Write a registry-format GUID at `off` in EFI (mixed-endian) byte order. */
export const writeGuid = (b: Uint8Array, off: number, guid: string): void => {
  if (!GUID_RE.test(guid)) bad(`"${guid}" is not a GUID (expected xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)`);
  const h = guid.replace(/-/g, '');
  const byte = (i: number) => parseInt(h.slice(i * 2, i * 2 + 2), 16);
  [3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15].forEach((src, i) => {
    b[off + i] = byte(src);
  });
};

/** A GUID in the lowercase registry form the parser reports (throws when it is not a GUID). */
export const normalizeGuid = (guid: string): string => {
  if (!GUID_RE.test(guid)) bad(`"${guid}" is not a GUID (expected xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)`);
  return guid.toLowerCase();
};

// ---------------------------------------------------------------- certificates

export interface Certificate {
  /** The DER encoding (what an EFI_CERT_X509 entry holds). */
  der: Uint8Array;
  subject: string;
  /** notBefore, second resolution. */
  notBefore: Date;
  notAfter: Date;
  /** Lowercase hex SHA-256 of the DER. */
  sha256: string;
}

const toDate = (s: string, what: string): Date => {
  const d = new Date(s);
  if (Number.isNaN(d.getTime())) bad(`${what}: unreadable certificate date "${s}"`);
  return d;
};

const fromX509 = (c: X509Certificate, what: string): Certificate => ({
  der: new Uint8Array(c.raw),
  subject: c.subject.replace(/\n/g, ', '),
  notBefore: toDate(c.validFrom, what),
  notAfter: toDate(c.validTo, what),
  sha256: c.fingerprint256.replace(/:/g, '').toLowerCase(),
});

const PEM_BLOCK = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g;

/**
 * Every certificate in a PEM file (one or more CERTIFICATE blocks) or one DER certificate.
 * `what` names the input in errors (a file name).
 */
export const parseCertificates = (input: Uint8Array | string, what = 'certificate'): Certificate[] => {
  const text = typeof input === 'string' ? input : Buffer.from(input.subarray(0, 1 << 20)).toString('latin1');
  const load = (src: string | Uint8Array, label: string): Certificate => {
    try {
      return fromX509(x509(src), label);
    } catch (e) {
      if (e instanceof VarstoreError) throw e;
      return bad(`${label} is not a valid X.509 certificate (PEM or DER): ${(e as Error).message.split('\n')[0]}`);
    }
  };
  if (text.includes('-----BEGIN')) {
    const blocks = text.match(PEM_BLOCK) ?? [];
    if (blocks.length === 0) bad(`${what} has no PEM "BEGIN CERTIFICATE" block`);
    return blocks.map((b, i) => load(b, blocks.length > 1 ? `${what} (certificate ${i + 1})` : what));
  }
  if (typeof input === 'string') return bad(`${what} is not a PEM certificate`);
  return [load(input, what)];
};

/** Exactly one certificate (PEM or DER); more or none is an error naming `what`. */
export const parseCertificate = (input: Uint8Array | string, what = 'certificate'): Certificate => {
  const all = parseCertificates(input, what);
  if (all.length !== 1) bad(`${what} holds ${all.length} certificates; give one certificate per file`);
  return all[0];
};

// ---------------------------------------------------------------- signature lists

export interface RawSignature {
  /** EFI_SIGNATURE_LIST.SignatureType (lowercase GUID). */
  type: string;
  owner: string;
  /** SignatureData without the owner GUID. */
  data: Uint8Array;
}

export interface RawSignatureList {
  type: string;
  /** SignatureHeader bytes (empty for every type the UEFI spec defines). */
  header: Uint8Array;
  /** EFI_SIGNATURE_LIST.SignatureSize: owner GUID + data. */
  signatureSize: number;
  entries: RawSignature[];
}

/** Split a signature database into its lists and entries, bytes as they are; structural errors throw. */
export const readSignatureLists = (data: Uint8Array, what = 'signature database'): RawSignatureList[] => {
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const lists: RawSignatureList[] = [];
  for (let o = 0; o < data.length; ) {
    if (o + LIST_HEADER > data.length) bad(`${what}: signature list header at byte ${o} is truncated`);
    const type = readGuid(data, o);
    const listSize = dv.getUint32(o + 16, true);
    const headerSize = dv.getUint32(o + 20, true);
    const sigSize = dv.getUint32(o + 24, true);
    if (listSize < LIST_HEADER || listSize > data.length - o)
      bad(`${what}: signature list at byte ${o} has size ${listSize}, beyond the ${data.length}-byte data`);
    const body = listSize - LIST_HEADER - headerSize;
    if (headerSize > listSize - LIST_HEADER || sigSize < OWNER || body % sigSize !== 0)
      bad(`${what}: signature list at byte ${o} is inconsistent (header ${headerSize}, entry ${sigSize}, list ${listSize})`);
    const entries: RawSignature[] = [];
    for (let e = o + LIST_HEADER + headerSize; e < o + listSize; e += sigSize)
      entries.push({ type, owner: readGuid(data, e), data: new Uint8Array(data.subarray(e + OWNER, e + sigSize)) });
    lists.push({ type, header: new Uint8Array(data.subarray(o + LIST_HEADER, o + LIST_HEADER + headerSize)), signatureSize: sigSize, entries });
    o += listSize;
  }
  return lists;
};

/** One EFI_SIGNATURE_LIST of `type` holding `entries` (all the same size). */
export const buildSignatureList = (
  type: string,
  entries: ReadonlyArray<{ owner: string; data: Uint8Array }>,
  header: Uint8Array = new Uint8Array(0),
): Uint8Array => {
  if (entries.length === 0) bad('a signature list needs at least one entry');
  const size = entries[0].data.length;
  if (entries.some((e) => e.data.length !== size)) bad(`${signatureTypeName(type) ?? type} entries of one signature list must have equal sizes`);
  const sigSize = OWNER + size;
  const total = LIST_HEADER + header.length + entries.length * sigSize;
  const out = new Uint8Array(total);
  const dv = new DataView(out.buffer);
  writeGuid(out, 0, type);
  dv.setUint32(16, total, true);
  dv.setUint32(20, header.length, true);
  dv.setUint32(24, sigSize, true);
  out.set(header, LIST_HEADER);
  entries.forEach((e, i) => {
    const at = LIST_HEADER + header.length + i * sigSize;
    writeGuid(out, at, e.owner);
    out.set(e.data, at + OWNER);
  });
  return out;
};

/** An EFI_SIGNATURE_LIST with one X.509 certificate (PEM or DER input, or a parsed Certificate). */
export const x509SignatureList = (cert: Certificate | Uint8Array | string, owner: string): Uint8Array => {
  const c = cert instanceof Uint8Array || typeof cert === 'string' ? parseCertificate(cert) : cert;
  return buildSignatureList(EFI_CERT_X509, [{ owner: normalizeGuid(owner), data: c.der }]);
};

/** An EFI_SIGNATURE_LIST of SHA-256 hashes (64 hex digits or 32 bytes each). */
export const sha256SignatureList = (hashes: ReadonlyArray<string | Uint8Array>, owner: string): Uint8Array => {
  const o = normalizeGuid(owner);
  return buildSignatureList(
    EFI_CERT_SHA256,
    hashes.map((h) => {
      if (typeof h === 'string') {
        if (!/^[0-9a-f]{64}$/i.test(h)) bad(`"${h}" is not a SHA-256 hash (64 hex digits)`);
        return { owner: o, data: new Uint8Array(Buffer.from(h, 'hex')) };
      }
      if (h.length !== 32) bad(`a SHA-256 hash is 32 bytes, not ${h.length}`);
      return { owner: o, data: new Uint8Array(h) };
    }),
  );
};

const entryKey = (e: RawSignature): string => `${e.type}:${Buffer.from(e.data).toString('hex')}`;

export interface SignatureMerge {
  /** The existing data, unchanged, followed by the lists of the entries that were new. */
  data: Uint8Array;
  /** Entries that were new, in input order. */
  added: RawSignature[];
  /** Certificates among `added` (parsed). */
  addedCertificates: Certificate[];
  /** Entries already present (in `existing` or earlier in `additions`), left out. */
  duplicates: number;
}

/**
 * Append the signature lists `additions` to the signature database `existing`, leaving out every
 * entry whose type and data (the certificate, the hash) are already present — whoever owns it.
 * X.509 entries being added must be valid certificates.
 */
export const mergeSignatureLists = (existing: Uint8Array, additions: Uint8Array, what = 'signature database'): SignatureMerge => {
  const seen = new Set(readSignatureLists(existing, what).flatMap((l) => l.entries.map(entryKey)));
  const newLists: Uint8Array[] = [];
  const added: RawSignature[] = [];
  const addedCertificates: Certificate[] = [];
  let duplicates = 0;
  readSignatureLists(additions, `${what} additions`).forEach((list, li) => {
    const keep: RawSignature[] = [];
    list.entries.forEach((e, ei) => {
      const k = entryKey(e);
      if (seen.has(k)) {
        duplicates += 1;
        return;
      }
      seen.add(k);
      if (e.type === EFI_CERT_X509) addedCertificates.push(parseCertificate(e.data, `${what}: certificate ${ei + 1} of list ${li + 1}`));
      keep.push(e);
    });
    if (keep.length === 0) return;
    newLists.push(buildSignatureList(list.type, keep, list.header));
    added.push(...keep);
  });
  const size = existing.length + newLists.reduce((n, l) => n + l.length, 0);
  const data = new Uint8Array(size);
  data.set(existing, 0);
  let at = existing.length;
  for (const l of newLists) {
    data.set(l, at);
    at += l.length;
  }
  return { data, added, addedCertificates, duplicates };
};
