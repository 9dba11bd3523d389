/**
 * The rewrite engine's vocabulary: options, the injected firmware picker, one Change per edit,
 * and the Rule shape every file in this folder exports.
 */
import type { Domain } from '../domain';

export interface RewriteOptions {
  /** convert BIOS → UEFI (default true; Secure Boot implies it) */
  uefi: boolean;
  /** Secure Boot: SMM on, a Secure Boot build with Microsoft keys (default false) */
  secureBoot: boolean;
  /** add an emulated TPM 2.0 (tpm-crb) when the domain has no TPM (default false) */
  tpm: boolean;
  /** pcie-root-port controllers added by the Q35 conversion (default 14, rulebook R10) */
  rootPorts: number;
  /** manual: explicit `<loader>`/`<nvram template>` from the catalog; auto: `<os firmware='efi'>` (default manual) */
  firmware: 'manual' | 'auto';
  /** libvirt's nvram_dir (default /var/lib/libvirt/qemu/nvram) */
  nvramDir: string;
  /** firmware for the manual form; the CLI builds it from the firmware catalog (`matchFirmware`) */
  pickFirmware: (req: FirmwareRequest) => FirmwarePick;
}

/** What the manual form asks the firmware catalog for (a subset of src/firmware's FirmwareRequest). */
export interface FirmwareRequest {
  arch: string;
  machine: string;
  secureBoot: boolean;
  enrolledKeys: boolean;
  smm?: 'on' | 'off';
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
