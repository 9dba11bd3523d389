/**
 * Secure Boot keys for the NVRAM of a VM that already boots UEFI without Secure Boot (`convert
 * --secure-boot` of such a domain, rule R21): PK, KEK, db and dbx from the host's Microsoft-keys
 * VARS template (the one libvirt gives a new Secure Boot VM: OVMF_VARS_4M.ms.fd on Debian), then
 * Microsoft's 2023 certificates into KEK and db. Everything else in the NVRAM — every Boot####
 * entry, BootOrder, the guest's own variables — stays as it is. Pure.
 *
 * Why the template's PK: it is the PK every VM that libvirt creates with Secure Boot on this host
 * gets, so a converted VM holds the same keys as one created with Secure Boot, and `nvram reset`
 * gives it back the same PK. A PK generated per host would need its private key kept safe on the
 * host (key custody) and would differ between the hosts of a cluster.
 *
 * What the firmware makes of it (edk2 SecurityPkg/Library/AuthVariableLib, AuthVariableLibInitialize,
 * at every boot): a PK present means user mode (SetupMode 0); SecureBoot is then 1 when
 * SecureBootEnable (SecureBootEnableDisable vendor) is 1, or absent — the firmware creates it as 1
 * in user mode. So SecureBootEnable is copied from the template when the template has it, and a
 * SecureBootEnable of 0 is deleted otherwise. CustomMode needs nothing: the firmware resets it to
 * standard mode at every boot. VendorKeysNv is copied from the template (0: the keys are not the
 * firmware vendor's defaults). Time-based authenticated variables keep the template's timestamps;
 * the 2023 certificates move KEK's and db's only forward (write.ts).
 *
 * A store that holds a PK already keeps its keys (they are its owner's; `nvram enroll --ms-2023`
 * adds the 2023 certificates); only a SecureBootEnable of 0 is turned on. KEK, db or dbx entries a
 * store without PK holds (written in setup mode) are kept next to the template's.
 */
import { RefusedError, VarstoreError } from '../errors';
import { secureBootSummary, type SecureBootSummary } from './decode';
import { enrollSignatures, requireWholeVolume, type EnrollEntry, type EnrollItem } from './enroll';
import { EFI_GLOBAL_VARIABLE, EFI_IMAGE_SECURITY_DATABASE, EFI_SECURE_BOOT_ENABLE_DISABLE } from './guids';
import { parseVarstore, type Variable } from './parse';
import { editVarstore } from './write';

const EFI_VENDOR_KEYS_NV = '9073e4e0-60ec-4b6e-9903-4c223c260f3c';

/** The signature databases copied from the template, in the order they are written. */
const KEYS = [
  { name: 'PK', vendor: EFI_GLOBAL_VARIABLE, required: true },
  { name: 'KEK', vendor: EFI_GLOBAL_VARIABLE, required: true },
  { name: 'db', vendor: EFI_IMAGE_SECURITY_DATABASE, required: true },
  { name: 'dbx', vendor: EFI_IMAGE_SECURITY_DATABASE, required: false },
] as const;

export interface SecureBootKeysOptions {
  /** The template's path, for messages. */
  templateName?: string;
  /** Entries to enrol after the template's keys (Microsoft's 2023 certificates: microsoft2023Entries()). */
  extra?: readonly EnrollEntry[];
}

export interface SecureBootKeysResult {
  /** The written image; the input bytes when nothing changed. */
  data: Buffer;
  changed: boolean;
  /** `enrolled`: PK/KEK/db/dbx written; `present`: the store had a PK, its keys are kept. */
  status: 'enrolled' | 'present';
  /** What happened to SecureBootEnable. */
  secureBootEnable: 'copied' | 'turned on' | 'deleted' | 'kept';
  /** The extra entries (added, or already present). */
  items: EnrollItem[];
  /** Secure Boot as the written store holds it. */
  summary: SecureBootSummary;
  /** Names of Boot#### and BootOrder (the same variables, byte for byte, before and after). */
  bootVariables: string[];
  /** Bytes left in the variable store afterwards. */
  free: number;
}

const isBootVariable = (v: Variable) => v.vendorGuid === EFI_GLOBAL_VARIABLE && /^Boot([0-9A-F]{4}|Order)$/.test(v.name);
/** Boot#### and BootOrder, name and data, as one comparable text. */
const bootState = (vars: readonly Variable[]) =>
  vars
    .filter(isBootVariable)
    .map((v) => `${v.name}=${Buffer.from(v.data).toString('hex')}`)
    .join(',');

/**
 * Give the VARS image `image` the Secure Boot keys of `template` (and `options.extra`), keeping
 * every other variable. Throws a one-line VarstoreError (not a VARS volume, full store, an
 * unfinished fault-tolerant write) or RefusedError (a store that cannot hold Secure Boot keys, a
 * template without them); the input is never modified.
 */
export function enrollSecureBootKeys(image: Uint8Array, template: Uint8Array, options: SecureBootKeysOptions = {}): SecureBootKeysResult {
  const templateName = options.templateName ?? 'the template';
  const ed = editVarstore(image);
  requireWholeVolume(ed, image);
  if (!ed.authenticated)
    throw new RefusedError(
      'the NVRAM is not an authenticated variable store, so it cannot hold Secure Boot keys; recreate it from the Secure Boot template (virsh start --reset-nvram, which discards its boot entries)',
    );
  let tpl;
  try {
    tpl = parseVarstore(template);
  } catch (e) {
    throw new VarstoreError(`${templateName}: ${(e as Error).message}`);
  }
  const fromTemplate = (name: string, vendor: string) => tpl.variables.find((v) => v.name === name && v.vendorGuid === vendor);
  const bootVariables = ed.original.variables.filter(isBootVariable).map((v) => v.name);
  const bootBefore = bootState(ed.original.variables);

  const sbEnable = ed.get('SecureBootEnable', EFI_SECURE_BOOT_ENABLE_DISABLE);
  const isOff = sbEnable !== undefined && sbEnable.data.length === 1 && sbEnable.data[0] === 0;
  const current = secureBootSummary(ed.original.variables);
  if (current.pk.x509 + current.pk.other > 0) {
    if (isOff) ed.set('SecureBootEnable', EFI_SECURE_BOOT_ENABLE_DISABLE, sbEnable.attributes.value, new Uint8Array([1]));
    return finish(ed.toBuffer(), ed.changed, 'present', isOff ? 'turned on' : 'kept', [], bootVariables, bootBefore, ed.usage().free);
  }
  if (!tpl.authenticated) throw new RefusedError(`${templateName} is not an authenticated variable store: not a Secure Boot template`);

  for (const k of KEYS) {
    const t = fromTemplate(k.name, k.vendor);
    if (!t) {
      if (k.required)
        throw new RefusedError(`${templateName} has no ${k.name}: it is not a template with Secure Boot keys enrolled (Debian: /usr/share/OVMF/OVMF_VARS_4M.ms.fd)`);
      continue;
    }
    const old = ed.get(k.name, k.vendor);
    ed.set(k.name, k.vendor, t.attributes.value, t.data, { ...(t.timestamp ? { timestamp: t.timestamp } : {}), monotonicCount: t.monotonicCount ?? 0 });
    // entries the store held without a PK (setup mode) are kept next to the template's
    if (old && old.data.length > 0 && k.name !== 'PK') ed.appendSignatures(k.name, k.vendor, old.data);
  }

  let secureBootEnable: SecureBootKeysResult['secureBootEnable'] = 'kept';
  const tplEnable = fromTemplate('SecureBootEnable', EFI_SECURE_BOOT_ENABLE_DISABLE);
  if (tplEnable) {
    ed.set('SecureBootEnable', EFI_SECURE_BOOT_ENABLE_DISABLE, tplEnable.attributes.value, tplEnable.data);
    secureBootEnable = 'copied';
  } else if (isOff) {
    ed.delete('SecureBootEnable', EFI_SECURE_BOOT_ENABLE_DISABLE);
    secureBootEnable = 'deleted';
  }
  const tplVendorKeys = fromTemplate('VendorKeysNv', EFI_VENDOR_KEYS_NV);
  if (tplVendorKeys) ed.set('VendorKeysNv', EFI_VENDOR_KEYS_NV, tplVendorKeys.attributes.value, tplVendorKeys.data);

  const withKeys = ed.toBuffer();
  const extra = options.extra ?? [];
  const r = extra.length ? enrollSignatures(withKeys, extra) : { data: withKeys, items: [], free: ed.usage().free };
  return finish(r.data, true, 'enrolled', secureBootEnable, r.items, bootVariables, bootBefore, r.free);
}

function finish(
  data: Buffer,
  changed: boolean,
  status: SecureBootKeysResult['status'],
  secureBootEnable: SecureBootKeysResult['secureBootEnable'],
  items: EnrollItem[],
  bootVariables: string[],
  bootBefore: string,
  free: number,
): SecureBootKeysResult {
  const after = parseVarstore(data).variables;
  // the promise of this module, checked: the boot variables are exactly the ones before
  if (bootState(after) !== bootBefore) throw new VarstoreError('internal error: the boot variables changed while enrolling Secure Boot keys; nothing was written');
  return { data, changed, status, secureBootEnable, items, summary: secureBootSummary(after), bootVariables, free };
}
