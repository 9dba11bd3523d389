/** R13: the i440fx default USB controller (piix3-uhci, or no model) becomes qemu-xhci with 15 ports. */
import { setAttr } from './change';
import { convertsChipset } from './guards';
import type { Rule } from './types';

export const usbController: Rule = {
  id: 'usb-controller',
  why: "piix3-uhci is i440fx's southbridge USB 1.1; qemu-xhci is a PCIe USB 3 controller every modern guest drives",
  applies: convertsChipset,
  apply: (d) =>
    d
      .devices('controller')
      .filter((c) => c.attr('type') === 'usb' && (c.attr('model') === undefined || c.attr('model') === 'piix3-uhci'))
      .flatMap((c) => [...setAttr('usb-controller', c, 'model', 'qemu-xhci'), ...setAttr('usb-controller', c, 'ports', '15')]),
};
