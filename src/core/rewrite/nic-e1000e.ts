/**
 * R11: e1000 NICs become e1000e; the MAC and everything else stay — except a boot ROM file chosen
 * for e1000 (`<rom file='…/efi-e1000.rom'/>`). An option ROM carries the PCI ID of the NIC it
 * drives (e1000 8086:100e, e1000e 8086:10d3), so the firmware would not run an e1000 ROM on the
 * e1000e: QEMU's e1000e loads efi-e1000e.rom by default (hw/net/e1000e.c), and QEMU and iPXE
 * (Debian: ipxe-qemu, /usr/lib/ipxe/qemu) ship efi-e1000e.rom and pxe-e1000e.rom next to the
 * e1000 ones. So those names map to their e1000e twin in the same directory; any other ROM file
 * is dropped (QEMU's default ROM then applies), keeping the other `<rom>` attributes (bar, enabled).
 * `<rom file=''/>` means no ROM at all and stays. Pure: whether the file exists is not checked.
 */
import type { XmlElement } from '../domain';
import { remove, removeAttr, setAttr } from './change';
import { convertsChipset } from './guards';
import type { Change, Rule } from './types';

const RULE = 'nic-e1000e';

/** `efi-e1000.rom` / `pxe-e1000.rom` (any directory) → the e1000e ROM of the same kind there. */
const E1000_ROM = /^(.*\/)?(efi|pxe)-e1000\.rom$/;
const e1000eRomFor = (file: string): string | undefined => {
  const m = E1000_ROM.exec(file);
  return m ? `${m[1] ?? ''}${m[2]}-e1000e.rom` : undefined;
};

const DROPPED = 'a boot ROM for e1000, with no known e1000e counterpart; QEMU loads its default efi-e1000e.rom';

/** The `<rom>` of an e1000 NIC turned e1000e: its file mapped, or dropped. */
function fixRom(rom: XmlElement): Change[] {
  const file = rom.attr('file');
  if (file === undefined || file === '') return [];
  const mapped = e1000eRomFor(file);
  if (mapped !== undefined) return setAttr(RULE, rom, 'file', mapped);
  // file was its only attribute: an empty <rom/> would say nothing, so it goes
  const changes = rom.attrNames().length === 1 && rom.elements().length === 0 ? [remove(RULE, rom)] : removeAttr(RULE, rom, 'file');
  return changes.map((c) => ({ ...c, detail: `${c.detail} (${DROPPED})` }));
}

export const nicE1000e: Rule = {
  id: RULE,
  why: 'e1000 is a conventional PCI NIC; e1000e is its PCIe counterpart (what virt-manager picks on q35)',
  applies: convertsChipset,
  apply: (d) =>
    d
      .devices('interface')
      .filter((i) => i.elements('model').some((m) => m.attr('type') === 'e1000'))
      .flatMap((i) => [
        ...i.elements('model').flatMap((m) => (m.attr('type') === 'e1000' ? setAttr(RULE, m, 'type', 'e1000e') : [])),
        ...i.elements('rom').flatMap(fixRom),
      ]),
};
