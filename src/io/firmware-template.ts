/**
 * The I/O of `firmware template --ms-2023 [--remove]` (the decisions are src/core/firmware/template.ts):
 * find ovmf-hook's own descriptors by their marker, read the source template, compare what is
 * installed with what would be written, write the VARS copy and then the descriptor (each atomic:
 * fsynced temp file renamed into place, so libvirt never sees a descriptor naming a missing or
 * partial template), remove exactly ovmf-hook's files. And, for `doctor`, which template new
 * Secure Boot VMs get on this host.
 */
import { lstatSync, readFileSync, statSync } from 'node:fs';
import { mkdir, unlink } from 'node:fs/promises';
import { posix } from 'node:path';
import { errorMessage, RefusedError, UsageError } from '../core/errors';
import {
  chooseTemplateSource,
  ms2023Template,
  readTemplateRecord,
  renderTemplateDescriptor,
  SECURE_BOOT_MS_REQUEST,
  TEMPLATE_MARKER,
  templateDescriptorName,
  templateFileName,
  type TemplateRecord,
} from '../core/firmware/template';
import { matchFirmware } from '../core/firmware/catalog';
import type { FirmwareDescriptor } from '../core/firmware/descriptor';
import { certificateReadiness, type CertificateReadiness, type EnrollItem } from '../core/varstore';
import { loadCatalog, statSizes } from './firmware';
import { ensurePrivateDir, fsyncDir, MAX_NVRAM_BYTES, namesInByteOrder, readRegularFile, sha256, writeFileAtomic } from './safe-fs';

export interface TemplateDirs {
  /** Descriptor directories, least specific first (the config's firmwareDirs). */
  readonly roots: readonly string[];
  /** Where the descriptor goes: one of `roots` (default: the last, /etc/qemu/firmware). */
  readonly descriptorDir: string;
  /** Where the VARS copy goes. */
  readonly outputDir: string;
}

/** A descriptor ovmf-hook wrote (its tags carry the marker). */
export interface OwnDescriptor {
  readonly path: string;
  readonly record: TemplateRecord;
}

/** Largest descriptor file read (libvirt's own limit is 1 MiB). */
const MAX_DESCRIPTOR_BYTES = 1024 * 1024;

/** Text of a small regular file, or undefined (missing, not a regular file, too big, unreadable). */
function smallText(path: string): string | undefined {
  try {
    const st = statSync(path);
    return st.isFile() && st.size <= MAX_DESCRIPTOR_BYTES ? readFileSync(path, 'utf8') : undefined;
  } catch {
    return undefined;
  }
}

/** ovmf-hook's descriptors in `dir`, by file name order. */
export function ownDescriptors(dir: string): OwnDescriptor[] {
  return namesInByteOrder(dir)
    .filter((n) => !n.startsWith('.'))
    .flatMap((n) => {
      const path = posix.join(dir, n);
      const text = smallText(path);
      const record = text === undefined ? undefined : readTemplateRecord(text);
      return record ? [{ path, record }] : [];
    });
}

const fileSha = (path: string): string | undefined => {
  try {
    const st = statSync(path);
    return st.isFile() && st.size <= MAX_NVRAM_BYTES ? sha256(readFileSync(path)) : undefined;
  } catch {
    return undefined;
  }
};

const normal = (d: string) => posix.resolve(d);

/** The catalog without ovmf-hook's own descriptors (from every root). */
function othersOf(roots: readonly string[]): { descriptors: FirmwareDescriptor[]; own: OwnDescriptor[] } {
  const own = roots.flatMap((r) => ownDescriptors(r));
  const ownPaths = new Set(own.map((o) => normal(o.path)));
  const descriptors = loadCatalog({ roots }).descriptors.filter((d) => !ownPaths.has(normal(posix.join(d.dir, d.file))));
  return { descriptors, own };
}

// ─── install ────────────────────────────────────────────────────────────────────────────────

export interface TemplateInstallPlan {
  readonly dirs: TemplateDirs;
  /**
   * new: nothing of ovmf-hook's yet; up-to-date: the files hold exactly what would be written;
   * rebuild: they differ (`reasons`); unneeded: the distro's template holds the 2023 certificates already.
   */
  readonly status: 'new' | 'up-to-date' | 'rebuild' | 'unneeded';
  readonly reasons: readonly string[];
  /** The source descriptor and template, and the descriptor libvirt picks now (ours sorts before it). */
  readonly source: { readonly descriptor: string; readonly template: string; readonly sha256: string };
  readonly winner: string;
  readonly template: { readonly path: string; readonly data: Buffer; readonly sha256: string; readonly write: boolean };
  readonly descriptor: { readonly path: string; readonly text: string; readonly write: boolean };
  /** The 2023 certificates and whether each was added to the copy or was in the source already. */
  readonly items: readonly EnrollItem[];
  /** ovmf-hook's descriptors under another name (an earlier selection): removed; for `unneeded`, all of them, left for --remove. */
  readonly staleDescriptors: readonly string[];
  /** VARS copies only those named: kept (domains defined with them name the file). */
  readonly keptTemplates: readonly string[];
}

const short = (sha: string) => sha.slice(0, 12);

/** What `firmware template --ms-2023` would do; writes nothing. Refusals are one line. */
export async function planTemplateInstall(dirs: TemplateDirs): Promise<TemplateInstallPlan> {
  if (!dirs.roots.map(normal).includes(normal(dirs.descriptorDir)))
    throw new UsageError(
      `--descriptor-dir ${dirs.descriptorDir} is not one of the descriptor directories ovmf-hook reads (config "firmwareDirs": ${dirs.roots.join(', ')}); convert and the hook would not see the descriptor: add it there or choose one of them`,
    );
  const { descriptors, own } = othersOf(dirs.roots);
  const sizes = statSizes(descriptors.flatMap((d) => [d.executable.filename, d.nvramTemplate?.filename]));
  const { winner, source } = chooseTemplateSource(descriptors, sizes);
  const sourceTemplate = source.nvramTemplate!.filename;
  const sourceDescriptor = posix.join(source.dir, source.file);
  const read = await readRegularFile(sourceTemplate, { noFollow: false, singleLink: false, maxBytes: MAX_NVRAM_BYTES });
  if (!read) throw new RefusedError(`the Microsoft-keys template ${sourceTemplate} (${sourceDescriptor}) does not exist; reinstall the OVMF package`);
  const copy = ms2023Template(read.data, sourceTemplate);
  const name = templateDescriptorName(winner.file);
  const descriptorPath = posix.join(dirs.descriptorDir, name);
  const templatePath = posix.join(dirs.outputDir, templateFileName(sourceTemplate));
  for (const root of dirs.roots) {
    const clash = posix.join(root, name);
    if (lstatOk(clash) && !own.some((o) => normal(o.path) === normal(clash)))
      throw new RefusedError(`${clash} exists and is not a descriptor ovmf-hook wrote (no ${TEMPLATE_MARKER} tag); move it away, then run this again`);
  }
  const sourceSha = sha256(read.data);
  const templateSha = sha256(copy.data);
  const text = renderTemplateDescriptor(source, { sourceDescriptor, sourceTemplate, sourceSha256: sourceSha, template: templatePath, templateSha256: templateSha });
  const previous = own.find((o) => normal(o.path) === normal(descriptorPath));
  const stale = own.filter((o) => o !== previous);
  const base = { dirs, source: { descriptor: sourceDescriptor, template: sourceTemplate, sha256: sourceSha }, winner: posix.join(winner.dir, winner.file), items: copy.items };

  if (!copy.changed)
    return {
      ...base,
      status: 'unneeded',
      reasons: [`${sourceTemplate} holds every Microsoft 2023 certificate already`],
      template: { path: templatePath, data: copy.data, sha256: templateSha, write: false },
      descriptor: { path: descriptorPath, text, write: false },
      // ovmf-hook's earlier copy sorts first still: named, not removed (--remove does that)
      staleDescriptors: own.map((o) => o.path),
      keptTemplates: [],
    };

  const installedText = smallText(descriptorPath);
  const installedSha = fileSha(templatePath);
  const writeDescriptor = installedText !== text;
  const writeTemplate = installedSha !== templateSha;
  const reasons: string[] = [];
  if (previous && previous.record.sourceTemplate === sourceTemplate && previous.record.sourceSha256 !== sourceSha)
    reasons.push(`${sourceTemplate} changed since the copy was made (sha256 ${short(previous.record.sourceSha256)} → ${short(sourceSha)}: the OVMF package was upgraded)`);
  else if (previous && previous.record.sourceTemplate !== sourceTemplate) reasons.push(`the source is now ${sourceTemplate} (was ${previous.record.sourceTemplate})`);
  else if (previous && writeDescriptor) reasons.push(`${descriptorPath} differs from what this version writes`);
  if (previous && writeTemplate) reasons.push(installedSha === undefined ? `${templatePath} is missing` : `${templatePath} differs from the copy`);
  for (const s of stale) reasons.push(`${s.path} was written for an earlier selection (${s.record.sourceDescriptor})`);
  const keptTemplates = [...new Set(stale.map((s) => s.record.template))].filter((t) => t && normal(t) !== normal(templatePath) && lstatOk(t));
  const status = !previous && stale.length === 0 ? 'new' : writeDescriptor || writeTemplate || stale.length ? 'rebuild' : 'up-to-date';
  if (status === 'new' && installedSha !== undefined && writeTemplate) reasons.push(`${templatePath} exists (left by an interrupted run?) and is replaced`);
  return {
    ...base,
    status,
    reasons,
    template: { path: templatePath, data: copy.data, sha256: templateSha, write: writeTemplate },
    descriptor: { path: descriptorPath, text, write: writeDescriptor },
    staleDescriptors: stale.map((s) => s.path),
    keptTemplates,
  };
}

const lstatOk = (p: string): boolean => {
  try {
    lstatSync(p);
    return true;
  } catch {
    return false;
  }
};

/**
 * A directory for a file libvirtd trusts (the template decides which keys every new VM gets):
 * created 0755 when missing (and its parents: everyone who copies the template must reach it), then
 * checked like the state directory — a real directory, owned by this user, not writable by group or other.
 */
async function trustedDir(dir: string): Promise<void> {
  await mkdir(posix.dirname(dir), { recursive: true, mode: 0o755 });
  await mkdir(dir, { mode: 0o755 }).catch((e: NodeJS.ErrnoException) => {
    if (e.code !== 'EEXIST') throw e;
  });
  await ensurePrivateDir(dir, { create: false });
}

/** Carry out an install plan: the VARS copy first, then the descriptor, then ovmf-hook's stale descriptors go. */
export async function applyTemplateInstall(plan: TemplateInstallPlan): Promise<void> {
  if (plan.status === 'unneeded' || plan.status === 'up-to-date') return;
  const { dirs } = plan;
  if (plan.template.write) {
    await trustedDir(dirs.outputDir);
    await writeFileAtomic(plan.template.path, plan.template.data, { mode: 0o644 });
  }
  if (plan.descriptor.write) {
    await mkdir(dirs.descriptorDir, { recursive: true, mode: 0o755 });
    await writeFileAtomic(plan.descriptor.path, Buffer.from(plan.descriptor.text), { mode: 0o644 });
  }
  for (const p of plan.staleDescriptors) await unlinkIfPresent(p);
  if (plan.staleDescriptors.length) await fsyncDir(dirs.descriptorDir);
}

async function unlinkIfPresent(p: string): Promise<void> {
  await unlink(p).catch((e: NodeJS.ErrnoException) => {
    if (e.code !== 'ENOENT') throw e;
  });
}

// ─── remove ─────────────────────────────────────────────────────────────────────────────────

export interface TemplateRemovePlan {
  /** ovmf-hook's descriptors in the descriptor directory: removed. */
  readonly descriptors: readonly string[];
  /**
   * The VARS copies they name: `remove` when the file is the one ovmf-hook wrote (its name and the
   * recorded sha256), `keep` when it was changed since or is not ovmf-hook's (`why`), `missing`.
   */
  readonly templates: readonly { readonly path: string; readonly action: 'remove' | 'keep' | 'missing'; readonly why?: string }[];
}

/** What `--remove` would delete; writes nothing. */
export function planTemplateRemove(descriptorDir: string): TemplateRemovePlan {
  const own = ownDescriptors(descriptorDir);
  const seen = new Set<string>();
  const templates: TemplateRemovePlan['templates'][number][] = [];
  for (const { record } of own) {
    const path = record.template;
    if (!path || seen.has(path)) continue;
    seen.add(path);
    if (!lstatOk(path)) templates.push({ path, action: 'missing' });
    else if (posix.basename(path) !== templateFileName(record.sourceTemplate) || lstatSync(path).isSymbolicLink())
      templates.push({ path, action: 'keep', why: 'not a copy ovmf-hook names so' });
    else if (fileSha(path) !== record.templateSha256) templates.push({ path, action: 'keep', why: 'changed since ovmf-hook wrote it (sha256 differs)' });
    else templates.push({ path, action: 'remove' });
  }
  return { descriptors: own.map((o) => o.path), templates };
}

/** Carry out a remove plan: the descriptors first (libvirt stops picking the copy), then the copies. */
export async function applyTemplateRemove(plan: TemplateRemovePlan): Promise<void> {
  for (const p of plan.descriptors) await unlinkIfPresent(p);
  for (const d of new Set(plan.descriptors.map((p) => posix.dirname(p)))) await fsyncDir(d);
  const removed = plan.templates.filter((t) => t.action === 'remove');
  for (const t of removed) await unlinkIfPresent(t.path);
  for (const d of new Set(removed.map((t) => posix.dirname(t.path)))) await fsyncDir(d);
}

// ─── what new Secure Boot VMs get (doctor) ──────────────────────────────────────────────────

export interface SecureBootTemplateStatus {
  /** The descriptor picked for a new Secure Boot VM with Microsoft keys (libvirt's order); undefined: none fits. */
  readonly descriptor?: string;
  readonly template?: string;
  /** The template's certificates; a string: why it could not be read. */
  readonly readiness?: CertificateReadiness | string;
  /** Set when the pick is ovmf-hook's copy: its record, and whether the source template changed since. */
  readonly own?: { readonly record: TemplateRecord; readonly sourceChanged: boolean };
}

/** Which template a new Secure Boot VM gets from the descriptors in `roots`, and what it holds. */
export function secureBootTemplateStatus(roots: readonly string[]): SecureBootTemplateStatus {
  let picked: FirmwareDescriptor;
  try {
    picked = matchFirmware(loadCatalog({ roots }).descriptors, SECURE_BOOT_MS_REQUEST).descriptor;
  } catch {
    return {};
  }
  const descriptor = posix.join(picked.dir, picked.file);
  const template = picked.nvramTemplate?.filename;
  if (!template) return { descriptor };
  let readiness: CertificateReadiness | string;
  try {
    const st = statSync(template);
    readiness = st.size > MAX_NVRAM_BYTES ? `${st.size} bytes is too big for a VARS template` : certificateReadiness(readFileSync(template));
  } catch (e) {
    readiness = (e as NodeJS.ErrnoException).code === 'ENOENT' ? 'the file does not exist' : errorMessage(e);
  }
  const text = smallText(descriptor);
  const record = text === undefined ? undefined : readTemplateRecord(text);
  const own = record && { record, sourceChanged: fileSha(record.sourceTemplate) !== record.sourceSha256 };
  return { descriptor, template, readiness, ...(own ? { own } : {}) };
}
