/**
 * `convert --secure-boot` of a domain that already boots UEFI without Secure Boot (rule R21,
 * src/core/rewrite/secure-boot-uefi.ts): the rewrite switches its firmware to the Secure Boot
 * build; this module gives its existing NVRAM the Secure Boot keys that make that firmware enforce
 * (src/core/varstore/secure-boot-keys.ts: PK/KEK/db/dbx of the Microsoft-keys template the new
 * definition names, plus Microsoft's 2023 certificates), keeping every boot entry.
 *
 *   plan():  before anything changes (also for --dry-run): which NVRAM, which template, the
 *            enrolment previewed on the NVRAM as it is now, and what refuses it (a TPM without
 *            --force, an NVRAM ovmf-hook does not manage, one that is only in the archive, a
 *            template that is missing, a CODE/VARS size mismatch);
 *   apply(): the NVRAM written like `nvram enroll` (VM shut off, under its lock; the NVRAM before
 *            kept as a generation, the result the newest one);
 *   undo():  when libvirt then refuses the new definition, that generation written back.
 *
 * A VM without a local NVRAM yet gets only the new definition: its first start creates the NVRAM
 * from the Microsoft-keys template, keys included.
 */
import { statSync } from 'node:fs';
import { parseDomain, uefiFiles } from '../core/domain';
import { isOvmfHookError, RefusedError, UsageError, VarstoreError, type OvmfHookError } from '../core/errors';
import { checkFlashPair } from '../core/firmware';
import { newestRestorable } from '../core/nvram';
import { enrollSecureBootKeys, microsoft2023Entries, SUSPEND_BITLOCKER, type SecureBootKeysResult } from '../core/varstore';
import { plural } from '../core/text';
import { enrollNvram, loadCatalog, readNvramSafely, restoreGeneration, type NvramEdit } from '../io';
import { MAX_NVRAM_BYTES, readRegularFile } from '../io/safe-fs';
import { changeLocalNvram } from './local-nvram';
import type { CliContext, Vm } from './vm';

/** The command named in refusals, the VM lock and the generations' reasons. */
export const SWITCH_COMMAND = 'convert --secure-boot';

/** Why the switch must not run now: refusals that --dry-run lists and a real run raises. */
export interface SwitchBlocker {
  why: string;
  fix: string;
}

export interface SwitchPlan {
  vm: Vm;
  nvram: string;
  template?: string;
  /** The enrolment previewed on the current local NVRAM; undefined: there is none (XML only). */
  preview?: SecureBootKeysResult;
  /** Why the enrolment cannot be done (a full store, a size mismatch …): a real run throws it, --dry-run reports it. */
  error?: OvmfHookError;
  blockers: SwitchBlocker[];
}

const tpmBlocker = (name: string): SwitchBlocker => ({
  why: 'the domain has a TPM: turning Secure Boot on changes the Secure Boot measurement in PCR7, so BitLocker (or anything sealed to PCR7) asks for its recovery key at the next boot',
  fix: `suspend BitLocker in the guest first (${SUSPEND_BITLOCKER}), shut the VM down, then run ovmf-hook convert ${name} --secure-boot --force`,
});

const extra = () => microsoft2023Entries(SWITCH_COMMAND);

/** `PK Debian UEFI Secure Boot (PK/KEK key); KEK 3, db 5, dbx 1 entries; boot entries kept: Boot0000, Boot0001, BootOrder`. */
export function keysText(plan: SwitchPlan, dryRun: boolean): string {
  if (plan.error) return `NVRAM ${plan.nvram}: ${plan.error.message.replace(`${plan.vm.name}: `, '')}`;
  const p = plan.preview;
  if (!p) return `no NVRAM on this host yet: its first start creates ${plan.nvram} from ${plan.template ?? 'the Secure Boot template'}, keys included`;
  const boot = p.bootVariables.length ? `keeps ${p.bootVariables.join(', ')}` : 'no boot entries yet';
  if (p.status === 'present')
    return `its NVRAM holds Secure Boot keys already (PK ${p.summary.subjects.pk.join(', ') || '?'}): kept${p.secureBootEnable === 'turned on' ? `; SecureBootEnable ${dryRun ? 'would be turned' : 'turned'} on` : ''}; ${boot}`;
  const s = p.summary;
  const count = (c: { x509: number; sha256: number; other: number }) => c.x509 + c.sha256 + c.other;
  const added2023 = p.items.filter((i) => i.status === 'added').length;
  return (
    `NVRAM ${dryRun ? 'would get' : 'got'} Secure Boot keys from ${plan.template}: PK ${s.subjects.pk.join(', ')}; ` +
    `KEK ${count(s.kek)}, db ${count(s.db)}, dbx ${count(s.dbx)} entries (${plural(added2023, 'Microsoft 2023 certificate')} added); ${boot}`
  );
}

/** Look before anything changes: which NVRAM gets which keys, and what refuses it. */
export async function planSwitch(ctx: CliContext, oldXml: string, newXml: string, force: boolean): Promise<SwitchPlan> {
  const before = parseDomain(oldXml);
  const after = parseDomain(newXml);
  const name = before.name;
  const { config } = ctx;
  let descriptors: ReturnType<typeof loadCatalog>['descriptors'] | undefined;
  const catalog = () => (descriptors ??= loadCatalog({ roots: config.firmwareDirs }).descriptors);
  const was = uefiFiles(before, catalog, config.nvramDir);
  const now = uefiFiles(after, catalog, config.nvramDir);
  if (!before.uuid) throw new UsageError(`${name}: the domain has no <uuid>`);
  const vm: Vm = { uuid: before.uuid.toLowerCase(), name, defined: true, nvram: was?.nvram, template: now?.template, tpm: before.devices('tpm').length > 0 };
  const blockers: SwitchBlocker[] = [];
  if (vm.tpm && !force) blockers.push(tpmBlocker(name));
  const nvram = was?.nvram;
  if (!nvram || was?.unmanaged) {
    blockers.push({
      why: `its NVRAM cannot be given Secure Boot keys here (${was?.unmanaged ?? 'no local NVRAM file'})`,
      fix: `switch it by hand: give it a Secure Boot firmware and re-create the NVRAM (virsh start --reset-nvram ${name}, which discards its boot entries)`,
    });
    return { vm, nvram: nvram ?? '', template: now?.template, blockers };
  }
  if (now?.nvram !== nvram) throw new RefusedError(`${name}: internal error: the converted definition names NVRAM ${now?.nvram ?? '(none)'}, not ${nvram}; nothing was changed`);
  const template = now.template;
  if (!template) {
    blockers.push({ why: 'no Secure Boot VARS template is known for its new firmware', fix: "check the firmware descriptors: ovmf-hook firmware list" });
    return { vm, nvram, blockers };
  }
  const local = await readNvramSafely(nvram);
  if (!local) {
    // nothing here, but maybe in the archive: its next start would restore a store without keys
    const archived = await archivedGeneration(ctx, vm.uuid);
    if (archived !== undefined)
      blockers.push({
        why: `its NVRAM is not on this host, but the archive holds generation ${archived}, which a start would restore without Secure Boot keys`,
        fix: `restore it here first (ovmf-hook nvram restore ${name}), then run the convert again`,
      });
    return { vm, nvram, template, blockers };
  }
  const tpl = await readRegularFile(template, { noFollow: false, singleLink: false, maxBytes: MAX_NVRAM_BYTES });
  if (!tpl) {
    blockers.push({ why: `its Secure Boot template ${template} does not exist`, fix: 'install the firmware package that provides it (Debian: apt install ovmf)' });
    return { vm, nvram, template, blockers };
  }
  try {
    const codeSize = now.loader === undefined ? undefined : sizeOf(now.loader);
    if (codeSize !== undefined) checkFlashPair(codeSize, local.data.length, { loader: now.loader, template: nvram });
    const preview = named(name, () => enrollSecureBootKeys(local.data, tpl.data, { templateName: template, extra: extra() }));
    return { vm, nvram, template, preview, blockers };
  } catch (e) {
    if (!isOvmfHookError(e)) throw e;
    return { vm, nvram, template, error: e, blockers };
  }
}

const sizeOf = (file: string): number | undefined => {
  try {
    return statSync(file).size;
  } catch {
    return undefined;
  }
};

/** The newest generation a start would restore, when the archive exists and has one. */
async function archivedGeneration(ctx: CliContext, uuid: string): Promise<number | undefined> {
  let archive;
  try {
    archive = await ctx.archive();
  } catch {
    return undefined; // no archive directory: nothing archived on this host
  }
  return newestRestorable(await archive.list(uuid))?.generation;
}

/** Run `fn`, its one-line refusals prefixed with the domain name. */
function named<T>(name: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof VarstoreError) throw new VarstoreError(`${name}: ${e.message}`);
    if (e instanceof RefusedError) throw new RefusedError(`${name}: ${e.message}`);
    throw e;
  }
}

export interface SwitchResult {
  /** The newest generation, holding the NVRAM with keys. */
  generation?: number;
  /** The generation holding the NVRAM before. */
  saved?: number;
  result: SecureBootKeysResult;
}

/** Write the keys into the VM's NVRAM (shut off, under its lock); archived first. */
export async function applySwitch(ctx: CliContext, plan: SwitchPlan): Promise<SwitchResult | undefined> {
  if (!plan.preview || !plan.preview.changed || !plan.template) return undefined;
  const template = plan.template;
  const tpl = await readRegularFile(template, { noFollow: false, singleLink: false, maxBytes: MAX_NVRAM_BYTES });
  if (!tpl) throw new RefusedError(`${plan.vm.name}: its Secure Boot template ${template} disappeared; nothing was changed`);
  const archive = await ctx.archive({ create: true });
  const out = await changeLocalNvram(
    ctx,
    plan.vm,
    plan.nvram,
    archive,
    'convert',
    (o) =>
      enrollNvram<SecureBootKeysResult & NvramEdit>({
        ...o,
        edit: (current) => {
          const r = named(plan.vm.name, () => enrollSecureBootKeys(current, tpl.data, { templateName: template, extra: extra() }));
          return { ...r, reason: `${SWITCH_COMMAND}: Secure Boot keys from ${template}` };
        },
      }),
    SWITCH_COMMAND,
  );
  return { generation: out.generation, saved: out.saved, result: out.result };
}

/** libvirt refused the new definition after the keys were written: the NVRAM before, back. Best effort; says what happened. */
export async function undoSwitch(ctx: CliContext, plan: SwitchPlan, done: SwitchResult): Promise<string> {
  if (done.saved === undefined) return '';
  const saved = done.saved;
  try {
    const archive = await ctx.archive({ create: true });
    const r = await changeLocalNvram(ctx, plan.vm, plan.nvram, archive, 'convert', (o) => restoreGeneration({ ...o, generation: saved }), SWITCH_COMMAND);
    return `; its NVRAM was put back as it was (generation ${saved}, archived again as ${r.generation})`;
  } catch (e) {
    return `; putting its NVRAM back failed (${(e as Error).message}): ovmf-hook nvram restore ${plan.vm.name} --generation ${saved}`;
  }
}
