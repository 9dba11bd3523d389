/**
 * The firmware catalog, pure: descriptor file ordering (QEMU interop rules), libvirt's
 * firmware matcher (qemuFirmwareMatchDomain, rulebook §2.4), CODE/VARS size pairing (§2.1) and
 * host-to-host firmware equivalence for migration and restore.
 */
import { posix } from 'node:path';
import { FirmwareNotFoundError, NvramSizeMismatch } from '../errors';
import { byteOrder } from '../text';
import type { FirmwareDescriptor } from './descriptor';

// ─── Ordering ───────────────────────────────────────────────────────────────────────────────

export interface DirListing {
  readonly dir: string;
  /** Regular files of the directory (symlinks followed) with their sizes. */
  readonly files: readonly { readonly name: string; readonly size: number }[];
}

export interface DescriptorFile {
  readonly dir: string;
  readonly name: string;
  readonly size: number;
}

/**
 * Listings in priority order, least specific first (`/usr/share/qemu/firmware`, then
 * `/etc/qemu/firmware`). A name in a later dir replaces the same name from an earlier one; a
 * zero-length winner masks the name; dot files are ignored; the result is sorted by file name
 * in byte order (strcmp), which is the order libvirt tries descriptors in.
 */
export function orderDescriptorFiles(listings: readonly DirListing[]): DescriptorFile[] {
  const winners = new Map<string, DescriptorFile>();
  for (const { dir, files } of listings)
    for (const { name, size } of files) if (!name.startsWith('.')) winners.set(name, { dir, name, size });
  return [...winners.values()]
    .filter((f) => f.size > 0)
    .sort((a, b) => byteOrder(a.name, b.name));
}

// ─── Matching ───────────────────────────────────────────────────────────────────────────────

export interface FirmwareRequest {
  /** libvirt arch name, e.g. `x86_64`. */
  readonly arch: string;
  /** Machine type as in the domain XML: `q35`, `pc`, `pc-q35-7.2`, `pc-i440fx-7.2` … */
  readonly machine: string;
  /** Firmware interface; default `uefi`. */
  readonly interface?: string;
  /** `<feature name='secure-boot'>`: undefined = no filter. */
  readonly secureBoot?: boolean;
  /** `<feature name='enrolled-keys'>`: undefined = no filter. */
  readonly enrolledKeys?: boolean;
  /** `<features><smm state=…>`; `off` rejects SMM-requiring builds. */
  readonly smm?: 'on' | 'off';
  /** `<loader secure=…>`: true needs an SMM build, false rejects one. */
  readonly loaderSecure?: boolean;
  /** `<loader>` path: must equal the descriptor's executable. */
  readonly loaderPath?: string;
  /** `<nvram template=…>`: must equal the descriptor's nvram-template. */
  readonly templatePath?: string;
  /** `<pm><suspend-to-mem enabled='yes'/>` ⇒ needs `acpi-s3`; likewise S4. */
  readonly s3?: boolean;
  readonly s4?: boolean;
  /** `<loader stateless='yes'>` ⇒ needs a stateless flash mapping (else split). */
  readonly stateless?: boolean;
  /**
   * Image formats accepted for executable and template; default `['raw']`, because libvirt 9.0
   * only handles raw (a matching qcow2 descriptor is a hard error there). Pass
   * `['raw', 'qcow2']` for libvirt ≥ 9.2.
   */
  readonly formats?: readonly string[];
}

export interface FirmwareMatch {
  readonly descriptor: FirmwareDescriptor;
  /** Descriptors tried before the match, with why each was skipped. */
  readonly skipped: readonly { readonly file: string; readonly reasons: readonly string[] }[];
}

/**
 * Glob match like GLib's g_pattern_match_simple: `*` = any run, `?` = one character.
 * With `prefixOnly`, true when some string starting with `text` would match.
 */
export function globMatch(glob: string, text: string, prefixOnly = false): boolean {
  const closure = (states: Set<number>) => {
    for (const i of states) if (glob[i] === '*') states.add(i + 1); // Set iteration sees additions
    return states;
  };
  let states = closure(new Set([0]));
  for (const ch of text) {
    const next = new Set<number>();
    for (const i of states) {
      if (glob[i] === '*') next.add(i);
      else if (i < glob.length && (glob[i] === '?' || glob[i] === ch)) next.add(i + 1);
    }
    states = closure(next);
    if (states.size === 0) return false;
  }
  return prefixOnly || states.has(glob.length);
}

/**
 * Bare machine aliases and the versioned family they stand for. Descriptors list globs of
 * concrete types (`pc-q35-*`), which libvirt matches against the canonical machine it resolved
 * at define/start; we don't know the version here, so an alias matches any glob that accepts
 * some member of its family.
 */
const MACHINE_ALIASES: Readonly<Record<string, string>> = {
  q35: 'pc-q35-',
  pc: 'pc-i440fx-',
  'ubuntu-q35': 'pc-q35-',
  ubuntu: 'pc-i440fx-',
};

const machineMatches = (glob: string, machine: string): boolean =>
  machine in MACHINE_ALIASES ? globMatch(glob, MACHINE_ALIASES[machine], true) : globMatch(glob, machine);

const yesNo = (b: boolean) => (b ? 'yes' : 'no');

/** Why `d` does not fit `req` (libvirt's checks, in its order); empty when it matches. */
export function mismatchReasons(d: FirmwareDescriptor, req: FirmwareRequest): string[] {
  const want = req.interface ?? 'uefi';
  const has = (f: string) => d.features.includes(f);
  const formats = req.formats ?? ['raw'];
  const reasons: string[] = [];
  const check = (failed: boolean, reason: string) => {
    if (failed) reasons.push(reason);
  };

  check(!d.interfaceTypes.includes(want), `interface ${want} not offered (${d.interfaceTypes.join(',')})`);
  check(d.device !== 'flash', `mapping device ${d.device} is not pflash`);
  check(
    req.loaderPath !== undefined && req.loaderPath !== d.executable.filename,
    `executable ${d.executable.filename} is not the requested loader`,
  );
  check(
    req.templatePath !== undefined && req.templatePath !== d.nvramTemplate?.filename,
    `nvram template ${d.nvramTemplate?.filename ?? '(none)'} is not the requested template`,
  );
  check(
    !d.targets.some((t) => t.architecture === req.arch && t.machines.some((g) => machineMatches(g, req.machine))),
    `targets ${d.targets.map((t) => `${t.architecture}:${t.machines.join(',')}`).join(' ')} exclude ${req.arch} machine ${req.machine}`,
  );
  check(req.s3 === true && !has('acpi-s3'), 'no acpi-s3 (S3 requested)');
  check(req.s4 === true && !has('acpi-s4'), 'no acpi-s4 (S4 requested)');
  for (const [feature, wanted] of [
    ['secure-boot', req.secureBoot],
    ['enrolled-keys', req.enrolledKeys],
  ] as const)
    check(wanted !== undefined && wanted !== has(feature), `${feature}=${yesNo(has(feature))}, requested ${yesNo(wanted!)}`);
  check(has('requires-smm') && req.smm === 'off', 'requires SMM but smm is off');
  check(has('requires-smm') && req.loaderSecure === false, "requires SMM but loader secure='no'");
  check(!has('requires-smm') && req.loaderSecure === true, "loader secure='yes' needs an SMM build");
  const mode = req.stateless ? 'stateless' : 'split';
  check(d.device === 'flash' && d.mode !== mode, `flash mode ${d.mode} is not ${mode}`);
  for (const [what, f] of [
    ['executable', d.executable],
    ['nvram template', d.nvramTemplate],
  ] as const)
    check(f !== undefined && !formats.includes(f.format), `${what} format ${f?.format} not accepted (${formats.join(',')})`);
  return reasons;
}

/** The request in the user's terms, for messages. */
export function describeRequest(req: FirmwareRequest): string {
  const given = (v: unknown, text: string) => (v === undefined ? [] : [text]);
  const flag = (v: boolean | undefined, text: string) => (v ? [text] : []);
  return [
    `${req.interface ?? 'uefi'} firmware for ${req.arch} machine '${req.machine}'`,
    ...given(req.secureBoot, `secure-boot=${yesNo(req.secureBoot!)}`),
    ...given(req.enrolledKeys, `enrolled-keys=${yesNo(req.enrolledKeys!)}`),
    ...given(req.smm, `smm=${req.smm}`),
    ...given(req.loaderSecure, `loader secure=${yesNo(req.loaderSecure!)}`),
    ...given(req.loaderPath, `loader ${req.loaderPath}`),
    ...given(req.templatePath, `template ${req.templatePath}`),
    ...flag(req.s3, 'S3'),
    ...flag(req.s4, 'S4'),
    ...flag(req.stateless, 'stateless'),
    `format ${(req.formats ?? ['raw']).join('|')}`,
  ].join(', ');
}

/** The first descriptor (in catalog order) that fits, like libvirt; FirmwareNotFoundError if none. */
export function matchFirmware(descriptors: readonly FirmwareDescriptor[], req: FirmwareRequest): FirmwareMatch {
  const skipped: { file: string; reasons: string[] }[] = [];
  for (const descriptor of descriptors) {
    const reasons = mismatchReasons(descriptor, req);
    if (reasons.length === 0) return { descriptor, skipped };
    skipped.push({ file: descriptor.file, reasons });
  }
  throw new FirmwareNotFoundError(
    descriptors.length === 0
      ? `no ${describeRequest(req)}: this host has no firmware descriptors; install OVMF (Debian: apt install ovmf)`
      : `no ${describeRequest(req)} among ${descriptors.length} descriptors; run 'ovmf-hook firmware list' to see them`,
  );
}

// ─── Flash sizes ────────────────────────────────────────────────────────────────────────────

export type SizeClass = '2M' | '4M' | 'unknown';

/** edk2 OVMF flash layouts: CODE + VARS fill the flash device exactly (rulebook §2.1). */
const FLASH_BUILDS = [
  { cls: '2M', code: 1_966_080, vars: 131_072, total: 2_097_152 },
  { cls: '4M', code: 3_653_632, vars: 540_672, total: 4_194_304 },
] as const;

const MAX_FLASH = 8 * 1024 * 1024; // QEMU: combined x86 system firmware ≤ 8 MiB

/**
 * Build class of one raw image by its size: a CODE, VARS or combined (`OVMF.fd`) image of the
 * 2 MiB or 4 MiB OVMF layout (Debian, Ubuntu, Fedora/RHEL, Arch, openSUSE all use these).
 * For qcow2 images pass the virtual size, not the file size.
 */
export function sizeClass(bytes: number | undefined): SizeClass {
  return FLASH_BUILDS.find((b) => bytes === b.code || bytes === b.vars || bytes === b.total)?.cls ?? 'unknown';
}

/**
 * Check that a CODE image and a VARS image (template or a VM's NVRAM) belong to the same build:
 * when either size is a known CODE/VARS size, the two must fill that layout exactly; two unknown
 * sizes must at least be what QEMU accepts (non-zero 4 KiB multiples, ≤ 8 MiB together).
 * Returns the pair's class; throws NvramSizeMismatch otherwise.
 */
export function checkFlashPair(
  codeSize: number,
  varsSize: number,
  names: { readonly loader?: string; readonly template?: string } = {},
): SizeClass {
  const loader = names.loader ?? 'CODE';
  const template = names.template ?? 'VARS';
  // The CODE image decides the build when its size is known, else the VARS image does.
  const build = FLASH_BUILDS.find((b) => b.code === codeSize) ?? FLASH_BUILDS.find((b) => b.vars === varsSize);
  const pair = `${loader} (${codeSize} bytes, ${sizeClass(codeSize)}) and ${template} (${varsSize} bytes, ${sizeClass(varsSize)})`;
  if (build) {
    if (codeSize + varsSize === build.total) return build.cls;
    throw new NvramSizeMismatch(
      loader,
      template,
      `${pair} are not one OVMF build: a ${build.cls} build is ${build.code}-byte CODE + ${build.vars}-byte VARS; use the VARS template shipped with this CODE (virsh start --reset-nvram recreates the NVRAM)`,
    );
  }
  const qemuAccepts = [codeSize, varsSize].every((s) => s > 0 && s % 4096 === 0) && codeSize + varsSize <= MAX_FLASH;
  if (qemuAccepts) return 'unknown';
  throw new NvramSizeMismatch(
    loader,
    template,
    `${pair} cannot form a flash device: each must be a non-zero multiple of 4 KiB and together at most 8 MiB`,
  );
}

// ─── Equivalence across hosts ───────────────────────────────────────────────────────────────

/** Local file sizes by path; undefined = the file does not exist here. */
export type SizeMap = Readonly<Record<string, number | undefined>>;

/** Firmware paths as another host's domain XML names them. */
export interface ForeignFirmware {
  readonly loader?: string;
  readonly template?: string;
}

/**
 * The one rule for "the same firmware file on another host": a file present on this host under
 * the same file name (distributions install one OVMF build under one name, wherever its
 * directory is). An identical path is the special case of the same name.
 */
export const sameFirmwareFile = (local: string | undefined, foreign: string, sizes: SizeMap): boolean =>
  local !== undefined && sizes[local] !== undefined && posix.basename(local) === posix.basename(foreign);

/**
 * The first descriptor (catalog order) on this host that offers the same build as another host's
 * firmware: its executable is the same file as `files.loader` and its template the same file as
 * `files.template` (by `sameFirmwareFile`); a path not given is not compared. Used by the
 * `migrate`/`restore` filter to map firmware paths between hosts.
 */
export function equivalentFirmware(
  catalog: { readonly descriptors: readonly FirmwareDescriptor[]; readonly sizes: SizeMap },
  files: ForeignFirmware,
): FirmwareDescriptor | undefined {
  const same = (local: string | undefined, foreign: string | undefined) => foreign === undefined || sameFirmwareFile(local, foreign, catalog.sizes);
  return catalog.descriptors.find((d) => same(d.executable.filename, files.loader) && same(d.nvramTemplate?.filename, files.template));
}
