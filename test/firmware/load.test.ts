import { existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { checkFlashPair, matchFirmware } from '../../src/core/firmware';
import { loadCatalog, statSizes } from '../../src/io';

const fixtures = join(__dirname, 'fixtures');

const tmp = mkdtempSync(join(tmpdir(), 'ovmfhook-fw-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** A dir masking all three Debian descriptors. */
function tmpMask(): string {
  const dir = join(tmp, 'mask-all');
  mkdirSync(dir, { recursive: true });
  for (const n of ['40-edk2-x86_64-secure-enrolled.json', '50-edk2-x86_64-secure.json', '60-edk2-x86_64.json'])
    writeFileSync(join(dir, n), '');
  return dir;
}

describe('loadCatalog', () => {
  it('reads, overrides, masks and orders descriptor dirs', () => {
    const cat = loadCatalog({ roots: [join(fixtures, 'debian'), join(fixtures, 'etc-override')] });
    expect(cat.source).toBe('descriptors');
    expect(cat.warnings).toEqual([]);
    expect(cat.descriptors.map((d) => [d.file, d.dir])).toEqual([
      ['50-edk2-x86_64-secure.json', join(fixtures, 'debian')],
      ['55-local-combined.json', join(fixtures, 'etc-override')],
      ['60-edk2-x86_64.json', join(fixtures, 'etc-override')],
    ]);
  });

  it('skips invalid files with a warning naming each, ignores dot files, keeps the valid ones', () => {
    const cat = loadCatalog({ roots: [join(fixtures, 'invalid')] });
    expect(cat.descriptors.map((d) => d.file)).toEqual(['60-edk2-x86_64.json']);
    expect(cat.warnings).toHaveLength(2);
    expect(cat.warnings[0]).toMatch(/10-broken\.json: invalid JSON/);
    expect(cat.warnings[1]).toMatch(/20-no-mapping\.json: mapping must be an object/);
  });

  it('falls back to built-in paths that exist when no root has a descriptor', () => {
    const present = new Set([
      '/usr/share/edk2/x64/OVMF_CODE.secboot.4m.fd',
      '/usr/share/edk2/x64/OVMF_CODE.4m.fd',
      '/usr/share/edk2/x64/OVMF_VARS.4m.fd',
    ]);
    const cat = loadCatalog({ roots: [join(fixtures, 'no-such-dir')], exists: (p) => present.has(p) });
    expect(cat.source).toBe('builtin');
    expect(cat.descriptors.map((d) => d.file)).toEqual(['builtin-arch-4m-sb', 'builtin-arch-4m-nosb']);
    expect(cat.warnings[0]).toMatch(/no firmware descriptors in .*no-such-dir; using built-in/);
    expect(matchFirmware(cat.descriptors, { arch: 'x86_64', machine: 'q35' }).descriptor.file).toBe('builtin-arch-4m-sb');
  });

  it('a dir whose only file is a mask counts as having no descriptors', () => {
    const cat = loadCatalog({ roots: [join(fixtures, 'etc-override')], exists: () => false });
    expect(cat.source).toBe('descriptors'); // 55 and 60 remain
    const masked = loadCatalog({ roots: [join(fixtures, 'debian'), tmpMask()], exists: () => false });
    expect(masked.source).toBe('builtin');
    expect(masked.descriptors).toEqual([]);
  });
});

describe('statSizes', () => {
  it('returns sizes (following symlinks) and undefined for missing files and dirs', () => {
    writeFileSync(join(tmp, 'code.fd'), Buffer.alloc(8192));
    symlinkSync(join(tmp, 'code.fd'), join(tmp, 'link.fd'));
    expect(statSizes([join(tmp, 'code.fd'), join(tmp, 'link.fd'), join(tmp, 'missing.fd'), tmp, undefined])).toEqual({
      [join(tmp, 'code.fd')]: 8192,
      [join(tmp, 'link.fd')]: 8192,
      [join(tmp, 'missing.fd')]: undefined,
      [tmp]: undefined,
    });
  });
});

const debianHost = existsSync('/usr/share/qemu/firmware/40-edk2-x86_64-secure-enrolled.json');
if (!debianHost) console.warn('SKIP host catalog test: /usr/share/qemu/firmware has no Debian OVMF descriptors on this machine');

describe('host catalog (/usr/share/qemu/firmware)', () => {
  it.skipIf(!debianHost)('Debian 12: q35 picks the 4M SB build with MS keys, and its CODE+VARS pair', () => {
    const cat = loadCatalog();
    expect(cat.source).toBe('descriptors');
    const { descriptor } = matchFirmware(cat.descriptors, { arch: 'x86_64', machine: 'q35' });
    expect(descriptor.file).toBe('40-edk2-x86_64-secure-enrolled.json');
    expect(descriptor.executable.filename).toBe('/usr/share/OVMF/OVMF_CODE_4M.ms.fd');
    const tpl = descriptor.nvramTemplate!.filename;
    const sizes = statSizes([descriptor.executable.filename, tpl]);
    expect(checkFlashPair(sizes[descriptor.executable.filename]!, sizes[tpl]!)).toBe('4M');
    expect(matchFirmware(cat.descriptors, { arch: 'x86_64', machine: 'pc' }).descriptor.file).toBe('60-edk2-x86_64.json');
  });
});
