/**
 * `--tpm` against the real libvirtd with swtpm: every BIOS fixture rewritten with `--tpm` (and
 * `--secure-boot --tpm`) defines, and libvirt's domain validates; a BIOS i440fx domain rewritten with
 * `--secure-boot --tpm` boots OVMF under TCG and the firmware sees the TPM — shown by contrast with the
 * same domain rewritten without `--tpm`.
 *
 * What proves that the firmware saw the TPM (checked on OVMF 2022.11 and 2025.02):
 * - firmware side: edk2's Tcg2ConfigDxe (SecurityPkg/Tcg/Tcg2Config; its depex is gEfiTcg2ProtocolGuid,
 *   which Tcg2Dxe installs only when the TPM 2.0 was detected) writes TCG2_DEVICE_DETECTION =
 *   TPM_DEVICE_2_0_DTPM (2), TCG2_CONFIGURATION = 2 and TCG2_VERSION into the NVRAM under
 *   gTcg2ConfigFormSetGuid 6339d487-26ba-424b-9a5d-687e25d740bc. Read back with the CLI's own decoder
 *   (`ovmf-hook nvram vars FILE --json`): present with the TPM, absent without it.
 *   Not used: Tcg2PhysicalPresence/Tcg2PhysicalPresenceFlags (gEfiTcg2PhysicalPresenceGuid
 *   aeb9c5c1-94f1-4d02-bfd9-4602db2d3c54) — OVMF's Tcg2PhysicalPresenceLibQemu keeps the PPI state in
 *   QEMU's PPI memory, not in variables, so neither OVMF writes them, with or without a TPM.
 * - QEMU side (support): `info tpm` on the monitor shows tpm-crb with the emulator backend.
 * - swtpm side (support): libvirt provisioned the TPM state, /var/lib/libvirt/swtpm/<uuid>/tpm2/tpm2-00.permall
 *   (swtpm_setup writes it before QEMU starts, so it shows libvirt ran swtpm, not what the firmware saw).
 *
 * swtpm missing: skipped with a console line; under CI (`process.env.CI`) a failing test instead.
 * Every domain here is named ovmfhook-t-tpm<run id>-…, undefined with `--nvram --tpm` (its TPM state
 * goes too) and removed when the block ends whatever happens.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  defineDomain,
  describeLibvirt,
  destroyDomain,
  domainFixture,
  libvirtAvailable,
  makeDomainXml,
  renameDomainXml,
  scratchPath,
  startDomain,
  undefineDomain,
  uniqueVmName,
  virsh,
  virtXmlValidate,
  waitForFile,
} from '../support/libvirt';
import { platform, usesSpice, withoutSpice } from '../support/platform';
import { BIOS_FIXTURES, inactiveXml, scratchCli } from '../support/libvirt-cli';
import { runCli } from './support';

const TITLE = 'ovmf-hook --tpm against libvirt with swtpm';
const RUN = `tpm${Math.random().toString(16).slice(2, 8)}`;
const vmName = (what: string) => uniqueVmName(`${RUN}-${what}`);

/** gTcg2ConfigFormSetGuid (edk2 SecurityPkg/Include/Guid/Tcg2ConfigHii.h) */
const TCG2_CONFIG_GUID = '6339d487-26ba-424b-9a5d-687e25d740bc';
/** TPM_DEVICE_2_0_DTPM (edk2 SecurityPkg/Tcg/Tcg2Config/Tcg2ConfigNvData.h), as the decoder prints one byte */
const TPM_DEVICE_2_0_DTPM = '02';
/** libvirt's swtpm_storage_dir default (qemu.conf), the same on libvirt 9.0 and 11.x */
const SWTPM_STATE_DIR = '/var/lib/libvirt/swtpm';

/** Why libvirt cannot run an emulated TPM here (swtpm and swtpm_setup, from swtpm + swtpm-tools), or undefined. */
function swtpmMissing(): string | undefined {
  const missing = ['swtpm', 'swtpm_setup'].filter((cmd) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status !== 0);
  return missing.length ? `${missing.join(' and ')} not installed` : undefined;
}

interface Variable {
  vendorGuid: string;
  name: string;
  data: string;
}

let cli: string;
let env: Record<string, string>;

/** The TCG2 configuration variables of a VARS file, by the CLI's decoder. */
function tcg2Variables(nvram: string): Variable[] {
  const r = runCli(cli, ['nvram', 'vars', nvram, '--json'], { env });
  expect(r.code, r.stderr).toBe(0);
  const vars = (JSON.parse(r.stdout) as { variables: Variable[] }).variables;
  return vars.filter((v) => v.vendorGuid === TCG2_CONFIG_GUID).sort((a, b) => a.name.localeCompare(b.name));
}

interface Boot {
  name: string;
  uuid: string;
  monitor: string;
  permall: boolean;
  tcg2: Variable[];
  stateGone: boolean;
}

/**
 * A TCG i440fx/SeaBIOS domain rewritten with `--secure-boot` (+ `--tpm`), defined (libvirt's domain
 * must validate), started until OVMF's boot manager runs (BdsDxe: every DXE driver, Tcg2ConfigDxe
 * among them, has run), looked at, destroyed, its NVRAM decoded, then undefined with `--nvram --tpm`.
 */
async function bootOnce(tpm: boolean): Promise<Boot> {
  const name = vmName(tpm ? 'on' : 'off');
  const serialLog = scratchPath(`${name}.log`);
  const bios = makeDomainXml({ name, machine: 'pc', firmware: 'bios', serialLog });
  const r = runCli(cli, ['rewrite', '--secure-boot', ...(tpm ? ['--tpm'] : [])], { env, input: bios });
  expect(r.code, r.stderr).toBe(0);
  expect(r.stdout.includes("<tpm model='tpm-crb'>")).toBe(tpm);

  defineDomain(r.stdout);
  const defined = inactiveXml(name);
  const valid = virtXmlValidate(defined);
  expect(valid.ok, valid.message).toBe(true);
  expect(defined).toMatch(/<loader [^>]*secure='yes'/);
  const nvram = /<nvram\b[^>]*>([^<]+)<\/nvram>/.exec(defined)?.[1];
  expect(nvram, defined).toBeDefined();
  const uuid = virsh(['domuuid', name]).stdout.trim();

  startDomain(name);
  let monitor: string;
  try {
    await waitForFile(serialLog, /BdsDxe/, 90_000);
    monitor = virsh(['qemu-monitor-command', '--hmp', name, 'info tpm']).stdout;
  } finally {
    destroyDomain(name); // 2 cores: one TCG guest at a time
  }
  const permall = existsSync(`${SWTPM_STATE_DIR}/${uuid}/tpm2/tpm2-00.permall`);
  const tcg2 = tcg2Variables(nvram!);

  virsh(['undefine', '--nvram', '--tpm', name]);
  return { name, uuid, monitor, permall, tcg2, stateGone: !existsSync(`${SWTPM_STATE_DIR}/${uuid}`) };
}

function tests(): void {
  beforeAll(async () => {
    ({ cli, env } = await scratchCli('cli'));
  }, 60_000);

  const noSpice = libvirtAvailable() && !platform().spice;
  it.each([[['--tpm']], [['--secure-boot', '--tpm']]])('rewrite %j of every BIOS fixture defines with its swtpm TPM, and libvirt\'s domain validates', (flags) => {
    for (const file of BIOS_FIXTURES) {
      const fixture = noSpice && usesSpice(domainFixture(file)) ? withoutSpice(domainFixture(file)) : domainFixture(file);
      const r = runCli(cli, ['rewrite', ...flags], { env, input: fixture });
      expect(r.code, `${file}: ${r.stderr}`).toBe(0);
      const name = vmName('fix');
      defineDomain(renameDomainXml(r.stdout, name));
      const defined = inactiveXml(name);
      expect(defined, file).toMatch(/<tpm model='tpm-crb'>\s*<backend type='emulator' version='2\.0'\/?>/);
      const valid = virtXmlValidate(defined);
      expect(valid.ok, `${file}: ${valid.message}`).toBe(true);
      undefineDomain(name);
    }
  }, 120_000);

  it('rewrite --secure-boot --tpm: OVMF boots and records a TPM 2.0 in the NVRAM (TCG2_DEVICE_DETECTION = 2); without --tpm it records none', async () => {
    const on = await bootOnce(true);
    // firmware: Tcg2ConfigDxe ran, so Tcg2Dxe had found the TPM 2.0 (dTPM interface: the CRB)
    expect(on.tcg2.map((v) => v.name)).toEqual(['TCG2_CONFIGURATION', 'TCG2_DEVICE_DETECTION', 'TCG2_VERSION']);
    expect(on.tcg2.find((v) => v.name === 'TCG2_DEVICE_DETECTION')?.data).toBe(TPM_DEVICE_2_0_DTPM);
    expect(on.tcg2.find((v) => v.name === 'TCG2_CONFIGURATION')?.data).toBe(TPM_DEVICE_2_0_DTPM);
    // QEMU and swtpm
    expect(on.monitor).toMatch(/tpm0: model=tpm-crb\s+\\ \S+: type=emulator/);
    expect(on.permall).toBe(true);
    expect(on.stateGone).toBe(true); // undefine --tpm removed the swtpm state

    const off = await bootOnce(false);
    expect(off.tcg2).toEqual([]);
    expect(off.monitor).not.toMatch(/tpm-crb/);
    expect(off.permall).toBe(false);

    const p = platform();
    console.log(
      `[tpm] libvirt ${p.libvirt.join('.')}, QEMU ${p.qemu.join('.')}, OVMF ${p.ovmf.release ?? '?'}: with --tpm ${on.tcg2.map((v) => `${v.name}=${v.data}`).join(' ')}; QEMU: ${on.monitor.trim().replace(/\s+/g, ' ')}; ` +
        `without: no ${TCG2_CONFIG_GUID} variables, no TPM device`,
    );
  }, 300_000);
}

const missing = libvirtAvailable() ? swtpmMissing() : undefined;
const ci = process.env.CI && process.env.CI !== 'false' && process.env.CI !== '0';
if (!missing) {
  describeLibvirt(TITLE, tests);
} else if (ci) {
  describeLibvirt(TITLE, () => {
    it('needs swtpm (CI must not skip the TPM tests)', () => {
      throw new Error(`${missing}; install swtpm swtpm-tools (scripts/ci-setup.sh)`);
    });
  });
} else {
  console.warn(`[TPM tests skipped] ${TITLE}: ${missing}; install swtpm swtpm-tools (scripts/ci-setup.sh)`);
  describe.skip(TITLE, tests);
}
