/**
 * `<ovmf:policy secure-boot-certs="2023">` in the real libvirtd, with the hook installed by
 * install.sh for the duration of this file (test/support/host-install.ts: the host's install saved
 * under the host guard and put back; the test config manages only VMs whose metadata opts in with
 * archive="yes"; archive, state and log in a temp dir):
 *
 *  - a Secure Boot VM (q35, TCG, SMM, Microsoft-keys template: 2011 certificates only) that ran
 *    before without the policy gets it; `virsh start --paused`: before QEMU ran any firmware code
 *    its NVRAM holds the four 2023 certificates, one new generation (the newest) whose reason names
 *    the policy, `nvram certs` says current; resumed, the firmware refuses an unsigned binary from
 *    the disk (Secure Boot enforced with the enrolled store); the next start is a no-op;
 *  - `virsh save` / `virsh restore --paused` of a VM with the policy (its NVRAM made 2011-only
 *    again in between with `nvram restore --force`): the restore resumes the saved image with the
 *    NVRAM unchanged and the log says why; the next cold start enrols; a managed save likewise;
 *  - a VM with a TPM (swtpm): skipped, with the log line saying why and what to do.
 *
 * Only domains named ovmfhook-t-pol… are touched; the TPM VM is undefined with its TPM state.
 * Needs: dosfstools, mtools (the unsigned disk), swtpm swtpm-tools.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { defineDomain, describeLibvirt, destroyDomain, domainState, makeDomainXml, OVMF, scratchPath, uniqueVmName, virsh } from '../support/libvirt';
import { unsignedEfiDisk } from '../support/platform';
import { HOOK, reloadLibvirt, sh, TestInstall } from '../support/host-install';
import { runCli } from '../cli/support';
import { CLI_BIN, ensureBuilt, ROOT, sha256 } from '../hook/harness';
import { boot, NVRAM_DIR, ok, REFUSED, requireHost, serialText } from './firmware-boot';
import { policyMetadata, removeWithTpm, swtpmMissing, withTpm } from './policy-vms';

const MARKER = 'ovmf-hook: libvirt QEMU hook';
const REASON = 'policy secure-boot-certs=2023: KEK +1, db +3';
const POLICY = { archive: 'yes', 'secure-boot-certs': '2023' };

const t = new TestInstall();
let installed = false;
let disk = '';
const tpmVms: string[] = [];

/** The built CLI with the installed test config (/etc/ovmf-hook/config.json). */
const ovmfHook = (...args: string[]) => runCli(CLI_BIN, args);
const nvramOf = (vm: string) => join(NVRAM_DIR, `${vm}_VARS.fd`);
const generations = (vm: string) =>
  (JSON.parse(ok(ovmfHook('nvram', 'list', vm, '--json'))) as { generations: Array<{ generation: number; kind: string; sha256: string; reason: string }> }).generations.map((g) => [
    g.generation,
    g.kind,
    g.sha256,
    g.reason,
  ]);
const certsState = (vm: string) => (JSON.parse(ok(ovmfHook('nvram', 'certs', vm, '--json'))) as { vms: Array<{ state: string; tpm: boolean }> }).vms[0]!;
/** The hook's log lines about `vm` and the policy. */
const policyLines = (vm: string) => t.hookLog().split('\n').filter((l) => l.includes(` ${vm}: `) && l.includes('policy secure-boot-certs=2023'));
/** The policy set as the README says: `virsh metadata VM --uri urn:ovmf-hook:policy:1 --key ovmf --set '<policy …/>' --config`. */
const setPolicy = (vm: string, attrs: Record<string, string>) =>
  virsh(['metadata', vm, '--uri', 'urn:ovmf-hook:policy:1', '--key', 'ovmf', '--set', `<policy${Object.entries(attrs).map(([k, v]) => ` ${k}="${v}"`).join('')}/>`, '--config']);

/** Wait until the serial console logged to `log` matches `until`; its text. */
async function waitForConsole(log: string, until: RegExp, timeoutMs = 120_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const text = serialText(log);
    if (until.test(text)) return text;
    if (Date.now() > deadline) throw new Error(`${until} not seen on the console within ${timeoutMs} ms; last output: ${JSON.stringify(text.slice(-600))}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** A Secure Boot q35 TCG domain (Microsoft-keys template) booting the unsigned disk, opted in with `policy`. */
function secureBootVm(what: string, policy: Record<string, string>, tpm = false): { vm: string; log: string } {
  const vm = uniqueVmName(`pol-${what}`);
  const log = scratchPath(`${vm}.log`);
  const xml = makeDomainXml({ name: vm, machine: 'q35', firmware: 'ovmf-secure', serialLog: log, disks: [{ path: disk, format: 'raw' }], metadata: policyMetadata(policy) });
  defineDomain(tpm ? withTpm(xml) : xml);
  if (tpm) tpmVms.push(vm);
  return { vm, log };
}

describeLibvirt('<ovmf:policy secure-boot-certs="2023"> in the real libvirtd (hook installed by install.sh)', () => {
  beforeAll(async () => {
    requireHost(['mkfs.vfat', 'mmd', 'mcopy'], [OVMF.msVars, OVMF.secureCode], 'dosfstools mtools ovmf');
    const noTpm = swtpmMissing();
    if (noTpm) throw new Error(`the TPM VM needs swtpm: ${noTpm}`);
    ensureBuilt();
    disk = unsignedEfiDisk(scratchPath('unsigned.img'));
    await t.guard('[keys policy.libvirt]');
    t.tmp = mkdtempSync(join(tmpdir(), 'ovmfhook-policylv-'));
    t.setUp();
    t.startingPoint();
    mkdirSync(t.archiveDir, { mode: 0o700 });
    const r = sh('bash', [join(ROOT, 'install.sh'), '--no-build'], 120);
    installed = true;
    expect(r.code, r.out).toBe(0);
    expect(readFileSync(HOOK, 'utf8')).toContain(MARKER);
    reloadLibvirt();
  }, 400_000);

  afterAll(() => {
    for (const vm of tpmVms) removeWithTpm(vm);
    t.release(() => {
      if (t.guarded && installed && readFileSync(HOOK, 'utf8').includes(MARKER)) sh('bash', [join(ROOT, 'install.sh'), '--uninstall', '--no-reload']);
    });
  }, 200_000);

  it('a cold start of a 2011-only Secure Boot VM: enrolled before QEMU runs (one new generation naming the policy, nvram certs current), the firmware enforces Secure Boot, the next start is a no-op', async () => {
    const { vm, log } = secureBootVm('sb', { archive: 'yes' });
    // it ran before, without the policy: provisioned from the 2011-only template, archived at its stop
    await boot(vm, log, REFUSED);
    expect(certsState(vm).state).toBe('update-available');
    const before = readFileSync(nvramOf(vm));
    expect(generations(vm)).toEqual([[1, 'archive', sha256(before), expect.stringMatching(/^release \(/)]]);
    expect(policyLines(vm)).toEqual([]);

    setPolicy(vm, POLICY);
    rmSync(log, { force: true });
    virsh(['start', '--paused', vm]);
    try {
      // QEMU exists, the firmware has not run one instruction: what it will run with is the enrolled store
      const enrolled = readFileSync(nvramOf(vm));
      expect(generations(vm)).toEqual([
        [1, 'archive', sha256(before), expect.stringMatching(/^release \(/)],
        [2, 'manual', sha256(enrolled), REASON],
      ]);
      expect(certsState(vm).state).toBe('current');
      expect(policyLines(vm)).toEqual([
        expect.stringMatching(/ info: \S+: prepare: policy secure-boot-certs=2023: KEK \+1, db \+3 \(Microsoft 2023 certificates enrolled before the start\), archived as generation 2 \(the newest\); the NVRAM before is generation 1 /),
      ]);
      // the firmware runs with it and enforces Secure Boot: the unsigned binary on the disk is refused
      virsh(['resume', vm]);
      await waitForConsole(log, REFUSED);
    } finally {
      destroyDomain(vm);
    }
    expect(certsState(vm).state).toBe('current');
    const afterRun = generations(vm);
    expect(afterRun.map((g) => [g[0], g[1]])).toEqual([
      [1, 'archive'],
      [2, 'manual'],
      [3, 'archive'],
    ]);

    // the next start: the store is current, nothing enrolled, no new policy line
    await boot(vm, log, REFUSED);
    expect(generations(vm).filter((g) => g[3] === REASON)).toHaveLength(1);
    expect(policyLines(vm)).toHaveLength(1);
  }, 400_000);

  it('virsh save / virsh restore and a managed save resume the saved image with its NVRAM unchanged (the log says why); the next cold start enrols', async () => {
    const { vm, log } = secureBootVm('save', POLICY);
    const image = join(t.tmp, `${vm}.save`);
    rmSync(log, { force: true });
    virsh(['start', vm]); // its first start: the template's copy archived first (generation 1), then enrolled (2)
    try {
      await waitForConsole(log, REFUSED);
      virsh(['save', vm, image], { timeoutSec: 120 });
    } catch (e) {
      destroyDomain(vm);
      throw e;
    }
    expect(domainState(vm)).toBe('shut off');
    expect(generations(vm).slice(0, 2)).toEqual([
      [1, 'manual', sha256(readFileSync(OVMF.msVars)), 'copy taken before policy secure-boot-certs=2023'],
      [2, 'manual', expect.any(String), REASON],
    ]);
    // while it is saved, its NVRAM becomes 2011-only again (as if it had never been enrolled)
    ok(ovmfHook('nvram', 'restore', vm, '--generation', '1', '--force'));
    const old = readFileSync(nvramOf(vm));
    expect(certsState(vm).state).toBe('update-available');
    const count = generations(vm).length;

    try {
      // paused: the resumed firmware would go on writing its variables (into the flash libvirt gave it)
      virsh(['restore', '--paused', image], { timeoutSec: 120 });
      expect(domainState(vm)).toBe('paused');
      expect(sha256(readFileSync(nvramOf(vm)))).toBe(sha256(old));
      expect(certsState(vm).state).toBe('update-available');
      expect(generations(vm)).toHaveLength(count);
      expect(policyLines(vm).at(-1)).toMatch(
        / info: \S+: prepare: policy secure-boot-certs=2023: not applied to the restore of a saved image \(the NVRAM must stay as the running guest left it\); it applies at the next cold start$/,
      );
    } finally {
      destroyDomain(vm);
      rmSync(image, { force: true });
    }

    // the policy is still on: the next cold start enrols
    virsh(['start', '--paused', vm]);
    destroyDomain(vm);
    expect(certsState(vm).state).toBe('current');
    expect(generations(vm).filter((g) => g[3] === REASON)).toHaveLength(2);

    // a managed save (`virsh managedsave`, then `virsh start`) is a restore of a saved image too
    rmSync(log, { force: true });
    virsh(['start', vm]);
    try {
      await waitForConsole(log, REFUSED);
      virsh(['managedsave', vm], { timeoutSec: 120 });
      expect(domainState(vm)).toBe('shut off');
      ok(ovmfHook('nvram', 'restore', vm, '--generation', '1', '--force'));
      virsh(['start', '--paused', vm], { timeoutSec: 120 });
      expect(domainState(vm)).toBe('paused');
      expect(sha256(readFileSync(nvramOf(vm)))).toBe(sha256(old));
      expect(generations(vm).filter((g) => g[3] === REASON)).toHaveLength(2);
      expect(policyLines(vm).at(-1)).toMatch(/prepare: policy secure-boot-certs=2023: not applied to the restore of a saved image /);
    } finally {
      destroyDomain(vm);
      virsh(['managedsave-remove', vm], { allowFail: true });
    }
  }, 400_000);

  it('a VM with a TPM is skipped: its NVRAM stays 2011-only, and the log says why and what to do', () => {
    const { vm: tpmVm } = secureBootVm('tpm', POLICY, true);
    // the prepare hook runs before libvirt sets up swtpm; the firmware never runs (paused)
    virsh(['start', '--paused', tpmVm]);
    destroyDomain(tpmVm);
    expect(sha256(readFileSync(nvramOf(tpmVm)))).toBe(sha256(readFileSync(OVMF.msVars)));
    expect(certsState(tpmVm)).toMatchObject({ state: 'update-available', tpm: true });
    expect(generations(tpmVm).filter((g) => g[3] === REASON)).toEqual([]);
    const lines = policyLines(tpmVm);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/ warning: \S+: prepare: policy secure-boot-certs=2023: not enrolling the Microsoft 2023 certificates the NVRAM lacks \(/);
    expect(lines[0]).toContain('the domain has a TPM, and changing KEK/db changes the Secure Boot measurement in PCR7');
    expect(lines[0]).toContain('(manage-bde -protectors -disable C: -RebootCount 2), then add tpm-reseal="accept"');
  }, 120_000);
});
