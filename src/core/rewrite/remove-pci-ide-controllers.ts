/** R7: every `<controller type='pci'>` (pci-root, bridges …) and `type='ide'` goes. */
import { remove } from './change';
import { convertsChipset } from './guards';
import type { Rule } from './types';

export const removePciIdeControllers: Rule = {
  id: 'remove-pci-ide-controllers',
  why: 'q35 rejects pci-root (it needs pcie-root) and has no IDE controller',
  applies: convertsChipset,
  apply: (d) =>
    d
      .devices('controller')
      .filter((c) => c.attr('type') === 'pci' || c.attr('type') === 'ide')
      .map((c) => remove('remove-pci-ide-controllers', c)),
};
