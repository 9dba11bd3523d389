/**
 * `ovmf-hook config check [--file F] [--json]`: can the hook use the config file? It is loaded
 * exactly as the hook loads it (loadConfig: a regular file, at most 64 KiB, a UTF-8 BOM accepted,
 * unknown keys and wrong types are errors) and `logFile` is checked as the hook checks it before
 * writing. Exit 0: valid or absent (built-in defaults); 2: the file is unusable (one line naming
 * the file, the key and the fix); 1: valid but `logFile` is unsafe (the hook will not write it).
 *
 * `ovmf-hook config show [--file F] [--json]`: the effective config (built-in defaults merged), as
 * a config file would say it.
 *
 * `checkConfig` is the one implementation: doctor's `config` and `log file` lines come from it.
 */
import { existsSync } from 'node:fs';
import type { Argv, CommandModule } from 'yargs';
import { configFileForm, defaultConfig, type Config } from '../../core/config';
import { configPath, loadConfig } from '../../io';
import { ConfigError, RefusedError } from '../../core/errors';
// The CLI takes the hook's own log-file check (only this function: src/io/log.ts needs node:fs
// and path, nothing of the hook's main). A later redesign moves it out of src/hook.
import { logFileProblem } from '../../io/log';
import { jsonOption, printJson } from '../output';

export interface ConfigCheck {
  file: string;
  /** the file loads (or is absent): the hook uses it */
  valid: boolean;
  /** no file: the hook uses the built-in defaults */
  absent: boolean;
  /** the config the hook uses; the built-in defaults when the file is absent or invalid */
  config: Config;
  /** why the file is unusable (the ConfigError's one line), when not valid */
  error?: string;
  /** `logFile` when set, and why the hook would not write it (null: it would) */
  logFile?: { file: string; problem: string | null };
  /** every problem, one line each, naming the file, the key and the fix */
  problems: string[];
}

/** Load and check `file` like the hook does; never throws for a bad file (see `error`/`problems`). */
export function checkConfig(file: string = configPath()): ConfigCheck {
  let config: Config;
  try {
    config = loadConfig(file);
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    return { file, valid: false, absent: false, config: defaultConfig(), error: e.message, problems: [e.message] };
  }
  const absent = !existsSync(file); // loadConfig gives the defaults only for a missing file
  if (config.logFile === undefined) return { file, valid: true, absent, config, problems: [] };
  const raw = logFileProblem(config.logFile);
  // logFileProblem's text is "log file <path>: <problem and fix>"
  const prefix = `log file ${config.logFile}: `;
  const problem = raw && (raw.startsWith(prefix) ? raw.slice(prefix.length) : raw);
  return {
    file,
    valid: true,
    absent,
    config,
    logFile: { file: config.logFile, problem },
    problems: problem ? [`${file}: "logFile": the hook will not write ${config.logFile}: ${problem}`] : [],
  };
}

interface FileArgs {
  file?: string;
  json: boolean;
}

const fileAndJson = (y: Argv, what: string): Argv<FileArgs> =>
  y
    .option('file', { type: 'string', describe: 'Config file (default: $OVMF_HOOK_CONFIG or /etc/ovmf-hook/config.json)' })
    .option('json', jsonOption(what)) as unknown as Argv<FileArgs>;

function check(argv: FileArgs): void {
  const c = checkConfig(argv.file || configPath());
  if (argv.json) printJson({ file: c.file, valid: c.valid, absent: c.absent, problems: c.problems });
  if (!c.valid) throw new ConfigError(c.file, c.error ?? c.problems[0]!); // exit 2
  if (c.problems.length) throw new RefusedError(c.problems[0]!); // exit 1 (one problem at most today: logFile)
  if (!argv.json) process.stdout.write(c.absent ? `${c.file} absent: built-in defaults\n` : `${c.file}: valid\n`);
}

function show(argv: FileArgs): void {
  const file = argv.file || configPath();
  const config = loadConfig(file); // a ConfigError: one line, exit 2
  const form = configFileForm(config);
  const doc = argv.json ? { file, absent: !existsSync(file), config: form } : form;
  printJson(doc);
}

const checkCommand: CommandModule<object, FileArgs> = {
  command: 'check',
  describe: 'Check the config file as the hook loads it (file, key and fix on one line; exit 2 unusable, 1 unsafe logFile)',
  builder: (y: Argv) => fileAndJson(y, 'Print {file, valid, absent, problems} as JSON'),
  handler: check,
};

const showCommand: CommandModule<object, FileArgs> = {
  command: 'show',
  describe: 'Print the effective config (built-in defaults merged) as JSON',
  builder: (y: Argv) => fileAndJson(y, 'Print {file, absent, config}'),
  handler: show,
};

export const configCommand: CommandModule<object, any> = {
  command: 'config',
  describe: "Check or show the hook's configuration",
  builder: (y: Argv) => y.command(checkCommand).command(showCommand).demandCommand(1, 'name a config subcommand: check, show'),
  handler: () => {},
};
