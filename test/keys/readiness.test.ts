/**
 * The pure classifier of `nvram certs` (certificateReadiness) and the guard of `nvram restore`/`reset`
 * and the hook's restore (lostMicrosoft2023), over Debian's OVMF VARS templates and copies of the MS
 * template enrolled with the pure enrolment (enrollSignatures) — no I/O of the product.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  certificateReadiness,
  editVarstore,
  enrollSignatures,
  lostMicrosoft2023,
  MICROSOFT_2023_CERTIFICATES,
  MICROSOFT_OWNER,
  MICROSOFT_SECURE_BOOT_CERTIFICATES,
  parseCertificate,
  parseVarstore,
  secureBootSummary,
  type EnrollEntry,
} from '../../src/core/varstore';
import { enrolledWith2023, ms2023Entries, MS_VARS_4M as MS } from '../support/ms-2023';

const BLANK = '/usr/share/OVMF/OVMF_VARS_4M.fd';
const SNAKEOIL = '/usr/share/OVMF/OVMF_VARS_4M.snakeoil.fd';
const SECURE_BOOT_ENABLE_DISABLE = 'f0a30bc7-af08-4556-99c4-001009c93a44';
const haveOvmf = [MS, BLANK].every(existsSync);
if (!haveOvmf) console.warn('SKIPPED: certificate readiness tests need /usr/share/OVMF (Debian ovmf)');

const KEK_2023 = 'Microsoft Corporation KEK 2K CA 2023';
const ALL_2023 = [KEK_2023, 'Windows UEFI CA 2023', 'Microsoft UEFI CA 2023', 'Microsoft Option ROM UEFI CA 2023'];

/** A copy of the MS template enrolled with --ms-2023's entries (optionally only some of them, or into another variable). */
const enrolled = (ids?: readonly string[], variable?: 'KEK' | 'db'): Buffer => enrolledWith2023(readFileSync(MS), ms2023Entries(ids, variable));

describe('the known Microsoft certificates', () => {
  it('the 2023 thumbprints are the SHA-1 of the shipped certificates (microsoft-2023.ts), same id, name and variable', () => {
    for (const shipped of MICROSOFT_2023_CERTIFICATES) {
      const known = MICROSOFT_SECURE_BOOT_CERTIFICATES.find((c) => c.id === shipped.id)!;
      expect(known, shipped.id).toMatchObject({ name: shipped.name, variable: shipped.variable, year: 2023 });
      expect(known.sha1).toBe(createHash('sha1').update(Buffer.from(shipped.der, 'base64')).digest('hex'));
    }
    expect(MICROSOFT_SECURE_BOOT_CERTIFICATES.map((c) => c.name)).toEqual([
      'Microsoft Corporation KEK CA 2011',
      KEK_2023,
      'Microsoft Windows Production PCA 2011',
      'Windows UEFI CA 2023',
      'Microsoft Corporation UEFI CA 2011',
      'Microsoft UEFI CA 2023',
      'Microsoft Option ROM UEFI CA 2023',
    ]);
  });
});

describe.skipIf(!haveOvmf)('certificateReadiness (the classifier)', () => {
  it("Debian's MS template: Secure Boot, Debian's PK, the three 2011 certificates, none of 2023: update-available", () => {
    const r = certificateReadiness(readFileSync(MS));
    expect(r).toEqual({
      state: 'update-available',
      secureBoot: true,
      pkOwner: 'Debian UEFI Secure Boot (PK/KEK key)',
      microsoft: { kek2011: true, kek2023: false, windowsPca2011: true, windowsUefiCa2023: false, uefiCa2011: true, uefiCa2023: false, optionRomUefiCa2023: false },
      missing2023: ALL_2023,
      problems: [],
    });
  });

  it('enrolled with --ms-2023: current, the 2011 certificates still there', () => {
    const r = certificateReadiness(enrolled());
    expect(r.state).toBe('current');
    expect(r.missing2023).toEqual([]);
    expect(Object.values(r.microsoft).every(Boolean)).toBe(true);
  });

  it('only some 2023 certificates: update-available, naming the missing ones', () => {
    const r = certificateReadiness(enrolled(['kek2023', 'windowsUefiCa2023']));
    expect(r.state).toBe('update-available');
    expect(r.missing2023).toEqual(['Microsoft UEFI CA 2023', 'Microsoft Option ROM UEFI CA 2023']);
  });

  it('a certificate counts only in its own variable: the 2023 KEK CA in db does not make the KEK current', () => {
    const r = certificateReadiness(enrolled(['kek2023'], 'db'));
    expect(r.microsoft.kek2023).toBe(false);
    expect(r.missing2023).toContain(KEK_2023);
  });

  it('no PK (the blank template): not-secure-boot, no PK owner, nothing Microsoft', () => {
    const r = certificateReadiness(parseVarstore(readFileSync(BLANK)));
    expect(r).toMatchObject({ state: 'not-secure-boot', secureBoot: false, why: 'no PK enrolled (setup mode)', pkOwner: null, missing2023: ALL_2023 });
    expect(Object.values(r.microsoft).some(Boolean)).toBe(false);
  });

  it('Secure Boot switched off in the firmware (SecureBootEnable = 0): not-secure-boot, although the keys are there', () => {
    const ed = editVarstore(enrolled());
    ed.set('SecureBootEnable', SECURE_BOOT_ENABLE_DISABLE, 0x3, new Uint8Array([0]));
    const r = certificateReadiness(ed.toBuffer());
    expect(r).toMatchObject({ state: 'not-secure-boot', secureBoot: false, why: 'Secure Boot is switched off in the firmware (SecureBootEnable)' });
    expect(r.microsoft.kek2023).toBe(true);
  });

  it.skipIf(!existsSync(SNAKEOIL))('a PK without a CN is named by its O; a store with no Microsoft keys at all is update-available', () => {
    const r = certificateReadiness(readFileSync(SNAKEOIL));
    expect(r).toMatchObject({ state: 'update-available', secureBoot: true, pkOwner: 'SnakeOil' });
    expect(Object.values(r.microsoft).some(Boolean)).toBe(false);
  });

  it('Secure Boot as decode.ts sees it (SecureBootSummary.effective), on every store', () => {
    const off = editVarstore(enrolled());
    off.set('SecureBootEnable', SECURE_BOOT_ENABLE_DISABLE, 0x3, new Uint8Array([0]));
    for (const image of [readFileSync(MS), readFileSync(BLANK), enrolled(), off.toBuffer(), ...(existsSync(SNAKEOIL) ? [readFileSync(SNAKEOIL)] : [])])
      expect(certificateReadiness(image).secureBoot).toBe(secureBootSummary(parseVarstore(image).variables).effective === 'on');
  });

  it('a malformed image raises VarstoreError (one line)', () => {
    expect(() => certificateReadiness(readFileSync(MS).subarray(0, 4096))).toThrow(/truncated|runs past|beyond/);
  });

  it.skipIf(spawnSync('openssl', ['version']).status !== 0)('identified by thumbprint, not by subject: a look-alike "Windows UEFI CA 2023" does not count', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ovmfhook-lookalike-'));
    try {
      const r = spawnSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-subj', '/O=Microsoft Corporation/CN=Windows UEFI CA 2023', '-days', '30', '-keyout', 'k.pem', '-out', 'c.pem'], { cwd: dir });
      expect(r.status, String(r.stderr)).toBe(0);
      const fake: EnrollEntry = { variable: 'db', owner: MICROSOFT_OWNER, source: 'test', kind: 'x509', certificate: parseCertificate(readFileSync(join(dir, 'c.pem'))) };
      const image = enrollSignatures(readFileSync(MS), [fake]).data;
      expect(secureBootSummary(parseVarstore(image).variables).microsoft.windowsUefiCa2023).toBe(true); // decode.ts matches the CN
      expect(certificateReadiness(image).microsoft.windowsUefiCa2023).toBe(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe.skipIf(!haveOvmf)('lostMicrosoft2023 (the guard)', () => {
  it('enrolled → the 2011-only template: all four 2023 certificates, in table order', () => {
    expect(lostMicrosoft2023(enrolled(), readFileSync(MS))).toEqual(ALL_2023);
  });

  it('nothing is lost when the new NVRAM trusts as much or more', () => {
    expect(lostMicrosoft2023(readFileSync(MS), enrolled())).toEqual([]);
    expect(lostMicrosoft2023(enrolled(), enrolled())).toEqual([]);
    expect(lostMicrosoft2023(readFileSync(MS), readFileSync(BLANK))).toEqual([]); // the 2011 ones are not the guard's
  });

  it('only what the current NVRAM had: a store with the 2023 KEK alone loses just that', () => {
    expect(lostMicrosoft2023(enrolled(['kek2023']), readFileSync(MS))).toEqual([KEK_2023]);
    expect(lostMicrosoft2023(enrolled(['kek2023', 'uefiCa2023']), enrolled(['uefiCa2023', 'optionRomUefiCa2023']))).toEqual([KEK_2023]);
  });

  it('a template without keys loses everything; an unreadable current NVRAM has nothing to lose; an unreadable new one trusts nothing', () => {
    expect(lostMicrosoft2023(enrolled(), readFileSync(BLANK))).toEqual(ALL_2023);
    expect(lostMicrosoft2023(Buffer.alloc(540672, 0xa5), readFileSync(MS))).toEqual([]);
    expect(lostMicrosoft2023(enrolled(), Buffer.alloc(540672, 0xa5))).toEqual(ALL_2023);
  });
});
