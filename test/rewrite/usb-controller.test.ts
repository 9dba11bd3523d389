import { describe, expect, it } from 'vitest';
import { usbController } from '../../src/core/rewrite/usb-controller';
import { domainXml, runRule } from './support';

const XHCI = "    <controller type='usb' index='0' model='qemu-xhci' ports='15'/>\n";

describe('usb-controller (R13)', () => {
  it.each([
    ['piix3-uhci → qemu-xhci', "    <controller type='usb' index='0' model='piix3-uhci'/>\n", XHCI],
    ['model-less → qemu-xhci', "    <controller type='usb' index='0'/>\n", XHCI],
    ['ports of a piix3-uhci are set too', "    <controller type='usb' index='0' model='piix3-uhci' ports='2'/>\n", XHCI],
    ["model='none' kept", "    <controller type='usb' model='none'/>\n", "    <controller type='usb' model='none'/>\n"],
    [
      'ICH9 companion set kept',
      "    <controller type='usb' index='0' model='ich9-ehci1'/>\n    <controller type='usb' index='0' model='ich9-uhci1'>\n      <master startport='0'/>\n    </controller>\n",
      "    <controller type='usb' index='0' model='ich9-ehci1'/>\n    <controller type='usb' index='0' model='ich9-uhci1'>\n      <master startport='0'/>\n    </controller>\n",
    ],
    ['nec-xhci kept', "    <controller type='usb' index='0' model='nec-xhci'/>\n", "    <controller type='usb' index='0' model='nec-xhci'/>\n"],
    ['other controller types untouched', "    <controller type='virtio-serial' index='0'/>\n", "    <controller type='virtio-serial' index='0'/>\n"],
  ])('%s', (_label, before, after) => {
    expect(runRule(usbController, domainXml({ devices: before })).xml).toBe(domainXml({ devices: after }));
  });

  it('reports model and ports', () => {
    expect(runRule(usbController, domainXml({ devices: "    <controller type='usb' index='0' model='piix3-uhci'/>\n" })).changes).toEqual([
      { rule: 'usb-controller', path: '/domain/devices/controller/@model', action: 'set', detail: "model 'piix3-uhci' → 'qemu-xhci'" },
      { rule: 'usb-controller', path: '/domain/devices/controller/@ports', action: 'set', detail: "ports (none) → '15'" },
    ]);
  });

  it('leaves a q35 domain alone', () => {
    const input = domainXml({ machine: 'q35', devices: "    <controller type='usb' index='0' model='piix3-uhci'/>\n" });
    expect(runRule(usbController, input)).toMatchObject({ applies: false, xml: input });
  });
});
