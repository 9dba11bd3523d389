/**
 * The Microsoft 2023 Secure Boot certificates `nvram enroll --ms-2023` enrols: the bytes built into
 * the product (src/core/varstore/microsoft-2023.ts) are the PEM files in certs/microsoft/, and each
 * certificate is the one Microsoft publishes — checked by its SHA-1 thumbprint, the value Windows
 * and Microsoft's guidance name certificates by.
 *
 * Published values:
 *  - Microsoft publishes these certificates in its Secure Boot objects repository,
 *    https://github.com/microsoft/secureboot_objects (PreSignedObjects/KEK/Certificates,
 *    PreSignedObjects/DB/Certificates), which "Windows Secure Boot Key Creation and Management
 *    Guidance" names as the source of "the Microsoft recommended PK, KEK, DB and DBX binaries":
 *    https://learn.microsoft.com/windows-hardware/manufacture/desktop/windows-secure-boot-key-creation-and-management-guidance
 *    The thumbprints below are those of Microsoft's files there (checked at commit 06fe58a).
 *  - The 2011 certificates that expire from June 2026 (KEK CA 2011, Windows Production PCA 2011,
 *    UEFI CA 2011) and the move to the 2023 ones: Microsoft's KB5062713, "Windows Secure Boot
 *    certificates expiring in 2026", https://support.microsoft.com/help/5062713 ; UEFI CA 2011 split
 *    into Microsoft UEFI CA 2023 (applications) and Microsoft Option ROM UEFI CA 2023 (option ROMs):
 *    https://techcommunity.microsoft.com/blog/hardware-dev-center/signing-with-the-new-2023-microsoft-uefi-certificates-what-submitters-need-to-kn/4455787
 *  - The three certificates Debian's python3-virt-firmware 24.11-2 (trixie) carries are byte-identical
 *    to Microsoft's; it has no Option ROM UEFI CA 2023, which comes from Microsoft's repository.
 *  - The 2011 thumbprints are checked against Debian's OVMF_VARS_4M.ms.fd when it is installed.
 */
import { createHash, X509Certificate } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { EFI_CERT_X509, findVariable, MICROSOFT_2023_CERTIFICATES, MICROSOFT_OWNER, parseVarstore, readSignatureLists } from '../../src/core/varstore';

const CERTS = join(__dirname, '..', '..', 'certs', 'microsoft');
const MS_TEMPLATE = '/usr/share/OVMF/OVMF_VARS_4M.ms.fd';

/** SHA-1 thumbprints of Microsoft's published certificates (see the file comment). */
const PUBLISHED: Record<string, { sha1: string; file: string; variable: 'KEK' | 'db' }> = {
  'Microsoft Corporation KEK 2K CA 2023': { sha1: '459ab6fb5e284d272d5e3e6abc8ed663829d632b', file: 'MicrosoftCorporationKEK2KCA2023.pem', variable: 'KEK' },
  'Windows UEFI CA 2023': { sha1: '45a0fa32604773c82433c3b7d59e7466b3ac0c67', file: 'WindowsUEFICA2023.pem', variable: 'db' },
  'Microsoft UEFI CA 2023': { sha1: 'b5eeb4a6706048073f0ed296e7f580a790b59eaa', file: 'MicrosoftUEFICA2023.pem', variable: 'db' },
  'Microsoft Option ROM UEFI CA 2023': { sha1: '3fb39e2b8bd183bf9e4594e72183ca60afcd4277', file: 'MicrosoftOptionROMUEFICA2023.pem', variable: 'db' },
};
/** The 2011 certificates they succeed, as enrolled in Debian's Microsoft-keys template. */
const PUBLISHED_2011: Record<string, string> = {
  'Microsoft Corporation KEK CA 2011': '31590bfd89c9d74ed087dfac66334b3931254b30',
  'Microsoft Windows Production PCA 2011': '580a6f4cc4e4b669b9ebdc1b2b3e087b80d0678d',
  'Microsoft Corporation UEFI CA 2011': '46def63b5ce61cf8ba0de2e6639c1019d0ed14f3',
};

const sha1 = (der: Uint8Array) => createHash('sha1').update(der).digest('hex');
const cn = (c: X509Certificate) => /^CN=(.*)$/m.exec(c.subject)?.[1];

describe('Microsoft 2023 Secure Boot certificates', () => {
  it('the built-in certificates are exactly the four published ones, each with Microsoft’s SHA-1 thumbprint, for the right variable', () => {
    expect(MICROSOFT_2023_CERTIFICATES.map((c) => c.name)).toEqual(Object.keys(PUBLISHED));
    for (const c of MICROSOFT_2023_CERTIFICATES) {
      const der = Buffer.from(c.der, 'base64');
      const x = new X509Certificate(der);
      expect(cn(x), c.name).toBe(c.name);
      expect(sha1(der), c.name).toBe(PUBLISHED[c.name].sha1);
      expect(c.variable, c.name).toBe(PUBLISHED[c.name].variable);
      expect(x.issuer, c.name).toMatch(/O=Microsoft Corporation/);
      expect(new Date(x.validTo).getUTCFullYear(), c.name).toBeGreaterThanOrEqual(2035);
    }
    expect(MICROSOFT_OWNER).toBe('77fa9abd-0359-4d32-bd60-28f4e78f784b');
  });

  it('certs/microsoft/ holds the same certificates as PEM files, nothing else but its README', () => {
    expect(readdirSync(CERTS).sort()).toEqual([...Object.values(PUBLISHED).map((p) => p.file), 'README.md'].sort());
    for (const c of MICROSOFT_2023_CERTIFICATES) {
      const pem = readFileSync(join(CERTS, PUBLISHED[c.name].file), 'utf8');
      expect(pem.match(/-----BEGIN CERTIFICATE-----/g), c.name).toHaveLength(1);
      expect(Buffer.from(new X509Certificate(pem).raw).toString('base64'), c.name).toBe(c.der);
    }
  });

  it.skipIf(!existsSync(MS_TEMPLATE))('the 2011 certificates of Debian’s Microsoft-keys template have Microsoft’s thumbprints (what the 2023 ones go next to)', () => {
    const vars = parseVarstore(readFileSync(MS_TEMPLATE)).variables;
    const ders = ['KEK', 'db'].flatMap((name) =>
      readSignatureLists(vars.find((v) => v.name === name)!.data).flatMap((l) => (l.type === EFI_CERT_X509 ? l.entries.map((e) => e.data) : [])),
    );
    const found = Object.fromEntries(ders.map((der) => [cn(new X509Certificate(der)), sha1(der)]));
    for (const [name, thumbprint] of Object.entries(PUBLISHED_2011)) expect(found[name], name).toBe(thumbprint);
    expect(findVariable(vars, '8be4df61-93ca-11d2-aa0d-00e098032b8c', 'PK')).toBeDefined();
  });
});
