/**
 * The rewrite engine's vocabulary: options, the injected firmware picker, one Change per edit,
 * and the Rule shape every file in this folder exports.
 */
import type { Domain } from '../domain';
import type { FirmwareRequest } from '../firmware';

export interface RewriteOptions {
  /** convert BIOS → UEFI (default: DEFAULT_CONFIG.policy; Secure Boot implies it) */
  uefi: boolean;
  /** Secure Boot: SMM on, a Secure Boot build with Microsoft keys (default: DEFAULT_CONFIG.policy) */
  secureBoot: boolean;
  /** add an emulated TPM 2.0 (tpm-crb) when the domain has no TPM (default: DEFAULT_CONFIG.policy) */
  tpm: boolean;
  /** pcie-root-port controllers added by the Q35 conversion (default: DEFAULT_CONFIG.rootPorts; rulebook R10) */
  rootPorts: number;
  /** manual: explicit `<loader>`/`<nvram template>` from the catalog; auto: `<os firmware='efi'>` (default manual) */
  firmware: 'manual' | 'auto';
  /** libvirt's nvram_dir (default: DEFAULT_CONFIG.nvramDir) */
  nvramDir: string;
  /**
   * firmware for the manual form; the CLI builds it from the firmware catalog (`matchFirmware`).
   * The rewrite asks with arch, machine, secureBoot, enrolledKeys and (when the domain sets it) smm.
   */
  pickFirmware: (req: FirmwareRequest) => FirmwarePick;
}

export interface FirmwarePick {
  executable: string;
  template: string;
  requiresSmm: boolean;
  secureBoot: boolean;
  enrolledKeys: boolean;
  /** descriptor file the pick came from, for messages */
  descriptor?: string;
}

/** One edit. `path` is where it landed (`/domain/devices/sound/@model`), at the time of the edit. */
export interface Change {
  rule: string;
  path: string;
  action: 'set' | 'add' | 'remove';
  detail: string;
}

export interface Rule {
  id: string;
  /** one sentence: why the rule exists */
  why: string;
  applies(d: Domain, o: RewriteOptions): boolean;
  /** performs the edits and reports them; an empty list means there was nothing to do */
  apply(d: Domain, o: RewriteOptions): Change[];
  /** something the user must know that the rule will not change (asked before `applies`) */
  warn?(d: Domain, o: RewriteOptions): string | undefined;
}
