/**
 * R16–R19: a BIOS domain on q35 boots OVMF. Manual form (default): the catalog's CODE as a read-only
 * pflash `<loader>` (`secure='yes'` for SMM builds) and `<nvram template=VARS>NVRAMDIR/NAME_VARS.fd`,
 * no `format` attributes (libvirt 9.0). Auto form: `<os firmware='efi'>` plus the secure-boot and
 * enrolled-keys `<firmware>` features; libvirt picks the files. BIOS leftovers go (a ROM `<loader>`,
 * `<nvram>`, `firmware='bios'` and its `<firmware>` features); `<bios>` (boot menu, reboot timeout,
 * serial) is kept: libvirt accepts it for OVMF domains too. A domain that already boots UEFI is not
 * touched here (secure-boot-uefi.ts switches one to Secure Boot, R21).
 */
import { posix } from 'node:path';
import { element, type Domain } from '../domain';
import { XmlInputError } from '../errors';
import { added, remove, removeAttr, setAttr } from './change';
import { smmOn } from './secure-boot';
import type { Change, RewriteOptions, Rule } from './types';

const RULE = 'uefi-firmware';
const yesNo = (b: boolean) => (b ? 'yes' : 'no');

/** Remove what only a BIOS boot means: loader (ROM), nvram, `<firmware>` of `firmware='bios'`. */
function removeBiosFirmware(d: Domain): Change[] {
  const os = d.os!;
  return [...os.elements('loader'), ...os.elements('nvram'), ...os.elements('firmware')].map((e) => remove(RULE, e));
}

function manualForm(d: Domain, o: RewriteOptions): Change[] {
  if (d.name.includes('/')) throw new XmlInputError(`domain name '${d.name}' contains '/'; libvirt does not accept it`);
  const smm = d.feature('smm')?.attr('state');
  const pick = o.pickFirmware({
    arch: d.arch ?? 'x86_64',
    machine: d.machine!,
    secureBoot: o.secureBoot,
    enrolledKeys: o.secureBoot,
    ...(smm === 'on' || smm === 'off' ? { smm } : {}),
  });
  const changes = [...removeBiosFirmware(d), ...removeAttr(RULE, d.os!, 'firmware')];
  const loaderAttrs: Record<string, string> = { readonly: 'yes', type: 'pflash', ...(pick.requiresSmm ? { secure: 'yes' } : {}) };
  const loader = d.os!.insertAfter(d.osType!, element('loader', loaderAttrs, pick.executable));
  const nvramPath = posix.join(o.nvramDir, `${d.name}_VARS.fd`);
  const nvram = d.os!.insertAfter(loader, element('nvram', { template: pick.template }, nvramPath));
  changes.push(added(RULE, loader), added(RULE, nvram));
  if (pick.requiresSmm) changes.push(...smmOn(RULE, d));
  return changes;
}

function autoForm(d: Domain, o: RewriteOptions): Change[] {
  const changes = [...removeBiosFirmware(d), ...setAttr(RULE, d.os!, 'firmware', 'efi')];
  const firmware = element(
    'firmware',
    {},
    element('feature', { enabled: yesNo(o.secureBoot), name: 'secure-boot' }),
    element('feature', { enabled: yesNo(o.secureBoot), name: 'enrolled-keys' }),
  );
  changes.push(added(RULE, d.os!.insertAfter(d.osType!, firmware)));
  return changes;
}

export const uefiFirmware: Rule = {
  id: RULE,
  why: 'OVMF is what makes a q35 domain boot UEFI (and Secure Boot); the manual form pins the exact build',
  applies: (d, o) => (o.uefi || o.secureBoot) && d.isX86Qemu && d.isQ35 && !d.isUefi,
  apply: (d, o) => (o.firmware === 'auto' ? autoForm(d, o) : manualForm(d, o)),
};
