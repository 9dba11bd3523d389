import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FirmwareDescriptorError } from '../../src/core/errors';
import { descriptorWarnings, parseDescriptor } from '../../src/core/firmware';

const fixtures = join(__dirname, 'fixtures');
const src = { file: '50-test.json', dir: '/etc/qemu/firmware' };

const minimal = (mapping: object, extra: object = {}) =>
  JSON.stringify({
    'interface-types': ['uefi'],
    mapping,
    targets: [{ architecture: 'x86_64', machines: ['pc-q35-*'] }],
    ...extra,
  });

describe('parseDescriptor', () => {
  it('parses a Debian-style descriptor into typed fields with its file name and dir', () => {
    const dir = join(fixtures, 'debian');
    const file = '50-edk2-x86_64-secure.json';
    const d = parseDescriptor(readFileSync(join(dir, file), 'utf8'), { file, dir });
    expect(d).toEqual({
      file,
      dir,
      description: 'UEFI firmware for x86_64, with Secure Boot and SMM, empty varstore',
      interfaceTypes: ['uefi'],
      device: 'flash',
      mode: 'split',
      executable: { filename: '/usr/share/OVMF/OVMF_CODE_4M.secboot.fd', format: 'raw' },
      nvramTemplate: { filename: '/usr/share/OVMF/OVMF_VARS_4M.fd', format: 'raw' },
      targets: [{ architecture: 'x86_64', machines: ['pc-q35-*'] }],
      features: ['acpi-s3', 'amd-sev', 'requires-smm', 'secure-boot', 'verbose-dynamic'],
    });
  });

  it('defaults mode to split, format to raw, features to none; combined has no template', () => {
    const split = parseDescriptor(
      minimal({ device: 'flash', executable: { filename: '/c' }, 'nvram-template': { filename: '/v' } }),
      src,
    );
    expect([split.mode, split.executable.format, split.nvramTemplate?.format, split.features]).toEqual([
      'split',
      'raw',
      'raw',
      [],
    ]);
    const combined = parseDescriptor(minimal({ device: 'flash', mode: 'combined', executable: { filename: '/c' } }), src);
    expect([combined.mode, combined.nvramTemplate]).toEqual(['combined', undefined]);
    const memory = parseDescriptor(minimal({ device: 'memory', filename: '/rom.bin' }), src);
    expect([memory.device, memory.mode, memory.executable.filename]).toEqual(['memory', undefined, '/rom.bin']);
  });

  it.each([
    ['invalid JSON', '{ "mapping": ', /invalid JSON/],
    ['not an object', '[1, 2]', /the document must be an object/],
    ['no mapping', JSON.stringify({ 'interface-types': ['uefi'], targets: [] }), /mapping must be an object/],
    ['unknown device', minimal({ device: 'floppy' }), /mapping.device 'floppy'/],
    ['unknown mode', minimal({ device: 'flash', mode: 'odd', executable: { filename: '/c' } }), /mapping.mode 'odd'/],
    ['split without template', minimal({ device: 'flash', executable: { filename: '/c' } }), /mapping.nvram-template must be an object/],
    ['executable without filename', minimal({ device: 'flash', executable: {}, 'nvram-template': { filename: '/v' } }), /mapping.executable.filename/],
    ['machines not a list', minimal({ device: 'flash', mode: 'stateless', executable: { filename: '/c' } }, { targets: [{ architecture: 'x86_64', machines: 'pc-q35-*' }] }), /targets\[0\].machines must be a list/],
    ['features with a number', minimal({ device: 'flash', mode: 'stateless', executable: { filename: '/c' } }, { features: [1] }), /features\[0\]/],
  ])('rejects %s with a one-line FirmwareDescriptorError naming the file', (_name, text, pattern) => {
    let error: unknown;
    try {
      parseDescriptor(text, src);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(FirmwareDescriptorError);
    const e = error as FirmwareDescriptorError;
    expect(e.exitCode).toBe(2);
    expect(e.file).toBe('/etc/qemu/firmware/50-test.json');
    expect(e.message).toMatch(pattern);
    expect(e.message).toContain('firmware descriptor /etc/qemu/firmware/50-test.json:');
    expect(e.message).not.toContain('\n');
  });
});

describe('descriptorWarnings', () => {
  const withFeatures = (features: string[]) =>
    parseDescriptor(minimal({ device: 'flash', mode: 'stateless', executable: { filename: '/c' } }, { features }), src);

  it.each([
    [['secure-boot', 'requires-smm', 'enrolled-keys'], 0],
    [[], 0],
    [['secure-boot'], 1],
    [['requires-smm'], 1],
    [['enrolled-keys'], 1],
  ])('features %j → %i warning(s)', (features, count) => {
    expect(descriptorWarnings(withFeatures(features))).toHaveLength(count);
  });
});
