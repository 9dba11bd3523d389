import { describe, expect, it } from 'vitest';
import { pcieRootPorts } from '../../src/core/rewrite/pcie-root-ports';
import { domainXml, runRule } from './support';

const ROOT = "    <controller type='pci' model='pcie-root'/>\n";
const PORT = "    <controller type='pci' model='pcie-root-port'/>\n";
const DISK = "    <disk type='file' device='disk'>\n      <target dev='vda' bus='virtio'/>\n    </disk>\n";
const USB = "    <controller type='usb' index='0' model='qemu-xhci' ports='15'/>\n";
const NIC = "    <interface type='user'>\n      <mac address='52:54:00:aa:bb:cc'/>\n    </interface>\n";

describe('pcie-root-ports (R10)', () => {
  it.each([
    ['after the last controller', 3, DISK + USB + NIC, DISK + USB + ROOT + PORT.repeat(3) + NIC],
    ['after the disks when there is no controller', 2, DISK + NIC, DISK + ROOT + PORT.repeat(2) + NIC],
    ['first when there is nothing before it', 1, NIC, ROOT + PORT + NIC],
    ['pcie-root alone with rootPorts 0', 0, USB, USB + ROOT],
  ])('adds pcie-root and the ports %s', (_label, rootPorts, before, after) => {
    const r = runRule(pcieRootPorts, domainXml({ devices: before }), { rootPorts });
    expect(r.xml).toBe(domainXml({ devices: after }));
    expect(r.changes.map((c) => c.detail)).toEqual([ROOT.trim(), ...Array(rootPorts).fill(PORT.trim())]);
  });

  it('adds 14 ports by default', () => {
    const r = runRule(pcieRootPorts, domainXml({ devices: USB }));
    expect(r.changes).toHaveLength(15);
    expect(r.changes[1]).toEqual({ rule: 'pcie-root-ports', path: '/domain/devices/controller[3]', action: 'add', detail: PORT.trim() });
  });

  it.each([
    ['a PCI controller remains', domainXml({ devices: "    <controller type='pci' index='0' model='pci-root'/>\n" })],
    ['the domain is q35 already', domainXml({ machine: 'pc-q35-7.2', devices: USB })],
  ])('adds nothing when %s', (_label, input) => {
    expect(runRule(pcieRootPorts, input)).toMatchObject({ applies: false, xml: input });
  });
});
