import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FirmwareNotFoundError, NvramSizeMismatch } from '../../src/core/errors';
import { checkFlashPair, equivalentFirmware, globMatch, matchFirmware, orderDescriptorFiles, sizeClass, type FirmwareDescriptor, type FirmwareRequest } from '../../src/core/firmware';
import { loadCatalog } from '../../src/io';

const fixtures = join(__dirname, 'fixtures');
const load = (...dirs: string[]) => loadCatalog({ roots: dirs.map((d) => join(fixtures, d)) }).descriptors;
const debian = load('debian');
const fedora = load('fedora');

const D4 = { code: 3_653_632, vars: 540_672 };
const D2 = { code: 1_966_080, vars: 131_072 };

describe('orderDescriptorFiles', () => {
  const usr = '/usr/share/qemu/firmware';
  const etc = '/etc/qemu/firmware';

  it.each([
    {
      name: 'sorts the union by file name',
      listings: [
        { dir: usr, files: [{ name: '60-b.json', size: 1 }, { name: '40-a.json', size: 1 }] },
        { dir: etc, files: [{ name: '50-local.json', size: 1 }] },
      ],
      want: [`${usr}/40-a.json`, `${etc}/50-local.json`, `${usr}/60-b.json`],
    },
    {
      name: 'a same-name file in the more specific dir wins',
      listings: [
        { dir: usr, files: [{ name: '60-b.json', size: 1 }] },
        { dir: etc, files: [{ name: '60-b.json', size: 9 }] },
      ],
      want: [`${etc}/60-b.json`],
    },
    {
      name: 'a zero-length file masks the name, and a masked distro file stays hidden',
      listings: [
        { dir: usr, files: [{ name: '40-a.json', size: 1 }, { name: '60-b.json', size: 1 }] },
        { dir: etc, files: [{ name: '40-a.json', size: 0 }] },
      ],
      want: [`${usr}/60-b.json`],
    },
    {
      name: 'byte order (strcmp), dot files ignored',
      listings: [{ dir: usr, files: [{ name: 'b.json', size: 1 }, { name: 'B.json', size: 1 }, { name: '.x.json', size: 1 }, { name: '10.json', size: 1 }] }],
      want: [`${usr}/10.json`, `${usr}/B.json`, `${usr}/b.json`],
    },
  ])('$name', ({ listings, want }) => {
    expect(orderDescriptorFiles(listings).map((f) => `${f.dir}/${f.name}`)).toEqual(want);
  });
});

describe('globMatch (g_pattern_match_simple)', () => {
  it.each([
    ['pc-q35-*', 'pc-q35-7.2', true],
    ['pc-q35-*', 'pc-q35-', true],
    ['pc-q35-*', 'pc-i440fx-7.2', false],
    ['pc-q35-?.2', 'pc-q35-7.2', true],
    ['pc-q35-?.2', 'pc-q35-10.2', false],
    ['*', 'anything', true],
    ['pc-*-7.*', 'pc-q35-7.2', true],
    ['q35', 'q35', true],
    ['q35', 'q35x', false],
  ])('%s vs %s → %s', (glob, text, want) => {
    expect(globMatch(glob, text)).toBe(want);
  });

  it('prefixOnly: true when some completion of the text matches', () => {
    expect(globMatch('pc-q35-*', 'pc-q35-', true)).toBe(true);
    expect(globMatch('pc-q35-7.?', 'pc-q35-', true)).toBe(true);
    expect(globMatch('pc-q35-*', 'pc-i440fx-', true)).toBe(false);
  });
});

describe('matchFirmware', () => {
  const q35: FirmwareRequest = { arch: 'x86_64', machine: 'q35' };
  const cases: Array<{ name: string; descriptors: readonly FirmwareDescriptor[]; req: FirmwareRequest; want: string | null }> = [
    { name: 'q35, no features → SB with MS keys', descriptors: debian, req: q35, want: '40-edk2-x86_64-secure-enrolled.json' },
    { name: 'versioned q35 behaves like the alias', descriptors: debian, req: { ...q35, machine: 'pc-q35-7.2' }, want: '40-edk2-x86_64-secure-enrolled.json' },
    { name: 'secure-boot=yes enrolled-keys=yes → 40', descriptors: debian, req: { ...q35, secureBoot: true, enrolledKeys: true }, want: '40-edk2-x86_64-secure-enrolled.json' },
    { name: 'secure-boot=yes enrolled-keys=no → 50', descriptors: debian, req: { ...q35, secureBoot: true, enrolledKeys: false }, want: '50-edk2-x86_64-secure.json' },
    { name: 'secure-boot=no → 60', descriptors: debian, req: { ...q35, secureBoot: false }, want: '60-edk2-x86_64.json' },
    { name: 'pc (i440fx) → 60', descriptors: debian, req: { ...q35, machine: 'pc' }, want: '60-edk2-x86_64.json' },
    { name: 'pc-i440fx-7.2 → 60', descriptors: debian, req: { ...q35, machine: 'pc-i440fx-7.2' }, want: '60-edk2-x86_64.json' },
    { name: 'pc + secure boot → none', descriptors: debian, req: { ...q35, machine: 'pc', secureBoot: true }, want: null },
    { name: 'smm off skips requires-smm builds', descriptors: debian, req: { ...q35, smm: 'off' }, want: '60-edk2-x86_64.json' },
    { name: 'smm off + secure boot → none', descriptors: debian, req: { ...q35, smm: 'off', secureBoot: true }, want: null },
    { name: "loader secure='no' skips SMM builds", descriptors: debian, req: { ...q35, loaderSecure: false }, want: '60-edk2-x86_64.json' },
    { name: "loader secure='yes' skips non-SMM builds", descriptors: debian, req: { ...q35, loaderSecure: true, enrolledKeys: false }, want: '50-edk2-x86_64-secure.json' },
    { name: 'explicit loader path', descriptors: debian, req: { ...q35, loaderPath: '/usr/share/OVMF/OVMF_CODE_4M.secboot.fd' }, want: '50-edk2-x86_64-secure.json' },
    { name: 'loader path + template path', descriptors: debian, req: { ...q35, loaderPath: '/usr/share/OVMF/OVMF_CODE_4M.fd', templatePath: '/usr/share/OVMF/OVMF_VARS_4M.fd' }, want: '60-edk2-x86_64.json' },
    { name: 'unknown loader path → none', descriptors: debian, req: { ...q35, loaderPath: '/usr/share/OVMF/OVMF_CODE.fd' }, want: null },
    { name: 'S3 is offered by all Debian builds', descriptors: debian, req: { ...q35, s3: true }, want: '40-edk2-x86_64-secure-enrolled.json' },
    { name: 'S4 is offered by none', descriptors: debian, req: { ...q35, s4: true }, want: null },
    { name: 'stateless needs a stateless mapping', descriptors: debian, req: { ...q35, stateless: true }, want: null },
    { name: 'aarch64 → none', descriptors: debian, req: { arch: 'aarch64', machine: 'virt' }, want: null },
    { name: 'bios interface → none', descriptors: debian, req: { ...q35, interface: 'bios' }, want: null },
    { name: 'Fedora, raw only (libvirt 9.0) → 2M raw enrolled', descriptors: fedora, req: q35, want: '31-edk2-ovmf-2m-raw-x64-sb-enrolled.json' },
    { name: 'Fedora, qcow2 accepted → 4M qcow2 enrolled', descriptors: fedora, req: { ...q35, formats: ['raw', 'qcow2'] }, want: '30-edk2-ovmf-4m-qcow2-x64-sb-enrolled.json' },
    { name: 'Fedora, pc → 2M raw nosb', descriptors: fedora, req: { ...q35, machine: 'pc' }, want: '51-edk2-ovmf-2m-raw-x64-nosb.json' },
    { name: '/etc masks 40 → q35 default is 50', descriptors: load('debian', 'etc-override'), req: q35, want: '50-edk2-x86_64-secure.json' },
    { name: '/etc override of 60 wins; combined 55 is skipped', descriptors: load('debian', 'etc-override'), req: { ...q35, secureBoot: false }, want: '60-edk2-x86_64.json' },
    { name: 'the override is what matches (S4 only in /etc 60)', descriptors: load('debian', 'etc-override'), req: { ...q35, s4: true }, want: '60-edk2-x86_64.json' },
    { name: 'no descriptors → none', descriptors: [], req: q35, want: null },
  ];

  it.each(cases)('$name', ({ descriptors, req, want }) => {
    if (want === null) expect(() => matchFirmware(descriptors, req)).toThrow(FirmwareNotFoundError);
    else expect(matchFirmware(descriptors, req).descriptor.file).toBe(want);
  });

  it('the /etc override is the descriptor returned', () => {
    const d = matchFirmware(load('debian', 'etc-override'), { ...q35, secureBoot: false }).descriptor;
    expect([d.dir, d.executable.filename]).toEqual([join(fixtures, 'etc-override'), '/opt/ovmf/OVMF_CODE_4M.fd']);
  });

  it('reports why earlier descriptors were skipped', () => {
    const { skipped } = matchFirmware(debian, { ...q35, secureBoot: false });
    expect(skipped.map((s) => s.file)).toEqual(['40-edk2-x86_64-secure-enrolled.json', '50-edk2-x86_64-secure.json']);
    expect(skipped[0].reasons).toEqual(['secure-boot=yes, requested no']);
    const qcow = matchFirmware(fedora, q35).skipped[0];
    expect(qcow.reasons).toEqual(['executable format qcow2 not accepted (raw)', 'nvram template format qcow2 not accepted (raw)']);
  });

  it('says on one line what was asked when nothing matches', () => {
    expect(() => matchFirmware(debian, { ...q35, machine: 'pc', secureBoot: true })).toThrow(
      "no uefi firmware for x86_64 machine 'pc', secure-boot=yes, format raw among 3 descriptors; run 'ovmf-hook firmware list' to see them",
    );
    expect(() => matchFirmware(debian, { ...q35, secureBoot: false, smm: 'off', s4: true })).toThrow(
      "no uefi firmware for x86_64 machine 'q35', secure-boot=no, smm=off, S4, format raw among 3 descriptors",
    );
    expect(() => matchFirmware([], q35)).toThrow(/this host has no firmware descriptors; install OVMF/);
  });
});

describe('sizeClass / checkFlashPair', () => {
  it.each([
    [D4.code, '4M'],
    [D4.vars, '4M'],
    [4_194_304, '4M'],
    [D2.code, '2M'],
    [D2.vars, '2M'],
    [2_097_152, '2M'],
    [1_000_000, 'unknown'],
    [undefined, 'unknown'],
  ])('sizeClass(%s) = %s', (bytes, want) => {
    expect(sizeClass(bytes)).toBe(want);
  });

  it.each([
    ['Debian 4M pair', '4M', D4.code, D4.vars],
    ['Debian 2M pair', '2M', D2.code, D2.vars],
    ['two unknown sizes QEMU accepts', 'unknown', 3 * 1024 * 1024, 1024 * 1024],
  ])('%s → %s', (_name, want, code, vars) => {
    expect(checkFlashPair(code, vars)).toBe(want);
  });

  it.each([
    ['4M CODE + 2M VARS', D4.code, D2.vars],
    ['2M CODE + 4M VARS', D2.code, D4.vars],
    ['4M CODE + unknown VARS', D4.code, 4096],
    ['unknown CODE + 4M VARS', 4096, D4.vars],
    ['two VARS images', D4.vars, D4.vars],
    ['combined image as CODE', 4_194_304, D4.vars],
    ['not a 4 KiB multiple', 1_000_000, 4096],
    ['over 8 MiB', 8 * 1024 * 1024, 4096],
    ['empty VARS', 4096, 0],
  ])('%s → NvramSizeMismatch', (_name, code, vars) => {
    expect(() => checkFlashPair(code, vars)).toThrow(NvramSizeMismatch);
  });

  it('names both files and the fix in one line', () => {
    let error: NvramSizeMismatch | undefined;
    try {
      checkFlashPair(D4.code, D2.vars, { loader: '/usr/share/OVMF/OVMF_CODE_4M.fd', template: '/var/lib/libvirt/qemu/nvram/w_VARS.fd' });
    } catch (e) {
      error = e as NvramSizeMismatch;
    }
    expect(error?.loader).toBe('/usr/share/OVMF/OVMF_CODE_4M.fd');
    expect(error?.template).toBe('/var/lib/libvirt/qemu/nvram/w_VARS.fd');
    expect(error?.exitCode).toBe(1);
    expect(error?.message).toBe(
      '/usr/share/OVMF/OVMF_CODE_4M.fd (3653632 bytes, 4M) and /var/lib/libvirt/qemu/nvram/w_VARS.fd (131072 bytes, 2M) are not one OVMF build: a 4M build is 3653632-byte CODE + 540672-byte VARS; use the VARS template shipped with this CODE (virsh start --reset-nvram recreates the NVRAM)',
    );
  });
});

describe('equivalentFirmware (the migrate/restore filter\'s rule: same file name, present here)', () => {
  const O = '/usr/share/OVMF';
  const debianSizes = {
    [`${O}/OVMF_CODE_4M.ms.fd`]: D4.code,
    [`${O}/OVMF_CODE_4M.secboot.fd`]: D4.code,
    [`${O}/OVMF_CODE_4M.fd`]: D4.code,
    [`${O}/OVMF_VARS_4M.ms.fd`]: D4.vars,
    [`${O}/OVMF_VARS_4M.fd`]: D4.vars,
  };
  const catalog = { descriptors: debian, sizes: debianSizes };
  const F = '/usr/share/edk2/ovmf';

  it.each([
    { name: 'identical paths present here', files: { loader: `${O}/OVMF_CODE_4M.secboot.fd`, template: `${O}/OVMF_VARS_4M.fd` }, want: '50-edk2-x86_64-secure.json' },
    { name: 'the template decides between descriptors sharing a file', files: { loader: `${O}/OVMF_CODE_4M.fd`, template: `${O}/OVMF_VARS_4M.fd` }, want: '60-edk2-x86_64.json' },
    { name: 'loader only: first descriptor with that CODE', files: { loader: `${O}/OVMF_CODE_4M.ms.fd` }, want: '40-edk2-x86_64-secure-enrolled.json' },
    { name: 'template only: first descriptor with that VARS', files: { template: `${O}/OVMF_VARS_4M.fd` }, want: '50-edk2-x86_64-secure.json' },
    { name: 'other host layout: same file names', files: { loader: '/opt/fw/OVMF_CODE_4M.secboot.fd', template: '/opt/fw/OVMF_VARS_4M.fd' }, want: '50-edk2-x86_64-secure.json' },
  ])('$name', ({ files, want }) => {
    expect(equivalentFirmware(catalog, files)?.file).toBe(want);
  });

  it.each([
    { name: 'a loader/template pair no descriptor offers', files: { loader: `${O}/OVMF_CODE_4M.secboot.fd`, template: `${O}/OVMF_VARS_4M.ms.fd` } },
    { name: 'a build of another name', files: { loader: '/opt/fw/OVMF_CODE_8M.fd' } },
    { name: 'Fedora 2M CODE on a Debian host', files: { loader: `${F}/OVMF_CODE.secboot.fd` } },
    { name: 'descriptor path not present locally', files: { loader: `${O}/OVMF_CODE_4M.fd` }, sizes: {} },
  ])('$name → undefined', ({ files, sizes }) => {
    expect(equivalentFirmware({ descriptors: debian, sizes: sizes ?? debianSizes }, files)).toBeUndefined();
  });
});
