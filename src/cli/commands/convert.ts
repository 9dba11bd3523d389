/**
 * `ovmf-hook convert NAME... | --all [--match GLOB] [--dry-run] [--force] [rewrite flags]`:
 * rewrite the persistent definition of shut-off domains to Q35 + OVMF and define it (rulebook R1):
 * `virsh dumpxml --inactive --security-info` → rewrite → `virsh define`. Refuses running and
 * transient domains, and (unless --force) domains with a managed-save image or snapshots with
 * memory state, which would not restore after the conversion (R2). --all skips running and
 * transient domains and counts them. A domain that needs no change is "unchanged" whatever its
 * state. stdout carries nothing but the diffs of --dry-run.
 *
 * A domain that already boots UEFI without Secure Boot (--secure-boot, R21) also gets Secure Boot
 * keys in its existing NVRAM before the new definition is defined (../secure-boot-switch.ts): VM
 * shut off, NVRAM archived first, a TPM refused without --force; --dry-run says what would happen.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Argv, CommandModule } from 'yargs';
import { loadConfig, loadCatalog, type FirmwareCatalog } from '../../io';
import { parseDomain } from '../../core/domain';
import { isOvmfHookError, OvmfHookError, RefusedError, UsageError } from '../../core/errors';
import { globMatch } from '../../core/firmware';
import { plural } from '../../core/text';
import { SUSPEND_BITLOCKER } from '../../core/varstore';
import { unifiedDiff } from '../diff';
import { catalogPicker, rewriteWithPolicy, withRewriteFlags, type RewriteFlags } from '../rewrite-options';
import { convertQuestions, runVirsh, runVirshBatch, virshError, type VirshBatchRunner, type VirshResult, type VirshRunner } from '../../io/virsh';
import { cliContext, type CliContext, type CliDeps } from '../vm';
import { applySwitch, keysText, planSwitch, undoSwitch, type SwitchPlan } from '../secure-boot-switch';

export interface ConvertArgs extends RewriteFlags {
  names?: string[];
  all?: boolean;
  /** with --all: only domains whose name matches this glob (`*`, `?`) */
  match?: string;
  dryRun?: boolean;
  force?: boolean;
}

type Status = 'converted' | 'would convert' | 'unchanged' | 'skipped' | 'refused' | 'failed';

interface Outcome {
  status: Status;
  /** `7 changes`, or why it was skipped / refused / failed */
  detail?: string;
  /** skipped because the domain is transient (counted apart in the --all summary) */
  transient?: boolean;
}

interface DomInfo {
  state: string;
  persistent: boolean;
  managedSave: boolean;
}

interface Env {
  virsh: VirshRunner;
  /** ask libvirt these questions now, in one go; `virsh` then answers them (real libvirt only) */
  prefetch?: (commands: string[][]) => void;
  rewrite: (xml: string) => ReturnType<typeof rewriteWithPolicy>;
  args: ConvertArgs;
  /** --all: a running domain is out of scope (skipped), not a refusal */
  skipRunning: boolean;
  /** config, libvirt and the archive, for the NVRAM of a domain switched to Secure Boot (made on first use) */
  context: () => CliContext;
}

/**
 * How to convert a transient domain: it has no persistent definition (`virsh define` would make
 * one), and it exists only while it runs, so "shut it down first" would delete it. Its source
 * definition is what to convert; its live XML (with secrets, as convert reads them) stands in.
 */
const transientSteps = (name: string) =>
  `virsh dumpxml --security-info ${name} > ${name}.xml; ovmf-hook rewrite ${name}.xml > ${name}-uefi.xml; `;
const transientBlocker = (name: string): Blocker => ({
  why: 'the domain is transient: it has no persistent definition to convert, and shutting it down would delete it',
  fix: `convert its source definition instead: ${transientSteps(name)}then virsh define ${name}-uefi.xml (the domain becomes persistent and boots UEFI from its next start)`,
});
/** The --all line of a transient domain (skipped, like a running one: out of scope, not refused). */
const transientSkip = (name: string): Outcome => ({
  status: 'skipped',
  detail: `transient (no persistent definition to convert); to convert it: ${transientSteps(name)}virsh define ${name}-uefi.xml`,
  transient: true,
});

/** libvirt could not be asked: exit 1 (host state), with the usual hint. */
const unreachable = (what: string, r: { code: number; stdout: string; stderr: string }) =>
  new RefusedError(`cannot ${what}: ${virshError(r)}; is libvirtd running?`);

const dominfoArgs = (name: string) => convertQuestions(name, {})[0]!;
const dumpxmlArgs = (name: string, dryRun?: boolean) => convertQuestions(name, { dryRun })[1]!;
const snapshotsArgs = (name: string) => convertQuestions(name, {})[2]!;

async function domInfo(virsh: VirshRunner, name: string): Promise<DomInfo> {
  const r = await virsh(dominfoArgs(name));
  if (r.code !== 0) {
    if (/failed to get domain|domain not found|no domain with matching/i.test(r.stderr))
      throw new UsageError(`no domain named ${JSON.stringify(name)} on this host; check: virsh list --all`);
    throw unreachable(`ask libvirt about ${name}`, r);
  }
  const field = (key: string) => new RegExp(`^${key}:\\s*(.*)$`, 'mi').exec(r.stdout)?.[1].trim();
  return { state: field('State') ?? '', persistent: field('Persistent') !== 'no', managedSave: field('Managed save') === 'yes' };
}

/** Names of the domain's snapshots that carry memory state (full-system snapshots). */
async function memorySnapshots(virsh: VirshRunner, name: string): Promise<string[]> {
  const r = await virsh(snapshotsArgs(name));
  if (r.code !== 0) throw new RefusedError(`${name}: cannot list its snapshots (${virshError(r)}); pass --force to convert without checking them`);
  return r.stdout.split('\n').map((s) => s.trim()).filter(Boolean);
}

interface Blocker {
  why: string;
  fix: string;
}

/** Why the domain's definition must not be replaced now (empty: it may). */
async function blockers(env: Env, name: string, info: DomInfo): Promise<{ running?: Blocker; other: Blocker[] }> {
  // a transient domain runs (libvirt has no shut-off transient domain), and "shut it down" would
  // delete it: the one thing to say is how to convert it instead
  if (!info.persistent) return { other: [transientBlocker(name)] };
  const running = info.state === 'shut off' ? undefined : { why: `the domain is ${info.state || 'not shut off'}`, fix: `shut it down first (virsh shutdown ${name}), then run the convert again` };
  const other: Blocker[] = [];
  if (!env.args.force) {
    if (info.managedSave) other.push({ why: 'the domain has a managed-save image, which cannot be restored after the conversion', fix: `start and shut down the VM, or discard the image (virsh managedsave-remove ${name}), or pass --force` });
    const snaps = await memorySnapshots(env.virsh, name);
    if (snaps.length)
      other.push({
        why: `the domain has ${plural(snaps.length, 'snapshot')} with memory state (${snaps.slice(0, 3).join(', ')}${snaps.length > 3 ? ', …' : ''}), which cannot be reverted after the conversion`,
        fix: `delete ${snaps.length === 1 ? 'it' : 'them'} (virsh snapshot-delete ${name} SNAPSHOT) or pass --force`,
      });
  }
  return { running, other };
}

const refusal = (name: string, bs: Blocker[]) => new RefusedError(`${name}: ${bs.map((b) => b.why).join(', and ')}; ${bs.map((b) => b.fix).join('; ')}`);

/** `virsh define` from a root-only temporary file (the XML carries secrets; virsh cannot read a piped /dev/stdin). */
async function define(virsh: VirshRunner, name: string, xml: string): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'ovmf-hook-convert-')); // mode 0700
  try {
    const file = join(dir, 'domain.xml');
    writeFileSync(file, xml, { mode: 0o600 });
    const r = await virsh(['define', file]);
    if (r.code === 0) return;
    // virsh says "Failed to define domain from FILE" first; the reason is on the next error line
    const reason =
      r.code === 124
        ? virshError(r)
        : r.stderr.split('\n').map((l) => l.replace(/^error:\s*/, '').trim()).filter((l) => l && !/^Failed to define domain from /.test(l)).join('; ') || virshError(r);
    const hint = /TPM version/.test(reason) ? 'install swtpm (Debian: apt install swtpm swtpm-tools) or drop --tpm' : `see the changes with: ovmf-hook convert ${name} --dry-run`;
    throw new OvmfHookError(`${name}: libvirt refused the converted definition (${reason}); the domain is unchanged; ${hint}`, 1);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Convert one domain. Throws OvmfHookError for refusals and failures. */
async function convertOne(env: Env, name: string): Promise<Outcome> {
  const { virsh, args } = env;
  env.prefetch?.(convertQuestions(name, args));
  const info = await domInfo(virsh, name);
  const dump = await virsh(dumpxmlArgs(name, args.dryRun));
  if (dump.code !== 0) throw unreachable(`read the definition of ${name}`, dump);
  const result = env.rewrite(dump.stdout);
  for (const w of result.warnings) process.stderr.write(`ovmf-hook: warning: ${w}\n`);
  if (result.skipped) return { status: 'skipped', detail: result.skipped.replace(`${name}: `, '') };
  if (!result.changed) return { status: 'unchanged' };
  const changes = plural(result.changes.length, 'change');

  const { running, other } = await blockers(env, name, info);
  const skipped = !args.dryRun && env.skipRunning && (!info.persistent || running !== undefined);
  // already UEFI, switched to Secure Boot: its NVRAM gets the keys (planned before anything changes)
  let plan: SwitchPlan | undefined;
  if (result.secureBootSwitched && info.persistent && !skipped) {
    plan = await planSwitch(env.context(), dump.stdout, result.xml, Boolean(args.force));
    other.push(...plan.blockers);
  }
  const all = running ? [running, ...other] : other;
  if (args.dryRun) {
    process.stdout.write(unifiedDiff(dump.stdout, result.xml, { from: `${name}.xml`, to: `${name}.xml` }));
    const what = plan ? `${changes}; ${keysText(plan, true)}` : changes;
    const whys = [...all.map((b) => b.why), ...(plan?.error ? ['its NVRAM cannot get the keys (above)'] : [])];
    return { status: 'would convert', detail: whys.length ? `${what}; refused if run now: ${whys.join(', and ')}` : what };
  }
  if (!info.persistent && env.skipRunning) return transientSkip(name); // (it was persistent when --all listed it)
  if (running && env.skipRunning) return { status: 'skipped', detail: `${info.state}; shut it down to convert it` };
  if (all.length) throw refusal(name, all);
  if (plan?.error) throw plan.error;
  const switched = plan && (await applySwitch(env.context(), plan));
  if (plan?.vm.tpm)
    process.stderr.write(
      `ovmf-hook: warning: ${name} has a TPM: PCR7 changes with Secure Boot on; BitLocker asks for its recovery key unless it was suspended (${SUSPEND_BITLOCKER})\n`,
    );
  try {
    await define(virsh, name, result.xml);
  } catch (e) {
    if (plan && switched && isOvmfHookError(e)) throw new OvmfHookError(`${e.message}${await undoSwitch(env.context(), plan, switched)}`, e.exitCode);
    throw e;
  }
  if (!plan) return { status: 'converted', detail: changes };
  const archived = switched
    ? `; archived as generation ${switched.generation}, the NVRAM before is generation ${switched.saved} (undo: ovmf-hook nvram restore ${name} --generation ${switched.saved} --force, since the NVRAM before may trust fewer Microsoft 2023 certificates)`
    : '';
  return { status: 'converted', detail: `${changes}; ${keysText(plan, false)}${archived}` };
}

/**
 * A virsh runner that answers prefetched commands from one batch (one virsh process for what
 * convert asks about a domain; each answer is used once), and runs anything else as usual.
 */
function prefetching(virsh: VirshRunner, batch: VirshBatchRunner): { virsh: VirshRunner; prefetch: (commands: string[][]) => void } {
  const answers = new Map<string, Promise<VirshResult>>();
  const key = (args: readonly string[]) => JSON.stringify(args);
  return {
    virsh: (args) => {
      const k = key(args);
      const answer = answers.get(k);
      answers.delete(k);
      return answer ?? virsh(args);
    },
    prefetch: (commands) => {
      const fresh = commands.filter((c) => !answers.has(key(c)));
      if (fresh.length === 0) return;
      const results = batch(fresh);
      fresh.forEach((c, i) => {
        const answer = results.then((r) => r[i]!);
        answer.catch(() => {}); // an answer nobody asks for must not be an unhandled rejection
        answers.set(key(c), answer);
      });
    },
  };
}

/** Load now (while virsh runs); the result, or the error, when it is asked for. */
function preloaded(load: () => FirmwareCatalog): () => FirmwareCatalog {
  let catalog: FirmwareCatalog | undefined;
  let error: unknown;
  try {
    catalog = load();
  } catch (e) {
    error = e;
  }
  return () => {
    if (catalog) return catalog;
    throw error;
  };
}

const line = (name: string, o: Outcome) => `${name}: ${o.status}${o.detail ? (o.status === 'converted' || o.status === 'would convert' || o.status === 'unchanged' ? ` (${o.detail})` : `: ${o.detail}`) : ''}`;

/**
 * Domains for --all (matching `match`), sorted by name: every domain, and which of them are
 * transient (listed, but not among the persistent ones), so that those are reported and counted
 * as skipped instead of left out without a word.
 */
async function allDomains(virsh: VirshRunner, match: string | undefined): Promise<{ names: string[]; transient: Set<string> }> {
  const [persistent, all] = await Promise.all([virsh(['list', '--all', '--persistent', '--name']), virsh(['list', '--all', '--name'])]);
  for (const r of [persistent, all]) if (r.code !== 0) throw unreachable('list the domains', r);
  const names = (r: VirshResult) =>
    r.stdout
      .split('\n')
      .map((s) => s.trim())
      .filter((s) => s !== '' && (match === undefined || globMatch(match, s)));
  const kept = new Set(names(persistent));
  const transient = new Set(names(all).filter((n) => !kept.has(n)));
  return { names: [...new Set([...kept, ...transient])].sort(), transient };
}

export async function runConvert(args: ConvertArgs, deps: CliDeps = {}): Promise<void> {
  const names = args.names ?? [];
  if (args.all && names.length) throw new UsageError('give domain names or --all, not both');
  if (!args.all && names.length === 0) throw new UsageError('name the domains to convert, or use --all (see ovmf-hook convert --help)');
  if (args.match !== undefined && !args.all) throw new UsageError('--match selects domains for --all; use it with --all');
  // with the real libvirt, the questions about a single domain go out at once (one virsh process,
  // its time mostly libvirt's); the configuration and the firmware catalog are read meanwhile
  const batch = deps.virshBatch ?? (deps.virsh ? undefined : runVirshBatch);
  const batched = batch && prefetching(deps.virsh ?? runVirsh, batch);
  const early = !args.all && names.length === 1 && batched;
  if (early) early.prefetch(convertQuestions(names[0], args));
  // what cliContext (vm.ts) would give, without loading the NVRAM archive code convert never uses
  const ctx = { config: (deps.config ?? loadConfig)(), virsh: deps.virsh ?? runVirsh };
  let full: CliContext | undefined;
  const pick = catalogPicker(ctx.config, early ? preloaded(() => loadCatalog({ roots: ctx.config.firmwareDirs })) : undefined);
  const env: Env = {
    virsh: batched?.virsh ?? ctx.virsh,
    prefetch: batched?.prefetch,
    args,
    skipRunning: Boolean(args.all),
    rewrite: (xml) => rewriteWithPolicy(parseDomain(xml), ctx.config, args, pick),
    context: () => (full ??= cliContext({ ...deps, config: () => ctx.config })),
  };

  if (!args.all && names.length === 1) {
    process.stderr.write(`${line(names[0], await convertOne(env, names[0]))}\n`);
    return;
  }

  const listed = args.all ? await allDomains(ctx.virsh, args.match) : { names, transient: new Set<string>() };
  const targets = listed.names;
  if (targets.length === 0) {
    process.stderr.write(`no domains${args.match !== undefined ? ` match ${JSON.stringify(args.match)}` : ''}; nothing to do\n`);
    return;
  }
  const counts: Record<Status, number> = { converted: 0, 'would convert': 0, unchanged: 0, skipped: 0, refused: 0, failed: 0 };
  let transient = 0; // of the skipped ones
  for (const [i, name] of targets.entries()) {
    let o: Outcome;
    try {
      // a transient domain is not asked about: there is nothing to convert
      o = listed.transient.has(name) ? transientSkip(name) : await convertOne(env, name);
    } catch (e) {
      if (!isOvmfHookError(e)) throw e;
      const detail = e.message.startsWith(`${name}: `) ? e.message.slice(name.length + 2) : e.message;
      o = { status: e instanceof RefusedError ? 'refused' : 'failed', detail };
    }
    counts[o.status]++;
    if (o.transient) transient++;
    process.stderr.write(`[${i + 1}/${targets.length}] ${line(name, o)}\n`);
  }
  const summary = (Object.entries(counts) as [Status, number][])
    .filter(([s, n]) => n > 0 || s === (args.dryRun ? 'would convert' : 'converted'))
    .map(([s, n]) => `${n} ${s}${s === 'skipped' && transient ? ` (${transient} transient)` : ''}`)
    .join(', ');
  process.stderr.write(`${plural(targets.length, 'domain')}: ${summary}\n`);
  const bad = counts.refused + counts.failed;
  if (bad) throw new RefusedError(`${bad} of ${plural(targets.length, 'domain')} not converted (refused or failed); see the lines above`);
}

export const convertCommand: CommandModule<object, any> = {
  command: 'convert [names..]',
  describe: 'Convert shut-off domains to Q35 + OVMF UEFI in libvirt (dumpxml --inactive → rewrite → define)',
  builder: (y: Argv) =>
    withRewriteFlags(
      y
        .positional('names', { type: 'string', array: true, describe: 'domain names' })
        .option('all', { type: 'boolean', default: false, describe: 'every domain (running and transient ones are skipped and counted)' })
        .option('match', { type: 'string', describe: "with --all: only domains whose name matches this glob ('*', '?'), e.g. 'web-*'" })
        .option('dry-run', { type: 'boolean', default: false, describe: 'print the diffs on stdout; define nothing' })
        .option('force', {
          type: 'boolean',
          default: false,
          describe: 'convert despite a managed-save image or snapshots with memory state (they will not restore), or a TPM when Secure Boot is switched on (suspend BitLocker first)',
        })
        .example('$0 convert win11 --secure-boot --tpm', 'convert one shut-off VM')
        .example("$0 convert --all --match 'web-*' --dry-run", 'review what converting the web VMs would change'),
    ),
  handler: (argv) => runConvert(argv as ConvertArgs),
};
