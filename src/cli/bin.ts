// Entry of dist/cli.cjs. No #! line here: scripts/build.mjs puts it in the banner (esbuild would keep both).
// `rewrite`, `convert` and `nvram certs` with a plainly valid command line skip yargs (see fast.ts). Modules are
// required where they are used, not imported: esbuild then sets each one up only when it runs.
import { quickArgs } from './fast';
import { reportError } from './report';

const argv = process.argv.slice(2);

/** The command run without yargs, or undefined when yargs must parse the command line. */
function quick(): Promise<number> | undefined {
  /* eslint-disable @typescript-eslint/no-require-imports */
  const sub = argv[0] === 'nvram' && argv[1] === 'certs'; // a subcommand: its own argv starts at `certs`
  const module =
    argv[0] === 'rewrite'
      ? (require('./commands/rewrite') as typeof import('./commands/rewrite')).rewriteCommand
      : argv[0] === 'convert'
        ? (require('./commands/convert') as typeof import('./commands/convert')).convertCommand
        : sub
          ? (require('./commands/nvram-certs') as typeof import('./commands/nvram-certs')).makeNvramCertsCommand()
          : undefined;
  /* eslint-enable @typescript-eslint/no-require-imports */
  const args = module && quickArgs(module, sub ? argv.slice(1) : argv);
  if (!module || !args) return undefined;
  return Promise.resolve()
    .then(() => module.handler(args))
    .then(
      () => Number(process.exitCode ?? 0),
      (e: unknown) => reportError(e, argv.includes('--debug')),
    );
}

const fast = quick();
if (fast) {
  // once stdout and stderr have taken everything (a write's callback runs after all earlier
  // writes), exit at once: tearing down the heap of a finished command is wasted time (docs/BENCH.md)
  void fast.then((code) => process.stdout.write('', () => process.stderr.write('', () => process.exit(code))));
} else {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  void (require('./main') as typeof import('./main')).main(argv).then((code) => {
    process.exitCode = code;
  });
}
