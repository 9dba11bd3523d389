/**
 * The per-VM opt-in `<ovmf:policy secure-boot-certs="2023" [tpm-reseal="accept"]>`: what the hook's
 * `prepare` of a cold start does with the VM's NVRAM once it is restored or provisioned (README,
 * "Microsoft 2023 Secure Boot certificates"; docs/GUARANTEES.md §2f). Pure: the decision, the
 * enrolled store — the very enrolment of `nvram enroll --ms-2023` — and the log line; the hook
 * carries it out through prepareNvram's `edit` (src/io/lifecycle.ts: archived first, the result the
 * newest generation). The hook loads this module only for a VM that has the policy.
 *
 *   readiness `current`           nothing (no log line: every start of an enrolled VM)
 *   `not-secure-boot`             nothing; an info line (no PK, or Secure Boot switched off)
 *   `update-available`, a TPM     nothing unless `tpm-reseal="accept"`; a warning line: KEK/db are
 *                                 measured into PCR7, so BitLocker would ask for its recovery key
 *   `update-available`            the missing 2023 certificates enrolled
 *   not a readable store, a full one, a refused enrolment: nothing; a warning line (the VM starts
 *   with its NVRAM unchanged: a maintenance step the admin opted into must not stop the VM)
 */
import { SECURE_BOOT_CERTS_POLICY } from '../config';
import { isOvmfHookError } from '../errors';
import { enrolledSummary, enrollSignatures, microsoft2023Entries } from './enroll';
import { certificateReadiness } from './readiness';

/** What BitLocker needs before KEK/db change (they are measured into PCR7): its protectors suspended for two reboots. */
export const SUSPEND_BITLOCKER = 'manage-bde -protectors -disable C: -RebootCount 2';

export interface CertPolicyStep {
  /** The VM as a shell argument, for the commands the log lines name. */
  vm: string;
  /** The definition has a `<tpm>`. */
  tpm: boolean;
  /** `tpm-reseal="accept"`: enrol with a TPM too. */
  tpmReseal: boolean;
}

export type CertPolicyOutcome =
  /** `data`: the NVRAM with the certificates added; `reason`: the new generation's, naming the policy. */
  | { do: 'enroll'; data: Buffer; reason: string }
  | { do: 'nothing'; log?: { level: 'info' | 'warning'; message: string } };

const nothing = (level: 'info' | 'warning', message: string): CertPolicyOutcome => ({ do: 'nothing', log: { level, message: `${SECURE_BOOT_CERTS_POLICY}: ${message}` } });

/** The policy's step for a cold start's NVRAM `current` (see the table above). Throws only for a bug. */
export function secureBootCertsStep(current: Uint8Array, o: CertPolicyStep): CertPolicyOutcome {
  const unchanged = (why: string) =>
    nothing('warning', `could not enrol the Microsoft 2023 certificates (${why}); the VM starts with its NVRAM unchanged; see: ovmf-hook nvram enroll ${o.vm} --ms-2023 --dry-run`);
  let readiness;
  try {
    readiness = certificateReadiness(current);
  } catch (e) {
    if (!isOvmfHookError(e)) throw e;
    return unchanged(e.message);
  }
  if (readiness.state === 'current') return { do: 'nothing' };
  if (readiness.state === 'not-secure-boot')
    return nothing('info', `nothing to enrol: ${readiness.why}; the policy adds certificates to a Secure Boot NVRAM (one with a PK: ovmf-hook convert ${o.vm} --secure-boot)`);
  if (o.tpm && !o.tpmReseal)
    return nothing(
      'warning',
      `not enrolling the Microsoft 2023 certificates the NVRAM lacks (${readiness.missing2023.join(', ')}): the domain has a TPM, and changing KEK/db changes the Secure Boot measurement in PCR7, so BitLocker (or anything sealed to PCR7) would ask for its recovery key; ` +
        `suspend BitLocker in the guest (${SUSPEND_BITLOCKER}), then add tpm-reseal="accept" to the VM's <ovmf:policy> and start it again (or shut it down and run: ovmf-hook nvram enroll ${o.vm} --ms-2023 --force)`,
    );
  try {
    const r = enrollSignatures(current, microsoft2023Entries(SECURE_BOOT_CERTS_POLICY));
    if (!r.changed) return { do: 'nothing' };
    return { do: 'enroll', data: r.data, reason: `${SECURE_BOOT_CERTS_POLICY}: ${enrolledSummary(r.items)}` };
  } catch (e) {
    if (!isOvmfHookError(e)) throw e;
    return unchanged(e.message);
  }
}

/** The log line of a start that is no cold one: the policy leaves the NVRAM alone then. */
export const notAtThisStart = (start: 'incoming migration' | 'restore of a saved image'): string =>
  `${SECURE_BOOT_CERTS_POLICY}: not applied to ${start === 'incoming migration' ? 'an incoming migration' : 'the restore of a saved image'} (the NVRAM must stay as the running guest left it); it applies at the next cold start`;
