/**
 * `ovmf-hook firmware template --ms-2023`, pure part: the host-local Secure Boot VARS template with
 * Microsoft's 2023 certificates and the QEMU firmware descriptor that makes libvirt, `convert` and
 * the hook pick it for new Secure Boot VMs.
 *
 * - Source: the descriptor libvirt would pick for a Secure Boot domain with enrolled keys
 *   (`<os firmware='efi'>` + features secure-boot and enrolled-keys, x86_64 q35, SMM on), among the
 *   raw ones (only a raw VARS image can be edited), a 4 MB build preferred; its template is copied
 *   and Microsoft's 2023 KEK/db certificates are added to the copy (owner Microsoft, enroll.ts).
 * - Descriptor: the source's, with `nvram-template` = the copy; executable, targets and features
 *   unchanged; `description` says what it is; `tags` carry ovmf-hook's marker and the sha256 of the
 *   source template and of the copy (QEMU's firmware.json: tags are free-form, for humans; libvirt
 *   ignores them), so `--remove` deletes only what ovmf-hook wrote and a distro upgrade is seen.
 * - Its file name sorts before the descriptor libvirt picks now (`NN-1` for `NN-…`): libvirt and QEMU
 *   try descriptors in file-name order (strcmp) across /usr/share/qemu/firmware and
 *   /etc/qemu/firmware, a name in /etc masking the same name in /usr/share (catalog.ts). Ours then
 *   matches exactly the requests the source matched, and sorts first among them.
 *
 * The copy is deterministic (enroll.ts's timestamp rule depends only on the store and the
 * certificates), so the same distro template gives the same bytes on every host of a cluster.
 */
import { posix } from 'node:path';
import { FirmwareNotFoundError, RefusedError, VarstoreError } from '../errors';
import { enrollSignatures, microsoft2023Entries, type EnrollItem } from '../varstore';
import { mismatchReasons, sizeClass, type FirmwareRequest, type SizeMap } from './catalog';
import type { FirmwareDescriptor } from './descriptor';

/** The tag that marks a descriptor as written by `firmware template --ms-2023`. */
export const TEMPLATE_MARKER = 'ovmf-hook:ms-2023-template';
/** The command, as named in descriptors, refusals and enrolment sources. */
export const TEMPLATE_COMMAND = 'ovmf-hook firmware template --ms-2023';
/** What the copy's file name gets before its extension: OVMF_VARS_4M.ms.fd → OVMF_VARS_4M.ms.ms-2023.fd. */
const SUFFIX = '.ms-2023';
/** Descriptor name after its number prefix. */
const NAME_STEM = 'ovmf-hook-ms-2023.json';

/** What libvirt is asked for a new Secure Boot VM with Microsoft keys (README: Secure Boot autoselection). */
export const SECURE_BOOT_MS_REQUEST: FirmwareRequest = { arch: 'x86_64', machine: 'q35', secureBoot: true, enrolledKeys: true, smm: 'on' };

const where = (d: FirmwareDescriptor): string => posix.join(d.dir, d.file);

export interface TemplateSource {
  /** The descriptor libvirt picks now for SECURE_BOOT_MS_REQUEST (any image format): ours must sort before it. */
  winner: FirmwareDescriptor;
  /** The raw descriptor whose template is copied (4 MB preferred; its template exists). */
  source: FirmwareDescriptor;
}

/**
 * The source and the current winner among `descriptors` (catalog order, ovmf-hook's own left out
 * by the caller). Refuses (one line) when the host has no Secure Boot firmware with enrolled keys,
 * or only ones whose template is missing or not raw.
 */
export function chooseTemplateSource(descriptors: readonly FirmwareDescriptor[], sizes: SizeMap): TemplateSource {
  const fits = (d: FirmwareDescriptor, formats: readonly string[]) => mismatchReasons(d, { ...SECURE_BOOT_MS_REQUEST, formats }).length === 0;
  const winner = descriptors.find((d) => fits(d, ['raw', 'qcow2']));
  if (!winner)
    throw new FirmwareNotFoundError(
      `no Secure Boot firmware with Microsoft keys (features secure-boot + enrolled-keys, x86_64 q35) among ${descriptors.length} descriptors, so there is no template to add the 2023 certificates to; install the distro's OVMF (Debian: apt install ovmf; see ovmf-hook firmware list)`,
    );
  const raw = descriptors.filter((d) => fits(d, ['raw']) && d.nvramTemplate);
  const present = raw.filter((d) => sizes[d.nvramTemplate!.filename] !== undefined);
  const source = present.find((d) => sizeClass(sizes[d.nvramTemplate!.filename]) === '4M') ?? present[0];
  if (!source) {
    const why = raw.length
      ? `its template ${raw[0]!.nvramTemplate!.filename} (${where(raw[0]!)}) does not exist; reinstall the OVMF package`
      : `${where(winner)} has a ${winner.nvramTemplate?.format ?? 'missing'} template, and only a raw VARS image can be edited`;
    throw new RefusedError(`no Microsoft-keys VARS template to copy: ${why}`);
  }
  return { winner, source };
}

/** The descriptor's file name: one that sorts right before `winner` (`40-edk2-…` → `39-ovmf-hook-ms-2023.json`). */
export function templateDescriptorName(winner: string): string {
  const m = /^(\d+)-/.exec(winner);
  if (!m || Number(m[1]) === 0)
    throw new RefusedError(
      `cannot name a descriptor that sorts before ${winner} (libvirt picks descriptors in file-name order, and ${winner} has no number above 0 in front); rename it in /etc/qemu/firmware first`,
    );
  return `${String(Number(m[1]) - 1).padStart(m[1].length, '0')}-${NAME_STEM}`;
}

/** The copy's file name in `outputDir`: `.ms-2023` before the source's extension. */
export function templateFileName(sourceTemplate: string): string {
  const base = posix.basename(sourceTemplate);
  const dot = base.lastIndexOf('.');
  return dot > 0 ? `${base.slice(0, dot)}${SUFFIX}${base.slice(dot)}` : `${base}${SUFFIX}.fd`;
}

export interface TemplateCopy {
  data: Buffer;
  /** The 2023 certificates: `added`, or `present` when the source has one already. */
  items: EnrollItem[];
  /** False: the source holds every 2023 certificate already (nothing to make). */
  changed: boolean;
}

/** The source template with Microsoft's 2023 KEK and db certificates added (owner Microsoft). */
export function ms2023Template(source: Uint8Array, sourceName: string): TemplateCopy {
  try {
    const r = enrollSignatures(source, microsoft2023Entries(TEMPLATE_COMMAND), {
      noKeysHint: 'it is no Microsoft-keys template; check the descriptor that names it (ovmf-hook firmware list)',
    });
    return { data: r.data, items: r.items, changed: r.changed };
  } catch (e) {
    if (e instanceof RefusedError) throw new RefusedError(`${sourceName}: ${e.message}`);
    if (e instanceof VarstoreError) throw new VarstoreError(`${sourceName}: ${e.message}`);
    throw e;
  }
}

/** What ovmf-hook records in its descriptor's tags. */
export interface TemplateRecord {
  /** The source descriptor (dir/file). */
  sourceDescriptor: string;
  sourceTemplate: string;
  sourceSha256: string;
  /** The copy (the descriptor's nvram-template) and its sha256 as written. */
  template: string;
  templateSha256: string;
}

const TAG = {
  sourceDescriptor: 'ovmf-hook:source-descriptor=',
  sourceTemplate: 'ovmf-hook:source-template=',
  sourceSha256: 'ovmf-hook:source-sha256=',
  templateSha256: 'ovmf-hook:template-sha256=',
} as const;

/** The descriptor file's text: the source's descriptor with the copy as its template, in the distro's layout (4-space JSON). */
export function renderTemplateDescriptor(source: FirmwareDescriptor, record: TemplateRecord): string {
  const file = (f: { filename: string; format: string }) => ({ filename: f.filename, format: f.format });
  const doc = {
    description: `${source.description || 'UEFI firmware'}; with the Microsoft 2023 KEK/db certificates added by ${TEMPLATE_COMMAND} (from ${record.sourceTemplate})`,
    'interface-types': [...source.interfaceTypes],
    mapping: {
      device: 'flash',
      executable: file(source.executable),
      'nvram-template': { filename: record.template, format: 'raw' },
    },
    targets: source.targets.map((t) => ({ architecture: t.architecture, machines: [...t.machines] })),
    features: [...source.features],
    tags: [
      TEMPLATE_MARKER,
      `${TAG.sourceDescriptor}${record.sourceDescriptor}`,
      `${TAG.sourceTemplate}${record.sourceTemplate}`,
      `${TAG.sourceSha256}${record.sourceSha256}`,
      `${TAG.templateSha256}${record.templateSha256}`,
    ],
  };
  return `${JSON.stringify(doc, null, 4)}\n`;
}

/** The record of a descriptor ovmf-hook wrote, or undefined for any other text (another descriptor, an empty mask, garbage). */
export function readTemplateRecord(text: string): TemplateRecord | undefined {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    return undefined;
  }
  const o = doc as { tags?: unknown; mapping?: { 'nvram-template'?: { filename?: unknown } } } | null;
  const tags = o && Array.isArray(o.tags) ? o.tags.filter((t): t is string => typeof t === 'string') : [];
  if (!tags.includes(TEMPLATE_MARKER)) return undefined;
  const tag = (prefix: string) => tags.find((t) => t.startsWith(prefix))?.slice(prefix.length) ?? '';
  const template = o?.mapping?.['nvram-template']?.filename;
  return {
    sourceDescriptor: tag(TAG.sourceDescriptor),
    sourceTemplate: tag(TAG.sourceTemplate),
    sourceSha256: tag(TAG.sourceSha256),
    template: typeof template === 'string' ? template : '',
    templateSha256: tag(TAG.templateSha256),
  };
}

