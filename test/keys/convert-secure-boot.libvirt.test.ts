/**
 * `ovmf-hook convert VM --secure-boot` of a VM that already boots UEFI without Secure Boot (issue
 * 14 item 3, rule R21), proven by the firmware in the real libvirtd (q35, TCG):
 *
 *   a plain UEFI domain boots systemd-boot's EFI binary, unsigned, from a FAT disk
 *   (\EFI\BOOT\BOOTX64.EFI): it runs (its menu on the serial console), and the firmware creates
 *   its Boot#### entries; one more entry is added by hand. Both forms of "plain UEFI": the manual
 *   one (OVMF_CODE_4M.fd + OVMF_VARS_4M.fd named in the XML) and libvirt's own selection
 *   (`<os firmware='efi'>` with the secure-boot feature off, as virt-install writes it; libvirt 9.0
 *   selects at every start, ≥ 9.2 records its selection at define time). Then the convert:
 *   --dry-run changes nothing; the convert switches the firmware to the Secure Boot build, enrols
 *   PK/KEK/db/dbx (the Microsoft-keys template's, plus Microsoft's 2023 certificates) into the VM's
 *   existing NVRAM — archived first — and `nvram vars` shows Secure Boot on with the same Boot####
 *   entries and BootOrder. The next boot refuses the same unsigned binary: the firmware enforces.
 *
 * The CLI runs with a temp config (archive and state in a temp dir; libvirt's nvram directory);
 * the hook is not installed. Only domains named ovmfhook-t-sbconv… are touched.
 * Needs: dosfstools, mtools, systemd-boot-efi (scripts/ci-setup.sh).
 */
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, expect, it } from 'vitest';
import { editVarstore, EFI_GLOBAL_VARIABLE } from '../../src/core/varstore';
import { defineDomain, describeLibvirt, makeDomainXml, OVMF, scratchPath, uniqueVmName, virsh, type Firmware } from '../support/libvirt';
import { firmwareAtDefine } from '../support/platform';
import type { CliRun } from '../cli/support';
import { sha256 } from '../hook/harness';
import { boot, firmwareBench, NVRAM_DIR, ok, REFUSED, requireHost, SYSTEMD_BOOT, SYSTEMD_BOOT_RAN as UNSIGNED_RAN, type FirmwareBench } from './firmware-boot';

const MS_TEMPLATE = OVMF.msVars;

let bench: FirmwareBench;
const ovmfHook = (...args: string[]): CliRun => bench.run(...args);

interface VarsJson {
  secureBoot: { effective: string; setupMode: string; secureBootEnable: string; subjects: { pk: string[]; kek: string[]; db: string[] } };
  variables: Array<{ vendorGuid: string; name: string; data: string; decoded?: { option?: { description: string } } }>;
}
const varsOf = (target: string) => JSON.parse(ok(ovmfHook('nvram', 'vars', target, '--json'))) as VarsJson;
/** Boot#### and BootOrder: name → data (hex). */
const bootVariables = (v: VarsJson) =>
  Object.fromEntries(v.variables.filter((x) => x.vendorGuid === EFI_GLOBAL_VARIABLE && /^Boot([0-9A-F]{4}|Order)$/.test(x.name)).map((x) => [x.name, x.data]));
const descriptions = (v: VarsJson) =>
  v.variables.filter((x) => /^Boot[0-9A-F]{4}$/.test(x.name)).map((x) => `${x.name} ${x.decoded?.option?.description ?? '?'}`);

/** A load option (UEFI 3.1.3) named `description` for the device path of `like` (a Boot#### variable's data). */
function loadOptionLike(like: Buffer, description: string): Uint8Array {
  const pathLength = like.readUInt16LE(4);
  let end = 6;
  while (like.readUInt16LE(end) !== 0) end += 2;
  const devicePath = like.subarray(end + 2, end + 2 + pathLength);
  const head = Buffer.alloc(6);
  head.writeUInt32LE(1, 0); // LOAD_OPTION_ACTIVE
  head.writeUInt16LE(pathLength, 4);
  return new Uint8Array(Buffer.concat([head, Buffer.from(`${description}\0`, 'utf16le'), devicePath]));
}

describeLibvirt('convert --secure-boot of a VM that already boots UEFI, proven by the firmware (q35, TCG)', () => {
  beforeAll(async () => {
    requireHost(['mkfs.vfat', 'mmd', 'mcopy'], [SYSTEMD_BOOT, MS_TEMPLATE], 'dosfstools mtools systemd-boot-efi ovmf');
    bench = await firmwareBench('sbconv');
  }, 120_000);

  it.each([
    ['manual loader (OVMF_CODE_4M.fd)', 'ovmf'],
    ["<os firmware='efi'>, secure-boot feature off", 'efi-auto-insecure'],
  ] as Array<[string, Firmware]>)('%s: VM with boot entries → Secure Boot firmware and keys in the same NVRAM, the same Boot#### entries, the unsigned binary refused', async (_, firmware) => {
    const disk = bench.efiDisk(`unsigned-${firmware}`, SYSTEMD_BOOT);
    const vm = uniqueVmName('sbconv');
    const log = scratchPath(`${vm}.log`);
    defineDomain(makeDomainXml({ name: vm, machine: 'q35', firmware, serialLog: log, disks: [{ path: disk, format: 'raw' }] }));
    const nvram = join(NVRAM_DIR, `${vm}_VARS.fd`);

    // without Secure Boot the unsigned binary runs; the firmware creates its boot entries
    await boot(vm, log, UNSIGNED_RAN);
    const booted = varsOf(vm);
    expect(booted.secureBoot.effective).toBe('off');
    expect(booted.secureBoot.subjects.pk).toEqual([]);
    expect(descriptions(booted).length).toBeGreaterThanOrEqual(2);

    // and one entry of our own, at the end of BootOrder
    const own = editVarstore(readFileSync(nvram));
    const order = Buffer.from(own.get('BootOrder', EFI_GLOBAL_VARIABLE)!.data);
    const firstOption = `Boot${order.readUInt16LE(0).toString(16).toUpperCase().padStart(4, '0')}`;
    own.set('Boot0009', EFI_GLOBAL_VARIABLE, 7, loadOptionLike(Buffer.from(own.get(firstOption, EFI_GLOBAL_VARIABLE)!.data), 'ovmf-hook test entry'));
    own.set('BootOrder', EFI_GLOBAL_VARIABLE, 7, new Uint8Array(Buffer.concat([order, Buffer.from([9, 0])])));
    writeFileSync(nvram, own.toBuffer());
    const before = varsOf(vm);
    expect(descriptions(before)).toContain('Boot0009 ovmf-hook test entry');
    const original = readFileSync(nvram);
    const owner = statSync(nvram);
    const definition = virsh(['dumpxml', '--inactive', vm]).stdout;

    // --dry-run: the diff and what would happen to the NVRAM; nothing changes
    const dry = ovmfHook('convert', vm, '--secure-boot', '--dry-run');
    expect(dry.code, dry.stderr).toBe(0);
    expect(dry.stdout).toMatch(/^\+ {4}<smm state='on'\/>$/m);
    expect(dry.stderr).toMatch(
      new RegExp(`^${vm}: would convert \\(\\d+ changes; NVRAM would get Secure Boot keys from ${MS_TEMPLATE}: PK [^;]+; KEK \\d+, db \\d+, dbx \\d+ entries \\(4 Microsoft 2023 certificates added\\); keeps [^)]*Boot0009[^)]*\\)\\n$`),
    );
    expect(sha256(readFileSync(nvram))).toBe(sha256(original));
    expect(virsh(['dumpxml', '--inactive', vm]).stdout).toBe(definition);

    // the convert: firmware switched, keys enrolled into the existing NVRAM, archived first
    const r = ovmfHook('convert', vm, '--secure-boot');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(
      new RegExp(`^${vm}: converted \\(\\d+ changes; NVRAM got Secure Boot keys from ${MS_TEMPLATE}: .*; archived as generation 2, the NVRAM before is generation 1 \\(undo: ovmf-hook nvram restore ${vm} --generation 1 --force, since the NVRAM before may trust fewer Microsoft 2023 certificates\\)\\)\\n$`),
    );
    const converted = virsh(['dumpxml', '--inactive', vm]).stdout;
    const secureLoader = /<loader [^>]*>\/usr\/share\/OVMF\/OVMF_CODE_4M\.(ms|secboot)\.fd<\/loader>/;
    if (firmware === 'efi-auto-insecure') {
      expect(converted).toMatch(/<feature enabled='yes' name='secure-boot'\/>/);
      expect(converted).toMatch(/<feature enabled='yes' name='enrolled-keys'\/>/);
      expect(converted).not.toMatch(/enabled='no'/);
    }
    // libvirt 9.0 leaves <os firmware='efi'> unfilled until a start; ≥ 9.2 selected again at define
    if (firmware === 'ovmf' || firmwareAtDefine()) {
      expect(converted).toMatch(secureLoader);
      expect(converted).toContain(`>${nvram}</nvram>`);
    } else expect(converted).not.toMatch(/<loader|<nvram/);
    expect(converted).toMatch(/<smm state='on'\/>/);

    // Secure Boot on in the NVRAM (the template's PK), every boot entry and BootOrder as they were
    const template = varsOf(MS_TEMPLATE);
    const after = varsOf(vm);
    expect([after.secureBoot.effective, after.secureBoot.setupMode, after.secureBoot.secureBootEnable]).toEqual(['on', 'user', 'on']);
    expect(after.secureBoot.subjects.pk).toEqual(template.secureBoot.subjects.pk);
    expect(after.secureBoot.subjects.kek).toEqual([...template.secureBoot.subjects.kek, 'Microsoft Corporation KEK 2K CA 2023']);
    expect(after.secureBoot.subjects.db).toEqual([...template.secureBoot.subjects.db, 'Windows UEFI CA 2023', 'Microsoft UEFI CA 2023', 'Microsoft Option ROM UEFI CA 2023']);
    expect(bootVariables(after)).toEqual(bootVariables(before));
    const local = statSync(nvram);
    expect([local.uid, local.gid, local.mode & 0o777, local.size]).toEqual([owner.uid, owner.gid, 0o600, original.length]);
    const generations = (JSON.parse(ok(ovmfHook('nvram', 'list', vm, '--json'))) as { generations: Array<{ generation: number; kind: string; sha256: string; reason: string }> }).generations;
    expect(generations.map((g) => [g.generation, g.kind, g.sha256, g.reason])).toEqual([
      [1, 'manual', sha256(original), 'copy taken before convert --secure-boot'],
      [2, 'manual', sha256(readFileSync(nvram)), `convert --secure-boot: Secure Boot keys from ${MS_TEMPLATE}`],
    ]);

    // the firmware enforces: the same unsigned binary is refused now
    let running = '';
    const refused = await boot(vm, log, REFUSED, undefined, () => (running = virsh(['dumpxml', vm]).stdout));
    expect(refused).not.toMatch(UNSIGNED_RAN);
    expect(varsOf(vm).secureBoot.effective).toBe('on');
    // it ran the Secure Boot build on the same NVRAM file
    expect(running).toMatch(secureLoader);
    expect(running).toContain(`>${nvram}</nvram>`);

    // done: converting again changes nothing
    const again = ovmfHook('convert', vm, '--secure-boot');
    expect(again).toEqual({ code: 0, stdout: '', stderr: `${vm}: unchanged\n` });
  }, 400_000);
});
