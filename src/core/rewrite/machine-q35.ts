/** R6: the machine becomes the unversioned `q35` alias; libvirt expands it at define time. */
import { setAttr } from './change';
import { convertsChipset } from './guards';
import type { Rule } from './types';

export const machineQ35: Rule = {
  id: 'machine-q35',
  why: 'i440fx has no PCIe and no Secure Boot; libvirt expands the q35 alias to the newest pc-q35-X.Y of the host',
  applies: convertsChipset,
  apply: (d) => setAttr('machine-q35', d.osType!, 'machine', 'q35'),
  warn: (d) =>
    d.isX86Qemu && d.osType && !convertsChipset(d) && !d.isQ35
      ? `${d.name}: machine '${d.machine}' is neither i440fx nor q35; chipset and firmware are left as they are`
      : undefined,
};
