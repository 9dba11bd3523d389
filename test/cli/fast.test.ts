/**
 * The quick way in (src/cli/fast.ts) against yargs: for every command line it accepts, yargs
 * accepts it too and hands the handler the same values; everything else it leaves to yargs.
 */
import type { ArgumentsCamelCase, CommandModule } from 'yargs';
import yargs from 'yargs';
import { describe, expect, it } from 'vitest';
import { convertCommand } from '../../src/cli/commands/convert';
import { rewriteCommand } from '../../src/cli/commands/rewrite';
import { GLOBAL_OPTIONS, quickArgs } from '../../src/cli/fast';

const MODULES: Record<string, CommandModule<object, any>> = { rewrite: rewriteCommand, convert: convertCommand };

/** What the handler gets from yargs, set up like src/cli/main.ts (strict, errors thrown). */
function viaYargs(argv: string[]): ArgumentsCamelCase {
  let got: ArgumentsCamelCase | undefined;
  const module = MODULES[argv[0]!]!;
  yargs(argv)
    .scriptName('ovmf-hook')
    .strict()
    .option('debug', GLOBAL_OPTIONS.debug)
    .fail((msg, err) => {
      throw err ?? new Error(msg);
    })
    .command({ ...module, handler: (a: ArgumentsCamelCase) => void (got = a) })
    .help()
    .version(false)
    .parse();
  if (!got) throw new Error('yargs did not run the handler');
  return got;
}

/** The values a handler reads: every declared option and positional, camelCase. */
const KEYS: Record<string, string[]> = {
  rewrite: ['file', 'printDiff', 'json', 'secureBoot', 'tpm', 'uefi', 'rootPorts', 'firmware', 'debug'],
  convert: ['names', 'all', 'match', 'dryRun', 'force', 'secureBoot', 'tpm', 'uefi', 'rootPorts', 'firmware', 'debug'],
};
const handlerView = (command: string, a: ArgumentsCamelCase) => Object.fromEntries(KEYS[command]!.map((k) => [k, k === 'names' ? (a[k] ?? []) : a[k]]));

const SAME: string[][] = [
  ['rewrite'],
  ['rewrite', 'vm.xml'],
  ['rewrite', '-'],
  ['convert', '--dry-run', 'vm-'],
  ['rewrite', '--secure-boot'],
  ['rewrite', '--no-secure-boot', 'vm.xml'],
  ['rewrite', 'vm.xml', '--tpm', '--no-uefi', '--firmware', 'auto'],
  ['rewrite', '--root-ports', '3'],
  ['rewrite', '--root-ports=07'],
  ['rewrite', '--root-ports', '99'],
  ['rewrite', '--firmware=manual', '--print-diff', '--debug'],
  ['rewrite', '--json', '123'],
  ['convert', 'vm1'],
  ['convert', 'vm1', 'vm2', '--dry-run'],
  ['convert', '--all', '--match', 'web-*'],
  ['convert', '--all', '--force', '--secure-boot', '--tpm'],
  ['convert', 'vm', '--root-ports', '0', '--no-tpm'],
  ['convert', '42'],
  ['convert'],
  ['convert', '--match', ''],
];

const DECLINED: string[][] = [
  ['rewrite', 'a.xml', 'b.xml'],
  ['rewrite', '--help'],
  ['rewrite', '-h'],
  ['rewrite', '--secure-bot'],
  ['rewrite', '--secureBoot'],
  ['rewrite', '--root-ports', 'many'],
  ['rewrite', '--root-ports', '-1'],
  ['rewrite', '--root-ports', '1e3'],
  ['rewrite', '--root-ports', '0x10'],
  ['rewrite', '--root-ports'],
  ['rewrite', '--firmware', 'bogus'],
  ['rewrite', '--tpm', '--tpm'],
  ['rewrite', '--tpm', '--no-tpm'],
  ['rewrite', '--tpm=false'],
  ['rewrite', '--', 'vm.xml'],
  ['rewrite', '--no-root-ports'],
  ['rewrite', '--version'],
  ['convert', '--match', 'a', '--match', 'b'],
  ['convert', '-x'],
  ['convert', '--all', '--print-diff'],
  ['convert', '-', 'vm'],
  ['firmware', 'list'],
  ['rewrites'],
  [],
];

describe('quickArgs: the quick way in agrees with yargs', () => {
  it.each(SAME)('%j: the handler gets what yargs gives it', (...argv) => {
    const quick = quickArgs(MODULES[argv[0]!]!, argv);
    expect(quick, 'the quick way takes it').toBeDefined();
    expect(handlerView(argv[0]!, quick!)).toEqual(handlerView(argv[0]!, viaYargs(argv)));
  });

  it.each(DECLINED.map((a) => [a]))('%j: left to yargs', (argv) => {
    for (const module of Object.values(MODULES)) expect(quickArgs(module, argv)).toBeUndefined();
  });

  it('declines a command whose builder does more than declare options', () => {
    const checked: CommandModule<object, any> = {
      command: 'rewrite [file]',
      describe: '',
      builder: (y) => y.positional('file', { type: 'string' }).check(() => true),
      handler: () => {},
    };
    const aliased: CommandModule<object, any> = {
      command: 'rewrite [file]',
      describe: '',
      builder: (y) => y.positional('file', { type: 'string' }).option('tpm', { type: 'boolean', alias: 't' }),
      handler: () => {},
    };
    const required: CommandModule<object, any> = { command: 'rewrite <file>', describe: '', builder: (y) => y, handler: () => {} };
    for (const m of [checked, aliased, required]) expect(quickArgs(m, ['rewrite', 'vm.xml'])).toBeUndefined();
  });
});
