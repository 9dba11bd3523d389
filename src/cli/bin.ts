// Entry of dist/cli.mjs. No #! line here: scripts/build.mjs puts it in the banner (esbuild would keep both).
import { main } from './main';

main().then((code) => {
  process.exitCode = code;
});
