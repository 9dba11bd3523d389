import { describe, expect, it } from 'vitest';
import { nicE1000e } from '../../src/core/rewrite/nic-e1000e';
import { domainXml, runRule } from './support';

const nic = (model: string, mac = '52:54:00:0f:00:01', rom = '') =>
  `    <interface type='network'>\n      <mac address='${mac}'/>\n      <source network='default'/>\n      <model type='${model}'/>\n${rom ? `      ${rom}\n` : ''}    </interface>\n`;
/** an e1000 NIC with `rom` before, the e1000e NIC with `after` (null: no <rom> left) */
const withRom = (rom: string, after: string | null) => [nic('e1000', undefined, rom), nic('e1000e', undefined, after ?? '')] as const;

describe('nic-e1000e (R11)', () => {
  it.each([
    ['e1000 → e1000e, MAC kept', nic('e1000'), nic('e1000e'), 1],
    ['virtio and rtl8139 untouched', nic('virtio') + nic('rtl8139', '52:54:00:0f:00:02'), nic('virtio') + nic('rtl8139', '52:54:00:0f:00:02'), 0],
    ['every e1000', nic('e1000') + nic('e1000', '52:54:00:0f:00:02'), nic('e1000e') + nic('e1000e', '52:54:00:0f:00:02'), 2],
  ])('%s', (_label, before, after, n) => {
    const r = runRule(nicE1000e, domainXml({ devices: before }));
    expect(r.xml).toBe(domainXml({ devices: after }));
    expect(r.changes).toHaveLength(n);
  });

  it('reports the model change', () => {
    expect(runRule(nicE1000e, domainXml({ devices: nic('e1000') })).changes).toEqual([
      { rule: 'nic-e1000e', path: '/domain/devices/interface/model/@type', action: 'set', detail: "type 'e1000' → 'e1000e'" },
    ]);
  });

  // QEMU's e1000e device loads efi-e1000e.rom by default (hw/net/e1000e.c); Debian's ipxe-qemu
  // ships efi-e1000e.rom and pxe-e1000e.rom next to the e1000 ones in /usr/lib/ipxe/qemu. An
  // e1000 ROM does not carry e1000e's PCI ID (8086:10d3), so the firmware would not run it.
  it.each([
    ['efi-e1000.rom → efi-e1000e.rom in the same directory', ...withRom("<rom file='/usr/share/qemu/efi-e1000.rom'/>", "<rom file='/usr/share/qemu/efi-e1000e.rom'/>"), 2],
    ['pxe-e1000.rom → pxe-e1000e.rom, other attributes kept', ...withRom("<rom bar='on' file='/usr/lib/ipxe/qemu/pxe-e1000.rom'/>", "<rom bar='on' file='/usr/lib/ipxe/qemu/pxe-e1000e.rom'/>"), 2],
    ['a bare file name', ...withRom("<rom file='efi-e1000.rom'/>", "<rom file='efi-e1000e.rom'/>"), 2],
    ['an unknown ROM: file removed, bar kept', ...withRom("<rom bar='off' file='/var/lib/libvirt/boot/custom-e1000.rom'/>", "<rom bar='off'/>"), 2],
    ["Debian's e1000 alias: the <rom> goes with its only attribute", ...withRom("<rom file='/usr/lib/ipxe/e1000_82540.rom'/>", null), 2],
    ["file='' (no ROM at all) stays", ...withRom("<rom file=''/>", "<rom file=''/>"), 1],
    ["enabled='no' stays", ...withRom("<rom enabled='no'/>", "<rom enabled='no'/>"), 1],
    ['a virtio NIC keeps its ROM', nic('virtio', undefined, "<rom file='/usr/share/qemu/efi-e1000.rom'/>"), nic('virtio', undefined, "<rom file='/usr/share/qemu/efi-e1000.rom'/>"), 0],
  ])('<rom> of an e1000 NIC: %s', (_label, before, after, n) => {
    const r = runRule(nicE1000e, domainXml({ devices: before }));
    expect(r.xml).toBe(domainXml({ devices: after }));
    expect(r.changes).toHaveLength(n);
  });

  it('reports what happened to the ROM file', () => {
    const changes = (rom: string) => runRule(nicE1000e, domainXml({ devices: nic('e1000', undefined, rom) })).changes.slice(1);
    expect(changes("<rom file='/usr/share/qemu/efi-e1000.rom'/>")).toEqual([
      { rule: 'nic-e1000e', path: '/domain/devices/interface/rom/@file', action: 'set', detail: "file '/usr/share/qemu/efi-e1000.rom' → '/usr/share/qemu/efi-e1000e.rom'" },
    ]);
    expect(changes("<rom bar='off' file='/srv/custom.rom'/>")).toEqual([
      {
        rule: 'nic-e1000e',
        path: '/domain/devices/interface/rom/@file',
        action: 'remove',
        detail: "file='/srv/custom.rom' (a boot ROM for e1000, with no known e1000e counterpart; QEMU loads its default efi-e1000e.rom)",
      },
    ]);
    expect(changes("<rom file='/srv/custom.rom'/>")).toEqual([
      {
        rule: 'nic-e1000e',
        path: '/domain/devices/interface/rom',
        action: 'remove',
        detail: "<rom file='/srv/custom.rom'/> (a boot ROM for e1000, with no known e1000e counterpart; QEMU loads its default efi-e1000e.rom)",
      },
    ]);
  });

  it('leaves a q35 domain alone', () => {
    const input = domainXml({ machine: 'q35', devices: nic('e1000') });
    expect(runRule(nicE1000e, input)).toMatchObject({ applies: false, xml: input });
  });
});
