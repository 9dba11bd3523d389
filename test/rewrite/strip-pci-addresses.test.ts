import { describe, expect, it } from 'vitest';
import { stripPciAddresses } from '../../src/core/rewrite/strip-pci-addresses';
import { domainXml, runRule } from './support';

const pci = (slot: string, extra = '') => `      <address type='pci' domain='0x0000' bus='0x00' slot='${slot}' function='0x0'${extra}/>\n`;

describe('strip-pci-addresses (R9)', () => {
  it.each([
    [
      'NIC, USB controller, memballoon',
      `    <interface type='network'>\n      <mac address='52:54:00:aa:bb:cc'/>\n${pci('0x03')}    </interface>\n    <controller type='usb' index='0'>\n${pci('0x01', " multifunction='on'")}    </controller>\n    <memballoon model='virtio'>\n${pci('0x05')}    </memballoon>\n`,
      `    <interface type='network'>\n      <mac address='52:54:00:aa:bb:cc'/>\n    </interface>\n    <controller type='usb' index='0'/>\n    <memballoon model='virtio'/>\n`,
    ],
    [
      "hostdev: the guest address goes, the host device's <source><address> stays",
      `    <hostdev mode='subsystem' type='pci' managed='yes'>\n      <source>\n        <address domain='0x0000' bus='0x06' slot='0x02' function='0x0'/>\n      </source>\n${pci('0x07')}    </hostdev>\n`,
      `    <hostdev mode='subsystem' type='pci' managed='yes'>\n      <source>\n        <address domain='0x0000' bus='0x06' slot='0x02' function='0x0'/>\n      </source>\n    </hostdev>\n`,
    ],
    [
      'interface type=hostdev keeps its source address',
      `    <interface type='hostdev' managed='yes'>\n      <mac address='52:54:00:6d:90:02'/>\n      <source>\n        <address type='pci' domain='0x0000' bus='0x00' slot='0x07' function='0x0'/>\n      </source>\n${pci('0x08')}    </interface>\n`,
      `    <interface type='hostdev' managed='yes'>\n      <mac address='52:54:00:6d:90:02'/>\n      <source>\n        <address type='pci' domain='0x0000' bus='0x00' slot='0x07' function='0x0'/>\n      </source>\n    </interface>\n`,
    ],
    [
      'non-PCI addresses stay (usb, virtio-serial, drive)',
      `    <input type='tablet' bus='usb'>\n      <address type='usb' bus='0' port='1'/>\n    </input>\n    <channel type='unix'>\n      <target type='virtio' name='org.qemu.guest_agent.0'/>\n      <address type='virtio-serial' controller='0' bus='0' port='1'/>\n    </channel>\n    <disk type='file' device='disk'>\n      <target dev='sda' bus='scsi'/>\n      <address type='drive' controller='0' bus='0' target='0' unit='0'/>\n    </disk>\n`,
      `    <input type='tablet' bus='usb'>\n      <address type='usb' bus='0' port='1'/>\n    </input>\n    <channel type='unix'>\n      <target type='virtio' name='org.qemu.guest_agent.0'/>\n      <address type='virtio-serial' controller='0' bus='0' port='1'/>\n    </channel>\n    <disk type='file' device='disk'>\n      <target dev='sda' bus='scsi'/>\n      <address type='drive' controller='0' bus='0' target='0' unit='0'/>\n    </disk>\n`,
    ],
  ])('%s', (_label, before, after) => {
    expect(runRule(stripPciAddresses, domainXml({ devices: before })).xml).toBe(domainXml({ devices: after }));
  });

  it('reports each removed address', () => {
    const r = runRule(stripPciAddresses, domainXml({ devices: `    <sound model='ich6'>\n${pci('0x04')}    </sound>\n` }));
    expect(r.changes).toEqual([
      { rule: 'strip-pci-addresses', path: '/domain/devices/sound/address', action: 'remove', detail: "<address type='pci' domain='0x0000' bus='0x00' slot='0x04' function='0x0'/>" },
    ]);
  });

  it('leaves a q35 domain alone', () => {
    const input = domainXml({ machine: 'pc-q35-7.2', devices: `    <sound model='ich9'>\n${pci('0x1b')}    </sound>\n` });
    expect(runRule(stripPciAddresses, input)).toMatchObject({ applies: false, xml: input });
  });
});
