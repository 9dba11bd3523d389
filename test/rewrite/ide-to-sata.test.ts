import { describe, expect, it } from 'vitest';
import { diskSuffix, ideToSata } from '../../src/core/rewrite/ide-to-sata';
import { domainXml, runRule } from './support';

const disk = (dev: string, bus: string | undefined, extra = '', device = 'disk', src = dev) =>
  `    <disk type='file' device='${device}'>\n      <source file='/img/${src}.img'/>\n      <target dev='${dev}'${bus ? ` bus='${bus}'` : ''}/>\n${extra}    </disk>\n`;
const drive = (unit: number) => `      <address type='drive' controller='0' bus='0' target='0' unit='${unit}'/>\n`;

describe('ide-to-sata (R8)', () => {
  it.each([
    ['IDE disk and CD-ROM', disk('hda', 'ide', drive(0)) + disk('hdc', 'ide', drive(1), 'cdrom'), disk('sda', 'sata', '', 'disk', 'hda') + disk('sdb', 'sata', '', 'cdrom', 'hdc')],
    ['skips taken sd names', disk('sda', 'scsi', drive(0)) + disk('hda', 'ide', drive(0)) + disk('sdc', 'usb'), disk('sda', 'scsi', drive(0)) + disk('sdb', 'sata', '', 'disk', 'hda') + disk('sdc', 'usb')],
    ['bus implied by an hdX name', disk('hdb', undefined), disk('sda', undefined, '', 'disk', 'hdb').replace("dev='sda'/>", "dev='sda' bus='sata'/>")],
    ['virtio, SATA and floppy untouched', disk('vda', 'virtio') + disk('sda', 'sata', drive(0)) + disk('fda', 'fdc', '', 'floppy'), disk('vda', 'virtio') + disk('sda', 'sata', drive(0)) + disk('fda', 'fdc', '', 'floppy')],
  ])('%s', (_label, before, after) => {
    const r = runRule(ideToSata, domainXml({ devices: before }));
    expect(r.xml).toBe(domainXml({ devices: after }));
  });

  it('reports target and address changes', () => {
    const r = runRule(ideToSata, domainXml({ devices: disk('hda', 'ide', drive(0)) }));
    expect(r.changes).toEqual([
      { rule: 'ide-to-sata', path: '/domain/devices/disk/target/@dev', action: 'set', detail: "dev 'hda' → 'sda'" },
      { rule: 'ide-to-sata', path: '/domain/devices/disk/target/@bus', action: 'set', detail: "bus 'ide' → 'sata'" },
      { rule: 'ide-to-sata', path: '/domain/devices/disk/address', action: 'remove', detail: "<address type='drive' controller='0' bus='0' target='0' unit='0'/>" },
    ]);
  });

  it('names many disks like libvirt (sdz, then sdaa)', () => {
    const many = Array.from({ length: 28 }, (_, i) => disk(`hd${diskSuffix(i)}`, 'ide')).join('');
    const r = runRule(ideToSata, domainXml({ devices: many }));
    const names = [...r.xml.matchAll(/dev='(\w+)' bus='sata'/g)].map((m) => m[1]);
    expect(names.slice(24)).toEqual(['sdy', 'sdz', 'sdaa', 'sdab']);
  });

  it.each([
    [0, 'a'],
    [25, 'z'],
    [26, 'aa'],
    [27, 'ab'],
    [51, 'az'],
    [52, 'ba'],
    [701, 'zz'],
    [702, 'aaa'],
  ])('diskSuffix(%i) = %s', (i, s) => expect(diskSuffix(i)).toBe(s));

  it('leaves a q35 domain alone', () => {
    const input = domainXml({ machine: 'q35', devices: disk('hda', 'ide') });
    expect(runRule(ideToSata, input)).toMatchObject({ applies: false, xml: input });
  });
});
