/** R9: devices lose their guest PCI address; a hostdev's `<source><address>` (the host device) stays. */
import { remove } from './change';
import { convertsChipset } from './guards';
import type { Rule } from './types';

export const stripPciAddresses: Rule = {
  id: 'strip-pci-addresses',
  why: 'i440fx slot numbers mean nothing on q35; libvirt puts each endpoint on its own pcie-root-port',
  applies: convertsChipset,
  apply: (d) =>
    d
      .allDevices()
      .flatMap((dev) => dev.elements('address')) // direct children only: never <source><address>
      .filter((a) => a.attr('type') === 'pci')
      .map((a) => remove('strip-pci-addresses', a)),
};
