/**
 * `ovmf-hook firmware template --ms-2023` on this host's real /etc/qemu/firmware, proven by libvirt's
 * own firmware selection and by the firmware (q35, TCG):
 *
 *   install → a new `<os firmware='efi'>` Secure Boot domain (features secure-boot + enrolled-keys,
 *   SMM on; libvirt picks the firmware: at start on 9.0, at define on ≥ 9.2) gets the copy as its
 *   `<nvram template>`, and its NVRAM holds the 2023 certificates (readiness `current`); `convert
 *   --secure-boot` of a BIOS domain names the copy, and its first start creates its NVRAM from it;
 *   `--remove` refuses while that domain names the copy, `--force` removes → a new domain gets the
 *   distro's template again (2011 only). Then the first domain boots a disk whose \EFI\BOOT\BOOTX64.EFI
 *   is unsigned: its firmware refuses it (Secure Boot enforced with the 2023-provisioned keys).
 *
 * The descriptor changes firmware selection for the whole host while it is there (other tests share
 * this daemon): it is removed as soon as the selection has been seen, and again in afterAll whatever
 * happened (so are /etc/qemu/firmware and /etc/qemu when this file created them). The CLI runs with
 * a temp config (archive and state — so the copy — in the scratch dir); the hook is not installed.
 * Only domains named ovmfhook-t-tmpl… are touched. Needs: dosfstools, mtools, ovmf.
 */
import { existsSync, readdirSync, readFileSync, rmdirSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { readTemplateRecord } from '../../src/core/firmware';
import { certificateReadiness } from '../../src/core/varstore';
import { defineDomain, describeLibvirt, destroyDomain, makeDomainXml, OVMF, scratchPath, startDomain, uniqueVmName, virsh } from '../support/libvirt';
import { firmwareAtDefine, unsignedEfiDisk } from '../support/platform';
import { boot, firmwareBench, NVRAM_DIR, ok, REFUSED, requireHost, type FirmwareBench } from './firmware-boot';

const ETC_QEMU = '/etc/qemu';
const DESCRIPTOR_DIR = `${ETC_QEMU}/firmware`;
const DESCRIPTOR = `${DESCRIPTOR_DIR}/39-ovmf-hook-ms-2023.json`;

let bench: FirmwareBench;
/** What existed before this file: only what it created is removed at its end. */
let existed = { etcQemu: true, firmwareDir: true };
const cli = (...args: string[]) => bench.run('firmware', 'template', ...args);

/** `<os firmware='efi'>` with the Secure Boot + enrolled-keys features and SMM on: libvirt's Secure Boot autoselection. */
function secureBootAuto(name: string, log: string, disk?: string): string {
  return makeDomainXml({ name, machine: 'q35', firmware: 'efi-auto', serialLog: log, disks: disk ? [{ path: disk, format: 'raw' }] : [] })
    .replace(
      /(<type arch='x86_64' machine='q35'>hvm<\/type>)/,
      "$1\n    <firmware>\n      <feature enabled='yes' name='secure-boot'/>\n      <feature enabled='yes' name='enrolled-keys'/>\n    </firmware>",
    )
    .replace('<features><acpi/><apic/></features>', "<features><acpi/><apic/><smm state='on'/></features>");
}

/** The `<nvram template=…>` libvirt shows for a domain (live or inactive). */
const templateOf = (xml: string) => /<nvram\b[^>]*\btemplate='([^']+)'/.exec(xml)?.[1];

/** Start `vm`, read its live definition, destroy it (libvirt has then created its NVRAM). */
function startOnce(vm: string): string {
  startDomain(vm);
  try {
    return virsh(['dumpxml', vm]).stdout;
  } finally {
    destroyDomain(vm);
  }
}

const readiness = (vm: string) => certificateReadiness(readFileSync(join(NVRAM_DIR, `${vm}_VARS.fd`)));

/** Our descriptor gone whatever happened (by the CLI, else by its marker), and the directories this file created. */
function removeDescriptor(): void {
  if (bench && existsSync(DESCRIPTOR)) cli('--remove', '--force');
  if (existsSync(DESCRIPTOR) && readTemplateRecord(readFileSync(DESCRIPTOR, 'utf8'))) unlinkSync(DESCRIPTOR);
  if (!existed.firmwareDir && existsSync(DESCRIPTOR_DIR) && readdirSync(DESCRIPTOR_DIR).length === 0) rmdirSync(DESCRIPTOR_DIR);
  if (!existed.etcQemu && existsSync(ETC_QEMU) && readdirSync(ETC_QEMU).length === 0) rmdirSync(ETC_QEMU);
}

describeLibvirt('firmware template --ms-2023: libvirt, convert and the firmware use the copy; --remove restores the selection (q35, TCG)', () => {
  beforeAll(async () => {
    requireHost(['mkfs.vfat', 'mmd', 'mcopy'], [OVMF.msVars, OVMF.secureCode], 'dosfstools mtools ovmf');
    existed = { etcQemu: existsSync(ETC_QEMU), firmwareDir: existsSync(DESCRIPTOR_DIR) };
    if (existsSync(DESCRIPTOR)) throw new Error(`${DESCRIPTOR} exists before the test: another run's, or the admin's; remove it first (ovmf-hook firmware template --remove)`);
    bench = await firmwareBench('tmpl');
  }, 120_000);
  afterAll(removeDescriptor);

  it('install → libvirt autoselection and convert --secure-boot provision from the copy → --remove → the distro template again; the provisioned firmware enforces', async () => {
    const auto = uniqueVmName('tmpl-auto');
    const autoLog = scratchPath(`${auto}.log`);
    const bios = uniqueVmName('tmpl-conv');
    const after = uniqueVmName('tmpl-after');
    defineDomain(makeDomainXml({ name: bios, machine: 'q35', firmware: 'bios', serialLog: scratchPath(`${bios}.log`) }));
    const disk = unsignedEfiDisk(join(bench.dir, 'unsigned.img'));
    let copy: string;

    // ── the window in which the descriptor is installed: kept short ──
    try {
      const installed = JSON.parse(ok(cli('--ms-2023', '--json')));
      expect(installed).toMatchObject({ status: 'new', source: { template: OVMF.msVars }, descriptor: { path: DESCRIPTOR, written: true }, template: { written: true } });
      copy = installed.template.path as string;
      expect(copy).toBe(join(bench.dir, 'templates', 'OVMF_VARS_4M.ms.ms-2023.fd'));

      // libvirt's own selection: the new Secure Boot domain gets the copy as its template
      defineDomain(secureBootAuto(auto, autoLog, disk));
      if (firmwareAtDefine()) expect(templateOf(virsh(['dumpxml', '--inactive', auto]).stdout)).toBe(copy);
      const live = startOnce(auto);
      expect(templateOf(live)).toBe(copy);
      expect(live).toMatch(/<loader [^>]*secure='yes'[^>]*>\/usr\/share\/OVMF\/OVMF_CODE_4M\.ms\.fd<\/loader>/);
      expect(readiness(auto)).toMatchObject({ state: 'current', secureBoot: true, missing2023: [] });

      // convert --secure-boot of a BIOS domain: its definition names the copy; its first start copies it
      ok(bench.run('convert', bios, '--secure-boot'));
      expect(templateOf(virsh(['dumpxml', '--inactive', bios]).stdout)).toBe(copy);
      startOnce(bios);
      expect(readiness(bios).state).toBe('current');

      // --remove: refused while a defined domain names the copy; --force removes
      const refused = cli('--remove');
      expect([refused.code, refused.stdout]).toEqual([1, '']);
      const users = [bios, ...(firmwareAtDefine() ? [auto] : [])].sort();
      expect(refused.stderr).toBe(
        `ovmf-hook: ${users.length} defined domain${users.length > 1 ? 's' : ''} name${users.length > 1 ? '' : 's'} ${copy} as ${users.length > 1 ? 'their' : 'its'} <nvram template> (${users.join(', ')}): virsh start --reset-nvram and ovmf-hook nvram reset would find no template; point them at another template first (virsh edit), or add --force\n`,
      );
      expect(existsSync(DESCRIPTOR)).toBe(true);
      const removed = cli('--remove', '--force');
      expect(removed.code, removed.stderr).toBe(0);
      expect(removed.stdout).toBe(`removed: ${DESCRIPTOR}\nremoved: ${copy}\nnew Secure Boot VMs get the template of the next descriptor in libvirt's order again (ovmf-hook firmware list)\n`);
    } finally {
      removeDescriptor();
    }
    expect(existsSync(DESCRIPTOR)).toBe(false);
    expect(existsSync(copy)).toBe(false);

    // the selection is back: a new Secure Boot domain gets the distro's template (2011 certificates only)
    defineDomain(secureBootAuto(after, scratchPath(`${after}.log`)));
    expect(templateOf(startOnce(after))).toBe(OVMF.msVars);
    expect(readiness(after).state).toBe('update-available');

    // the domain provisioned from the copy enforces Secure Boot: its firmware refuses the unsigned boot file
    if (firmwareAtDefine()) {
      // libvirt ≥ 9.2 pinned the copy at define time: define it again so that it selects anew (its NVRAM is kept)
      virsh(['undefine', '--keep-nvram', auto]);
      defineDomain(secureBootAuto(auto, autoLog, disk));
    }
    const text = await boot(auto, autoLog, REFUSED);
    expect(text).toMatch(REFUSED);
    expect(readiness(auto).state).toBe('current');
  }, 400_000);
});
