/**
 * `<ovmf:policy secure-boot-certs="2023">` through the built hook (test/hook/harness.ts plays
 * libvirt): a cold start of a VM whose NVRAM trusts only Microsoft's 2011 certificates (Debian's
 * OVMF_VARS_4M.ms.fd) enrols the 2023 ones before QEMU would start — archived first, one new
 * generation whose reason names the policy — and the next start does nothing; an incoming migration
 * and the restore of a saved image never enrol; a VM with a TPM is skipped with a log line unless
 * `tpm-reseal="accept"`; a current store, a store without Secure Boot keys and a VM without the
 * policy are left alone; a bad policy value refuses the start in one line.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { certificateReadiness, editVarstore } from '../../src/core/varstore';
import { openArchive } from '../../src/io/archive';
import { DEFAULT_UUID, domainXml, hostsFixture, makeHost, sha256, type HookHost, type HookResult } from '../hook/harness';
import { enrolledWith2023, MS_VARS_4M } from '../support/ms-2023';

const PLAIN_VARS_4M = '/usr/share/OVMF/OVMF_VARS_4M.fd';
const haveOvmf = existsSync(MS_VARS_4M) && existsSync(PLAIN_VARS_4M);
if (!haveOvmf) console.warn('SKIPPED: the secure-boot-certs hook tests need /usr/share/OVMF (Debian ovmf)');

const VM = 'vm1';
const POLICY = { 'secure-boot-certs': '2023' };
const TPM = "<tpm model='tpm-crb'><backend type='emulator' version='2.0'/></tpm>";
const REASON = 'policy secure-boot-certs=2023: KEK +1, db +3';
const hosts = hostsFixture();

interface Vm {
  h: HookHost;
  nvram: string;
  /** The VM's domain XML with `policy` (default: the VM's own) and `devices`. */
  xml: (policy?: Record<string, string>, devices?: string[]) => string;
  /** The hook on the VM's own XML (or `xml`). */
  run: (op: 'prepare' | 'release' | 'migrate' | 'restore', xml?: string) => Promise<HookResult>;
  generations: () => Promise<Array<[number, string, string, string]>>;
}

/** A host and a Secure Boot VM on it with the Microsoft-keys template, the policy `policy`, and `devices`. */
function vm(policy: Record<string, string> | undefined, devices: string[] = []): Vm {
  const h = makeHost(hosts.root, { firmware: hosts.fw, config: { qemuUser: 'root', qemuGroup: 'root' } });
  const nvram = h.nvramPath(VM);
  const xml = (p = policy, d = devices) => domainXml({ name: VM, firmware: 'ovmf-secure', template: MS_VARS_4M, nvram, policy: p, devices: d }, hosts.fw);
  return {
    h,
    nvram,
    xml,
    run: (op, x) => h.run([VM, op, op === 'release' ? 'end' : 'begin', '-'], x ?? xml()),
    generations: async () => {
      const archive = await openArchive({ root: h.archiveDir, host: 'reader', hostId: 'reader' });
      return (await archive.list(DEFAULT_UUID)).map((g) => [g.generation, g.kind, g.sha256, g.reason]);
    },
  };
}

const ok = (r: HookResult, what: string) => expect([r.code, r.stderr], what).toEqual([0, '']);
const policyLines = (h: HookHost) => h.log().split('\n').filter((l) => l.includes('policy secure-boot-certs=2023'));
const readiness = (file: string) => certificateReadiness(readFileSync(file)).state;
/** What OVMF does on every boot: some variable changes (the store stays a valid one). */
const guestRuns = (file: string, n: number) => {
  const ed = editVarstore(readFileSync(file));
  ed.set('OvmfHookTestRun', '3b2fa8a2-7a8f-4b4e-9a52-6c8f8f0c0c01', 7, new Uint8Array([n]));
  writeFileSync(file, ed.toBuffer());
};

/** The VM ran once with the hook but without the policy (its 2011-only NVRAM is archived as generation 1), then stopped. */
async function archivedOnce(v: Vm): Promise<Buffer> {
  ok(await v.run('prepare', v.xml({})), 'first prepare');
  guestRuns(v.nvram, 1);
  ok(await v.run('release', v.xml({})), 'first release');
  return readFileSync(v.nvram);
}

describe.skipIf(!haveOvmf)('hook prepare with <ovmf:policy secure-boot-certs="2023">', () => {
  it('a cold start of a 2011-only VM enrols before the start: archived first, one new generation naming the policy; the next start is a no-op', async () => {
    const v = vm(POLICY);
    // the VM ran without the policy first (archived at its stop), as an existing VM would have
    const old = await archivedOnce(v);
    expect(readiness(v.nvram)).toBe('update-available');
    expect(await v.generations()).toEqual([[1, 'archive', sha256(old), 'release (-)']]);
    expect(policyLines(v.h)).toEqual([]);

    ok(await v.run('prepare'), 'prepare with the policy');
    const enrolled = readFileSync(v.nvram);
    expect(readiness(v.nvram)).toBe('current');
    expect(enrolled.equals(enrolledWith2023(old))).toBe(true);
    expect(await v.generations()).toEqual([
      [1, 'archive', sha256(old), 'release (-)'],
      [2, 'manual', sha256(enrolled), REASON],
    ]);
    const lines = policyLines(v.h);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/ info: vm1: prepare: policy secure-boot-certs=2023: KEK \+1, db \+3 \(Microsoft 2023 certificates enrolled before the start\), archived as generation 2 \(the newest\); the NVRAM before is generation 1 \(undo, VM shut off: ovmf-hook nvram restore vm1 --generation 1 --force\)$/);
    const state = JSON.parse(readFileSync(join(v.h.stateDir, `${DEFAULT_UUID}.json`), 'utf8'));
    expect(state).toMatchObject({ generation: 2, sha256: sha256(enrolled) });
    expect(state.preparedAt).toBeDefined();

    // the guest runs: the release archives what it changed, as usual
    guestRuns(v.nvram, 2);
    ok(await v.run('release'), 'release after the enrolment');
    const ran = readFileSync(v.nvram);
    expect((await v.generations()).at(-1)).toEqual([3, 'archive', sha256(ran), 'release (-)']);

    // the next start: nothing to do, nothing archived, no policy line
    ok(await v.run('prepare'), 'second prepare');
    expect(readFileSync(v.nvram).equals(ran)).toBe(true);
    expect(await v.generations()).toHaveLength(3);
    expect(policyLines(v.h)).toHaveLength(1);
  });

  it('a first start, provisioned from the 2011-only template: the template copy archived first, then the enrolled store', async () => {
    const v = vm(POLICY);
    ok(await v.run('prepare'), 'prepare');
    expect(readiness(v.nvram)).toBe('current');
    expect(await v.generations()).toEqual([
      [1, 'manual', sha256(readFileSync(MS_VARS_4M)), 'copy taken before policy secure-boot-certs=2023'],
      [2, 'manual', sha256(readFileSync(v.nvram)), REASON],
    ]);
  });

  it.each([
    ['an incoming migration', 'migrate', 'an incoming migration'],
    ['the restore of a saved image', 'restore', 'the restore of a saved image'],
  ] as const)('%s never enrols; the log says why, and the next cold start does', async (_what, filter, named) => {
    const v = vm(POLICY);
    // a 2011-only store the VM would run with (archived by a stop without the policy's enrolment)
    writeFileSync(v.nvram, readFileSync(MS_VARS_4M));
    guestRuns(v.nvram, 1);
    const image = readFileSync(v.nvram);
    const r = await v.run(filter);
    expect([r.code, r.stderr]).toEqual([0, '']);
    ok(await v.run('prepare'), `prepare after ${filter} begin`);
    expect(readFileSync(v.nvram).equals(image)).toBe(true);
    expect((await v.generations()).filter((g) => g[3].startsWith('policy'))).toEqual([]);
    expect(policyLines(v.h)).toEqual([
      expect.stringMatching(new RegExp(` info: vm1: prepare: policy secure-boot-certs=2023: not applied to ${named} \\(the NVRAM must stay as the running guest left it\\); it applies at the next cold start$`)),
    ]);
    // the mark is used up: once that VM stops, its next start is a cold one and enrols
    ok(await v.run('release'), 'release');
    ok(await v.run('prepare'), 'cold start');
    expect(readiness(v.nvram)).toBe('current');
    expect((await v.generations()).at(-1)?.[3]).toBe(REASON);
  });

  it('restore begin of a VM without the policy writes no state (the mark is for the policy only)', async () => {
    const v = vm(undefined);
    ok(await v.run('restore'), 'restore filter');
    expect(existsSync(join(v.h.stateDir, `${DEFAULT_UUID}.json`))).toBe(false);
  });

  it('a VM with a TPM is skipped with one warning saying why and what to do; tpm-reseal="accept" enrols it', async () => {
    const v = vm(POLICY, [TPM]);
    const old = await archivedOnce(v);
    ok(await v.run('prepare'), 'prepare with a TPM');
    expect(readFileSync(v.nvram).equals(old)).toBe(true);
    expect(await v.generations()).toHaveLength(1);
    const lines = policyLines(v.h);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(' warning: vm1: prepare: policy secure-boot-certs=2023: not enrolling the Microsoft 2023 certificates the NVRAM lacks (');
    expect(lines[0]).toContain('the domain has a TPM, and changing KEK/db changes the Secure Boot measurement in PCR7');
    expect(lines[0]).toContain('suspend BitLocker in the guest (manage-bde -protectors -disable C: -RebootCount 2), then add tpm-reseal="accept"');
    ok(await v.run('release'), 'release');

    ok(await v.run('prepare', v.xml({ ...POLICY, 'tpm-reseal': 'accept' })), 'prepare with tpm-reseal="accept"');
    expect(readiness(v.nvram)).toBe('current');
    expect((await v.generations()).map((g) => g[3])).toEqual(['release (-)', REASON]);
  });

  it('an NVRAM with the 2023 certificates already: nothing archived, nothing written, no log line', async () => {
    const v = vm(POLICY);
    const current = enrolledWith2023(readFileSync(MS_VARS_4M));
    writeFileSync(v.nvram, current);
    ok(await v.run('prepare'), 'prepare');
    expect(readFileSync(v.nvram).equals(current)).toBe(true);
    expect(await v.generations()).toEqual([]);
    expect(policyLines(v.h)).toEqual([]);
  });

  it('an NVRAM without Secure Boot keys: nothing written, an info line saying why', async () => {
    const v = vm(POLICY);
    writeFileSync(v.nvram, readFileSync(PLAIN_VARS_4M));
    ok(await v.run('prepare'), 'prepare');
    expect(readFileSync(v.nvram).equals(readFileSync(PLAIN_VARS_4M))).toBe(true);
    expect(await v.generations()).toEqual([]);
    expect(policyLines(v.h)).toEqual([expect.stringMatching(/ info: vm1: prepare: policy secure-boot-certs=2023: nothing to enrol: no PK enrolled \(setup mode\);/)]);
  });

  it('an NVRAM that is no variable store: the VM starts unchanged, with a warning', async () => {
    const v = vm(POLICY);
    const junk = Buffer.alloc(readFileSync(MS_VARS_4M).length, 0xa5);
    writeFileSync(v.nvram, junk);
    ok(await v.run('prepare'), 'prepare');
    expect(readFileSync(v.nvram).equals(junk)).toBe(true);
    expect(await v.generations()).toEqual([]);
    expect(policyLines(v.h)).toEqual([expect.stringMatching(/ warning: vm1: prepare: policy secure-boot-certs=2023: could not enrol the Microsoft 2023 certificates \(.+\); the VM starts with its NVRAM unchanged;/)]);
  });

  it('a VM without the policy is left as it is', async () => {
    const v = vm(undefined);
    const old = await archivedOnce(v);
    ok(await v.run('prepare'), 'prepare');
    expect(readFileSync(v.nvram).equals(old)).toBe(true);
    expect(await v.generations()).toHaveLength(1);
    expect(policyLines(v.h)).toEqual([]);
  });

  it('a bad value refuses the start in one line naming the attribute and the values allowed (exit 2), touching nothing', async () => {
    const v = vm({ 'secure-boot-certs': '2024' });
    const r = await v.run('prepare');
    expect([r.code, r.stdout, r.stderr]).toEqual([2, '', 'ovmf-hook: vm1: <ovmf:policy secure-boot-certs="2024"> must be "2023", or left out (off)\n']);
    expect(existsSync(v.nvram)).toBe(false);
  });
});
