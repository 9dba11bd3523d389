/** R8: IDE disks and CD-ROMs move to SATA with fresh `sdX` targets and no drive address. */
import type { XmlElement } from '../domain';
import { remove, setAttr } from './change';
import { convertsChipset } from './guards';
import type { Change, Rule } from './types';

const RULE = 'ide-to-sata';

/** libvirt's disk name suffixes: a … z, aa … az, ba … (bijective base 26). */
export function diskSuffix(index: number): string {
  let s = '';
  for (let n = index + 1; n > 0; n = Math.floor((n - 1) / 26)) s = String.fromCharCode(97 + ((n - 1) % 26)) + s;
  return s;
}

/** A disk on the IDE bus: `bus='ide'`, or no bus and an `hdX` target (libvirt derives the bus from the name). */
const isIde = (t: XmlElement | undefined): t is XmlElement =>
  t !== undefined && (t.attr('bus') === 'ide' || (t.attr('bus') === undefined && /^hd/.test(t.attr('dev') ?? '')));

export const ideToSata: Rule = {
  id: RULE,
  why: 'q35 has no IDE; its built-in AHCI controller takes the disks, named sdX and addressed anew by libvirt',
  applies: convertsChipset,
  apply: (d) => {
    const disks = d.devices('disk');
    const used = new Set(disks.map((x) => x.find('target')?.attr('dev')));
    const changes: Change[] = [];
    let next = 0;
    for (const disk of disks) {
      const target = disk.find('target');
      if (!isIde(target)) continue;
      while (used.has(`sd${diskSuffix(next)}`)) next++;
      const dev = `sd${diskSuffix(next)}`;
      used.add(dev);
      changes.push(...setAttr(RULE, target, 'dev', dev), ...setAttr(RULE, target, 'bus', 'sata'));
      for (const a of disk.elements('address')) if (a.attr('type') === 'drive') changes.push(remove(RULE, a));
    }
    return changes;
  },
};
