/** R12: ich6 sound becomes ich9; other models (ac97 …) stay. */
import { setAttr } from './change';
import { convertsChipset } from './guards';
import type { Rule } from './types';

export const soundIch9: Rule = {
  id: 'sound-ich9',
  why: 'ich6 (HDA on PCI) has no place on Q35; ich9 is its PCIe-era twin',
  applies: convertsChipset,
  apply: (d) =>
    d
      .devices('sound')
      .filter((s) => s.attr('model') === 'ich6')
      .flatMap((s) => setAttr('sound-ich9', s, 'model', 'ich9')),
};
