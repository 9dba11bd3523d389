/**
 * `ovmf-hook nvram enroll` proven by the firmware: Secure Boot q35 domains under TCG in the real
 * libvirtd (OVMF_CODE_4M.ms.fd + the Microsoft-keys VARS template, SMM on), booting
 * \EFI\BOOT\BOOTX64.EFI from a FAT disk image (mkfs.vfat + mtools).
 *
 *  - `--add-db c.pem`: systemd-boot's EFI binary signed (sbsign) with a fresh test key is refused
 *    before the enrolment and runs after it (its menu on the serial console); the same binary
 *    unsigned is still refused; the certificate is still in db after the firmware booted.
 *  - `--ms-2023`: the 2023 Microsoft certificates next to the 2011 ones, Secure Boot still enforced,
 *    the VM still reaches the boot manager, one new generation, refused while the VM runs, and
 *    `nvram restore --generation <the copy>` gives back the NVRAM byte for byte.
 *
 * The CLI runs with a temp config (OVMF_HOOK_CONFIG: temp archive and state; libvirt's nvram
 * directory); the hook is not installed. Only domains named ovmfhook-t-enr… are touched.
 * Needs: openssl, sbsigntool, dosfstools, mtools, systemd-boot-efi (scripts/ci-setup.sh).
 */
import { readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, expect, it } from 'vitest';
import { defineDomain, describeLibvirt, destroyDomain, domainState, makeDomainXml, scratchPath, startDomain, uniqueVmName, virsh } from '../support/libvirt';
import type { CliRun } from '../cli/support';
import { sha256 } from '../hook/harness';
import { boot, firmwareBench, NVRAM_DIR, ok, REFUSED, requireHost, serialText, SYSTEMD_BOOT, SYSTEMD_BOOT_RAN as SIGNED_RAN, type FirmwareBench } from './firmware-boot';

/** The firmware's boot manager after no boot option worked. */
const BOOT_MANAGER = /No bootable option or device was found|Boot Manager Menu/;

let bench: FirmwareBench;
let cert = '';
let signed = '';

const ovmfHook = (...args: string[]): CliRun => bench.run(...args);
const varsOf = (vm: string) => JSON.parse(ok(ovmfHook('nvram', 'vars', vm, '--json'))) as { secureBoot: { effective: string; subjects: { kek: string[]; db: string[] } } };
const generationsOf = (vm: string) =>
  (JSON.parse(ok(ovmfHook('nvram', 'list', vm, '--json'))) as { generations: Array<{ generation: number; kind: string; sha256: string; reason: string }> }).generations;

/** A Secure Boot q35 TCG domain (Microsoft-keys template) booting `disk`. */
function secureBootVm(what: string, disk: string): { vm: string; log: string; nvram: string } {
  const vm = uniqueVmName(`enr-${what}`);
  const log = scratchPath(`${vm}.log`);
  defineDomain(makeDomainXml({ name: vm, machine: 'q35', firmware: 'ovmf-secure', serialLog: log, disks: [{ path: disk, format: 'raw' }] }));
  return { vm, log, nvram: join(NVRAM_DIR, `${vm}_VARS.fd`) };
}

describeLibvirt('nvram enroll, proven by the Secure Boot firmware (q35, TCG)', () => {
  beforeAll(async () => {
    requireHost(['openssl', 'sbsign', 'mkfs.vfat', 'mmd', 'mcopy'], [SYSTEMD_BOOT], 'openssl sbsigntool dosfstools mtools systemd-boot-efi');
    bench = await firmwareBench('enroll');
    ({ cert, signed } = bench.signWithTestKey(SYSTEMD_BOOT));
  }, 120_000);

  it('--add-db CERT: the binary signed with that key is refused before and runs after; unsigned it is still refused; the certificate stays in db', async () => {
    const disk = bench.efiDisk('signed', signed);
    const { vm, log, nvram } = secureBootVm('db', disk);

    // first start: libvirt creates the NVRAM from the Microsoft-keys template; the test key is not trusted yet
    const before = await boot(vm, log, REFUSED);
    expect(before).not.toMatch(SIGNED_RAN);
    const owner = statSync(nvram);

    const r = ovmfHook('nvram', 'enroll', vm, '--add-db', cert);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^db +added +ovmf-hook-test +/m);
    expect(r.stdout).toMatch(new RegExp(`^${vm}: enrolled db \\+1 into ${nvram}, archived as generation 2 \\(the newest\\); the NVRAM before is generation 1 \\(undo: ovmf-hook nvram restore ${vm} --generation 1\\)\\n$`, 'm'));
    const after = statSync(nvram);
    expect([after.uid, after.gid, after.mode & 0o777]).toEqual([owner.uid, owner.gid, 0o600]);
    expect(varsOf(vm).secureBoot.subjects.db).toContain('ovmf-hook-test');

    // the firmware trusts what was written: the signed systemd-boot runs (its menu on the console)
    const ran = await boot(vm, log, SIGNED_RAN);
    expect(ran).not.toMatch(REFUSED);
    expect(ran).toMatch(/BdsDxe: starting Boot[0-9A-F]{4} "[^"]*" from PciRoot/);

    // and still enforces Secure Boot: the same binary unsigned is refused
    bench.replaceBootFile(disk, SYSTEMD_BOOT);
    const refused = await boot(vm, log, REFUSED);
    expect(refused).not.toMatch(SIGNED_RAN);

    // after the firmware ran (and rewrote its store): the certificate is still in db, Secure Boot on
    const vars = varsOf(vm);
    expect(vars.secureBoot.effective).toBe('on');
    expect(vars.secureBoot.subjects.db).toEqual(['Microsoft Windows Production PCA 2011', 'Microsoft Corporation UEFI CA 2011', 'ovmf-hook-test']);
  }, 300_000);

  it('--ms-2023 on a VM from the Microsoft-keys template: the 2023 certificates next to the 2011 ones, Secure Boot enforced, boot manager reached, refused while running, undone byte for byte by nvram restore', async () => {
    const disk = bench.efiDisk('unsigned', SYSTEMD_BOOT);
    const { vm, log, nvram } = secureBootVm('ms', disk);
    await boot(vm, log, BOOT_MANAGER);
    const original = readFileSync(nvram);
    const template = varsOf(vm).secureBoot.subjects;
    expect(template.kek).toEqual(['Debian UEFI Secure Boot (PK/KEK key)', 'Microsoft Corporation KEK CA 2011']);

    const dry = ovmfHook('nvram', 'enroll', vm, '--ms-2023', '--dry-run');
    expect(ok(dry)).toMatch(/dry run: would add 4 entries \(KEK \+1, db \+3\) to .*; nothing written\n$/);
    expect(readFileSync(nvram).equals(original)).toBe(true);

    const r = ovmfHook('nvram', 'enroll', vm, '--ms-2023', '--json');
    const doc = JSON.parse(ok(r)) as { changed: boolean; generation: number; saved: number; items: Array<{ variable: string; name: string; status: string; owner: string }> };
    expect(doc.changed).toBe(true);
    expect(doc.items.map((i) => [i.variable, i.name, i.status, i.owner])).toEqual([
      ['KEK', 'Microsoft Corporation KEK 2K CA 2023', 'added', '77fa9abd-0359-4d32-bd60-28f4e78f784b'],
      ['db', 'Windows UEFI CA 2023', 'added', '77fa9abd-0359-4d32-bd60-28f4e78f784b'],
      ['db', 'Microsoft UEFI CA 2023', 'added', '77fa9abd-0359-4d32-bd60-28f4e78f784b'],
      ['db', 'Microsoft Option ROM UEFI CA 2023', 'added', '77fa9abd-0359-4d32-bd60-28f4e78f784b'],
    ]);
    const enrolled = readFileSync(nvram);
    // nothing was archived before (the hook is not installed): the copy of the NVRAM before, then
    // the one new generation holding the enrolled store, the newest
    expect(generationsOf(vm).map((g) => [g.generation, g.kind, g.sha256, g.reason])).toEqual([
      [doc.saved, 'manual', sha256(original), 'copy taken before nvram enroll'],
      [doc.generation, 'manual', sha256(enrolled), 'nvram enroll --ms-2023: KEK +1, db +3'],
    ]);
    const subjects = varsOf(vm).secureBoot.subjects;
    expect(subjects.kek).toEqual([...template.kek, 'Microsoft Corporation KEK 2K CA 2023']);
    expect(subjects.db).toEqual([...template.db, 'Windows UEFI CA 2023', 'Microsoft UEFI CA 2023', 'Microsoft Option ROM UEFI CA 2023']);
    // a second run finds everything present and writes nothing
    expect(ok(ovmfHook('nvram', 'enroll', vm, '--ms-2023'))).toMatch(new RegExp(`^${vm}: every entry is already present; nothing written\\n$`, 'm'));
    expect(generationsOf(vm)).toHaveLength(2);

    // Secure Boot still enforced (the unsigned binary is refused) and the boot manager reached;
    // meanwhile, enrol while it runs: refused in one line, nothing archived
    rmSync(log, { force: true });
    startDomain(vm);
    try {
      expect(domainState(vm)).toBe('running');
      const running = ovmfHook('nvram', 'enroll', vm, '--add-db', cert);
      expect(running).toEqual({ code: 1, stdout: '', stderr: `ovmf-hook: ${vm} is running; nvram enroll works only on a shut-off VM: shut it down first (virsh shutdown ${vm})\n` });
      expect(generationsOf(vm)).toHaveLength(2);
      const deadline = Date.now() + 120_000;
      while (!(REFUSED.test(serialText(log)) && BOOT_MANAGER.test(serialText(log)))) {
        if (Date.now() > deadline) throw new Error(`no refusal and boot manager on ${vm}'s console: ${JSON.stringify(serialText(log).slice(-600))}`);
        await new Promise((res) => setTimeout(res, 250));
      }
    } finally {
      destroyDomain(vm);
    }
    expect(varsOf(vm).secureBoot.subjects.db).not.toContain('ovmf-hook-test');

    // one undo: the copy taken before comes back byte for byte (--force: it drops the 2023 certificates)
    ok(ovmfHook('nvram', 'restore', vm, '--generation', String(doc.saved), '--force'));
    expect(sha256(readFileSync(nvram))).toBe(sha256(original));
    expect(varsOf(vm).secureBoot.subjects).toEqual(template);
    expect(virsh(['domstate', vm]).stdout.trim()).toBe('shut off');
  }, 300_000);
});
