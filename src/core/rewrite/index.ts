/**
 * The rewrite engine: Domain + options → rewritten XML + the Change records of every edit.
 * Pure: no I/O; the firmware catalog comes in as `pickFirmware`.
 *
 * The rules run in the order of RULES. The chipset rules recognise a domain to convert by its
 * i440fx machine, so the devices are converted first and the machine flips last; a second run
 * then sees q35 and leaves the chipset alone (R3). The firmware rules touch domains that do not
 * boot UEFI yet, and (Secure Boot asked) UEFI domains without Secure Boot (R21), which then have it.
 * Hence a rewritten domain rewrites to itself with no changes.
 */
import { DEFAULT_CONFIG } from '../config';
import { parseDomain, type Domain } from '../domain';
import { UsageError } from '../errors';
import { skipReason } from './guards';
import { ideToSata } from './ide-to-sata';
import { machineQ35 } from './machine-q35';
import { nicE1000e } from './nic-e1000e';
import { pcieRootPorts } from './pcie-root-ports';
import { removePciIdeControllers } from './remove-pci-ide-controllers';
import { secureBoot } from './secure-boot';
import { SECURE_BOOT_UEFI_RULE, secureBootUefi } from './secure-boot-uefi';
import { soundIch9 } from './sound-ich9';
import { stripPciAddresses } from './strip-pci-addresses';
import { tpmCrb } from './tpm-crb';
import { uefiFirmware } from './uefi-firmware';
import { usbController } from './usb-controller';
import { videoCirrus } from './video-cirrus';
import type { Change, RewriteOptions, Rule } from './types';

export type { Change, FirmwarePick, RewriteOptions, Rule } from './types';
export { SECURE_BOOT_UEFI_RULE, switchBlocker } from './secure-boot-uefi';

export const RULES: readonly Rule[] = [
  // chipset i440fx → q35 (R7–R14, then R6)
  removePciIdeControllers,
  ideToSata,
  stripPciAddresses,
  pcieRootPorts,
  nicE1000e,
  soundIch9,
  usbController,
  videoCirrus,
  machineQ35,
  // firmware BIOS → UEFI (R19/R20 before R16–R18: SMM is on before the firmware is picked)
  secureBoot,
  uefiFirmware,
  // an already-UEFI domain without Secure Boot: its firmware switched in place (R21)
  secureBootUefi,
  // devices (R22)
  tpmCrb,
];

/** Options not given: the policy, root ports and nvram dir of DEFAULT_CONFIG; the manual firmware form. */
export const DEFAULT_REWRITE_OPTIONS: Readonly<Omit<RewriteOptions, 'pickFirmware'>> = Object.freeze({
  uefi: DEFAULT_CONFIG.policy.uefi,
  secureBoot: DEFAULT_CONFIG.policy.secureBoot,
  tpm: DEFAULT_CONFIG.policy.tpm,
  rootPorts: DEFAULT_CONFIG.rootPorts,
  firmware: 'manual',
  nvramDir: DEFAULT_CONFIG.nvramDir,
});

/** Options with defaults filled in; only `pickFirmware` is required. */
export type RewriteInput = Partial<RewriteOptions> & Pick<RewriteOptions, 'pickFirmware'>;

export interface RewriteResult {
  /** the rewritten XML (the input bytes when nothing changed) */
  xml: string;
  changes: Change[];
  changed: boolean;
  /** things the user must know that the rewrite did not change (e.g. Secure Boot on an existing UEFI domain) */
  warnings: string[];
  /** why the domain was left untouched (not an x86_64 QEMU/KVM domain) */
  skipped?: string;
  /**
   * The domain already booted UEFI and its firmware was switched to the Secure Boot build in place
   * (R21): its existing NVRAM needs Secure Boot keys (PK/KEK/db) before the firmware enforces.
   */
  secureBootSwitched?: true;
}

export function resolveRewriteOptions(input: RewriteInput): RewriteOptions {
  const o: RewriteOptions = { ...DEFAULT_REWRITE_OPTIONS, ...input };
  if (!Number.isInteger(o.rootPorts) || o.rootPorts < 0 || o.rootPorts > 64) throw new UsageError(`root ports must be an integer from 0 to 64, got ${o.rootPorts}`);
  if (!o.nvramDir.startsWith('/')) throw new UsageError(`nvram directory must be an absolute path, got '${o.nvramDir}'`);
  if (o.firmware !== 'manual' && o.firmware !== 'auto') throw new UsageError(`firmware form must be 'manual' or 'auto', got '${String(o.firmware)}'`);
  // Secure Boot implies UEFI
  return o.secureBoot ? { ...o, uefi: true } : o;
}

/** Rewrite a domain. The argument is not modified: the rules edit a copy. */
export function rewriteDomain(domain: Domain, input: RewriteInput): RewriteResult {
  const o = resolveRewriteOptions(input);
  const xml = domain.toXml();
  const skipped = skipReason(domain);
  if (skipped) return { xml, changes: [], changed: false, warnings: [], skipped };
  return applyRules(parseDomain(xml, { maxBytes: Infinity }), o, xml); // already accepted once
}

/** Parse and rewrite (throws XmlInputError for input that is not a sane domain XML). */
export function rewriteXml(xml: string, input: RewriteInput): RewriteResult {
  const d = parseDomain(xml);
  const o = resolveRewriteOptions(input);
  const original = d.toXml(); // the input bytes: nothing is edited yet
  const skipped = skipReason(d);
  if (skipped) return { xml: original, changes: [], changed: false, warnings: [], skipped };
  return applyRules(d, o, original); // nobody else holds this parse: the rules may edit it in place
}

function applyRules(d: Domain, o: RewriteOptions, original: string): RewriteResult {
  const changes: Change[] = [];
  const warnings: string[] = [];
  for (const rule of RULES) {
    const w = rule.warn?.(d, o);
    if (w) warnings.push(w);
    if (rule.applies(d, o)) changes.push(...rule.apply(d, o));
  }
  const result: RewriteResult = { xml: changes.length > 0 ? d.toXml() : original, changes, changed: changes.length > 0, warnings };
  if (changes.some((c) => c.rule === SECURE_BOOT_UEFI_RULE)) result.secureBootSwitched = true;
  return result;
}
