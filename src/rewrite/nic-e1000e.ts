/** R11: e1000 NICs become e1000e; the MAC and everything else stay. */
import { setAttr } from './change';
import { convertsChipset } from './guards';
import type { Rule } from './types';

export const nicE1000e: Rule = {
  id: 'nic-e1000e',
  why: 'e1000 is a conventional PCI NIC; e1000e is its PCIe counterpart (what virt-manager picks on q35)',
  applies: convertsChipset,
  apply: (d) =>
    d
      .devices('interface')
      .flatMap((i) => i.elements('model'))
      .filter((m) => m.attr('type') === 'e1000')
      .flatMap((m) => setAttr('nic-e1000e', m, 'type', 'e1000e')),
};
