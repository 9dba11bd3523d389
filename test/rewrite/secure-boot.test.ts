import { describe, expect, it } from 'vitest';
import { secureBoot } from '../../src/core/rewrite/secure-boot';
import { domainXml, runRule } from './support';

const UEFI_OS = (loaderAttrs: string) =>
  `    <loader readonly='yes' type='pflash'${loaderAttrs}>/usr/share/OVMF/OVMF_CODE_4M.fd</loader>\n    <nvram template='/usr/share/OVMF/OVMF_VARS_4M.fd'>/var/lib/libvirt/qemu/nvram/vm1_VARS.fd</nvram>\n`;

describe('secure-boot (R19/R20)', () => {
  it.each([
    ['adds <smm> to <features>', '    <acpi/>\n', "    <acpi/>\n    <smm state='on'/>\n"],
    ["turns <smm state='off'> on", "    <acpi/>\n    <smm state='off'/>\n", "    <acpi/>\n    <smm state='on'/>\n"],
    ['keeps a TSEG size', "    <smm state='off'>\n      <tseg unit='MiB'>48</tseg>\n    </smm>\n", "    <smm state='on'>\n      <tseg unit='MiB'>48</tseg>\n    </smm>\n"],
    ['leaves SMM that is on', "    <smm state='on'/>\n", "    <smm state='on'/>\n"],
  ])('BIOS q35 domain: %s', (_label, before, after) => {
    const r = runRule(secureBoot, domainXml({ machine: 'q35', features: before }), { secureBoot: true });
    expect(r.xml).toBe(domainXml({ machine: 'q35', features: after }));
    expect(r.changes).toHaveLength(before === after ? 0 : 1);
  });

  it('creates <features> when there is none', () => {
    const r = runRule(secureBoot, domainXml({ machine: 'q35', features: null }), { secureBoot: true });
    expect(r.xml).toBe(domainXml({ machine: 'q35', features: "    <smm state='on'/>\n" }));
    expect(r.changes).toEqual([{ rule: 'secure-boot', path: '/domain/features', action: 'add', detail: "<features><smm state='on'/></features>" }]);
  });

  it('reports the SMM change', () => {
    const r = runRule(secureBoot, domainXml({ machine: 'q35', features: "    <smm state='off'/>\n" }), { secureBoot: true });
    expect(r.changes).toEqual([{ rule: 'secure-boot', path: '/domain/features/smm/@state', action: 'set', detail: "state 'off' → 'on'" }]);
  });

  it('does nothing without --secure-boot', () => {
    const input = domainXml({ machine: 'q35' });
    expect(runRule(secureBoot, input, { secureBoot: false })).toMatchObject({ applies: false, xml: input, warning: undefined });
  });

  it('leaves a domain that already boots UEFI to secure-boot-uefi (R21)', () => {
    const input = domainXml({ machine: 'pc-q35-7.2', os: UEFI_OS('') });
    expect(runRule(secureBoot, input, { secureBoot: true })).toMatchObject({ applies: false, xml: input, warning: undefined });
  });

  it.each([
    ['a secure loader', domainXml({ machine: 'q35', os: UEFI_OS(" secure='yes'"), features: "    <smm state='on'/>\n" })],
    [
      'auto-selection with the secure-boot feature',
      domainXml({ machine: 'q35', os: "    <firmware>\n      <feature enabled='yes' name='secure-boot'/>\n    </firmware>\n" }).replace('<os>', "<os firmware='efi'>"),
    ],
  ])('says nothing for a UEFI domain that has Secure Boot already (%s)', (_label, input) => {
    expect(runRule(secureBoot, input, { secureBoot: true })).toMatchObject({ applies: false, xml: input, warning: undefined });
  });
});
