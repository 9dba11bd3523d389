/**
 * R19/R20: a domain about to get Secure Boot firmware gets `<features><smm state='on'/>` first
 * (so the firmware pick sees it). A domain that already boots UEFI is switched by
 * secure-boot-uefi.ts (R21).
 */
import { element, type Domain } from '../domain';
import { added, setAttr } from './change';
import type { Change, Rule } from './types';

const RULE = 'secure-boot';

/** `<features><smm state='on'/>`: turn an existing `<smm>` on or add one (and `<features>` if needed). */
export function smmOn(rule: string, d: Domain): Change[] {
  const smm = d.feature('smm');
  if (smm) return setAttr(rule, smm, 'state', 'on');
  const hadFeatures = d.featuresElement !== undefined;
  const features = d.ensureFeatures();
  const el = features.append(element('smm', { state: 'on' }));
  return [added(rule, hadFeatures ? el : features)];
}

export const secureBoot: Rule = {
  id: RULE,
  why: 'Secure Boot builds of OVMF only write their variables from SMM, and libvirt requires SMM (and q35) for them',
  applies: (d, o) => o.secureBoot && d.isX86Qemu && d.isQ35 && !d.isUefi,
  apply: (d) => smmOn(RULE, d),
};
