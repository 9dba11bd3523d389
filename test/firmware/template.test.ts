/**
 * `firmware template --ms-2023`, the pure part (src/core/firmware/template.ts): which descriptor is
 * the source and which one ours must sort before, the descriptor's name and content, its record,
 * and the VARS copy (Debian's Microsoft-keys template + the 2023 certificates).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FirmwareNotFoundError, RefusedError } from '../../src/core/errors';
import {
  chooseTemplateSource,
  matchFirmware,
  ms2023Template,
  orderDescriptorFiles,
  parseDescriptor,
  readTemplateRecord,
  renderTemplateDescriptor,
  SECURE_BOOT_MS_REQUEST,
  templateDescriptorName,
  templateFileName,
  type FirmwareDescriptor,
  type FirmwareRequest,
  type SizeMap,
  type TemplateRecord,
} from '../../src/core/firmware';
import { certificateReadiness, secureBootSummary, parseVarstore } from '../../src/core/varstore';
import { loadCatalog } from '../../src/io';
import { enrolledWith2023, MS_VARS_4M } from '../support/ms-2023';

const fixtures = join(__dirname, 'fixtures');
const load = (...dirs: string[]) => loadCatalog({ roots: dirs.map((d) => join(fixtures, d)) }).descriptors;
const debian = load('debian');
const fedora = load('fedora');
const file = (d: FirmwareDescriptor) => d.file;

/** Every file the descriptors name, with the sizes of its flash class (`2M`/`4M` by the name, like the distros). */
const sizesOf = (ds: readonly FirmwareDescriptor[]): SizeMap =>
  Object.fromEntries(
    ds.flatMap((d) => [d.executable.filename, d.nvramTemplate?.filename ?? '']).map((f) => [f, /_4M|4m/.test(f) ? (/CODE/.test(f) ? 3_653_632 : 540_672) : /CODE/.test(f) ? 1_966_080 : 131_072]),
  );

const record = (template: string): TemplateRecord => ({
  sourceDescriptor: `${fixtures}/debian/40-edk2-x86_64-secure-enrolled.json`,
  sourceTemplate: '/usr/share/OVMF/OVMF_VARS_4M.ms.fd',
  sourceSha256: 'a'.repeat(64),
  template,
  templateSha256: 'b'.repeat(64),
});

/** `d` as a descriptor file named `name` in `dir` (what ours is once written). */
const placed = (d: FirmwareDescriptor, rec: TemplateRecord, dir: string, name: string) => parseDescriptor(renderTemplateDescriptor(d, rec), { file: name, dir });

describe('chooseTemplateSource and the descriptor name: libvirt picks ours first for Secure Boot with Microsoft keys, and only there', () => {
  it('Debian: the source is 40-edk2-x86_64-secure-enrolled.json (OVMF_VARS_4M.ms.fd), ours is 39-ovmf-hook-ms-2023.json', () => {
    const { winner, source } = chooseTemplateSource(debian, sizesOf(debian));
    expect([winner.file, source.file, source.nvramTemplate?.filename]).toEqual(['40-edk2-x86_64-secure-enrolled.json', '40-edk2-x86_64-secure-enrolled.json', '/usr/share/OVMF/OVMF_VARS_4M.ms.fd']);
    expect(templateDescriptorName(winner.file)).toBe('39-ovmf-hook-ms-2023.json');
  });

  it('installed in /etc/qemu/firmware, it is picked for the Secure Boot + enrolled-keys request, and every other request picks what it picked before', () => {
    const { winner, source } = chooseTemplateSource(debian, sizesOf(debian));
    const name = templateDescriptorName(winner.file);
    const ours = placed(source, record('/var/lib/ovmf-hook/state/firmware/OVMF_VARS_4M.ms.ms-2023.fd'), '/etc/qemu/firmware', name);
    // the order as libvirt sorts /usr/share and /etc together
    const order = orderDescriptorFiles([
      { dir: '/usr/share/qemu/firmware', files: debian.map((d) => ({ name: d.file, size: 1 })) },
      { dir: '/etc/qemu/firmware', files: [{ name, size: 1 }] },
    ]).map((f) => f.name);
    expect(order).toEqual(['39-ovmf-hook-ms-2023.json', ...debian.map(file)]);
    const after = order.map((n) => (n === name ? ours : debian.find((d) => d.file === n)!));
    expect(matchFirmware(after, SECURE_BOOT_MS_REQUEST).descriptor).toBe(ours);
    expect(matchFirmware(after, { arch: 'x86_64', machine: 'pc-q35-7.2', secureBoot: true, enrolledKeys: true }).descriptor.nvramTemplate?.filename).toBe('/var/lib/ovmf-hook/state/firmware/OVMF_VARS_4M.ms.ms-2023.fd');
    const others: FirmwareRequest[] = [
      { arch: 'x86_64', machine: 'q35', secureBoot: true, enrolledKeys: false },
      { arch: 'x86_64', machine: 'q35', secureBoot: false },
      { arch: 'x86_64', machine: 'pc' },
      { arch: 'x86_64', machine: 'q35', smm: 'off' },
      // a domain that names the distro's template keeps it
      { arch: 'x86_64', machine: 'q35', secureBoot: true, templatePath: '/usr/share/OVMF/OVMF_VARS_4M.ms.fd' },
    ];
    for (const req of others) expect(file(matchFirmware(after, req).descriptor)).toBe(file(matchFirmware(debian, req).descriptor));
  });

  it('Fedora: the source is the raw 2 MB build (a qcow2 VARS cannot be edited), the name sorts before the qcow2 build libvirt ≥ 9.2 would pick', () => {
    const { winner, source } = chooseTemplateSource(fedora, sizesOf(fedora));
    expect([winner.file, source.file]).toEqual(['30-edk2-ovmf-4m-qcow2-x64-sb-enrolled.json', '31-edk2-ovmf-2m-raw-x64-sb-enrolled.json']);
    const name = templateDescriptorName(winner.file);
    expect(name).toBe('29-ovmf-hook-ms-2023.json');
    expect(Buffer.compare(Buffer.from(name), Buffer.from(winner.file))).toBe(-1);
  });

  it('a 4 MB build is preferred to an earlier 2 MB one; ours sorts before the earlier one, which libvirt picks now', () => {
    const two = { ...debian[0]!, file: '35-two.json', executable: { filename: '/x/OVMF_CODE.ms.fd', format: 'raw' }, nvramTemplate: { filename: '/x/OVMF_VARS.ms.fd', format: 'raw' } };
    const ds = [two, ...debian];
    const { winner, source } = chooseTemplateSource(ds, sizesOf(ds));
    expect([winner.file, source.file]).toEqual(['35-two.json', '40-edk2-x86_64-secure-enrolled.json']);
    expect(templateDescriptorName(winner.file)).toBe('34-ovmf-hook-ms-2023.json');
    // without the 4 MB template on disk, the 2 MB one is the source
    expect(chooseTemplateSource(ds, { ...sizesOf(ds), '/usr/share/OVMF/OVMF_VARS_4M.ms.fd': undefined }).source.file).toBe('35-two.json');
  });

  it('refuses a host without Secure Boot firmware with enrolled keys (exit 1, naming the fix)', () => {
    const noMs = debian.filter((d) => !d.features.includes('enrolled-keys'));
    expect(() => chooseTemplateSource(noMs, sizesOf(noMs))).toThrow(FirmwareNotFoundError);
    expect(() => chooseTemplateSource(noMs, sizesOf(noMs))).toThrow(/^no Secure Boot firmware with Microsoft keys \(features secure-boot \+ enrolled-keys, x86_64 q35\) among 2 descriptors, .*apt install ovmf/);
    expect(new FirmwareNotFoundError('x').exitCode).toBe(1);
  });

  it('refuses when the Microsoft-keys template is missing, or only a qcow2 one exists', () => {
    expect(() => chooseTemplateSource(debian, { ...sizesOf(debian), '/usr/share/OVMF/OVMF_VARS_4M.ms.fd': undefined })).toThrow(
      new RefusedError(`no Microsoft-keys VARS template to copy: its template /usr/share/OVMF/OVMF_VARS_4M.ms.fd (${fixtures}/debian/40-edk2-x86_64-secure-enrolled.json) does not exist; reinstall the OVMF package`),
    );
    const qcow2 = fedora.filter((d) => d.executable.format === 'qcow2');
    expect(() => chooseTemplateSource(qcow2, sizesOf(qcow2))).toThrow(/only a raw VARS image can be edited/);
  });

  it.each([
    ['40-edk2-x86_64-secure-enrolled.json', '39-ovmf-hook-ms-2023.json'],
    ['30-edk2-ovmf-4m-qcow2-x64-sb-enrolled.json', '29-ovmf-hook-ms-2023.json'],
    ['10-x.json', '09-ovmf-hook-ms-2023.json'],
    ['1-x.json', '0-ovmf-hook-ms-2023.json'],
    ['100-x.json', '099-ovmf-hook-ms-2023.json'],
  ])('the name before %s is %s, and it sorts before it', (winner, name) => {
    expect(templateDescriptorName(winner)).toBe(name);
    expect(Buffer.compare(Buffer.from(name), Buffer.from(winner))).toBe(-1);
  });

  it.each(['00-first.json', 'edk2.json'])('refuses to name one before %s', (winner) => {
    expect(() => templateDescriptorName(winner)).toThrow(RefusedError);
  });

  it.each([
    ['/usr/share/OVMF/OVMF_VARS_4M.ms.fd', 'OVMF_VARS_4M.ms.ms-2023.fd'],
    ['/usr/share/edk2/ovmf/OVMF_VARS.secboot.fd', 'OVMF_VARS.secboot.ms-2023.fd'],
    ['/usr/share/qemu/ovmf-x86_64-smm-ms-vars.bin', 'ovmf-x86_64-smm-ms-vars.ms-2023.bin'],
    ['/x/VARS', 'VARS.ms-2023.fd'],
  ])('the copy of %s is named %s', (source, name) => expect(templateFileName(source)).toBe(name));
});

describe('the descriptor', () => {
  const source = debian.find((d) => d.file === '40-edk2-x86_64-secure-enrolled.json')!;
  const rec = record('/var/lib/ovmf-hook/state/firmware/OVMF_VARS_4M.ms.ms-2023.fd');
  const text = renderTemplateDescriptor(source, rec);

  it("is the source's descriptor with the copy as nvram-template: same executable, targets, features and interface (as libvirt and QEMU read it)", () => {
    const d = parseDescriptor(text, { file: '39-ovmf-hook-ms-2023.json', dir: '/etc/qemu/firmware' });
    expect(d).toEqual({ ...source, file: '39-ovmf-hook-ms-2023.json', dir: '/etc/qemu/firmware', description: d.description, nvramTemplate: { filename: rec.template, format: 'raw' } });
    expect(d.description).toBe(
      'UEFI firmware for x86_64, with Secure Boot and SMM, SB enabled, MS certs enrolled; with the Microsoft 2023 KEK/db certificates added by ovmf-hook firmware template --ms-2023 (from /usr/share/OVMF/OVMF_VARS_4M.ms.fd)',
    );
    const doc = JSON.parse(text);
    expect(Object.keys(doc)).toEqual(['description', 'interface-types', 'mapping', 'targets', 'features', 'tags']);
    expect(Object.keys(doc.mapping)).toEqual(['device', 'executable', 'nvram-template']);
    expect(doc.tags).toEqual([
      'ovmf-hook:ms-2023-template',
      `ovmf-hook:source-descriptor=${rec.sourceDescriptor}`,
      'ovmf-hook:source-template=/usr/share/OVMF/OVMF_VARS_4M.ms.fd',
      `ovmf-hook:source-sha256=${'a'.repeat(64)}`,
      `ovmf-hook:template-sha256=${'b'.repeat(64)}`,
    ]);
    expect(text).toMatch(/^\{\n {4}"description"/); // the distro's 4-space layout
    expect(text.endsWith('}\n')).toBe(true);
  });

  it('its record reads back; a distro descriptor, an empty mask and garbage have none', () => {
    expect(readTemplateRecord(text)).toEqual(rec);
    expect(readTemplateRecord(readFileSync(join(fixtures, 'debian', '40-edk2-x86_64-secure-enrolled.json'), 'utf8'))).toBeUndefined();
    expect(readTemplateRecord('')).toBeUndefined();
    expect(readTemplateRecord('{"tags": "ovmf-hook:ms-2023-template"}')).toBeUndefined();
    expect(readTemplateRecord('null')).toBeUndefined();
  });
});

describe("the copy: Debian's Microsoft-keys template + the 2023 certificates", () => {
  const source = readFileSync(MS_VARS_4M);

  it('holds the 2011 and 2023 Microsoft certificates, the same PK, the same size; the input is untouched; the same bytes every time', () => {
    const before = Buffer.from(source);
    const copy = ms2023Template(source, MS_VARS_4M);
    expect(copy.changed).toBe(true);
    expect(copy.items.map((i) => `${i.variable} ${i.status} ${i.name} ${i.owner}`)).toEqual([
      'KEK added Microsoft Corporation KEK 2K CA 2023 77fa9abd-0359-4d32-bd60-28f4e78f784b',
      'db added Windows UEFI CA 2023 77fa9abd-0359-4d32-bd60-28f4e78f784b',
      'db added Microsoft UEFI CA 2023 77fa9abd-0359-4d32-bd60-28f4e78f784b',
      'db added Microsoft Option ROM UEFI CA 2023 77fa9abd-0359-4d32-bd60-28f4e78f784b',
    ]);
    const r = certificateReadiness(copy.data);
    expect([r.state, r.secureBoot, r.microsoft.kek2011, r.microsoft.windowsPca2011, r.microsoft.uefiCa2011]).toEqual(['current', true, true, true, true]);
    expect(certificateReadiness(source).state).toBe('update-available');
    expect(secureBootSummary(parseVarstore(copy.data).variables).subjects.pk).toEqual(secureBootSummary(parseVarstore(source).variables).subjects.pk);
    expect(copy.data.length).toBe(source.length);
    expect(source.equals(before)).toBe(true);
    expect(ms2023Template(source, MS_VARS_4M).data.equals(copy.data)).toBe(true);
  });

  it('a template that holds them already: nothing to make', () => {
    const r = ms2023Template(enrolledWith2023(source), 'x.fd');
    expect([r.changed, r.items.every((i) => i.status === 'present')]).toEqual([false, true]);
  });

  it('a template without Secure Boot keys (the empty one) is refused in one line naming it', () => {
    expect(() => ms2023Template(readFileSync('/usr/share/OVMF/OVMF_VARS_4M.fd'), '/usr/share/OVMF/OVMF_VARS_4M.fd')).toThrow(
      /^\/usr\/share\/OVMF\/OVMF_VARS_4M\.fd: the variable store has no Secure Boot keys \(no PK: setup mode\).*it is no Microsoft-keys template/,
    );
  });
});
