/**
 * Thin I/O shell of the firmware catalog: list the descriptor directories, read and parse the
 * winning files, fall back to the built-in table when the host has none. Synchronous on purpose:
 * a handful of small local files, and the hook calls it.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { posix } from 'node:path';
import { DEFAULT_CONFIG } from '../core/config';
import { errorMessage, isOvmfHookError } from '../core/errors';
import { orderDescriptorFiles, type DirListing, type SizeMap } from '../core/firmware/catalog';
import { descriptorWarnings, parseDescriptor, type FirmwareDescriptor } from '../core/firmware/descriptor';
import { KNOWN_FIRMWARE } from '../core/firmware/known-paths';

export interface LoadCatalogOptions {
  /** Descriptor directories, least specific first; default DEFAULT_CONFIG.firmwareDirs (where libvirt's system daemon reads them). */
  readonly roots?: readonly string[];
  /** Existence test for built-in paths; default fs.existsSync. */
  readonly exists?: (path: string) => boolean;
}

export interface FirmwareCatalog {
  /** In match order. */
  readonly descriptors: readonly FirmwareDescriptor[];
  /** `builtin` when no descriptor file exists in any root. */
  readonly source: 'descriptors' | 'builtin';
  /** Unreadable or invalid files (skipped) and libvirt's sanity warnings, one line each. */
  readonly warnings: readonly string[];
}

function listDir(dir: string, warnings: string[]): DirListing {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') warnings.push(`cannot list ${dir}: ${errorMessage(e)}`);
    return { dir, files: [] };
  }
  const files: { name: string; size: number }[] = [];
  for (const name of names) {
    if (name.startsWith('.')) continue;
    try {
      const st = statSync(posix.join(dir, name)); // follows symlinks, like libvirt's stat()
      if (st.isFile()) files.push({ name, size: st.size });
    } catch (e) {
      warnings.push(`cannot access ${posix.join(dir, name)}: ${errorMessage(e)}`);
    }
  }
  return { dir, files };
}

export function loadCatalog(options: LoadCatalogOptions = {}): FirmwareCatalog {
  const roots = options.roots ?? DEFAULT_CONFIG.firmwareDirs;
  const exists = options.exists ?? existsSync;
  const warnings: string[] = [];
  const ordered = orderDescriptorFiles(roots.map((dir) => listDir(dir, warnings)));

  if (ordered.length === 0) {
    const descriptors = KNOWN_FIRMWARE.filter(
      (d) => exists(d.executable.filename) && (!d.nvramTemplate || exists(d.nvramTemplate.filename)),
    );
    warnings.push(`no firmware descriptors in ${roots.join(', ')}; using built-in OVMF paths of known distributions`);
    return { descriptors, source: 'builtin', warnings };
  }

  const descriptors: FirmwareDescriptor[] = [];
  for (const { dir, name } of ordered) {
    try {
      const d = parseDescriptor(readFileSync(posix.join(dir, name), 'utf8'), { file: name, dir });
      descriptors.push(d);
      warnings.push(...descriptorWarnings(d));
    } catch (e) {
      warnings.push(isOvmfHookError(e) ? e.message : `cannot read ${posix.join(dir, name)}: ${errorMessage(e)}`);
    }
  }
  return { descriptors, source: 'descriptors', warnings };
}

/** Sizes of the given files (symlinks followed); a missing or unreadable file maps to undefined. */
export function statSizes(paths: Iterable<string | undefined>): SizeMap {
  const sizes: Record<string, number | undefined> = {};
  for (const p of paths) {
    if (p === undefined || p in sizes) continue;
    try {
      const st = statSync(p, { throwIfNoEntry: false });
      sizes[p] = st?.isFile() ? st.size : undefined;
    } catch {
      sizes[p] = undefined;
    }
  }
  return sizes;
}
