/**
 * Microsoft's Secure Boot certificates in a variable store, for the 2026 rollover: which of the 2011
 * and 2023 ones it trusts, what state that puts it in (`nvram certs`), and which 2023 certificates a
 * replacement would drop (the guards of `nvram restore`/`reset` and of the hook's automatic
 * restore). Pure. A certificate counts when its DER, identified by the SHA-1 thumbprint Microsoft
 * publishes, is an X.509 entry of the variable it belongs in (the KEK CAs in KEK, the others in db).
 */
import { crypto, x509 } from '../crypto';
import { VarstoreError } from '../errors';
import { readSignatureLists } from './certs';
import { EFI_CERT_X509, EFI_GLOBAL_VARIABLE, EFI_IMAGE_SECURITY_DATABASE, EFI_SECURE_BOOT_ENABLE_DISABLE } from './guids';
import { parseVarstore, type ParsedVarstore, type Variable } from './parse';

export type MicrosoftCertificateId = 'kek2011' | 'kek2023' | 'windowsPca2011' | 'windowsUefiCa2023' | 'uefiCa2011' | 'uefiCa2023' | 'optionRomUefiCa2023';

export interface KnownMicrosoftCertificate {
  id: MicrosoftCertificateId;
  /** The subject CN. */
  name: string;
  /** A few letters for tables: KEK, PCA, Windows, UEFI, OptionROM. */
  short: string;
  variable: 'KEK' | 'db';
  year: 2011 | 2023;
  /** SHA-1 of the DER (Microsoft's thumbprint), lowercase hex. */
  sha1: string;
}

/**
 * The 2011 certificates (in Debian's OVMF_VARS*.ms.fd) and their 2023 successors (the ones
 * `nvram enroll --ms-2023` adds: microsoft-2023.ts; test/keys checks the thumbprints against those bytes).
 */
export const MICROSOFT_SECURE_BOOT_CERTIFICATES: readonly KnownMicrosoftCertificate[] = [
  { id: 'kek2011', name: 'Microsoft Corporation KEK CA 2011', short: 'KEK', variable: 'KEK', year: 2011, sha1: '31590bfd89c9d74ed087dfac66334b3931254b30' },
  { id: 'kek2023', name: 'Microsoft Corporation KEK 2K CA 2023', short: 'KEK', variable: 'KEK', year: 2023, sha1: '459ab6fb5e284d272d5e3e6abc8ed663829d632b' },
  { id: 'windowsPca2011', name: 'Microsoft Windows Production PCA 2011', short: 'PCA', variable: 'db', year: 2011, sha1: '580a6f4cc4e4b669b9ebdc1b2b3e087b80d0678d' },
  { id: 'windowsUefiCa2023', name: 'Windows UEFI CA 2023', short: 'Windows', variable: 'db', year: 2023, sha1: '45a0fa32604773c82433c3b7d59e7466b3ac0c67' },
  { id: 'uefiCa2011', name: 'Microsoft Corporation UEFI CA 2011', short: 'UEFI', variable: 'db', year: 2011, sha1: '46def63b5ce61cf8ba0de2e6639c1019d0ed14f3' },
  { id: 'uefiCa2023', name: 'Microsoft UEFI CA 2023', short: 'UEFI', variable: 'db', year: 2023, sha1: 'b5eeb4a6706048073f0ed296e7f580a790b59eaa' },
  { id: 'optionRomUefiCa2023', name: 'Microsoft Option ROM UEFI CA 2023', short: 'OptionROM', variable: 'db', year: 2023, sha1: '3fb39e2b8bd183bf9e4594e72183ca60afcd4277' },
];

const MS_2023 = MICROSOFT_SECURE_BOOT_CERTIFICATES.filter((c) => c.year === 2023);
const VENDOR = { KEK: EFI_GLOBAL_VARIABLE, db: EFI_IMAGE_SECURITY_DATABASE } as const;

/**
 * - `current`: Secure Boot keys and every 2023 KEK/db certificate;
 * - `update-available`: Secure Boot keys without them (`nvram enroll --ms-2023` adds them offline);
 * - `not-secure-boot`: no PK (setup mode) or Secure Boot switched off in the firmware;
 * - `no-nvram`: a UEFI VM without a local NVRAM yet (decided by the caller, not from a store).
 */
export type CertificateState = 'current' | 'update-available' | 'not-secure-boot' | 'no-nvram';

export interface CertificateReadiness {
  state: Exclude<CertificateState, 'no-nvram'>;
  /** What the firmware will enforce at the next boot: a PK enrolled and SecureBootEnable not off (decode.ts, SecureBootSummary.effective). */
  secureBoot: boolean;
  /** Why Secure Boot is off (state `not-secure-boot`). */
  why?: string;
  /** Subject CN of the PK's certificate (O, else the whole subject, when it has no CN); null without an X.509 PK. */
  pkOwner: string | null;
  /** Each known Microsoft certificate: in its variable or not. */
  microsoft: Record<MicrosoftCertificateId, boolean>;
  /** Names of the 2023 certificates missing (empty when current). */
  missing2023: string[];
  /** KEK/db/PK data that could not be read (one line each); such a variable counts as holding nothing. */
  problems: string[];
}

const find = (vars: readonly Variable[], vendor: string, name: string) => vars.find((v) => v.vendorGuid === vendor && v.name === name);

/** X.509 entries (DER) of a signature database variable; undecodable data goes to `problems`. */
function x509Entries(vars: readonly Variable[], vendor: string, name: string, problems: string[]): { x509: Uint8Array[]; entries: number } {
  const v = find(vars, vendor, name);
  if (!v) return { x509: [], entries: 0 };
  try {
    const lists = readSignatureLists(v.data, name);
    return {
      x509: lists.flatMap((l) => (l.type === EFI_CERT_X509 ? l.entries.map((e) => e.data) : [])),
      entries: lists.reduce((n, l) => n + l.entries.length, 0),
    };
  } catch (e) {
    if (!(e instanceof VarstoreError)) throw e;
    problems.push(e.message);
    return { x509: [], entries: 0 };
  }
}

const sha1 = (der: Uint8Array): string => crypto().createHash('sha1').update(der).digest('hex');

/** Which known Microsoft certificates the store's KEK and db hold. */
export function microsoftCertificates(vars: readonly Variable[], problems: string[] = []): Record<MicrosoftCertificateId, boolean> {
  const held = {
    KEK: new Set(x509Entries(vars, VENDOR.KEK, 'KEK', problems).x509.map(sha1)),
    db: new Set(x509Entries(vars, VENDOR.db, 'db', problems).x509.map(sha1)),
  };
  return Object.fromEntries(MICROSOFT_SECURE_BOOT_CERTIFICATES.map((c) => [c.id, held[c.variable].has(c.sha1)])) as Record<MicrosoftCertificateId, boolean>;
}

const subjectPart = (subject: string, key: string): string | undefined => new RegExp(`(?:^|\\n)${key}=([^\\n]*)`).exec(subject)?.[1];

/** PK owners by the certificate's SHA-1: a fleet shares a few PKs, and reading a certificate costs more than hashing it. */
const owners = new Map<string, string | null>();

function ownerOf(der: Uint8Array, problems: string[]): string | null {
  const key = sha1(der);
  const known = owners.get(key);
  if (known !== undefined) return known;
  let owner: string | null;
  try {
    const { subject } = x509(der);
    owner = subjectPart(subject, 'CN') ?? subjectPart(subject, 'O') ?? (subject.replace(/\n/g, ', ') || null);
  } catch (e) {
    problems.push(`PK: its certificate is unreadable (${(e as Error).message.split('\n')[0]})`);
    return null;
  }
  if (owners.size >= 256) owners.clear();
  owners.set(key, owner);
  return owner;
}

const storeOf = (store: ParsedVarstore | Uint8Array): ParsedVarstore => (store instanceof Uint8Array ? parseVarstore(store) : store);

/**
 * The certificate readiness of a variable store (parsed, or an image: a malformed image raises
 * VarstoreError). Secure Boot, the PK's owner, the Microsoft certificates, the state.
 */
export function certificateReadiness(store: ParsedVarstore | Uint8Array): CertificateReadiness {
  const { variables: vars, authenticated } = storeOf(store);
  const problems: string[] = [];
  const pk = x509Entries(vars, EFI_GLOBAL_VARIABLE, 'PK', problems);
  const enable = find(vars, EFI_SECURE_BOOT_ENABLE_DISABLE, 'SecureBootEnable');
  const switchedOff = enable?.data.length === 1 && enable.data[0] === 0;
  const why = !authenticated
    ? 'not an authenticated variable store'
    : pk.entries === 0
      ? 'no PK enrolled (setup mode)'
      : switchedOff
        ? 'Secure Boot is switched off in the firmware (SecureBootEnable)'
        : undefined;
  const secureBoot = why === undefined;
  const microsoft = microsoftCertificates(vars, problems);
  const missing2023 = MS_2023.filter((c) => !microsoft[c.id]).map((c) => c.name);
  return {
    state: !secureBoot ? 'not-secure-boot' : missing2023.length ? 'update-available' : 'current',
    secureBoot,
    ...(why ? { why } : {}),
    pkOwner: pk.x509.length ? ownerOf(pk.x509[0], problems) : null,
    microsoft,
    missing2023,
    problems,
  };
}

/** The 2023 certificates a store trusts (ids); none for an image that is not a readable store. */
function trusted2023(image: Uint8Array): Set<MicrosoftCertificateId> {
  let vars: Variable[];
  try {
    vars = parseVarstore(image).variables;
  } catch (e) {
    if (e instanceof VarstoreError) return new Set();
    throw e;
  }
  const held = microsoftCertificates(vars);
  return new Set(MS_2023.filter((c) => held[c.id]).map((c) => c.id));
}

/**
 * The Microsoft 2023 certificates (names, in table order) that `current` trusts and `next`, the
 * NVRAM about to replace it, does not: what `nvram restore`/`reset` refuse without --force and the
 * hook's restore warns about. Empty when nothing is lost (also when `current` is no readable store);
 * a `next` that is no readable store trusts nothing.
 */
export function lostMicrosoft2023(current: Uint8Array, next: Uint8Array): string[] {
  const before = trusted2023(current);
  if (before.size === 0) return [];
  const after = trusted2023(next);
  return MS_2023.filter((c) => before.has(c.id) && !after.has(c.id)).map((c) => c.name);
}
