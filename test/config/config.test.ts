import { describe, expect, it } from 'vitest';
import { DEFAULT_CONFIG, domainPolicy, parseConfig, policyViolations, resolvePolicy, secureBootConfigured } from '../../src/core/config';
import { parseQemuConfOwner } from '../../src/io';
import { parseDomain } from '../../src/core/domain';
import { UsageError } from '../../src/core/errors';

const dom = (os: string, extra = '') =>
  parseDomain(`<domain type='qemu'><name>vm1</name><uuid>0a1f4f0e-0b1d-4c2e-9e01-000000000001</uuid>${extra}<os>${os}</os><devices/></domain>`);
const BIOS = "<type arch='x86_64' machine='pc'>hvm</type>";
const UEFI = "<type arch='x86_64' machine='q35'>hvm</type><loader readonly='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE_4M.fd</loader>";
const UEFI_SB = "<type arch='x86_64' machine='q35'>hvm</type><loader readonly='yes' secure='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE_4M.ms.fd</loader>";
const AUTO_SB = "<type arch='x86_64' machine='q35'>hvm</type><firmware><feature enabled='yes' name='secure-boot'/></firmware>";
const meta = (attrs: string) => `<metadata><ovmf:policy xmlns:ovmf="urn:ovmf-hook:policy:1" ${attrs}/></metadata>`;

describe('parseConfig', () => {
  it('merges a valid file over the defaults', () => {
    const c = parseConfig('{"mode":"enforce","keepGenerations":3,"policy":{"secure-boot":"yes"}}');
    expect(c.mode).toBe('enforce');
    expect(c.keepGenerations).toBe(3);
    expect(c.policy).toEqual({ ...DEFAULT_CONFIG.policy, secureBoot: true });
    expect(c.archiveDir).toBe(DEFAULT_CONFIG.archiveDir);
  });

  it.each([
    ['{', /invalid JSON/],
    ['[]', /expected a JSON object/],
    ['{"mdoe":"warn"}', /unknown key "mdoe"/],
    ['{"mode":"strict"}', /"mode" must be "enforce", "warn" or "off"/],
    ['{"archiveDir":"relative/dir"}', /"archiveDir" must be an absolute path/],
    ['{"archiveDir":"/var/../etc"}', /"archiveDir" must be an absolute path/],
    ['{"keepGenerations":0}', /"keepGenerations" must be an integer from 1 to 1000/],
    ['{"keepGenerations":2.5}', /"keepGenerations"/],
    ['{"policy":{"secureboot":"yes"}}', /policy: unknown key "secureboot"/],
    ['{"policy":{"tpm":"maybe"}}', /"tpm" must be "yes" or "no"/],
    ['{"policy":"yes"}', /policy must be an object/],
    ['{"hostId":"a/b"}', /"hostId" must be/],
    ['{"firmwareDirs":["/ok","rel"]}', /"firmwareDirs" must be a list of absolute paths/],
  ])('rejects %s with one line naming the problem', (text, re) => {
    let err: unknown;
    try {
      parseConfig(text, '/etc/ovmf-hook/config.json');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(UsageError);
    expect((err as Error).message).toMatch(re);
    expect((err as Error).message).toContain('/etc/ovmf-hook/config.json');
    expect((err as Error).message).not.toContain('\n');
  });
});

describe('policy layers: defaults < config < domain metadata < flags', () => {
  const config = parseConfig('{"policy":{"uefi":"yes","secure-boot":"no","tpm":"no"}}');
  it.each([
    ['config only', '', {}, { uefi: true, secureBoot: false, tpm: false, archive: true }],
    ['metadata over config', meta('secure-boot="yes" tpm="yes"'), {}, { uefi: true, secureBoot: true, tpm: true, archive: true }],
    ['flags over metadata', meta('secure-boot="yes"'), { secureBoot: false }, { uefi: true, secureBoot: false, tpm: false, archive: true }],
    ['undefined flags do not override', meta('archive="no"'), { secureBoot: undefined }, { uefi: true, secureBoot: false, tpm: false, archive: false }],
    ['secure boot implies uefi', meta('uefi="no" secure-boot="yes"'), {}, { uefi: true, secureBoot: true, tpm: false, archive: true }],
  ])('%s', (_name, md, flags, expected) => {
    expect(resolvePolicy(config, dom(BIOS, md), flags)).toEqual(expected);
  });

  it('finds the policy under any prefix bound to the namespace, and ignores other namespaces', () => {
    expect(domainPolicy(dom(BIOS, `<metadata><p:policy xmlns:p="urn:ovmf-hook:policy:1" tpm="yes"/></metadata>`))).toEqual({ tpm: true });
    expect(domainPolicy(dom(BIOS, `<metadata><p:policy xmlns:p="urn:other" tpm="yes"/></metadata>`))).toEqual({});
  });

  it('rejects a metadata value that is not yes/no', () => {
    expect(() => domainPolicy(dom(BIOS, meta('tpm="1"')))).toThrow(/must be "yes" or "no"/);
  });
});

describe('policyViolations', () => {
  const p = (o: Partial<{ uefi: boolean; secureBoot: boolean; tpm: boolean }>) => ({ uefi: false, secureBoot: false, tpm: false, archive: true, ...o });
  it.each([
    ['BIOS with uefi policy', BIOS, '', p({ uefi: true }), ['policy requires UEFI but the domain boots BIOS']],
    ['BIOS with secure boot policy', BIOS, '', p({ uefi: true, secureBoot: true }), ['policy requires UEFI but the domain boots BIOS', 'policy requires Secure Boot but the domain boots BIOS']],
    ['UEFI without SB, SB policy', UEFI, '', p({ secureBoot: true }), ['policy requires Secure Boot but the domain firmware is not a Secure Boot build']],
    ['UEFI with SB loader', UEFI_SB, '', p({ uefi: true, secureBoot: true }), []],
    ['auto firmware with the secure-boot feature', AUTO_SB, '', p({ secureBoot: true }), []],
    ['TPM missing', UEFI, '', p({ tpm: true }), ['policy requires a TPM but the domain has none']],
    ['nothing asked', BIOS, '', p({}), []],
  ])('%s', (_n, os, extra, policy, expected) => {
    const d = os === AUTO_SB ? parseDomain(`<domain type='qemu'><name>vm1</name><os firmware='efi'>${os}</os></domain>`) : dom(os, extra);
    expect(policyViolations(d, policy)).toEqual(expected);
  });

  it('secureBootConfigured distinguishes SB builds', () => {
    expect(secureBootConfigured(dom(UEFI))).toBe(false);
    expect(secureBootConfigured(dom(UEFI_SB))).toBe(true);
  });
});

describe('parseQemuConfOwner', () => {
  it('reads uncommented user/group only', () => {
    expect(parseQemuConfOwner('#user = "root"\nuser = "qemu"\n  group = "kvm"\n')).toEqual({ user: 'qemu', group: 'kvm' });
    expect(parseQemuConfOwner('#user = "root"\n')).toEqual({ user: undefined, group: undefined });
  });
});
