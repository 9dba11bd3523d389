import { describe, expect, it } from 'vitest';
import { tpmCrb } from '../../src/core/rewrite/tpm-crb';
import { domainXml, runRule } from './support';

const TPM = "    <tpm model='tpm-crb'>\n      <backend type='emulator' version='2.0'/>\n    </tpm>\n";
const INPUT = "    <input type='tablet' bus='usb'/>\n";
const GRAPHICS = "    <graphics type='vnc' port='-1'/>\n";
const DISK = "    <disk type='file' device='disk'>\n      <target dev='vda' bus='virtio'/>\n    </disk>\n";

describe('tpm-crb (R22)', () => {
  it.each([
    ['between inputs and graphics (libvirt order)', DISK + INPUT + GRAPHICS, DISK + INPUT + TPM + GRAPHICS],
    ['after the last device libvirt writes before it', DISK + GRAPHICS, DISK + TPM + GRAPHICS],
    ['at the end', DISK, DISK + TPM],
  ])('adds a TPM 2.0 emulator %s', (_label, before, after) => {
    const r = runRule(tpmCrb, domainXml({ machine: 'q35', devices: before }), { tpm: true });
    expect(r.xml).toBe(domainXml({ machine: 'q35', devices: after }));
    expect(r.changes).toEqual([{ rule: 'tpm-crb', path: '/domain/devices/tpm', action: 'add', detail: "<tpm model='tpm-crb'><backend type='emulator' version='2.0'/></tpm>" }]);
  });

  it('into an empty <devices/>', () => {
    const r = runRule(tpmCrb, domainXml({ machine: 'q35', devices: '' }).replace('<devices>\n  </devices>', '<devices/>'), { tpm: true });
    expect(r.xml).toBe(domainXml({ machine: 'q35', devices: TPM }));
  });

  it.each([
    ['tpm off', domainXml({ devices: DISK }), false],
    ['a TPM exists (any model)', domainXml({ devices: "    <tpm model='tpm-tis'>\n      <backend type='passthrough'/>\n    </tpm>\n" }), true],
    ['not x86_64', domainXml({ arch: 'aarch64', machine: 'virt', devices: DISK }), true],
  ])('adds nothing when %s', (_label, input, tpm) => {
    expect(runRule(tpmCrb, input, { tpm })).toMatchObject({ applies: false, xml: input });
  });
});
