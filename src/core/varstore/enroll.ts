/**
 * Offline enrolment of Secure Boot certificates and hashes into KEK and db (`nvram enroll`): the
 * new variable store from the current one. Pure; every refusal is one line (OvmfHookError) and
 * nothing is returned then.
 *
 * What it refuses:
 *   - an image that is not exactly one variable store firmware volume (a CODE image, a combined
 *     OVMF.fd, a truncated or padded file): VarstoreError;
 *   - a store without Secure Boot keys (no PK: setup mode): RefusedError — without a PK the firmware
 *     does not enforce Secure Boot, so adding KEK/db entries would prove nothing and the guest
 *     could replace them at will;
 *   - a store that is full, or a KEK/db that would exceed the firmware's variable size limit, or an
 *     unfinished fault-tolerant write (the firmware would undo the change): VarstoreError (write.ts).
 *
 * Entries already present (same certificate or hash, whoever owns it) are reported `present` and
 * not added again. KEK and db are written unsigned with the timestamp rule of write.ts (the newest
 * added certificate's notBefore, never earlier than the current timestamp).
 *
 * `dbx` (`--set-dbx`): a signed DBX update (signed-update.ts) replaces dbx — its signature lists
 * become dbx's whole content (a published DBX update is the complete revocation list, so nothing
 * of the old dbx is kept) and its header's timestamp the variable's timestamp, as if the firmware
 * had applied it; a later signed update must then be newer than that one.
 */
import { RefusedError, VarstoreError } from '../errors';
import { buildSignatureList, parseCertificate, readSignatureLists, type Certificate } from './certs';
import { secureBootSummary } from './decode';
import { EFI_CERT_SHA256, EFI_CERT_X509, EFI_GLOBAL_VARIABLE, EFI_IMAGE_SECURITY_DATABASE } from './guids';
import { MICROSOFT_2023_CERTIFICATES, MICROSOFT_OWNER } from './microsoft-2023';
import type { SignedUpdate } from './signed-update';
import { editVarstore, SECURE_BOOT_DB_ATTRIBUTES, type VarstoreEditor } from './write';

export type EnrollVariable = 'KEK' | 'db';

/** One certificate or hash to enrol. */
export type EnrollEntry = {
  variable: EnrollVariable;
  /** SignatureOwner GUID. */
  owner: string;
  /** Where it came from, for output: a file name, `--ms-2023`, `--add-db-hash`. */
  source: string;
} & ({ kind: 'x509'; certificate: Certificate } | { kind: 'sha256'; /** 64 lowercase hex digits */ hash: string });

export interface EnrollItem {
  variable: EnrollVariable;
  kind: 'x509' | 'sha256';
  /** The certificate's subject CN (whole subject without one), or the hash. */
  name: string;
  /** SHA-256 of the certificate's DER, or the hash itself. */
  sha256: string;
  owner: string;
  source: string;
  notBefore?: string;
  notAfter?: string;
  /** `added`, or `present`: already in the variable (or earlier in this request), left out. */
  status: 'added' | 'present';
}

/** What `--set-dbx` did. */
export interface DbxResult {
  /** The update file, for output. */
  source: string;
  /** `replaced`, or `unchanged`: dbx held exactly this content and timestamp already. */
  status: 'replaced' | 'unchanged';
  /** Entries in dbx before and after. */
  before: number;
  entries: number;
  /** The update's timestamp, now dbx's. */
  timestamp: string;
}

export interface EnrollResult {
  /** The written image; the input bytes when nothing changed. */
  data: Buffer;
  changed: boolean;
  items: EnrollItem[];
  /** Timestamps of the changed variables afterwards. */
  timestamps: Partial<Record<EnrollVariable | 'dbx', string>>;
  /** Bytes left in the variable store afterwards. */
  free: number;
  /** Present when a dbx update was given. */
  dbx?: DbxResult;
}

export interface EnrollOptions {
  /** The end of the "no Secure Boot keys" refusal: what to do for this kind of target. */
  noKeysHint?: string;
  /** Replace dbx with this signed update's content (`--set-dbx`). */
  dbx?: { update: SignedUpdate; source: string };
}

const VENDOR: Record<EnrollVariable, string> = { KEK: EFI_GLOBAL_VARIABLE, db: EFI_IMAGE_SECURITY_DATABASE };
const ORDER: readonly EnrollVariable[] = ['KEK', 'db'];

/** The subject's CN, else the whole subject. */
export const commonName = (c: Certificate): string => /(?:^|, )CN=([^,]+)/.exec(c.subject)?.[1]?.trim() ?? c.subject;

const itemOf = (e: EnrollEntry, status: EnrollItem['status']): EnrollItem =>
  e.kind === 'x509'
    ? {
        variable: e.variable,
        kind: 'x509',
        name: commonName(e.certificate),
        sha256: e.certificate.sha256,
        owner: e.owner,
        source: e.source,
        notBefore: e.certificate.notBefore.toISOString(),
        notAfter: e.certificate.notAfter.toISOString(),
        status,
      }
    : { variable: e.variable, kind: 'sha256', name: e.hash, sha256: e.hash, owner: e.owner, source: e.source, status };

/** Microsoft's 2023 certificates as enrolment entries (owner Microsoft), `source` naming the request in output. */
export const microsoft2023Entries = (source = '--ms-2023'): EnrollEntry[] =>
  MICROSOFT_2023_CERTIFICATES.map((c) => ({
    variable: c.variable,
    owner: MICROSOFT_OWNER,
    source,
    kind: 'x509' as const,
    certificate: parseCertificate(Buffer.from(c.der, 'base64'), c.name),
  }));

/** Refuse an image that is more (or less) than its variable store volume: a combined OVMF.fd, a padded copy. */
export function requireWholeVolume(ed: VarstoreEditor, image: Uint8Array): void {
  const { fv } = ed.original;
  if (fv.length !== image.length)
    throw new VarstoreError(
      `the file is ${image.length} bytes but its variable store volume is ${fv.length} bytes: not a VARS file (a combined OVMF.fd, or a padded copy?)`,
    );
}

const countEntries = (data: Uint8Array | undefined): number => {
  if (!data) return 0;
  try {
    return readSignatureLists(data, 'dbx').reduce((n, l) => n + l.entries.length, 0);
  } catch {
    return 0;
  }
};

const sameBytes = (a: Uint8Array, b: Uint8Array) => a.length === b.length && a.every((x, i) => x === b[i]);

const dataOf = (e: EnrollEntry): Uint8Array => (e.kind === 'x509' ? e.certificate.der : new Uint8Array(Buffer.from(e.hash, 'hex')));
const keyOf = (type: string, data: Uint8Array) => `${type}:${Buffer.from(data).toString('hex')}`;

/**
 * Enrol `entries` into the VARS image `image`; returns the new image and what happened to each
 * entry (in request order). The input is never modified.
 */
export function enrollSignatures(image: Uint8Array, entries: readonly EnrollEntry[], options: EnrollOptions = {}): EnrollResult {
  const ed = editVarstore(image);
  requireWholeVolume(ed, image);
  const sb = secureBootSummary(ed.original.variables);
  if (!ed.authenticated || sb.pk.x509 + sb.pk.other === 0)
    throw new RefusedError(
      `the variable store has no Secure Boot keys (${ed.authenticated ? 'no PK: setup mode' : 'not an authenticated store'}), so the firmware would not enforce what is enrolled; ${options.noKeysHint ?? 'enrol into a copy of a Secure Boot template instead'}`,
    );

  const status = new Map<EnrollEntry, EnrollItem['status']>();
  const timestamps: EnrollResult['timestamps'] = {};
  for (const variable of ORDER) {
    const mine = entries.filter((e) => e.variable === variable);
    if (mine.length === 0) continue;
    const current = ed.get(variable, VENDOR[variable]);
    const seen = new Set(readSignatureLists(current?.data ?? new Uint8Array(0), variable).flatMap((l) => l.entries.map((x) => keyOf(x.type, x.data))));
    const lists: Uint8Array[] = [];
    const hashes: EnrollEntry[] = [];
    for (const e of mine) {
      const data = dataOf(e);
      const key = keyOf(e.kind === 'x509' ? EFI_CERT_X509 : EFI_CERT_SHA256, data);
      if (seen.has(key)) {
        status.set(e, 'present');
        continue;
      }
      seen.add(key);
      status.set(e, 'added');
      // certificates differ in size: one list each; hashes share one list per owner (below)
      if (e.kind === 'x509') lists.push(buildSignatureList(EFI_CERT_X509, [{ owner: e.owner, data }]));
      else hashes.push(e);
    }
    for (const owner of new Set(hashes.map((h) => h.owner)))
      lists.push(buildSignatureList(EFI_CERT_SHA256, hashes.filter((h) => h.owner === owner).map((h) => ({ owner, data: dataOf(h) }))));
    if (lists.length === 0) continue;
    const joined = new Uint8Array(lists.reduce((n, l) => n + l.length, 0));
    lists.reduce((at, l) => (joined.set(l, at), at + l.length), 0);
    const r = ed.appendSignatures(variable, VENDOR[variable], joined);
    if (r.timestamp) timestamps[variable] = r.timestamp;
  }
  let dbx: DbxResult | undefined;
  if (options.dbx) {
    const { update, source } = options.dbx;
    const current = ed.get('dbx', EFI_IMAGE_SECURITY_DATABASE);
    const same =
      current !== undefined &&
      current.attributes.value === SECURE_BOOT_DB_ATTRIBUTES &&
      current.timestamp === update.timestamp &&
      sameBytes(current.data, update.signatureLists);
    if (!same) {
      ed.set('dbx', EFI_IMAGE_SECURITY_DATABASE, SECURE_BOOT_DB_ATTRIBUTES, update.signatureLists, { timestamp: update.timestamp });
      timestamps.dbx = update.timestamp;
    }
    dbx = { source, status: same ? 'unchanged' : 'replaced', before: countEntries(current?.data), entries: update.entries, timestamp: update.timestamp };
  }
  const data = ed.toBuffer();
  return {
    data,
    changed: ed.changed,
    items: entries.map((e) => itemOf(e, status.get(e)!)),
    timestamps,
    free: ed.usage().free,
    ...(dbx ? { dbx } : {}),
  };
}

/**
 * What an enrolment changed, in generation reasons and output: `KEK +1, db +3` (variables with
 * additions only), and `dbx replaced (N entries)` when it was; '' when nothing changed.
 */
export const enrolledSummary = (items: readonly EnrollItem[], dbx?: DbxResult): string =>
  [
    ...ORDER.map((v) => [v, items.filter((i) => i.variable === v && i.status === 'added').length] as const)
      .filter(([, n]) => n > 0)
      .map(([v, n]) => `${v} +${n}`),
    ...(dbx?.status === 'replaced' ? [`dbx replaced (${dbx.entries} ${dbx.entries === 1 ? 'entry' : 'entries'})`] : []),
  ].join(', ');
