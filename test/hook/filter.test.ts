import { describe, expect, it } from 'vitest';
import { parseDomain } from '../../src/core/domain';
import { FirmwareNotFoundError } from '../../src/core/errors';
import { mapFirmwarePaths } from '../../src/core/firmware/cross-host';
import { CODE_SIZE, descriptorsIn, domainXml, VARS_SIZE, PURE_FIRMWARE, type XmlSpec } from './harness';

const fw = PURE_FIRMWARE;
const descriptors = descriptorsIn('/fw');
const sizes = { [fw.code]: CODE_SIZE, [fw.secureCode]: CODE_SIZE, [fw.vars]: VARS_SIZE, [fw.msVars]: VARS_SIZE };
const NVRAM_DIR = '/var/lib/libvirt/qemu/nvram';
const input = { descriptors, sizes, nvramDir: NVRAM_DIR, dirExists: (d: string) => d === NVRAM_DIR };

const dom = (spec: Partial<XmlSpec>) => parseDomain(domainXml({ name: 'vm', firmware: 'ovmf', nvram: `${NVRAM_DIR}/vm_VARS.fd`, ...spec }, fw));

describe('mapFirmwarePaths', () => {
  const rows: Array<{ name: string; spec: Partial<XmlSpec>; mapped: Array<[string, string, string]> }> = [
    { name: 'every path exists: nothing to do', spec: {}, mapped: [] },
    { name: 'Secure Boot build, paths exist', spec: { firmware: 'ovmf-secure' }, mapped: [] },
    { name: 'loader elsewhere, template here', spec: { loader: '/opt/x/OVMF_CODE_4M.fd' }, mapped: [['loader', '/opt/x/OVMF_CODE_4M.fd', fw.code]] },
    {
      name: 'loader and template elsewhere: the plain build',
      spec: { loader: '/opt/x/OVMF_CODE_4M.fd', template: '/opt/x/OVMF_VARS_4M.fd' },
      mapped: [
        ['loader', '/opt/x/OVMF_CODE_4M.fd', fw.code],
        ['nvram template', '/opt/x/OVMF_VARS_4M.fd', fw.vars],
      ],
    },
    {
      name: 'Secure Boot loader + MS template: the enrolled build',
      spec: { firmware: 'ovmf-secure', loader: '/opt/x/OVMF_CODE_4M.ms.fd', template: '/opt/x/OVMF_VARS_4M.ms.fd' },
      mapped: [
        ['loader', '/opt/x/OVMF_CODE_4M.ms.fd', fw.secureCode],
        ['nvram template', '/opt/x/OVMF_VARS_4M.ms.fd', fw.msVars],
      ],
    },
    {
      name: 'Secure Boot loader + empty template: the descriptor with that pair',
      spec: { firmware: 'ovmf-secure', loader: '/opt/x/OVMF_CODE_4M.ms.fd', template: '/opt/x/OVMF_VARS_4M.fd' },
      mapped: [
        ['loader', '/opt/x/OVMF_CODE_4M.ms.fd', fw.secureCode],
        ['nvram template', '/opt/x/OVMF_VARS_4M.fd', fw.vars],
      ],
    },
    { name: 'only the template elsewhere', spec: { template: '/opt/x/OVMF_VARS_4M.ms.fd' }, mapped: [['nvram template', '/opt/x/OVMF_VARS_4M.ms.fd', fw.msVars]] },
    { name: 'NVRAM in a directory missing here', spec: { nvram: '/srv/vms/nvram/vm_VARS.fd' }, mapped: [['nvram', '/srv/vms/nvram/vm_VARS.fd', `${NVRAM_DIR}/vm_VARS.fd`]] },
  ];
  it.each(rows)('$name', ({ spec, mapped }) => {
    const d = dom(spec);
    const before = d.toXml();
    const r = mapFirmwarePaths(d, input);
    expect(r.mapped.map((m) => [m.what, m.from, m.to])).toEqual(mapped);
    if (!mapped.length) {
      expect(r.xml).toBeUndefined();
      return;
    }
    // only the mapped paths changed, byte for byte elsewhere
    let want = before;
    for (const [, from, to] of mapped) want = want.replace(from, to);
    expect(r.xml).toBe(want);
  });

  it('leaves <nvram><source file=…/></nvram> alone', () => {
    const xml = domainXml({ name: 'vm', firmware: 'ovmf' }, fw).replace('  </os>', "    <nvram type='file'><source file='/srv/missing/vm_VARS.fd'/></nvram>\n  </os>");
    expect(mapFirmwarePaths(parseDomain(xml), input)).toEqual({ mapped: [] });
  });

  it.each([
    ['an unknown build', { loader: '/opt/x/OVMF_CODE_8M.fd' }, /OVMF_CODE_8M\.fd does not exist on this host and no local firmware descriptor offers the same build/],
    ['a known name whose local file is missing', { loader: '/opt/x/OVMF_CODE_4M.fd' }, /does not exist on this host/],
    ['a template no descriptor offers', { template: '/opt/x/OVMF_VARS_custom.fd' }, /NVRAM template \/opt\/x\/OVMF_VARS_custom\.fd does not exist on this host/],
  ] as const)('refuses %s with FirmwareNotFoundError', (what, spec, message) => {
    const inp = what.startsWith('a known name') ? { ...input, sizes: { ...sizes, [fw.code]: undefined } } : input;
    expect(() => mapFirmwarePaths(dom(spec), inp)).toThrow(FirmwareNotFoundError);
    expect(() => mapFirmwarePaths(dom(spec), inp)).toThrow(message);
  });
});
