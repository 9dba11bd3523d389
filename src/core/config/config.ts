/**
 * Configuration (`/etc/ovmf-hook/config.json`) and per-domain policy.
 *
 * Layers, lowest first: built-in defaults < config file < the domain's
 * `<metadata><ovmf:policy xmlns:ovmf="urn:ovmf-hook:policy:1" …/></metadata>` < CLI flags.
 * Everything here is pure; `loadConfig` in ./load.ts reads the file.
 */
import { ConfigError, UsageError } from '../errors';
import type { Domain } from '../domain';

export type YesNo = 'yes' | 'no';

/**
 * Opt-in upkeep of a domain's Secure Boot certificates: per VM only, in its `<ovmf:policy>` (never
 * host-wide: the config file refuses these keys).
 */
export interface CertPolicy {
  /** `"2023"`: a cold start enrols the Microsoft 2023 certificates a Secure Boot NVRAM lacks (archived first) */
  secureBootCerts?: '2023';
  /** `"accept"`: that enrolment also goes ahead with a TPM (PCR7 changes; BitLocker suspended by the admin) */
  tpmReseal?: 'accept';
}

/** What a domain should be: the four policy switches, and the opt-in certificate policy of a domain. */
export interface Policy extends CertPolicy {
  uefi: boolean;
  secureBoot: boolean;
  tpm: boolean;
  archive: boolean;
}

export interface Config {
  /** enforce: refuse to start domains that break their policy; warn: log and allow; off: no guard */
  mode: 'enforce' | 'warn' | 'off';
  /** host-wide policy defaults (the domain's metadata overrides them) */
  policy: Policy;
  /** archive tree (may be on shared storage) */
  archiveDir: string;
  /** per-host state (which generation the local NVRAM was synced with) */
  stateDir: string;
  /** libvirt's nvram_dir */
  nvramDir: string;
  /** generations kept per VM */
  keepGenerations: number;
  /** what prepare does when the archive cannot be read: start from the local NVRAM, or refuse */
  archiveUnavailable: 'allow' | 'refuse';
  /** seconds after which another host's claim on a VM may be taken over (0 = never) */
  claimLeaseSeconds: number;
  /** hook watchdog: give up (per the op's failure rule) after this many seconds */
  hookTimeoutSeconds: number;
  /** firmware descriptor directories, lowest priority first */
  firmwareDirs: string[];
  /**
   * where `firmware template --ms-2023` writes its VARS template copies: outside the root-only
   * state tree, readable by everyone — a qemu:///session libvirt reads /etc/qemu/firmware too and
   * copies the template as its user
   */
  templateDir: string;
  /** pcie-root-port controllers added by the Q35 conversion */
  rootPorts: number;
  /** owner of NVRAM files; default: `user`/`group` from /etc/libvirt/qemu.conf, else the distro default */
  qemuUser?: string;
  qemuGroup?: string;
  /** stable host identity for archive claims (default: /etc/machine-id, else the hostname) */
  hostId?: string;
  /**
   * the archive counts as available only when `<archiveDir>/.ovmf-hook-archive` exists: on shared
   * storage this tells an unmounted share (an empty local mount point) from the real archive
   */
  requireArchiveMarker: boolean;
  /** also append log lines to this file (besides syslog/journal) */
  logFile?: string;
}

/**
 * The one table of built-in defaults (the lowest layer). Everything else that needs a default
 * path, count or policy switch reads it from here: the archive and state dirs, the firmware
 * descriptor dirs, the rewrite's root ports and nvram dir.
 */
export const DEFAULT_CONFIG: Readonly<Config> = Object.freeze({
  mode: 'warn',
  policy: Object.freeze({ uefi: true, secureBoot: false, tpm: false, archive: true }),
  archiveDir: '/var/lib/ovmf-hook/archive',
  stateDir: '/var/lib/ovmf-hook/state',
  nvramDir: '/var/lib/libvirt/qemu/nvram',
  keepGenerations: 10,
  archiveUnavailable: 'allow',
  claimLeaseSeconds: 0,
  hookTimeoutSeconds: 30,
  firmwareDirs: Object.freeze(['/usr/share/qemu/firmware', '/etc/qemu/firmware']),
  templateDir: '/var/lib/ovmf-hook-templates',
  rootPorts: 14,
  requireArchiveMarker: false,
}) as Config;

/** A fresh copy of DEFAULT_CONFIG that may be changed. */
export const defaultConfig = (): Config => ({ ...DEFAULT_CONFIG, policy: { ...DEFAULT_CONFIG.policy }, firmwareDirs: [...DEFAULT_CONFIG.firmwareDirs] });

export const CONFIG_PATH = '/etc/ovmf-hook/config.json';

const POLICY_KEYS: Record<string, Exclude<keyof Policy, keyof CertPolicy>> = { uefi: 'uefi', 'secure-boot': 'secureBoot', tpm: 'tpm', archive: 'archive' };
/** `<ovmf:policy>` attributes with values of their own (per VM only): the key and the values allowed. */
const CERT_POLICY_KEYS: Record<string, [keyof CertPolicy, readonly string[]]> = {
  'secure-boot-certs': ['secureBootCerts', ['2023']],
  'tpm-reseal': ['tpmReseal', ['accept']],
};
const quoted = (xs: readonly string[]): string => xs.map((x) => `"${x}"`).join(' or ');
/** How the `secure-boot-certs="2023"` policy names itself in log lines and generation reasons. */
export const SECURE_BOOT_CERTS_POLICY = 'policy secure-boot-certs=2023';

type Check = (v: unknown) => boolean;
const isStr: Check = (v) => typeof v === 'string' && v.length > 0;
const isAbs: Check = (v) => typeof v === 'string' && v.startsWith('/') && !v.split('/').includes('..');
const isInt = (min: number, max: number): Check => (v) => Number.isInteger(v) && (v as number) >= min && (v as number) <= max;
const oneOf = (...xs: string[]): Check => (v) => xs.includes(v as string);

const FIELDS: Record<string, [Check, string]> = {
  mode: [oneOf('enforce', 'warn', 'off'), '"enforce", "warn" or "off"'],
  archiveDir: [isAbs, 'an absolute path without ".."'],
  stateDir: [isAbs, 'an absolute path without ".."'],
  nvramDir: [isAbs, 'an absolute path without ".."'],
  templateDir: [isAbs, 'an absolute path without ".."'],
  keepGenerations: [isInt(1, 1000), 'an integer from 1 to 1000'],
  archiveUnavailable: [oneOf('allow', 'refuse'), '"allow" or "refuse"'],
  claimLeaseSeconds: [isInt(0, 10 * 365 * 86400), 'a whole number of seconds (0 = never)'],
  hookTimeoutSeconds: [isInt(1, 3600), 'an integer from 1 to 3600'],
  firmwareDirs: [(v) => Array.isArray(v) && v.every(isAbs), 'a list of absolute paths'],
  rootPorts: [isInt(0, 64), 'an integer from 0 to 64'],
  qemuUser: [isStr, 'a user name'],
  qemuGroup: [isStr, 'a group name'],
  requireArchiveMarker: [(v) => typeof v === 'boolean', 'true or false'],
  logFile: [isAbs, 'an absolute path without ".."'],
  hostId: [(v) => typeof v === 'string' && /^[A-Za-z0-9._-]{1,128}$/.test(v), 'letters, digits, ".", "_" or "-"'],
};

const FIX = 'fix it and check with: ovmf-hook config check';
const got = (v: unknown): string => JSON.stringify(v)?.slice(0, 60) ?? String(v);

/** The known key closest to a misspelt one (case, a missing or extra letter), for the error line. */
function nearest(key: string, known: readonly string[]): string | undefined {
  const k = key.toLowerCase().replace(/[^a-z]/g, '');
  return known.find((c) => {
    const n = c.toLowerCase().replace(/[^a-z]/g, '');
    return n === k || (Math.abs(n.length - k.length) <= 1 && [...n].filter((ch, i) => k[i] !== ch).length <= 2);
  });
}

function unknownKey(where: string, key: string, known: readonly string[], source: string): ConfigError {
  const hint = nearest(key, known);
  return new ConfigError(source, `${where}: unknown key "${key}"${hint ? ` (did you mean "${hint}"?)` : ` (known: ${known.join(', ')})`}; ${FIX}`);
}

/**
 * Validate a parsed config file against the schema and merge it over the defaults.
 * Unknown keys and wrong types are errors (a typo must not silently change behaviour); each error
 * is one line naming the file, the key and the fix.
 */
export function parseConfig(text: string, source = CONFIG_PATH): Config {
  let raw: unknown;
  try {
    raw = JSON.parse(text.replace(/^\uFEFF/, ''));
  } catch (e) {
    throw new ConfigError(source, `${source}: invalid JSON (${(e as Error).message.split('\n')[0]}); ${FIX}, or remove it to use the defaults`);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new ConfigError(source, `${source}: expected a JSON object like {"mode": "warn"}, got ${got(raw)}; ${FIX}`);
  const cfg = defaultConfig();
  for (const [key, value] of Object.entries(raw)) {
    if (key === 'policy') {
      cfg.policy = mergePolicy(cfg.policy, value, source);
      continue;
    }
    const field = FIELDS[key];
    if (!field) throw unknownKey(source, key, ['policy', ...Object.keys(FIELDS)], source);
    if (!field[0](value)) throw new ConfigError(source, `${source}: "${key}" must be ${field[1]}, got ${got(value)}; ${FIX}`);
    (cfg as unknown as Record<string, unknown>)[key] = value;
  }
  return cfg;
}

/**
 * The config as a config file says it: policy as "yes"/"no" under its file keys, keys in the
 * documented order, unset optional keys left out. `parseConfig` of its JSON gives the same config
 * (`ovmf-hook config show`).
 */
export function configFileForm(config: Config): Record<string, unknown> {
  const out: Record<string, unknown> = {
    mode: config.mode,
    policy: Object.fromEntries(Object.entries(POLICY_KEYS).map(([k, key]) => [k, config.policy[key] ? 'yes' : 'no'])),
  };
  for (const key of Object.keys(FIELDS)) {
    const value = (config as unknown as Record<string, unknown>)[key];
    if (key !== 'mode' && value !== undefined) out[key] = value;
  }
  return out;
}

function mergePolicy(base: Policy, value: unknown, source: string): Policy {
  const where = `${source}: policy`;
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new ConfigError(source, `${where} must be an object like {"secure-boot": "yes"}, got ${got(value)}; ${FIX}`);
  const out = { ...base };
  for (const [k, v] of Object.entries(value)) {
    const key = POLICY_KEYS[k];
    if (!key && CERT_POLICY_KEYS[k])
      throw new ConfigError(source, `${where}: "${k}" is set per VM, not host-wide: put it in the domain's metadata (virsh metadata VM --uri urn:ovmf-hook:policy:1 --key ovmf --set '<policy ${k}="${CERT_POLICY_KEYS[k][1][0]}"/>' --config); ${FIX}`);
    if (!key) throw unknownKey(where, k, Object.keys(POLICY_KEYS), source);
    if (v !== 'yes' && v !== 'no' && typeof v !== 'boolean') throw new ConfigError(source, `${where}: "${k}" must be "yes" or "no", got ${got(v)}; ${FIX}`);
    out[key] = v === 'yes' || v === true;
  }
  return out;
}

/** The policy attributes a domain sets in its metadata (only those present). */
export function domainPolicy(domain: Domain): Partial<Policy> {
  const el = domain.policyElement();
  if (!el) return {};
  const out: Partial<Policy> = {};
  for (const [attr, key] of Object.entries(POLICY_KEYS)) {
    const v = el.attr(attr);
    if (v === undefined) continue;
    if (v !== 'yes' && v !== 'no') throw new UsageError(`${domain.name}: <ovmf:policy ${attr}="${v}"> must be "yes" or "no"`);
    out[key] = v === 'yes';
  }
  for (const [attr, [key, allowed]] of Object.entries(CERT_POLICY_KEYS)) {
    const v = el.attr(attr);
    if (v === undefined) continue;
    if (!allowed.includes(v)) throw new UsageError(`${domain.name}: <ovmf:policy ${attr}="${v}"> must be ${quoted(allowed)}, or left out (off)`);
    (out as Record<string, string>)[key] = v;
  }
  return out;
}

/** defaults < config < domain metadata < flags */
export function resolvePolicy(config: Config, domain: Domain, flags: Partial<Policy> = {}): Policy {
  const defined = <T extends object>(o: T): Partial<T> => Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
  const p = { ...config.policy, ...domainPolicy(domain), ...defined(flags) };
  // Secure Boot and TPM-for-Windows-11 only make sense on UEFI
  if (p.secureBoot) p.uefi = true;
  return p;
}

/** Why a domain does not satisfy its policy (empty when it does). Used by the hook's guard. */
export function policyViolations(domain: Domain, policy: Policy): string[] {
  const out: string[] = [];
  if (policy.uefi && !domain.isUefi) out.push('policy requires UEFI but the domain boots BIOS');
  if (policy.secureBoot && domain.isUefi && !secureBootConfigured(domain)) out.push('policy requires Secure Boot but the domain firmware is not a Secure Boot build');
  if (policy.secureBoot && !domain.isUefi) out.push('policy requires Secure Boot but the domain boots BIOS');
  if (policy.tpm && domain.devices('tpm').length === 0) out.push('policy requires a TPM but the domain has none');
  return [...new Set(out)];
}

/** Secure Boot is configured: a secure loader (manual), or the secure-boot firmware feature (auto). */
export function secureBootConfigured(domain: Domain): boolean {
  const l = domain.loader;
  if (l?.secure === 'yes') return true;
  const feats = domain.root.findAll('os/firmware/feature');
  return feats.some((f) => f.attr('name') === 'secure-boot' && f.attr('enabled') === 'yes');
}
