/**
 * `ovmf-hook nvram boot VM|FILE [--add PATH --label TEXT [--disk N]] [--next [N]] [--order LIST]
 *                             [--remove N] [--output OUT | --in-place] [--dry-run] [--json]`
 *
 * Without a change option: the boot configuration (BootOrder, BootNext, BootCurrent, every
 * Boot####). With one: the same offline rules as `nvram enroll` — a VM must be shut off (asked
 * under its lock), its NVRAM is archived first and the result becomes the newest generation (undo:
 * `nvram restore VM --generation <the copy>`); a FILE is written to `--output OUT` or `--in-place`.
 * Changes apply in the order remove, add, order, next (src/core/varstore/boot-entries.ts).
 *
 * TPM: the firmware measures BootOrder and the Boot#### it lists into PCR1 (edk2 Tcg2Dxe
 * MeasureAllBootVariables, TCG PC Client PFP: EV_EFI_VARIABLE_BOOT), never into PCR7, and BootNext
 * not at all; the binary a boot runs goes into PCR4. BitLocker seals to PCR 7 and 11 with Secure
 * Boot (0, 2, 4, 11 without), so a boot entry change needs no reseal: a VM with a TPM gets a note,
 * not a refusal (unlike `nvram enroll`, whose KEK/db changes move PCR7).
 */
import { open } from 'node:fs/promises';
import type { Argv, CommandModule } from 'yargs';
import { parseDomain } from '../../core/domain';
import { isOvmfHookError, RefusedError, UsageError, VarstoreError } from '../../core/errors';
import {
  checkBootLabel,
  domainDisks,
  editBootEntries,
  espOf,
  normalizeBootFilePath,
  parseBootNumber,
  parseBootOrder,
  readPartitionTable,
  parseVarstore,
  PARTITION_TABLE_BYTES,
  readBootConfig,
  selectDisk,
  type BootConfig,
  type BootEdit,
  type BootEditResult,
  type PartitionRef,
} from '../../core/varstore';
import { enrollNvram, readNvramSafely } from '../../io';
import { virshError } from '../../io/virsh';
import { checkFileTarget, writeFileTarget } from '../file-target';
import { changeLocalNvram } from '../local-nvram';
import { jsonOption, printJson } from '../output';
import { table } from '../table';
import { cliContext, managedNvram, requireShutOff, resolveVm, type CliContext, type CliDeps, type Vm } from '../vm';
import { isFileTarget, loadBytes } from './nvram-vars';

export interface BootArgs {
  target: string;
  add?: string;
  label?: string;
  disk?: string;
  /** '' = the entry --add creates */
  next?: string;
  order?: string;
  remove?: string;
  output?: string;
  inPlace: boolean;
  dryRun: boolean;
  json: boolean;
}

const print = (text: string): void => void process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
const opt = (n: number | null) => (n === null ? null : `Boot${n.toString(16).toUpperCase().padStart(4, '0')}`);

/** The note for a VM with a TPM (see the file comment for the facts behind it). */
export const TPM_BOOT_NOTE =
  'the firmware measures BootOrder and the Boot#### it lists into PCR1, not into PCR7 (Secure Boot), so BitLocker (default PCRs 7, 11; without Secure Boot 0, 2, 4, 11) needs no reseal; ' +
  'a one-shot boot of another loader (--next) changes PCR4 for that boot only';

// ─── listing ────────────────────────────────────────────────────────────────────────────────

const configJson = (c: BootConfig) => ({
  order: c.order.map((n) => opt(n)),
  next: opt(c.next),
  current: opt(c.current),
  entries: c.entries,
  missing: c.missing.map((n) => opt(n)),
  problems: c.problems,
});

function renderConfig(c: BootConfig): string {
  const head = table([
    ['BootOrder', c.order.length ? c.order.map((n) => opt(n)).join(', ') : '(none)'],
    ['BootNext', c.next === null ? '(none)' : `${opt(c.next)} (the next start boots it once)`],
    ...(c.current === null ? [] : [['BootCurrent', opt(c.current)!]]),
  ]);
  const rows = c.entries.map((e) => [
    e.position === null ? '-' : String(e.position + 1),
    e.name,
    e.error ? 'error' : [e.active ? 'active' : 'inactive', ...(e.hidden ? ['hidden'] : []), ...(e.category !== 'boot' ? [e.category] : [])].join(','),
    e.error ? '' : JSON.stringify(e.description),
    e.error ?? `${e.devicePath}${e.optionalData ? `  (+${e.optionalData.length / 2} bytes optional data)` : ''}`,
  ]);
  const notes = [
    ...c.missing.map((n) => `note: ${c.order.includes(n) ? 'BootOrder' : 'BootNext'} names ${opt(n)}, which does not exist (the firmware skips it)`),
    ...c.problems.map((p) => `problem: ${p}`),
  ];
  return `${head}\n${rows.length ? table([['ORDER', 'ENTRY', 'FLAGS', 'DESCRIPTION', 'DEVICE PATH'], ...rows]) : 'no Boot#### entries\n'}${notes.map((n) => `${n}\n`).join('')}`;
}

function parseStore(bytes: Uint8Array, label: string) {
  try {
    return parseVarstore(bytes);
  } catch (e) {
    if (e instanceof VarstoreError) throw new VarstoreError(`${label}: ${e.message}`);
    throw e;
  }
}

async function list(a: BootArgs, deps: CliDeps): Promise<void> {
  let label: string;
  let bytes: Uint8Array;
  let who: object = {};
  if (isFileTarget(a.target)) {
    label = a.target;
    bytes = await loadBytes(a.target);
    who = { file: a.target };
  } else {
    const vm = await resolveVm(a.target, cliContext(deps));
    const nvramPath = managedNvram(vm);
    const local = await readNvramSafely(nvramPath);
    if (!local) throw new UsageError(`${vm.name}: its NVRAM ${nvramPath} does not exist yet (the VM has not started on this host)`);
    label = nvramPath;
    bytes = local.data;
    who = { vm: { name: vm.name, uuid: vm.uuid }, nvram: nvramPath };
  }
  const c = readBootConfig(parseStore(bytes, label).variables);
  if (a.json) return printJson({ target: a.target, ...who, ...configJson(c) });
  print(`${isFileTarget(a.target) ? '' : `${label}\n`}${renderConfig(c)}`);
}

// ─── changes ────────────────────────────────────────────────────────────────────────────────

const changing = (a: BootArgs) => a.add !== undefined || a.next !== undefined || a.order !== undefined || a.remove !== undefined;

function check(a: BootArgs, file: boolean): void {
  if (a.label !== undefined && a.add === undefined) throw new UsageError('--label names the entry --add creates; give --add PATH too');
  if (a.add !== undefined && a.label === undefined) throw new UsageError('--add needs --label TEXT: the name the boot menu shows for the entry');
  if (a.disk !== undefined && a.add === undefined) throw new UsageError('--disk says where the file of --add is; give --add PATH --label TEXT too');
  if (a.output !== undefined && a.inPlace) throw new UsageError('give either --output OUT or --in-place, not both');
  if (!changing(a)) {
    if (a.output !== undefined || a.inPlace || a.dryRun) throw new UsageError('--output, --in-place and --dry-run go with a change: --add, --next, --order or --remove');
    return;
  }
  if (!file && (a.output !== undefined || a.inPlace))
    throw new UsageError(`${a.target} is a VM: its NVRAM is changed in place (archived first); --output and --in-place apply to a FILE (a path)`);
  if (file && a.disk !== undefined) throw new UsageError(`--disk reads the partition table of a VM's disk; ${a.target} is a file: leave out --disk (the file path alone is found on whichever file system holds it)`);
  if (file && !a.dryRun && a.output === undefined && !a.inPlace)
    throw new UsageError(`${a.target} is a file: write the result to --output OUT (a new file) or change it with --in-place (or look first with --dry-run)`);
}

/** The request as the core takes it (the partition filled in later for --disk). */
function request(a: BootArgs, partition?: PartitionRef): BootEdit {
  return {
    ...(a.add !== undefined ? { add: { path: normalizeBootFilePath(a.add), label: checkBootLabel(a.label ?? ''), ...(partition ? { partition } : {}) } } : {}),
    ...(a.next !== undefined ? { next: a.next.trim() === '' ? ('added' as const) : parseBootNumber(a.next, '--next') } : {}),
    ...(a.order !== undefined ? { order: parseBootOrder(a.order) } : {}),
    ...(a.remove !== undefined ? { remove: parseBootNumber(a.remove, '--remove') } : {}),
  };
}

/** Run the pure edit on `bytes`, naming `label` in its store errors. */
function edit(bytes: Uint8Array, req: BootEdit, label: string): BootEditResult {
  try {
    return editBootEntries(bytes, req);
  } catch (e) {
    if (e instanceof VarstoreError) throw new VarstoreError(`${label}: ${e.message}`);
    throw e;
  }
}

const changedText = (r: BootEditResult) => r.changes.join('; ');

/** The options that name the request, for the generation's reason. */
const requestText = (a: BootArgs): string =>
  [
    ...(a.remove !== undefined ? [`--remove ${a.remove}`] : []),
    ...(a.add !== undefined ? [`--add ${a.add}`] : []),
    ...(a.order !== undefined ? [`--order ${a.order}`] : []),
    ...(a.next !== undefined ? [`--next${a.next ? ` ${a.next}` : ''}`] : []),
  ].join(' ');

const resultJson = (r: BootEditResult) => ({ changed: r.changed, changes: r.changes, added: opt(r.added), ...configJson(r.after) });

async function changeFile(a: BootArgs, req: BootEdit, deps: CliDeps): Promise<void> {
  const file = a.target;
  checkFileTarget(file, a, deps, { verb: 'change', command: 'ovmf-hook nvram boot VM' });
  const r = edit(await loadBytes(file), req, file);
  const written = await writeFileTarget(file, a, r);
  if (a.json) return printJson({ target: file, file, dryRun: a.dryRun, written: written ?? null, ...resultJson(r) });
  print(
    a.dryRun
      ? r.changed
        ? `dry run: would change ${file}: ${changedText(r)}; nothing written`
        : `dry run: ${file} is already so; nothing to change`
      : r.changed
        ? `${file}: ${changedText(r)}; written to ${written}${written === file ? ' (in place)' : ''}`
        : `${file}: already so; ${written ? `${written} written unchanged` : 'nothing written'}`,
  );
}

/** The ESP of the VM's disk `spec` (--disk), from the partition table at the start of its source. */
async function partitionOf(ctx: CliContext, vm: Vm, spec: string): Promise<PartitionRef> {
  const r = await ctx.virsh(['dumpxml', '--inactive', vm.uuid]);
  if (r.code !== 0) throw new RefusedError(`cannot read ${vm.name}'s definition: ${virshError(r)}`);
  const disk = selectDisk(domainDisks(parseDomain(r.stdout)), spec, vm.name);
  const what = `${vm.name}'s disk ${disk.index} (${disk.target}, ${disk.source})`;
  let head: Uint8Array;
  try {
    const fh = await open(disk.source, 'r');
    try {
      const st = await fh.stat();
      if (!st.isFile() && !st.isBlockDevice()) throw new UsageError(`${what} is not a regular file or block device`);
      const buf = Buffer.alloc(PARTITION_TABLE_BYTES);
      const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
      head = buf.subarray(0, bytesRead);
    } finally {
      await fh.close();
    }
  } catch (e) {
    if (isOvmfHookError(e)) throw e;
    throw new UsageError(`cannot read ${what}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message}`);
  }
  return espOf(readPartitionTable(head, what), what);
}

async function changeVm(a: BootArgs, deps: CliDeps): Promise<void> {
  const ctx = cliContext(deps);
  const vm = await resolveVm(a.target, ctx);
  const nvramPath = managedNvram(vm);
  // refusals that need no lock come first, so that a refused change touches nothing (not even the
  // archive); the lock-held step asks "shut off?" again and edits what the file holds then
  request(a); // bad numbers, paths and labels are refused before libvirt is asked anything more
  if (!a.dryRun) await requireShutOff(vm, ctx.virsh, 'boot');
  const req = request(a, a.disk !== undefined ? await partitionOf(ctx, vm, a.disk) : undefined);
  const local = await readNvramSafely(nvramPath);
  if (!local) throw new UsageError(`${vm.name}: its NVRAM ${nvramPath} does not exist yet; start the VM once (libvirt creates it from the template), shut it down, then change its boot entries`);
  const preview = edit(local.data, req, vm.name);
  if (vm.tpm && preview.changed) process.stderr.write(`ovmf-hook: note: ${vm.name} has a TPM: ${TPM_BOOT_NOTE}\n`);
  const who = { vm: { name: vm.name, uuid: vm.uuid }, nvram: nvramPath, tpm: vm.tpm === true };

  if (a.dryRun || !preview.changed) {
    if (a.json) return printJson({ target: a.target, ...who, dryRun: a.dryRun, ...resultJson(preview), generation: null, saved: null });
    return print(
      !preview.changed
        ? `${vm.name}: the boot entries are already so; nothing ${a.dryRun ? 'to change' : 'written'}`
        : `dry run: would change ${vm.name}'s NVRAM ${nvramPath}: ${changedText(preview)}; nothing written`,
    );
  }

  const archive = await ctx.archive({ create: true });
  const out = await changeLocalNvram(
    ctx,
    vm,
    nvramPath,
    archive,
    'boot',
    (o) =>
      enrollNvram({
        ...o,
        edit: (current) => {
          const r = edit(current, req, vm.name);
          return { ...r, reason: `nvram boot ${requestText(a)}: ${changedText(r) || 'nothing changed'}` };
        },
      }),
    'nvram boot',
  );
  const r = out.result;
  if (a.json) return printJson({ target: a.target, ...who, dryRun: false, ...resultJson(r), generation: out.generation ?? null, saved: out.saved ?? null });
  print(
    r.changed
      ? `${vm.name}: ${changedText(r)}; archived as generation ${out.generation} (the newest); the NVRAM before is generation ${out.saved} (undo: ovmf-hook nvram restore ${vm.name} --generation ${out.saved})`
      : `${vm.name}: the boot entries are already so; nothing written`,
  );
}

// ─── command ────────────────────────────────────────────────────────────────────────────────

async function run(a: BootArgs, deps: CliDeps): Promise<void> {
  const file = isFileTarget(a.target);
  check(a, file);
  if (!changing(a)) return list(a, deps);
  if (file) return changeFile(a, request(a), deps);
  return changeVm(a, deps);
}

export function makeNvramBootCommand(deps: CliDeps = {}): CommandModule<object, any> {
  return {
    command: 'boot <target>',
    describe: "List a VM's (or VARS file's) boot entries, or change them offline: add an entry, BootNext, BootOrder, remove (archived first)",
    builder: (y: Argv) =>
      y
        .positional('target', { type: 'string', demandOption: true, describe: 'VM name or UUID, or the path of an OVMF VARS file' })
        .option('add', {
          type: 'string',
          describe:
            "add an entry for this EFI binary on the VM's EFI system partition, e.g. '\\EFI\\debian\\shimx64.efi' (appended to BootOrder; without --disk the firmware looks for it on every file system)",
        })
        .option('label', { type: 'string', describe: 'the description of the --add entry (what boot menus show)' })
        .option('disk', {
          type: 'string',
          describe:
            "with --add: bind the entry to the EFI system partition of this disk of the VM (1 = its first disk, or a target such as vda): HD(partition, signature)/path, read from the disk's GPT or MBR (raw images and block devices)",
        })
        .option('next', { type: 'string', describe: 'set BootNext: the next start boots this entry once (hex number as listed; without a number: the --add entry)' })
        .option('order', { type: 'string', describe: 'set BootOrder to these entries, comma-separated hex numbers as listed, e.g. 3,1,0 (each must exist)' })
        .option('remove', { type: 'string', describe: 'delete this Boot#### and drop it from BootOrder and BootNext' })
        .option('output', { type: 'string', describe: 'FILE form: write the result to this new file' })
        .option('in-place', { type: 'boolean', default: false, describe: 'FILE form: change FILE itself' })
        .option('dry-run', { type: 'boolean', default: false, describe: 'show what would change; write nothing' })
        .option('json', jsonOption())
        .example('$0 nvram boot vm1', 'BootOrder, BootNext and every Boot#### entry')
        .example("$0 nvram boot vm1 --add '\\EFI\\debian\\shimx64.efi' --label debian --next", 'add an entry and boot it once at the next start')
        .example('$0 nvram boot vm1 --order 3,1,0', 'set the boot order')
        .example('$0 nvram boot vm1 --remove 3', 'delete Boot0003'),
    handler: (argv) => {
      const one = (name: string): string | undefined => {
        const v = argv[name];
        if (Array.isArray(v)) throw new UsageError(`--${name} given ${v.length} times; give it once`);
        return v === undefined || v === null ? undefined : String(v);
      };
      return run(
        {
          target: String(argv.target),
          add: one('add'),
          label: one('label'),
          disk: one('disk'),
          next: one('next'),
          order: one('order'),
          remove: one('remove'),
          output: one('output'),
          inPlace: argv['in-place'] === true,
          dryRun: argv['dry-run'] === true,
          json: argv.json === true,
        },
        deps,
      );
    },
  };
}
