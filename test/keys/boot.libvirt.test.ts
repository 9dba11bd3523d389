/**
 * `ovmf-hook nvram boot` proven by the firmware: q35 OVMF domains (OVMF_CODE_4M.fd, no Secure Boot)
 * under TCG in the real libvirtd, whose raw disk holds systemd-boot's EFI binary — at a path only an
 * added entry finds (`\EFI\test\shell.efi`), or at the removable-media default
 * (`\EFI\BOOT\BOOTX64.EFI`, the case), or on the ESP of a GPT disk (`--disk`). The serial
 * console shows which Boot#### the firmware loads first (`BdsDxe: loading Boot0003 "test" from …`)
 * and the binary running (systemd-boot's menu). Nothing bootable left: OVMF starts its built-in EFI
 * shell, so a boot that reaches it shows the firmware read the edited store.
 *
 * The CLI runs with a temp config (test/keys/firmware-boot.ts); only domains named ovmfhook-t-boot…
 * are touched. Needs: dosfstools, mtools, systemd-boot-efi (scripts/ci-setup.sh).
 */
import { beforeAll, expect, it } from 'vitest';
import { parseVarstore, readBootConfig } from '../../src/core/varstore';
import type { CliRun } from '../cli/support';
import { defineDomain, describeLibvirt, makeDomainXml, scratchPath, uniqueVmName } from '../support/libvirt';
import { ESP_TYPE, gptHead, haveCrc32, writeHead } from './boot-disks';
import { boot, firmwareBench, NVRAM_DIR, ok, requireHost, SYSTEMD_BOOT, SYSTEMD_BOOT_RAN, type FirmwareBench } from './firmware-boot';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

/** OVMF found nothing else to boot and started its built-in shell (OVMF_CODE_4M.fd has one). */
const SHELL_STARTED = /BdsDxe: starting Boot[0-9A-F]{4} "EFI Internal Shell"/;

let bench: FirmwareBench;
const ovmfHook = (...args: string[]): CliRun => bench.run(...args);

/** A q35 OVMF (no Secure Boot) TCG domain booting the raw image `disk`. */
function uefiVm(what: string, disk: string): { vm: string; log: string; nvram: string } {
  const vm = uniqueVmName(`boot-${what}`);
  const log = scratchPath(`${vm}.log`);
  defineDomain(makeDomainXml({ name: vm, machine: 'q35', firmware: 'ovmf', serialLog: log, disks: [{ path: disk, format: 'raw' }] }));
  return { vm, log, nvram: join(NVRAM_DIR, `${vm}_VARS.fd`) };
}

/** The Boot#### the firmware loaded, in order: [name, description, device path]. */
const loads = (console: string): string[][] => [...console.matchAll(/BdsDxe: loading (Boot[0-9A-F]{4}) "([^"]*)" from ([^\r\n]*)/g)].map((m) => [m[1], m[2], m[3].trim()]);

/** `nvram boot VM --json`. */
const bootOf = (vm: string) => JSON.parse(ok(ovmfHook('nvram', 'boot', vm, '--json'))) as { order: string[]; next: string | null; entries: Array<{ name: string; description: string; devicePath: string }> };

/** `nvram boot VM --add PATH --label TEXT --next [more]`: the number the new entry got. */
function addNext(vm: string, path: string, label: string, ...more: string[]): string {
  const doc = JSON.parse(ok(ovmfHook('nvram', 'boot', vm, '--add', path, '--label', label, '--next', ...more, '--json'))) as { added: string; next: string; changed: boolean };
  expect(doc).toMatchObject({ changed: true, next: doc.added });
  return doc.added;
}

describeLibvirt('nvram boot, proven by the firmware (q35, OVMF, TCG)', () => {
  beforeAll(async () => {
    requireHost(['mkfs.vfat', 'mmd', 'mcopy'], [SYSTEMD_BOOT], 'dosfstools mtools systemd-boot-efi');
    bench = await firmwareBench('boot');
  }, 120_000);

  it('--add \\EFI\\test\\shell.efi --label test --next: the firmware loads that entry first and the binary runs; --order and --remove show in nvram vars; the firmware still boots after them', async () => {
    const disk = bench.fatImage('test-path', { '/EFI/test/shell.efi': SYSTEMD_BOOT });
    const { vm, log, nvram } = uefiVm('path', disk);

    // first start: libvirt creates the NVRAM; nothing finds \EFI\test\shell.efi, OVMF falls back to its shell
    const first = await boot(vm, log, SHELL_STARTED);
    expect(first).not.toMatch(SYSTEMD_BOOT_RAN);

    const n = addNext(vm, '\\EFI\\test\\shell.efi', 'test');
    const ran = await boot(vm, log, SYSTEMD_BOOT_RAN);
    expect(loads(ran)[0]).toEqual([n, 'test', '\\EFI\\test\\shell.efi']);
    expect(ran).toContain(`BdsDxe: starting ${n} "test" from \\EFI\\test\\shell.efi`);

    // the firmware consumed BootNext (one-shot) and kept the entry
    const after = bootOf(vm);
    expect(after.next).toBeNull();
    expect(after.order).toContain(n);
    expect(after.entries.find((e) => e.name === n)).toMatchObject({ description: 'test', devicePath: '\\EFI\\test\\shell.efi' });

    // --order: exactly the given order, as nvram vars shows it
    const reversed = [...after.order].reverse();
    ok(ovmfHook('nvram', 'boot', vm, '--order', reversed.map((b) => b.slice(4)).join(',')));
    expect(ok(ovmfHook('nvram', 'vars', vm))).toMatch(new RegExp(`^  BootOrder +${reversed.join(', ')}$`, 'm'));

    // --remove: gone from the store and from BootOrder
    const removed = ok(ovmfHook('nvram', 'boot', vm, '--remove', n));
    expect(removed).toMatch(new RegExp(`^${vm}: removed ${n} \\(and from BootOrder\\); archived as generation \\d+ \\(the newest\\); the NVRAM before is generation \\d+ \\(undo: ovmf-hook nvram restore ${vm} --generation \\d+\\)\\n$`));
    const vars = ok(ovmfHook('nvram', 'vars', vm));
    expect(vars).not.toContain(n);
    expect(vars).toMatch(new RegExp(`^  BootOrder +${reversed.filter((b) => b !== n).join(', ')}$`, 'm'));

    // the firmware reads the edited store and boots: nothing finds the binary any more, the shell starts
    const last = await boot(vm, log, SHELL_STARTED);
    expect(last).not.toMatch(SYSTEMD_BOOT_RAN);
    expect(loads(last).map((l) => l[0])).not.toContain(n);
    expect(readBootConfig(parseVarstore(readFileSync(nvram)).variables).problems).toEqual([]);
  }, 600_000);

  it("the issue's case: --add '\\EFI\\BOOT\\BOOTX64.EFI' --label test --next: the firmware loads \"test\" first, before its own entry for the disk", async () => {
    const disk = bench.efiDisk('bootx64', SYSTEMD_BOOT);
    const { vm, log } = uefiVm('bootx64', disk);
    const first = await boot(vm, log, SYSTEMD_BOOT_RAN); // OVMF's own entry for the disk boots the default path
    expect(loads(first)[0][1]).not.toBe('test');

    const n = addNext(vm, '\\EFI\\BOOT\\BOOTX64.EFI', 'test');
    const ran = await boot(vm, log, SYSTEMD_BOOT_RAN);
    expect(loads(ran)[0]).toEqual([n, 'test', '\\EFI\\BOOT\\BOOTX64.EFI']);
    expect(ran).toContain(`BdsDxe: starting ${n} "test" from \\EFI\\BOOT\\BOOTX64.EFI`);
  }, 600_000);

  it.skipIf(!haveCrc32)('--disk 1 on a GPT disk: the entry names the ESP by its partition GUID (HD(1,GPT,…)/path) and the firmware boots it', async () => {
    const guid = '6d1f5b0e-2c3a-4e5f-8a9b-0c1d2e3f4a5b';
    const disk = bench.fatImage('gpt', { '/EFI/test/shell.efi': SYSTEMD_BOOT }, 2048);
    writeHead(disk, gptHead([{ type: ESP_TYPE, guid, first: 2048, last: 131038, name: 'EFI System' }]));
    const { vm, log } = uefiVm('gpt', disk);
    expect(await boot(vm, log, SHELL_STARTED)).not.toMatch(SYSTEMD_BOOT_RAN);

    const n = addNext(vm, '\\EFI\\test\\shell.efi', 'gpt', '--disk', '1');
    const path = `HD(1,GPT,${guid},0x800,0x1F7DF)/\\EFI\\test\\shell.efi`;
    expect(bootOf(vm).entries.find((e) => e.name === n)?.devicePath).toBe(path);
    const ran = await boot(vm, log, SYSTEMD_BOOT_RAN);
    const [name, label, from] = loads(ran)[0];
    expect([name, label, from.toLowerCase()]).toEqual([n, 'gpt', path.toLowerCase()]); // OVMF prints the GUID in upper case
  }, 600_000);
});
