/**
 * Bench-only entry bundled by scripts/bench.mjs: the pure rewrite core for in-process timing, and
 * a catalog-backed firmware picker (what the admin CLI passes as `pickFirmware`).
 */
import { loadCatalog } from '../../src/io';
import { matchFirmware, type FirmwareDescriptor, type FirmwareRequest } from '../../src/core/firmware';
import type { FirmwarePick } from '../../src/core/rewrite';

export { rewriteXml } from '../../src/core/rewrite';
export { parseDomain } from '../../src/core/domain';

/** `pickFirmware` over the host's firmware descriptors (built-in table when there are none). */
export function catalogPicker(roots?: readonly string[]): (req: FirmwareRequest) => FirmwarePick {
  const { descriptors } = loadCatalog(roots ? { roots } : {});
  return (req) => {
    const d: FirmwareDescriptor = matchFirmware(descriptors, { ...req, interface: 'uefi' }).descriptor;
    const has = (f: string) => d.features.includes(f);
    return {
      executable: d.executable.filename,
      template: d.nvramTemplate?.filename ?? '',
      requiresSmm: has('requires-smm'),
      secureBoot: has('secure-boot'),
      enrolledKeys: has('enrolled-keys'),
      descriptor: d.file,
    };
  };
}
