/**
 * `ovmf-hook firmware template --ms-2023 | --remove [--descriptor-dir DIR] [--output-dir DIR]
 *                                [--dry-run] [--force] [--json]`
 *
 * New VMs born current: Debian 12's and 13's Microsoft-keys VARS template holds only Microsoft's 2011
 * certificates. `--ms-2023` writes a host-local copy of it with the 2023 KEK/db certificates added
 * and a QEMU firmware descriptor for the copy whose file name sorts before the distro's, so that
 * everything that picks firmware from the descriptors picks it for a new Secure Boot VM: libvirt's
 * own autoselection (`<os firmware='efi'>` with the secure-boot and enrolled-keys features), `convert
 * --secure-boot` (its `<nvram template>`) and the hook's provisioning (they share the catalog's
 * matcher, src/core/firmware/catalog.ts). The choices (src/core/firmware/template.ts):
 *
 *   source      the descriptor libvirt picks for that request (x86_64 q35, SMM), raw, 4 MB preferred
 *               (Debian: 40-edk2-x86_64-secure-enrolled.json, /usr/share/OVMF/OVMF_VARS_4M.ms.fd);
 *   copy        <output-dir>/<template name with .ms-2023 before its extension>, 0644 root, in a 0755
 *               directory; default output dir: the config's templateDir
 *               (/var/lib/ovmf-hook-templates: host-local, outside the root-only state tree, because
 *               every libvirt that reads /etc/qemu/firmware copies the template — qemu:///system as
 *               root, a qemu:///session libvirt as its user; QEMU never opens it, so AppArmor's QEMU
 *               profiles do not matter);
 *   descriptor  <descriptor-dir>/<NN-1>-ovmf-hook-ms-2023.json when the current pick is NN-…; default
 *               descriptor dir: the last (most specific) of the config's firmwareDirs, /etc/qemu/firmware.
 *
 * Run again: "up to date" when the files hold exactly what would be written; rebuilt when they
 * differ — the distro's template changed (a package upgrade: its sha256 is in the descriptor's
 * tags), or the selection moved. `--remove` deletes ovmf-hook's descriptors (found by the marker in
 * their tags) and the copies they name when those still are what ovmf-hook wrote (name and sha256);
 * it refuses while a defined domain names a copy as its `<nvram template>` (convert's manual form,
 * libvirt ≥ 9.2's define-time pick): `virsh start --reset-nvram` and `nvram reset` of that domain
 * would find no template; `--force` removes anyway. Libvirt needs no reload: it reads the
 * descriptors each time it selects firmware. Exit 0 done or nothing to do, 1 refused, 2 usage.
 */
import { posix } from 'node:path';
import type { Argv, CommandModule } from 'yargs';
import { parseDomain } from '../../core/domain';
import { errorMessage, isOvmfHookError, RefusedError, UsageError } from '../../core/errors';
import { plural } from '../../core/text';
import {
  applyTemplateInstall,
  applyTemplateRemove,
  planTemplateInstall,
  planTemplateRemove,
  type TemplateDirs,
  type TemplateInstallPlan,
  type TemplateRemovePlan,
} from '../../io/firmware-template';
import { runInBatches, runVirshBatch, virshError, type VirshBatchRunner } from '../../io/virsh';
import { jsonOption, printJson } from '../output';
import { cliContext, type CliDeps, type CliContext } from '../vm';

export interface TemplateArgs {
  ms2023: boolean;
  remove: boolean;
  descriptorDir?: string;
  outputDir?: string;
  dryRun: boolean;
  force: boolean;
  json: boolean;
}

const print = (line: string): void => void process.stdout.write(`${line}\n`);
const warn = (line: string): void => void process.stderr.write(`ovmf-hook: warning: ${line}\n`);

/** The directories from the options and the config. */
export function templateDirs(ctx: CliContext, a: Pick<TemplateArgs, 'descriptorDir' | 'outputDir'>): TemplateDirs {
  const roots = ctx.config.firmwareDirs;
  const dir = (v: string | undefined, what: string, fallback: string | undefined): string => {
    if (v === '') throw new UsageError(`${what} needs a directory`);
    const d = v ?? fallback;
    if (!d) throw new UsageError(`the config names no firmware descriptor directory ("firmwareDirs"); give ${what}`);
    if (!posix.isAbsolute(d)) throw new UsageError(`${what} ${d} must be an absolute path`);
    return d;
  };
  return {
    roots,
    descriptorDir: dir(a.descriptorDir, '--descriptor-dir', roots.at(-1)),
    outputDir: dir(a.outputDir, '--output-dir', ctx.config.templateDir),
  };
}

// ─── --ms-2023 ──────────────────────────────────────────────────────────────────────────────

const certNames = (p: TemplateInstallPlan, status: 'added' | 'present') => p.items.filter((i) => i.status === status).map((i) => `${i.name} (${i.variable})`);

function installText(p: TemplateInstallPlan, dryRun: boolean): string[] {
  const lines = [
    `source:     ${p.source.template} (${p.source.descriptor}, sha256 ${p.source.sha256.slice(0, 12)}…)`,
    `template:   ${p.template.path}: ${[...certNames(p, 'added').map((n) => `+ ${n}`), ...certNames(p, 'present').map((n) => `${n} already there`)].join(', ')}`,
    `descriptor: ${p.descriptor.path} (sorts before ${posix.basename(p.winner)}, which libvirt picks now)`,
  ];
  const would = dryRun ? 'would be ' : '';
  const why = p.reasons.length ? ` (${p.reasons.join('; ')})` : '';
  const effect = "new Secure Boot VMs (libvirt's <os firmware='efi'> selection, convert --secure-boot, the hook) get the Microsoft 2023 certificates";
  switch (p.status) {
    case 'unneeded':
      return [
        `${p.source.template} (${p.source.descriptor}) holds every Microsoft 2023 certificate already: new Secure Boot VMs get them without a copy; nothing ${dryRun ? 'would be ' : ''}written`,
        ...p.staleDescriptors.map((s) => `still installed: ${s} (ovmf-hook's earlier copy, now redundant: ovmf-hook firmware template --remove drops it)`),
      ];
    case 'up-to-date':
      return [...lines, `up to date: ${effect}; nothing ${would}written`];
    case 'new':
      return [...lines, `${dryRun ? 'dry run: would install' : 'installed'}${why}: ${effect}${dryRun ? '; nothing written' : ''}`];
    case 'rebuild':
      return [
        ...lines,
        ...p.staleDescriptors.map((s) => `${dryRun ? 'would remove' : 'removed'}: ${s}`),
        ...p.keptTemplates.map((t) => `kept: ${t} (an older copy: domains defined with it name it; delete it once none does)`),
        `${dryRun ? 'dry run: would rebuild' : 'rebuilt'}${why}: ${effect}${dryRun ? '; nothing written' : ''}`,
      ];
  }
}

async function install(a: TemplateArgs, ctx: CliContext): Promise<void> {
  const plan = await planTemplateInstall(templateDirs(ctx, a));
  if (!a.dryRun) await applyTemplateInstall(plan);
  if (a.json)
    return printJson({
      action: 'install',
      status: plan.status,
      dryRun: a.dryRun,
      reasons: plan.reasons,
      source: plan.source,
      winner: plan.winner,
      template: { path: plan.template.path, sha256: plan.template.sha256, written: !a.dryRun && plan.template.write && plan.status !== 'unneeded' },
      descriptor: { path: plan.descriptor.path, written: !a.dryRun && plan.descriptor.write && plan.status !== 'unneeded' },
      certificates: plan.items.map((i) => ({ variable: i.variable, name: i.name, status: i.status, sha256: i.sha256 })),
      removed: a.dryRun || plan.status === 'unneeded' ? [] : plan.staleDescriptors,
      kept: plan.keptTemplates,
    });
  for (const l of installText(plan, a.dryRun)) print(l);
}

// ─── --remove ───────────────────────────────────────────────────────────────────────────────

/** Defined domains whose `<nvram template>` is one of `templates` (libvirt asked: list, then every inactive definition in batches). */
async function domainsNaming(templates: readonly string[], ctx: CliContext, batch: VirshBatchRunner): Promise<{ name: string; template: string }[]> {
  const list = await ctx.virsh(['list', '--all', '--name']);
  if (list.code !== 0) throw new RefusedError(`cannot ask libvirt which domains name ${templates.join(', ')} as their template (${virshError(list)}); --force removes it without asking`);
  const names = [...new Set(list.stdout.split('\n').map((s) => s.trim()).filter(Boolean))].sort();
  const dumps = await runInBatches(batch, names.map((n) => ['dumpxml', '--inactive', n]));
  const found: { name: string; template: string }[] = [];
  dumps.forEach((r, i) => {
    if (r.code !== 0) return; // undefined since it was listed
    let template: string | undefined;
    try {
      template = parseDomain(r.stdout).nvram?.template;
    } catch {
      return;
    }
    if (template && templates.includes(template)) found.push({ name: names[i]!, template });
  });
  return found;
}

function removeText(p: TemplateRemovePlan, dir: string, dryRun: boolean): string[] {
  if (!p.descriptors.length) return [`nothing to remove: no descriptor of ovmf-hook's in ${dir}`];
  const did = (yes: string, no: string) => (dryRun ? no : yes);
  return [
    ...p.descriptors.map((d) => `${did('removed', 'would remove')}: ${d}`),
    ...p.templates.map((t) =>
      t.action === 'remove' ? `${did('removed', 'would remove')}: ${t.path}` : t.action === 'missing' ? `already gone: ${t.path}` : `kept: ${t.path} (${t.why})`,
    ),
    `${dryRun ? 'dry run: new Secure Boot VMs would get' : 'new Secure Boot VMs get'} the template of the next descriptor in libvirt's order again (ovmf-hook firmware list)${dryRun ? '; nothing written' : ''}`,
  ];
}

async function remove(a: TemplateArgs, ctx: CliContext, deps: CliDeps): Promise<void> {
  const { descriptorDir } = templateDirs(ctx, a);
  const plan = planTemplateRemove(descriptorDir);
  const doomed = plan.templates.filter((t) => t.action === 'remove').map((t) => t.path);
  let users: { name: string; template: string }[] = [];
  if (doomed.length) {
    const batch: VirshBatchRunner = deps.virshBatch ?? (deps.virsh ? (cmds) => Promise.all(cmds.map((c) => ctx.virsh(c))) : runVirshBatch);
    try {
      users = await domainsNaming(doomed, ctx, batch);
    } catch (e) {
      if (!a.force || !isOvmfHookError(e)) throw e;
      warn(`${errorMessage(e).replace(/; --force .*$/, '')}; removing anyway (--force)`);
    }
  }
  if (users.length) {
    const list = users.map((u) => u.name).join(', ');
    const why = `${plural(users.length, 'defined domain')} name${users.length === 1 ? 's' : ''} ${users[0]!.template} as ${users.length === 1 ? 'its' : 'their'} <nvram template> (${list}): virsh start --reset-nvram and ovmf-hook nvram reset would find no template`;
    if (!a.force) throw new RefusedError(`${why}; point them at another template first (virsh edit), or add --force`);
    if (!a.json) warn(`${why}; removing anyway (--force)`);
  }
  if (!a.dryRun) await applyTemplateRemove(plan);
  if (a.json)
    return printJson({
      action: 'remove',
      dryRun: a.dryRun,
      descriptors: plan.descriptors,
      templates: plan.templates,
      domains: users,
    });
  for (const l of removeText(plan, descriptorDir, a.dryRun)) print(l);
}

// ─── command ────────────────────────────────────────────────────────────────────────────────

export async function runTemplate(a: TemplateArgs, deps: CliDeps = {}): Promise<void> {
  if (a.ms2023 === a.remove) throw new UsageError(a.ms2023 ? 'give --ms-2023 or --remove, not both' : 'name what to do: --ms-2023 (install or update the template) or --remove');
  if (a.remove && a.outputDir !== undefined) throw new UsageError('--output-dir applies to --ms-2023; --remove finds the copies through the descriptors that name them');
  const ctx = cliContext(deps);
  return a.remove ? remove(a, ctx, deps) : install(a, ctx);
}

export function makeTemplateCommand(deps: CliDeps = {}): CommandModule<object, any> {
  return {
    command: 'template',
    describe: "Give new Secure Boot VMs Microsoft's 2023 certificates: a copy of the distro's Microsoft-keys VARS template with them added, and a firmware descriptor that libvirt, convert and the hook pick first (--remove undoes it)",
    builder: (y: Argv) =>
      y
        .option('ms-2023', { type: 'boolean', default: false, describe: "write (or update) the copy with Microsoft's 2023 KEK/db certificates and its descriptor" })
        .option('remove', { type: 'boolean', default: false, describe: "delete ovmf-hook's descriptor and copy: new VMs get the distro's template again" })
        .option('descriptor-dir', { type: 'string', describe: 'where the descriptor goes (one of the config\'s firmwareDirs; default the last, /etc/qemu/firmware)' })
        .option('output-dir', { type: 'string', describe: 'where the copy goes (default: the config\'s templateDir)' })
        .option('dry-run', { type: 'boolean', default: false, describe: 'show what would be written or removed; write nothing' })
        .option('force', { type: 'boolean', default: false, describe: '--remove even while defined domains name the copy as their template' })
        .option('json', jsonOption())
        .example(`$0 firmware template --ms-2023`, "new Secure Boot VMs get the 2011 and 2023 Microsoft certificates")
        .example('$0 firmware template --remove', "back to the distro's template"),
    handler: (argv) => {
      const one = (name: string): string | undefined => {
        const v = argv[name];
        if (Array.isArray(v)) throw new UsageError(`--${name} given ${v.length} times; give it once`);
        return v === undefined ? undefined : String(v);
      };
      return runTemplate(
        {
          ms2023: argv['ms-2023'] === true,
          remove: argv.remove === true,
          descriptorDir: one('descriptor-dir'),
          outputDir: one('output-dir'),
          dryRun: argv['dry-run'] === true,
          force: argv.force === true,
          json: argv.json === true,
        },
        deps,
      );
    },
  };
}
