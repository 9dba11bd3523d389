/**
 * The quick way into a command, without yargs. yargs and the set-up of every command module cost
 * more CPU per run than `rewrite` or `convert` themselves (it also renders the help text of the
 * command it runs; docs/BENCH.md, "CLI start-up tricks"). So when a command line is plainly valid, it is parsed with
 * node's util.parseArgs against the option definitions the command's yargs module declares (its
 * builder runs against a recorder), and the handler runs at once. Plainly valid: only that
 * command's options and the global ones, each at most once, values of the declared form (a number
 * as decimal digits, one of the choices), positionals as the command string has them. Anything
 * else (--help, a typo, a bad value, `--`, an option given twice, a builder that does more than
 * declare options) is left to yargs, which parses it, words the error or prints the help, so the
 * two ways in agree on every command line (test/cli/fast.test.ts).
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import type { ArgumentsCamelCase, Argv, CommandModule } from 'yargs';

/** The options main.ts declares for every command. */
export const GLOBAL_OPTIONS = {
  debug: { type: 'boolean', describe: 'print stack traces of errors', global: true },
} as const;

interface Spec {
  type?: 'boolean' | 'string' | 'number';
  choices?: readonly string[];
  default?: unknown;
  array?: boolean;
}

/** Keys of an option definition the quick parser understands (others: yargs decides). */
const PLAIN_KEYS = new Set(['type', 'describe', 'default', 'choices', 'global']);
const POSITIONAL_KEYS = new Set(['type', 'describe', 'array']);

const camel = (name: string): string => name.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());

/** The options and positionals a builder declares, or undefined when it does anything else. */
function declared(builder: CommandModule['builder']): { options: Map<string, Spec>; positionals: Map<string, Spec> } | undefined {
  const options = new Map<string, Spec>();
  const positionals = new Map<string, Spec>();
  const plain = (spec: object, keys: Set<string>) => Object.keys(spec).every((k) => keys.has(k));
  let ok = true;
  const recorder = {
    option(name: string, spec: Spec) {
      ok &&= plain(spec, PLAIN_KEYS) && !spec.array;
      options.set(name, spec);
      return recorder;
    },
    positional(name: string, spec: Spec) {
      ok &&= plain(spec, POSITIONAL_KEYS) && (spec.type === undefined || spec.type === 'string');
      positionals.set(name, spec);
      return recorder;
    },
    example: () => recorder,
  };
  if (typeof builder !== 'function') return undefined;
  try {
    builder(recorder as unknown as Argv);
  } catch {
    return undefined; // it called something the recorder does not have
  }
  return ok ? { options, positionals } : undefined;
}

/**
 * The argv yargs would hand `module`'s handler for `argv` (the command name first), or undefined
 * when the command line is not plainly valid and yargs must parse it.
 */
export function quickArgs(module: CommandModule<object, any>, argv: readonly string[]): ArgumentsCamelCase | undefined {
  // `name [one] [many..]`: optional positionals only
  const shape = /^(\S+)((?:\s+\[[\w-]+(?:\.\.)?\])*)$/.exec(typeof module.command === 'string' ? module.command : '');
  if (!shape || argv[0] !== shape[1]) return undefined;
  const slots = [...shape[2]!.matchAll(/\[([\w-]+)(\.\.)?\]/g)].map((m) => ({ name: m[1]!, many: m[2] !== undefined }));
  const decl = declared(module.builder);
  if (!decl || slots.some((s, i) => !decl.positionals.has(s.name) || (s.many && i < slots.length - 1))) return undefined;

  const all = new Map<string, Spec>([...Object.entries(GLOBAL_OPTIONS), ...decl.options] as [string, Spec][]);
  const options: NonNullable<ParseArgsConfig['options']> = {};
  // --no-<boolean> (false, as yargs reads it) is declared as an option of its own: parseArgs'
  // allowNegative is newer than the oldest node the CLI runs on
  const negated = (name: string) => `no-${name}`;
  for (const [name, spec] of all) {
    options[name] = { type: spec.type === 'boolean' ? 'boolean' : 'string' };
    if (spec.type !== 'boolean') continue;
    if (all.has(negated(name))) return undefined;
    options[negated(name)] = { type: 'boolean' };
  }
  let parsed: { values: Record<string, string | boolean | undefined>; positionals: string[]; tokens?: { kind: string; name?: string }[] };
  try {
    parsed = parseArgs({ args: argv.slice(1), options, allowPositionals: true, strict: true, tokens: true }) as unknown as typeof parsed;
  } catch {
    return undefined; // not plainly valid (or a node without parseArgs)
  }
  if (!parsed.tokens) return undefined; // a node whose parseArgs has no tokens
  const seen = new Set<string>();
  for (const t of parsed.tokens) {
    if (t.kind === 'option-terminator') return undefined;
    if (t.kind !== 'option') continue;
    const name = t.name!.startsWith('no-') && all.get(t.name!.slice(3))?.type === 'boolean' ? t.name!.slice(3) : t.name!;
    if (seen.has(name)) return undefined;
    seen.add(name);
  }

  const args: ArgumentsCamelCase = { _: [argv[0]!], $0: 'ovmf-hook' };
  const set = (name: string, value: unknown) => {
    args[name] = value;
    args[camel(name)] = value;
  };
  for (const [name, spec] of all) {
    const given = spec.type === 'boolean' && parsed.values[negated(name)] ? false : parsed.values[name];
    if (given === undefined) {
      if (spec.default !== undefined) set(name, spec.default);
    } else if (spec.type === 'boolean') set(name, given);
    else if (spec.choices && !spec.choices.includes(given as string)) return undefined;
    else if (spec.type === 'number') {
      if (!/^\d{1,9}$/.test(given as string)) return undefined;
      set(name, Number(given));
    } else set(name, given);
  }
  const rest = parsed.positionals;
  for (const [i, slot] of slots.entries()) {
    const spec = decl.positionals.get(slot.name)!;
    if (slot.many) {
      if (!spec.array || rest.slice(i).includes('-')) return undefined; // (yargs drops a lone '-' there)
      set(slot.name, rest.slice(i));
    } else if (rest[i] !== undefined) set(slot.name, rest[i] === '-' ? '' : rest[i]); // (and reads it as '' here)
  }
  if (!slots.at(-1)?.many && rest.length > slots.length) return undefined;
  return args;
}
