/**
 * The per-VM opt-in `<ovmf:policy secure-boot-certs="2023" tpm-reseal="accept">`, pure: how the
 * attributes are parsed (src/core/config: one home with the yes/no switches; bad values and a
 * host-wide attempt refused in one line), and what the policy's step does with an NVRAM
 * (src/core/varstore/cert-policy.ts) — on Debian's Microsoft-keys template (2011 certificates only),
 * the same enrolled with the 2023 ones, and the template without keys.
 */
import { existsSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { configFileForm, DEFAULT_CONFIG, domainPolicy, parseConfig, resolvePolicy, SECURE_BOOT_CERTS_POLICY } from '../../src/core/config';
import { parseDomain } from '../../src/core/domain';
import { ConfigError, UsageError } from '../../src/core/errors';
import { certificateReadiness, secureBootCertsStep } from '../../src/core/varstore';
import { notAtThisStart } from '../../src/core/varstore/cert-policy';
import { enrolledWith2023, ms2023Entries, MS_VARS_4M } from '../support/ms-2023';

const PLAIN_VARS_4M = '/usr/share/OVMF/OVMF_VARS_4M.fd';
const haveOvmf = existsSync(MS_VARS_4M) && existsSync(PLAIN_VARS_4M);
if (!haveOvmf) console.warn('SKIPPED: the secure-boot-certs step tests need /usr/share/OVMF (Debian ovmf)');

const dom = (attrs: string) =>
  parseDomain(`<domain type='kvm'><name>vm1</name><metadata><ovmf:policy xmlns:ovmf="urn:ovmf-hook:policy:1" ${attrs}/></metadata><os><type>hvm</type></os></domain>`);

describe('<ovmf:policy secure-boot-certs tpm-reseal>: parsing', () => {
  it('reads the values next to the yes/no switches; absent means off', () => {
    expect(domainPolicy(dom('secure-boot-certs="2023"'))).toEqual({ secureBootCerts: '2023' });
    expect(domainPolicy(dom('secure-boot-certs="2023" tpm-reseal="accept" archive="yes"'))).toEqual({ secureBootCerts: '2023', tpmReseal: 'accept', archive: true });
    expect(domainPolicy(dom('tpm="yes"'))).toEqual({ tpm: true });
    const p = resolvePolicy(DEFAULT_CONFIG, dom('secure-boot-certs="2023"'));
    expect(p).toEqual({ ...DEFAULT_CONFIG.policy, secureBootCerts: '2023' });
    expect(resolvePolicy(DEFAULT_CONFIG, dom('tpm="no"')).secureBootCerts).toBeUndefined();
  });

  it.each([
    ['secure-boot-certs="2024"', '<ovmf:policy secure-boot-certs="2024"> must be "2023", or left out (off)'],
    ['secure-boot-certs="yes"', '<ovmf:policy secure-boot-certs="yes"> must be "2023", or left out (off)'],
    ['tpm-reseal="yes"', '<ovmf:policy tpm-reseal="yes"> must be "accept", or left out (off)'],
  ])('%s: one line naming the attribute and the values allowed (exit 2)', (attrs, message) => {
    let error: unknown;
    try {
      domainPolicy(dom(attrs));
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(UsageError);
    expect((error as UsageError).message).toBe(`vm1: ${message}`);
    expect((error as UsageError).exitCode).toBe(2);
  });

  it.each([['secure-boot-certs', '2023'], ['tpm-reseal', 'accept']])('the config file refuses "%s" host-wide, saying where it goes instead', (key, value) => {
    let error: unknown;
    try {
      parseConfig(JSON.stringify({ policy: { [key]: value } }), '/etc/ovmf-hook/config.json');
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as Error).message).toBe(
      `/etc/ovmf-hook/config.json: policy: "${key}" is set per VM, not host-wide: put it in the domain's metadata (virsh metadata VM --uri urn:ovmf-hook:policy:1 --key ovmf --set '<policy ${key}="${value}"/>' --config); fix it and check with: ovmf-hook config check`,
    );
  });

  it('config show is unchanged: the host-wide policy has the four switches only', () => {
    expect(configFileForm(parseConfig('{}')).policy).toEqual({ uefi: 'yes', 'secure-boot': 'no', tpm: 'no', archive: 'yes' });
  });
});

describe.skipIf(!haveOvmf)('the secure-boot-certs step on an NVRAM', () => {
  const ms = readFileSync(MS_VARS_4M);
  const step = (image: Uint8Array, o: { tpm?: boolean; tpmReseal?: boolean } = {}) => secureBootCertsStep(image, { vm: 'vm1', tpm: o.tpm ?? false, tpmReseal: o.tpmReseal ?? false });

  it('a 2011-only Secure Boot store: the four 2023 certificates enrolled, as nvram enroll --ms-2023 does; the reason names the policy', () => {
    expect(certificateReadiness(ms).state).toBe('update-available');
    const r = step(ms);
    expect(r.do).toBe('enroll');
    if (r.do !== 'enroll') return;
    expect(r.reason).toBe(`${SECURE_BOOT_CERTS_POLICY}: KEK +1, db +3`);
    expect(r.reason).toBe('policy secure-boot-certs=2023: KEK +1, db +3');
    expect(certificateReadiness(r.data).state).toBe('current');
    expect(r.data.equals(enrolledWith2023(ms))).toBe(true);
    expect(r.data.length).toBe(ms.length);
  });

  it('a current store: nothing, and no log line', () => {
    expect(step(enrolledWith2023(ms))).toEqual({ do: 'nothing' });
  });

  it('a store without Secure Boot keys: nothing, an info line saying why', () => {
    expect(step(readFileSync(PLAIN_VARS_4M))).toEqual({
      do: 'nothing',
      log: { level: 'info', message: 'policy secure-boot-certs=2023: nothing to enrol: no PK enrolled (setup mode); the policy adds certificates to a Secure Boot NVRAM (one with a PK: ovmf-hook convert vm1 --secure-boot)' },
    });
  });

  it('a TPM without tpm-reseal="accept": nothing, a warning with the certificates missing, the PCR7/BitLocker reason and what to do', () => {
    expect(step(ms, { tpm: true })).toEqual({
      do: 'nothing',
      log: {
        level: 'warning',
        message:
          'policy secure-boot-certs=2023: not enrolling the Microsoft 2023 certificates the NVRAM lacks (Microsoft Corporation KEK 2K CA 2023, Windows UEFI CA 2023, Microsoft UEFI CA 2023, Microsoft Option ROM UEFI CA 2023): ' +
          'the domain has a TPM, and changing KEK/db changes the Secure Boot measurement in PCR7, so BitLocker (or anything sealed to PCR7) would ask for its recovery key; ' +
          'suspend BitLocker in the guest (manage-bde -protectors -disable C: -RebootCount 2), then add tpm-reseal="accept" to the VM\'s <ovmf:policy> and start it again (or shut it down and run: ovmf-hook nvram enroll vm1 --ms-2023 --force)',
      },
    });
  });

  it('a TPM with tpm-reseal="accept": enrolled', () => {
    const r = step(ms, { tpm: true, tpmReseal: true });
    expect(r.do).toBe('enroll');
  });

  it('only some 2023 certificates present: the missing ones added, the others left', () => {
    const r = step(enrolledWith2023(ms, ms2023Entries(['kek2023'])));
    expect(r.do === 'enroll' && r.reason).toBe('policy secure-boot-certs=2023: db +3');
    expect(r.do === 'enroll' && certificateReadiness(r.data).state).toBe('current');
  });

  it('not a variable store: nothing, a warning that the VM starts unchanged', () => {
    const r = step(Buffer.alloc(ms.length, 0xa5));
    expect(r.do).toBe('nothing');
    expect(r.do === 'nothing' && r.log?.level).toBe('warning');
    expect(r.do === 'nothing' && r.log?.message).toMatch(/^policy secure-boot-certs=2023: could not enrol the Microsoft 2023 certificates \(.+\); the VM starts with its NVRAM unchanged; see: ovmf-hook nvram enroll vm1 --ms-2023 --dry-run$/);
  });

  it('names what it does not do at a migration or a restore', () => {
    expect(notAtThisStart('incoming migration')).toBe(
      'policy secure-boot-certs=2023: not applied to an incoming migration (the NVRAM must stay as the running guest left it); it applies at the next cold start',
    );
    expect(notAtThisStart('restore of a saved image')).toMatch(/not applied to the restore of a saved image/);
  });
});
