/**
 * `ovmf-hook nvram certs --all --match GLOB --json` over real libvirt VMs of each kind (issue 16,
 * item 1): a Secure Boot VM whose NVRAM libvirt made from Debian's Microsoft-keys template (2011
 * certificates only), the same enrolled by `nvram enroll --ms-2023`, a UEFI VM without Secure Boot,
 * a Secure Boot VM that never started (no NVRAM yet), and a Secure Boot VM with a TPM (swtpm
 * emulator). Each state comes from the NVRAM file libvirt wrote (`virsh start --paused`, then
 * destroyed: the firmware never ran), the TPM from the definition. The TPM VM is not started — its
 * NVRAM is the template copy libvirt would make, owned like libvirt's — so its row needs no working
 * swtpm_setup and leaves no TPM state behind. `--match` keeps the answer to this file's VMs.
 *
 * The CLI runs with a temp config (archive and state in a temp dir; libvirt's nvram directory);
 * the hook is not installed. Only domains named ovmfhook-t-certs-<run>-… are touched.
 */
import { chmodSync, chownSync, copyFileSync, existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { defineDomain, describeLibvirt, destroyDomain, makeDomainXml, OVMF, scratchPath, uniqueVmName, virsh, type Firmware } from '../support/libvirt';
import { sha256 } from '../hook/harness';
import { firmwareBench, NVRAM_DIR, ok, type FirmwareBench } from './firmware-boot';
import { removeWithTpm, swtpmMissing, withTpm } from './policy-vms';

const RUN = uniqueVmName('certs'); // ovmfhook-t-certs-<random>: this file's VMs are RUN-<kind>
const vmName = (kind: string) => `${RUN}-${kind}`;
const nvramOf = (vm: string) => join(NVRAM_DIR, `${vm}_VARS.fd`);
const ALL_2023 = ['Microsoft Corporation KEK 2K CA 2023', 'Windows UEFI CA 2023', 'Microsoft UEFI CA 2023', 'Microsoft Option ROM UEFI CA 2023'];
const DEBIAN_PK = 'Debian UEFI Secure Boot (PK/KEK key)';

let bench: FirmwareBench;
const tpmVms: string[] = [];

/**
 * Define a q35 TCG domain of `kind`. `start`: libvirt creates its NVRAM (started paused, then
 * destroyed); `copy`: the NVRAM is the template copy libvirt's first start would make.
 */
function vm(kind: string, firmware: Firmware, o: { start?: boolean; copy?: string; tpm?: boolean }): string {
  const name = vmName(kind);
  const xml = makeDomainXml({ name, machine: 'q35', firmware, serialLog: scratchPath(`${name}.log`) });
  defineDomain(o.tpm ? withTpm(xml) : xml);
  if (o.tpm) tpmVms.push(name);
  if (o.start) {
    virsh(['start', '--paused', name]);
    destroyDomain(name);
  }
  if (o.copy) {
    copyFileSync(o.copy, nvramOf(name));
    const qemu = statSync(nvramOf(vmName('2011'))); // libvirt's own copy: its owner and mode
    chownSync(nvramOf(name), qemu.uid, qemu.gid);
    chmodSync(nvramOf(name), qemu.mode & 0o777);
  }
  return name;
}

interface CertsJson {
  vms: Array<{ name: string; state: string; secureBoot: boolean | null; pkOwner: string | null; tpm: boolean; nvram: string | null; missing2023: string[]; template?: { path: string; state: string } }>;
  counts: Record<string, number>;
}

describeLibvirt('nvram certs --all over real libvirt VMs of each kind', () => {
  beforeAll(async () => {
    const noTpm = swtpmMissing();
    if (noTpm) throw new Error(`the TPM VM's definition needs swtpm: ${noTpm}`);
    if (!existsSync(OVMF.msVars)) throw new Error(`${OVMF.msVars} missing: apt-get install ovmf`);
    bench = await firmwareBench('certs');
  }, 120_000);
  afterAll(() => {
    for (const name of tpmVms) removeWithTpm(name); // its TPM state too; the rest goes with describeLibvirt's cleanup
  });

  it('--all --match GLOB --json: the right state, Secure Boot, PK owner, missing certificates and TPM per VM', () => {
    const sb2011 = vm('2011', 'ovmf-secure', { start: true });
    const enrolled = vm('enrolled', 'ovmf-secure', { start: true });
    const plain = vm('nosb', 'ovmf', { start: true });
    const fresh = vm('new', 'ovmf-secure', {});
    const tpm = vm('tpm', 'ovmf-secure', { copy: OVMF.msVars, tpm: true });
    // libvirt made each NVRAM from the domain's template, byte for byte
    expect(sha256(readFileSync(nvramOf(sb2011)))).toBe(sha256(readFileSync(OVMF.msVars)));
    expect(sha256(readFileSync(nvramOf(plain)))).toBe(sha256(readFileSync(OVMF.vars)));
    expect(existsSync(nvramOf(fresh))).toBe(false);
    ok(bench.run('nvram', 'enroll', enrolled, '--ms-2023'));

    const doc = JSON.parse(ok(bench.run('nvram', 'certs', '--all', '--match', `${RUN}-*`, '--json'))) as CertsJson;
    const by = Object.fromEntries(doc.vms.map((v) => [v.name, v]));
    expect(doc.vms.map((v) => v.name)).toEqual([sb2011, enrolled, fresh, plain, tpm].sort());
    const row = (name: string) => {
      const v = by[name]!;
      return [v.state, v.secureBoot, v.pkOwner, v.tpm, v.missing2023];
    };
    expect(row(sb2011)).toEqual(['update-available', true, DEBIAN_PK, false, ALL_2023]);
    expect(row(enrolled)).toEqual(['current', true, DEBIAN_PK, false, []]);
    expect(row(plain)).toEqual(['not-secure-boot', false, null, false, []]);
    expect(row(fresh)).toEqual(['no-nvram', null, null, false, []]);
    expect(by[fresh]!.template).toEqual({ path: OVMF.msVars, state: 'update-available' });
    expect(row(tpm)).toEqual(['update-available', true, DEBIAN_PK, true, ALL_2023]);
    expect(by[sb2011]!.nvram).toBe(nvramOf(sb2011));
    expect(doc.counts).toEqual({ current: 1, 'update-available': 2, 'not-secure-boot': 1, 'no-nvram': 1, error: 0 });

    // the table form says the same, one line per VM
    const table = ok(bench.run('nvram', 'certs', '--all', '--match', `${RUN}-*`));
    expect(table).toMatch(new RegExp(`^${tpm} +update-available +on +.+ +yes +KEK PCA UEFI +none`, 'm'));
    expect(table).toMatch(/^5 VMs: 1 current, 2 update-available, 1 not-secure-boot, 1 no-nvram$/m);
  }, 300_000);
});
