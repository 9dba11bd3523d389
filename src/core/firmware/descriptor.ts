/**
 * One QEMU firmware descriptor (QEMU docs/interop/firmware.json) → a typed FirmwareDescriptor.
 * Pure: the caller reads the file; we only parse text.
 */
import { posix } from 'node:path';
import { FirmwareDescriptorError } from '../errors';

export type MappingDevice = 'flash' | 'kernel' | 'memory';
export type FlashMode = 'split' | 'combined' | 'stateless';

/** An image file and its format (`raw` when the descriptor omits it, like libvirt). */
export interface FlashFile {
  readonly filename: string;
  readonly format: string;
}

export interface FirmwareTarget {
  readonly architecture: string;
  /** Glob patterns of concrete machine types, e.g. `pc-q35-*`. */
  readonly machines: readonly string[];
}

export interface FirmwareDescriptor {
  /** File name, e.g. `50-edk2-x86_64-secure.json` — also the sort key. */
  readonly file: string;
  /** Directory the file came from; `(builtin)` for the built-in table. */
  readonly dir: string;
  readonly description: string;
  readonly interfaceTypes: readonly string[];
  readonly device: MappingDevice;
  /** Flash mode (`split` when absent); undefined for kernel/memory mappings. */
  readonly mode?: FlashMode;
  /** The flash executable (CODE), or the kernel/memory image. */
  readonly executable: FlashFile;
  /** NVRAM (VARS) template; split flash mode only. */
  readonly nvramTemplate?: FlashFile;
  readonly targets: readonly FirmwareTarget[];
  /** Features as written (unknown ones are kept; matching ignores them like libvirt). */
  readonly features: readonly string[];
}

const DEVICES: readonly string[] = ['flash', 'kernel', 'memory'];
const MODES: readonly string[] = ['split', 'combined', 'stateless'];

type Json = unknown;
const isObject = (v: Json): v is Record<string, Json> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/** Parse the text of one descriptor file. Throws FirmwareDescriptorError naming the file. */
export function parseDescriptor(text: string, source: { file: string; dir: string }): FirmwareDescriptor {
  const path = posix.join(source.dir, source.file);
  const fail = (problem: string): never => {
    throw new FirmwareDescriptorError(
      path,
      `firmware descriptor ${path}: ${problem}; fix it or mask it with an empty file of the same name in /etc/qemu/firmware`,
    );
  };
  const string = (v: Json, what: string): string =>
    typeof v === 'string' && v !== '' ? v : fail(`${what} must be a non-empty string`);
  const strings = (v: Json, what: string): string[] =>
    Array.isArray(v) ? v.map((s, i) => string(s, `${what}[${i}]`)) : fail(`${what} must be a list of strings`);
  const object = (v: Json, what: string): Record<string, Json> =>
    isObject(v) ? v : fail(`${what} must be an object`);
  const flashFile = (v: Json, what: string): FlashFile => {
    const o = object(v, what);
    return {
      filename: string(o.filename, `${what}.filename`),
      format: o.format === undefined ? 'raw' : string(o.format, `${what}.format`),
    };
  };

  let doc: Json;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    return fail(`invalid JSON (${(e as Error).message})`);
  }
  const root = object(doc, 'the document');
  const mapping = object(root.mapping, 'mapping');
  const device = string(mapping.device, 'mapping.device');
  if (!DEVICES.includes(device)) fail(`mapping.device '${device}' is not one of ${DEVICES.join('|')}`);

  let mode: FlashMode | undefined;
  let executable: FlashFile;
  let nvramTemplate: FlashFile | undefined;
  if (device === 'flash') {
    mode = (mapping.mode === undefined ? 'split' : string(mapping.mode, 'mapping.mode')) as FlashMode;
    if (!MODES.includes(mode)) fail(`mapping.mode '${mode}' is not one of ${MODES.join('|')}`);
    executable = flashFile(mapping.executable, 'mapping.executable');
    if (mode === 'split') nvramTemplate = flashFile(mapping['nvram-template'], 'mapping.nvram-template');
  } else {
    executable = { filename: string(mapping.filename, 'mapping.filename'), format: 'raw' };
  }

  if (!Array.isArray(root.targets)) fail('targets must be a list');
  const targets = (root.targets as Json[]).map((t, i) => {
    const o = object(t, `targets[${i}]`);
    return {
      architecture: string(o.architecture, `targets[${i}].architecture`),
      machines: strings(o.machines, `targets[${i}].machines`),
    };
  });

  return {
    file: source.file,
    dir: source.dir,
    description: typeof root.description === 'string' ? root.description : '',
    interfaceTypes: strings(root['interface-types'], 'interface-types'),
    device: device as MappingDevice,
    mode,
    executable,
    nvramTemplate,
    targets,
    features: root.features === undefined ? [] : strings(root.features, 'features'),
  };
}

/** libvirt's sanity warnings (qemuFirmwareSanityCheck): SB and SMM must come together. */
export function descriptorWarnings(d: FirmwareDescriptor): string[] {
  const has = (f: string) => d.features.includes(f);
  const where = `firmware descriptor ${posix.join(d.dir, d.file)}`;
  const warnings: string[] = [];
  if (has('secure-boot') !== has('requires-smm'))
    warnings.push(`${where}: secure-boot and requires-smm should come together (libvirt warns about this build)`);
  if (has('enrolled-keys') && !has('secure-boot'))
    warnings.push(`${where}: enrolled-keys without secure-boot`);
  return warnings;
}
