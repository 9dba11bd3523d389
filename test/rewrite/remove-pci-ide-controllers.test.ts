import { describe, expect, it } from 'vitest';
import { removePciIdeControllers } from '../../src/core/rewrite/remove-pci-ide-controllers';
import { domainXml, runRule } from './support';

const USB = `    <controller type='usb' index='0' model='piix3-uhci'>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x01' function='0x2'/>
    </controller>
`;
const PCI_ROOT = "    <controller type='pci' index='0' model='pci-root'/>\n";
const BRIDGE = `    <controller type='pci' index='1' model='pci-bridge'>
      <model name='pci-bridge'/>
      <target chassisNr='1'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x09' function='0x0'/>
    </controller>
`;
const IDE = `    <controller type='ide' index='0'>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x01' function='0x1'/>
    </controller>
`;
const SATA = "    <controller type='sata' index='0'/>\n";
const VSERIAL = "    <controller type='virtio-serial' index='0'/>\n";

describe('remove-pci-ide-controllers (R7)', () => {
  it.each([
    ['pci-root, bridge and IDE among others', USB + PCI_ROOT + BRIDGE + IDE + SATA + VSERIAL, USB + SATA + VSERIAL, 3],
    ['only pci-root', PCI_ROOT, '', 1],
    ['nothing to remove', USB + SATA, USB + SATA, 0],
  ])('%s', (_label, before, after, removed) => {
    const r = runRule(removePciIdeControllers, domainXml({ devices: before }));
    expect(r.xml).toBe(domainXml({ devices: after }).replace('  <devices>\n  </devices>', '  <devices/>'));
    expect(r.changes).toHaveLength(removed);
    expect(r.changes.every((c) => c.action === 'remove' && c.rule === 'remove-pci-ide-controllers')).toBe(true);
  });

  it('reports each removed controller', () => {
    const r = runRule(removePciIdeControllers, domainXml({ devices: PCI_ROOT + IDE }));
    expect(r.changes).toEqual([
      { rule: 'remove-pci-ide-controllers', path: '/domain/devices/controller[1]', action: 'remove', detail: "<controller type='pci' index='0' model='pci-root'/>" },
      {
        rule: 'remove-pci-ide-controllers',
        path: '/domain/devices/controller',
        action: 'remove',
        detail: "<controller type='ide' index='0'><address type='pci' domain='0x0000' bus='0x00' slot='0x01' function='0x1'/></controller>",
      },
    ]);
  });

  it('leaves a q35 domain (pcie-root and its ports) alone', () => {
    const input = domainXml({ machine: 'pc-q35-7.2', devices: "    <controller type='pci' index='0' model='pcie-root'/>\n    <controller type='pci' index='1' model='pcie-root-port'/>\n" });
    const r = runRule(removePciIdeControllers, input);
    expect(r.applies).toBe(false);
    expect(r.xml).toBe(input);
  });
});
