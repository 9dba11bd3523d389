/**
 * `ovmf-hook` admin CLI: yargs commands over the same pure core the hook uses.
 * Exit codes: 0 done; 1 refused by policy or state; 2 bad input or usage.
 * Errors: one line on stderr (`ovmf-hook: …`), nothing on stdout.
 */
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { UsageError } from '../core/errors';
import { commands } from './commands';
import { GLOBAL_OPTIONS } from './fast';
import { reportError } from './report';

export async function main(argv: string[] = hideBin(process.argv)): Promise<number> {
  const cli = yargs(argv)
    .scriptName('ovmf-hook')
    .strict()
    .demandCommand(1, 'name a command; see ovmf-hook --help')
    .option('debug', GLOBAL_OPTIONS.debug)
    .recommendCommands()
    .fail((msg, err) => {
      if (err) throw err;
      // throw (not just record): yargs would otherwise still run the command's handler
      const line = msg.split('\n').map((l) => l.trim()).filter(Boolean).join(' ');
      throw new UsageError(line.includes('--help') ? line : `${line} (see ovmf-hook --help)`);
    })
    .help()
    .version(false)
    .wrap(Math.min(110, process.stdout.columns ?? 100));
  for (const c of commands) cli.command(c);
  try {
    await cli.parseAsync();
  } catch (e) {
    return reportError(e, argv.includes('--debug'));
  }
  return Number(process.exitCode ?? 0);
}
