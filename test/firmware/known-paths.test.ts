import { describe, expect, it } from 'vitest';
import { descriptorWarnings, KNOWN_FIRMWARE, knownFirmwareFor } from '../../src/core/firmware';

describe('built-in known paths', () => {
  it('every entry passes libvirt sanity checks and has a unique name', () => {
    expect(KNOWN_FIRMWARE.flatMap(descriptorWarnings)).toEqual([]);
    expect(new Set(KNOWN_FIRMWARE.map((d) => d.file)).size).toBe(KNOWN_FIRMWARE.length);
  });

  it.each([
    ['/usr/share/OVMF/OVMF_VARS_4M.fd', ['builtin-debian-4m-sb', 'builtin-debian-4m-nosb']],
    ['/usr/share/edk2/x64/OVMF_CODE.secboot.4m.fd', ['builtin-arch-4m-sb']],
    ['/usr/share/OVMF/OVMF_CODE.fd', []],
  ])('knownFirmwareFor(%s)', (path, want) => {
    expect(knownFirmwareFor(path).map((d) => d.file)).toEqual(want);
  });
});
