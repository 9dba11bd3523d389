/**
 * `ovmf-hook nvram vars <target> [--generation N] [--json]`: what is inside a UEFI NVRAM (VARS) image.
 * `ovmf-hook nvram diff <a> <b> [--json]` / `nvram diff <vm> --from N [--to M]`: which variables differ.
 *
 * A target is a file when it names an existing file or contains a "/" (libvirt VM names cannot);
 * otherwise it is a VM (name or UUID): its local NVRAM file, or with a generation number the
 * archived copy (a UUID only the archive knows works too).
 */
import { readFileSync, statSync } from 'node:fs';
import type { Argv, CommandModule } from 'yargs';
import { UsageError, VarstoreError } from '../../core/errors';
import { readNvramSafely } from '../../io';
import {
  diffToJson,
  diffVarstores,
  parseVarstore,
  renderDiff,
  renderVarsTable,
  varstoreToJson,
  type ParsedVarstore,
} from '../../core/varstore';
import { jsonOption, printJson } from '../output';
import { cliContext, resolveVm, type CliContext, type CliDeps, type Vm } from '../vm';

/** Largest image we read: a combined 4 MiB OVMF.fd, with room to spare. */
const MAX_IMAGE_BYTES = 16 * 1024 * 1024;

/** Read the bytes of the VARS image file `target`. */
export const loadBytes = async (target: string): Promise<Uint8Array> => {
  let size: number;
  try {
    const st = statSync(target);
    if (!st.isFile()) throw new UsageError(`${target}: not a regular file; give the path of a *_VARS.fd file`);
    size = st.size;
  } catch (e) {
    if (e instanceof UsageError) throw e;
    throw new UsageError(`${target}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message}`);
  }
  if (size > MAX_IMAGE_BYTES)
    throw new VarstoreError(`${target}: ${size} bytes is too big for a UEFI variable store (VARS files are 128 KiB or 528 KiB)`);
  return readFileSync(target);
};

/** A target names a file when it contains a "/" (libvirt VM names cannot) or is an existing file. */
export function isFileTarget(target: string): boolean {
  if (target.includes('/')) return true;
  try {
    return statSync(target, { throwIfNoEntry: false })?.isFile() === true;
  } catch {
    return false;
  }
}

/** A target resolved once: a file, or a VM whose local file or archived generations can be read. */
type Source = { kind: 'file'; path: string } | { kind: 'vm'; vm: Vm; ctx: CliContext };

/** The config, libvirt and archive are only touched when a target is a VM (once per command). */
const lazyContext = (deps: CliDeps): (() => CliContext) => {
  let ctx: CliContext | undefined;
  return () => (ctx ??= cliContext(deps));
};

async function resolveSource(target: string, context: () => CliContext): Promise<Source> {
  if (isFileTarget(target)) return { kind: 'file', path: target };
  const ctx = context();
  return { kind: 'vm', vm: await resolveVm(target, ctx), ctx };
}

interface Image {
  /** what was read, for headers and JSON: a path, or "<vm> generation N" */
  label: string;
  bytes: Uint8Array;
  vm?: { name: string; uuid: string };
  generation?: number;
}

async function readSource(src: Source, generation: number | undefined): Promise<Image> {
  if (src.kind === 'file') {
    if (generation !== undefined) throw new UsageError(`${src.path} is a file; --generation/--from/--to apply to a VM name or UUID`);
    return { label: src.path, bytes: await loadBytes(src.path) };
  }
  const { vm, ctx } = src;
  const who = { name: vm.name, uuid: vm.uuid };
  if (generation !== undefined) {
    const bytes = await (await ctx.archive()).read(vm.uuid, generation);
    return { label: `${vm.name} generation ${generation}`, bytes, vm: who, generation };
  }
  const hint = `read an archived copy with --generation N (see: ovmf-hook nvram list ${vm.uuid})`;
  if (!vm.nvram) throw new UsageError(`${vm.name}: ${vm.unmanaged ?? 'no local NVRAM file'}; ${hint}`);
  const local = await readNvramSafely(vm.nvram, { maxBytes: MAX_IMAGE_BYTES });
  if (!local) throw new UsageError(`${vm.name}: the local NVRAM ${vm.nvram} does not exist (the VM has not started on this host); ${hint}`);
  return { label: vm.nvram, bytes: local.data, vm: who };
}

/** Parse; parse errors name what was read. */
function parse(image: Image): ParsedVarstore {
  try {
    return parseVarstore(image.bytes);
  } catch (e) {
    if (e instanceof VarstoreError) throw new VarstoreError(`${image.label}: ${e.message}`);
    throw e;
  }
}

/**
 * `--generation`, `--from`, `--to`, `--keep`: a whole number ≥ 1, or absent. The options are
 * declared as strings (numberOption), so that the error can quote what was typed: yargs would
 * turn `abc` into NaN, which JSON prints as `null`.
 */
export function generationArg(value: unknown, flag = '--generation'): number | undefined {
  if (value === undefined || value === null) return undefined;
  if (Array.isArray(value)) throw new UsageError(`${flag} given ${value.length} times; give it once`);
  const text = String(value).trim();
  const n = /^\d+$/.test(text) ? Number(text) : NaN;
  if (!Number.isSafeInteger(n) || n < 1)
    throw new UsageError(`${flag} must be a whole number ≥ 1, got ${typeof value === 'string' ? JSON.stringify(value) : String(value)}`);
  return n;
}

/** A whole-number option, read by generationArg (a string to yargs, so a typo reaches the message as typed). */
export const numberOption = (describe: string) => ({ type: 'string', describe }) as const;

const whereFrom = (i: Image) => ({ ...(i.vm ? { vm: i.vm } : {}), ...(i.generation !== undefined ? { generation: i.generation } : {}) });

async function vars(argv: { target: string; generation?: number; json: boolean }, deps: CliDeps): Promise<void> {
  const image = await readSource(await resolveSource(argv.target, lazyContext(deps)), argv.generation);
  const parsed = parse(image);
  if (argv.json) printJson({ target: argv.target, ...whereFrom(image), ...varstoreToJson(parsed) });
  else process.stdout.write(`${image.vm ? `${image.label}\n` : ''}${renderVarsTable(parsed)}`);
}

async function diff(argv: { a: string; b?: string; from?: number; to?: number; json: boolean }, deps: CliDeps): Promise<void> {
  const context = lazyContext(deps);
  let images: [Image, Image];
  if (argv.b !== undefined) {
    if (argv.from !== undefined || argv.to !== undefined)
      throw new UsageError('give either two targets (nvram diff A B) or one VM with --from N [--to M], not both');
    const [sa, sb] = await Promise.all([resolveSource(argv.a, context), resolveSource(argv.b, context)]);
    images = await Promise.all([readSource(sa, undefined), readSource(sb, undefined)]);
  } else {
    if (argv.from === undefined)
      throw new UsageError(`nvram diff ${argv.a} needs --from N (and --to M; default: the local NVRAM file), or a second target`);
    const src = await resolveSource(argv.a, context);
    if (src.kind === 'file') throw new UsageError(`${argv.a} is a file; compare two files with: ovmf-hook nvram diff A B`);
    images = [await readSource(src, argv.from), await readSource(src, argv.to)];
  }
  const [a, b] = images;
  const d = diffVarstores(parse(a), parse(b));
  if (argv.json) printJson({ a: a.label, b: b.label, ...diffToJson(d) });
  else process.stdout.write(`--- ${a.label}\n+++ ${b.label}\n${renderDiff(d)}`);
}

export function makeNvramVarsCommand(deps: CliDeps = {}): CommandModule<object, any> {
  return {
    command: 'vars <target>',
    describe: 'Show the Secure Boot state, boot entries and variables of a VM\'s NVRAM, an archived generation or a VARS file',
    builder: (y: Argv) =>
      y
        .positional('target', { type: 'string', demandOption: true, describe: 'VM name or UUID, or the path of an OVMF VARS / NVRAM file' })
        .option('generation', numberOption('read this archived generation of the VM instead of its local NVRAM'))
        .option('json', jsonOption()),
    handler: (argv) => vars({ target: String(argv.target), generation: generationArg(argv.generation), json: argv.json === true }, deps),
  };
}

export function makeNvramDiffCommand(deps: CliDeps = {}): CommandModule<object, any> {
  return {
    command: 'diff <a> [b]',
    describe: 'Show UEFI variables added, removed or changed between two NVRAM images (files, or generations of a VM)',
    builder: (y: Argv) =>
      y
        .positional('a', { type: 'string', demandOption: true, describe: 'the older NVRAM file, or a VM name/UUID (with --from)' })
        .positional('b', { type: 'string', describe: 'the newer NVRAM file (or VM: its local NVRAM)' })
        .option('from', numberOption('VM form: the older archived generation'))
        .option('to', numberOption('VM form: the newer archived generation (default: the local NVRAM file)'))
        .option('json', jsonOption()),
    handler: (argv) =>
      diff(
        {
          a: String(argv.a),
          b: argv.b === undefined ? undefined : String(argv.b),
          from: generationArg(argv.from, '--from'),
          to: generationArg(argv.to, '--to'),
          json: argv.json === true,
        },
        deps,
      ),
  };
}

export const nvramVarsCommand = makeNvramVarsCommand();
export const nvramDiffCommand = makeNvramDiffCommand();
