/**
 * `migrate begin` / `restore begin` filter: map the loader, NVRAM template and NVRAM paths of an
 * incoming domain to this host's copies of the same firmware build, and change nothing else
 * (libvirt re-checks ABI stability; only paths may differ). Pure over (domain, catalog, sizes).
 */
import { posix } from 'node:path';
import type { Domain } from '../domain';
import { equivalentFirmware, type SizeMap } from './catalog';
import type { FirmwareDescriptor } from './descriptor';
import { FirmwareNotFoundError } from '../errors';

export interface FilterInput {
  descriptors: readonly FirmwareDescriptor[];
  /** local sizes of every path involved (undefined = missing here) */
  sizes: SizeMap;
  /** does this local directory exist */
  dirExists: (dir: string) => boolean;
  nvramDir: string;
}

export interface FilterResult {
  /** the filtered XML, or undefined when nothing needed mapping (print nothing) */
  xml?: string;
  mapped: { what: string; from: string; to: string }[];
}

export function mapFirmwarePaths(domain: Domain, input: FilterInput): FilterResult {
  const mapped: FilterResult['mapped'] = [];
  const loaderEl = domain.loaderElement;
  const nvramEl = domain.nvramElement;
  const loader = domain.loader?.path;
  const template = domain.nvram?.template;
  const here = (p: string | undefined) => p !== undefined && input.sizes[p] !== undefined;

  let match: FirmwareDescriptor | undefined;
  if (loader && !here(loader)) {
    // the same build: a local descriptor whose executable (and template, when there is one) is
    // the same file (equivalentFirmware)
    const base = posix.basename(loader);
    match = equivalentFirmware(input, { loader, template });
    if (!match) {
      throw new FirmwareNotFoundError(`${domain.name}: firmware ${loader} does not exist on this host and no local firmware descriptor offers the same build (${base}); install the same OVMF build or add a descriptor for it`);
    }
    loaderEl!.setText(match.executable.filename);
    mapped.push({ what: 'loader', from: loader, to: match.executable.filename });
  }
  if (template && !here(template)) {
    const base = posix.basename(template);
    const local = (match ?? equivalentFirmware(input, { template }))?.nvramTemplate?.filename;
    if (!local) throw new FirmwareNotFoundError(`${domain.name}: NVRAM template ${template} does not exist on this host and no local descriptor offers ${base}`);
    nvramEl!.setAttr('template', local);
    mapped.push({ what: 'nvram template', from: template, to: local });
  }
  const nv = domain.nvram;
  if (nv?.type === 'file' && nv.path && nvramEl && !nvramEl.find('source') && !input.dirExists(posix.dirname(nv.path))) {
    const to = posix.join(input.nvramDir, posix.basename(nv.path));
    nvramEl.setText(to);
    mapped.push({ what: 'nvram', from: nv.path, to });
  }
  return mapped.length ? { xml: domain.toXml(), mapped } : { mapped };
}
