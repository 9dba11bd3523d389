/** R10: pcie-root first, then `rootPorts` pcie-root-ports (default: DEFAULT_CONFIG.rootPorts), when no PCI controller is left. */
import { element } from '../domain';
import { added, insertDevice } from './change';
import { convertsChipset } from './guards';
import type { Rule } from './types';

export const pcieRootPorts: Rule = {
  id: 'pcie-root-ports',
  why: 'spare root ports are the only hot-plug slots on q35 (a root port cannot be hot-added); 14 avoids QEMU issue #641',
  applies: (d) => convertsChipset(d) && !d.devices('controller').some((c) => c.attr('type') === 'pci'),
  apply: (d, o) => {
    let last = insertDevice(d, element('controller', { type: 'pci', model: 'pcie-root' }));
    const changes = [added('pcie-root-ports', last)];
    for (let i = 0; i < o.rootPorts; i++) {
      last = last.parent!.insertAfter(last, element('controller', { type: 'pci', model: 'pcie-root-port' }));
      changes.push(added('pcie-root-ports', last));
    }
    return changes;
  },
};
