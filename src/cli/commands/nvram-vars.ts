/**
 * `ovmf-hook nvram vars <target> [--json]`: what is inside a UEFI NVRAM (VARS) file.
 * `ovmf-hook nvram diff <a> <b> [--json]`: which variables two NVRAM files disagree on.
 * Targets are file paths for now; `loadBytes` is the one place to teach VM-name/generation lookup.
 */
import { readFileSync, statSync } from 'node:fs';
import type { Argv, CommandModule } from 'yargs';
import { UsageError, VarstoreError } from '../../errors';
import {
  diffToJson,
  diffVarstores,
  parseVarstore,
  renderDiff,
  renderVarsTable,
  varstoreToJson,
  type ParsedVarstore,
} from '../../nvram/varstore';

/** Largest image we read: a combined 4 MiB OVMF.fd, with room to spare. */
const MAX_IMAGE_BYTES = 16 * 1024 * 1024;

/** Read the bytes of a VARS image named by `target` (today: a file path). */
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

/** Load and parse; parse errors name the target. */
const loadStore = async (target: string): Promise<ParsedVarstore> => {
  const bytes = await loadBytes(target);
  try {
    return parseVarstore(bytes);
  } catch (e) {
    if (e instanceof VarstoreError) throw new VarstoreError(`${target}: ${e.message}`);
    throw e;
  }
};

interface VarsArgs {
  target: string;
  json: boolean;
}

interface DiffArgs {
  a: string;
  b: string;
  json: boolean;
}

const json = (doc: unknown) => process.stdout.write(`${JSON.stringify(doc, null, 2)}\n`);

async function vars(argv: VarsArgs): Promise<void> {
  const { target, json: asJson } = argv;
  const parsed = await loadStore(target);
  if (asJson) json({ target, ...varstoreToJson(parsed) });
  else process.stdout.write(renderVarsTable(parsed));
}

async function diff(argv: DiffArgs): Promise<void> {
  const { a: pathA, b: pathB, json: asJson } = argv;
  const [a, b] = await Promise.all([loadStore(pathA), loadStore(pathB)]);
  const d = diffVarstores(a, b);
  if (asJson) json({ a: pathA, b: pathB, ...diffToJson(d) });
  else process.stdout.write(renderDiff(d));
}

export const nvramVarsCommand: CommandModule<object, any> = {
  command: 'vars <target>',
  describe: 'Show the Secure Boot state, boot entries and variables of a UEFI NVRAM (VARS) file',
  builder: (y: Argv) =>
    y
      .positional('target', { type: 'string', demandOption: true, describe: 'path of an OVMF VARS / NVRAM file' })
      .option('json', { type: 'boolean', default: false, describe: 'one JSON document on stdout' }),
  handler: (argv) => vars({ target: String(argv.target), json: argv.json === true }),
};

export const nvramDiffCommand: CommandModule<object, any> = {
  command: 'diff <a> <b>',
  describe: 'Show UEFI variables added, removed or changed between two NVRAM (VARS) files',
  builder: (y: Argv) =>
    y
      .positional('a', { type: 'string', demandOption: true, describe: 'the older NVRAM file' })
      .positional('b', { type: 'string', demandOption: true, describe: 'the newer NVRAM file' })
      .option('json', { type: 'boolean', default: false, describe: 'one JSON document on stdout' }),
  handler: (argv) => diff({ a: String(argv.a), b: String(argv.b), json: argv.json === true }),
};
