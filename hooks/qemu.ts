/**
 * Entry point installed as /etc/libvirt/hooks/qemu (bundled by scripts/build.mjs into dist/hooks/qemu).
 * Operations the hook does not act on return at once, before any XML or NVRAM code is loaded
 * (esbuild keeps `require`d modules lazy), so they cost libvirt only Node's own start-up.
 */
import { HANDLED } from '../src/hook/args';

const argv = process.argv.slice(2);
if (argv.length >= 3 && !HANDLED.has(`${argv[1]} ${argv[2]}`)) {
  process.exitCode = 0;
} else {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { runHook } = require('../src/hook/main') as typeof import('../src/hook/main');
  // everything is handed over when runHook resolves: exit without tearing the heap down
  runHook(argv).then((code) => process.exit(code));
}
