import { describe, expect, it } from 'vitest';
import { parseDomain } from '../../src/core/domain';
import { UsageError } from '../../src/core/errors';
import { uefiFiles } from '../../src/core/domain/uefi-files';
import { descriptorsIn, domainXml, PURE_FIRMWARE, type XmlSpec } from './harness';

const fw = PURE_FIRMWARE;
const descriptors = descriptorsIn('/fw');
const DIR = '/var/lib/libvirt/qemu/nvram';
const NV = `${DIR}/vm_VARS.fd`;
const files = (spec: Partial<XmlSpec>, xmlEdit: (x: string) => string = (x) => x, dir = DIR) =>
  uefiFiles(parseDomain(xmlEdit(domainXml({ name: 'vm', firmware: 'ovmf', nvram: NV, ...spec }, fw))), descriptors, dir);

describe('uefiFiles', () => {
  const rows: Array<{ name: string; spec: Partial<XmlSpec>; edit?: (x: string) => string; dir?: string; want: ReturnType<typeof uefiFiles> }> = [
    { name: 'BIOS domain', spec: { firmware: 'bios' }, want: undefined },
    { name: 'manual paths', spec: {}, want: { loader: fw.code, template: fw.vars, nvram: NV } },
    { name: 'manual Secure Boot paths', spec: { firmware: 'ovmf-secure' }, want: { loader: fw.secureCode, template: fw.msVars, nvram: NV } },
    { name: 'nvram dir given with a trailing slash', spec: {}, dir: `${DIR}/`, want: { loader: fw.code, template: fw.vars, nvram: NV } },
    { name: 'loader without <nvram>: template from the loader\'s descriptor, path derived', spec: { nvram: undefined }, want: { loader: fw.code, template: fw.vars, nvram: NV } },
    { name: "firmware='efi', no features: first descriptor (SB + MS keys)", spec: { firmware: 'efi-auto' }, want: { loader: fw.secureCode, template: fw.msVars, nvram: NV } },
    {
      name: "firmware='efi', secure-boot off",
      spec: { firmware: 'efi-auto', osExtra: ["<firmware><feature enabled='no' name='secure-boot'/></firmware>"] },
      want: { loader: fw.code, template: fw.vars, nvram: NV },
    },
    { name: "firmware='efi', smm off", spec: { firmware: 'efi-auto', features: ["<smm state='off'/>"] }, want: { loader: fw.code, template: fw.vars, nvram: NV } },
    { name: "firmware='efi' on i440fx: only the non-SMM build fits", spec: { firmware: 'efi-auto', machine: 'pc-i440fx-7.2' }, want: { loader: fw.code, template: fw.vars, nvram: NV } },
    { name: "firmware='efi' on the bare alias q35", spec: { firmware: 'efi-auto', machine: 'q35' }, want: { loader: fw.secureCode, template: fw.msVars, nvram: NV } },
    { name: "firmware='efi', no descriptor fits: path derived, no template", spec: { firmware: 'efi-auto', machine: 'virt' }, want: { loader: undefined, template: undefined, nvram: NV } },
    {
      name: 'stateless firmware',
      spec: { nvram: undefined },
      edit: (x) => x.replace("type='pflash'>", "type='pflash' stateless='yes'>"),
      want: { loader: fw.code, unmanaged: 'stateless firmware has no NVRAM' },
    },
    {
      name: 'read-write combined image',
      spec: { nvram: undefined },
      edit: (x) => x.replace("readonly='yes' ", "readonly='no' "),
      want: { loader: fw.code, unmanaged: 'a read-write (combined) firmware image has no separate NVRAM' },
    },
    {
      name: 'network NVRAM',
      spec: { nvram: undefined },
      edit: (x) => x.replace('  </os>', "    <nvram type='network'><source protocol='iscsi' name='iqn.2013-07.com.example:iscsi-nopool/0'><host name='example.com' port='6000'/></source></nvram>\n  </os>"),
      want: { loader: fw.code, unmanaged: "NVRAM of type 'network' is not a local file" },
    },
    {
      name: 'NVRAM outside the nvram dir',
      spec: { nvram: '/srv/vm_VARS.fd' },
      want: { loader: fw.code, template: fw.vars, nvram: '/srv/vm_VARS.fd', unmanaged: `NVRAM /srv/vm_VARS.fd is outside ${DIR}; ovmf-hook manages only NVRAM files directly in libvirt's nvram directory` },
    },
    {
      name: 'NVRAM in a subdirectory of the nvram dir',
      spec: { nvram: `${DIR}/sub/vm_VARS.fd` },
      want: { loader: fw.code, template: fw.vars, nvram: `${DIR}/sub/vm_VARS.fd`, unmanaged: expect.stringContaining('is outside') },
    },
  ];
  it.each(rows)('$name', ({ spec, edit, dir, want }) => {
    expect(files(spec, edit, dir)).toEqual(want);
  });

  it.each([
    ['relative template', { template: 'OVMF_VARS_4M.fd' }, /NVRAM template path "OVMF_VARS_4M.fd" must be absolute/],
    ['loader with ..', { loader: '/usr/share/../share/OVMF/OVMF_CODE_4M.fd' }, /loader path .* must not contain/],
    ['NVRAM with .', { nvram: `${DIR}/./vm_VARS.fd` }, /NVRAM path .* must not contain/],
  ] as const)('refuses a %s', (_what, spec, message) => {
    expect(() => files(spec)).toThrow(UsageError);
    expect(() => files(spec)).toThrow(message);
  });
});
