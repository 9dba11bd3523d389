/** R14: cirrus video becomes vga; virtio, qxl, vga, bochs … stay. */
import { setAttr } from './change';
import { convertsChipset } from './guards';
import type { Rule } from './types';

export const videoCirrus: Rule = {
  id: 'video-cirrus',
  why: 'cirrus is deprecated in QEMU and modern guests ship no driver for it; stdvga works with both BIOS and UEFI',
  applies: convertsChipset,
  apply: (d) =>
    d
      .devices('video')
      .flatMap((v) => v.elements('model'))
      .filter((m) => m.attr('type') === 'cirrus')
      .flatMap((m) => setAttr('video-cirrus', m, 'type', 'vga')),
};
