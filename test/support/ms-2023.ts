/**
 * Microsoft's 2023 Secure Boot certificates as `nvram enroll --ms-2023` enrols them, for tests that
 * need a store "enrolled with the 2023 certificates" without running the CLI: the pure enrolment
 * (enrollSignatures) into a copy of a Secure Boot VARS image, usually Debian's Microsoft-keys
 * template (MS_VARS_4M).
 */
import { enrollSignatures, MICROSOFT_2023_CERTIFICATES, MICROSOFT_OWNER, parseCertificate, type EnrollEntry } from '../../src/core/varstore';

/** Debian's OVMF VARS template with the Microsoft keys (2011 certificates only). */
export const MS_VARS_4M = '/usr/share/OVMF/OVMF_VARS_4M.ms.fd';

/** --ms-2023's entries, owner Microsoft (optionally only those with the given ids, or all into another variable). */
export const ms2023Entries = (ids?: readonly string[], variable?: 'KEK' | 'db'): EnrollEntry[] =>
  MICROSOFT_2023_CERTIFICATES.filter((c) => !ids || ids.includes(c.id)).map((c) => ({
    variable: variable ?? c.variable,
    owner: MICROSOFT_OWNER,
    source: '--ms-2023',
    kind: 'x509',
    certificate: parseCertificate(Buffer.from(c.der, 'base64'), c.name),
  }));

/** A copy of `image` enrolled with `entries` (default: all four 2023 certificates). */
export const enrolledWith2023 = (image: Uint8Array, entries: readonly EnrollEntry[] = ms2023Entries()): Buffer => enrollSignatures(image, entries).data;
