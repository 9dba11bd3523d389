/**
 * R21: Secure Boot for a domain that already boots UEFI without it (a virt-install'ed
 * `<os firmware='efi'>`, or a plain OVMF_CODE loader). Its firmware is switched to the Secure Boot
 * build; its NVRAM file stays where it is (same path), so its boot entries survive. The keys that
 * make the firmware enforce go into that NVRAM separately: `ovmf-hook convert` enrols PK/KEK/db
 * (src/core/varstore/secure-boot-keys.ts); `rewrite` alone only changes the XML and says so.
 *
 *   manual form (`<loader type='pflash'>` without `firmware='efi'`): the catalog's Secure Boot build
 *     with enrolled keys as the loader (`secure='yes'` for an SMM build), its VARS template as
 *     `<nvram template=…>` (the NVRAM path is kept), SMM on;
 *   auto form (`<os firmware='efi'>`): the `secure-boot` and `enrolled-keys` features on; libvirt ≥
 *     9.2 recorded the selection at define time (`<loader>`, `<nvram template=…>`): the loader and
 *     the template go so that libvirt selects again, the `<nvram>` path stays; SMM on.
 *
 * Not switched (a warning says why): stateless or combined firmware (no separate NVRAM), an NVRAM
 * that is not a local file.
 */
import { element, type Domain, type XmlElement } from '../domain';
import { secureBootConfigured } from '../config/config';
import { added, remove, removeAttr, setAttr } from './change';
import { smmOn } from './secure-boot';
import type { Change, RewriteOptions, Rule } from './types';

export const SECURE_BOOT_UEFI_RULE = 'secure-boot-uefi';
const RULE = SECURE_BOOT_UEFI_RULE;

/** Why the firmware of this UEFI domain cannot be switched in place (undefined: it can). */
export function switchBlocker(d: Domain): string | undefined {
  const loader = d.loader;
  const nvram = d.nvram;
  if (loader?.stateless === 'yes') return 'its firmware is stateless (no NVRAM to hold Secure Boot keys)';
  if (d.firmwareAuto !== 'efi' && loader?.readonly !== 'yes') return 'its firmware is a combined read-write image (no separate NVRAM to hold Secure Boot keys)';
  if (nvram && nvram.type !== 'file') return `its NVRAM is of type '${nvram.type}', not a local file`;
  if (!d.isQ35) return `Secure Boot needs the q35 machine, not '${d.machine ?? '(none)'}'`;
  return undefined;
}

const wanted = (d: Domain, o: RewriteOptions) => o.secureBoot && d.isX86Qemu && d.isUefi && !secureBootConfigured(d);

/** `<os><firmware><feature name=… enabled='yes'/>` for each name (existing features turned on, missing ones added). */
function featuresOn(d: Domain, names: readonly string[]): Change[] {
  const os = d.os!;
  let firmware = os.elements('firmware')[0];
  const changes: Change[] = [];
  if (!firmware) {
    firmware = os.insertAfter(d.osType!, element('firmware', {}, ...names.map((name) => element('feature', { enabled: 'yes', name }))));
    return [added(RULE, firmware)];
  }
  for (const name of names) {
    const f = firmware.elements('feature').find((e) => e.attr('name') === name);
    if (f) changes.push(...setAttr(RULE, f, 'enabled', 'yes'));
    else changes.push(added(RULE, firmware.append(element('feature', { enabled: 'yes', name }))));
  }
  return changes;
}

function manualForm(d: Domain, o: RewriteOptions): Change[] {
  const pick = o.pickFirmware({ arch: d.arch ?? 'x86_64', machine: d.machine!, secureBoot: true, enrolledKeys: true });
  const loader = d.loaderElement as XmlElement;
  const changes: Change[] = [];
  const old = loader.text().trim();
  if (loader.setText(pick.executable))
    changes.push({ rule: RULE, path: loader.path(), action: 'set', detail: `loader '${old}' → '${pick.executable}'` });
  if (pick.requiresSmm) changes.push(...setAttr(RULE, loader, 'secure', 'yes'));
  const nvram = d.nvramElement;
  if (nvram) changes.push(...setAttr(RULE, nvram, 'template', pick.template));
  else changes.push(added(RULE, d.os!.insertAfter(loader, element('nvram', { template: pick.template }))));
  if (pick.requiresSmm) changes.push(...smmOn(RULE, d));
  return changes;
}

function autoForm(d: Domain): Change[] {
  const changes = featuresOn(d, ['secure-boot', 'enrolled-keys']);
  // libvirt ≥ 9.2 pinned its earlier selection: without the pin it selects the Secure Boot build
  const loader = d.loaderElement;
  if (loader) changes.push(remove(RULE, loader));
  const nvram = d.nvramElement;
  if (nvram) {
    changes.push(...removeAttr(RULE, nvram, 'template'), ...removeAttr(RULE, nvram, 'templateFormat'));
    if (nvram.attrNames().length === 0 && nvram.elements().length === 0 && nvram.text().trim() === '') changes.push(remove(RULE, nvram));
  }
  changes.push(...smmOn(RULE, d));
  return changes;
}

export const secureBootUefi: Rule = {
  id: RULE,
  why: 'a domain that already boots UEFI gets Secure Boot by switching its firmware build, keeping its NVRAM (and boot entries); the keys are enrolled into that NVRAM',
  applies: (d, o) => wanted(d, o) && switchBlocker(d) === undefined,
  apply: (d, o) => (d.firmwareAuto === 'efi' ? autoForm(d) : manualForm(d, o)),
  warn: (d, o) => {
    if (!wanted(d, o)) return undefined;
    const why = switchBlocker(d);
    return why
      ? `${d.name}: already boots UEFI without Secure Boot, and ${why}; its firmware is left as it is. ` +
          `To switch by hand: give it a split Secure Boot firmware (<loader readonly='yes' type='pflash' secure='yes'> + <nvram template=…ms VARS…>), then re-create the NVRAM with: virsh start --reset-nvram ${d.name}`
      : undefined;
  },
};
