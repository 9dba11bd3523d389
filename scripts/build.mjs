// Build two self-contained bundles with esbuild:
//  - dist/hooks/qemu : the libvirt hook (node:fs + fast-xml-parser only; no yargs, no fs-extra)
//  - dist/cli.mjs    : the admin CLI (yargs, fs-extra; ESM because yargs 18 is ESM-only)
// The hook is CommonJS (fastest start on Node 20) with a #!/usr/bin/node shebang: AppArmor lets
// libvirtd's hooks exec interpreters from /usr/bin only, and libvirt gives hooks a bare PATH.
import { build } from 'esbuild';
import { chmodSync, mkdirSync, statSync } from 'node:fs';

const common = { bundle: true, platform: 'node', target: 'node20', minify: true, legalComments: 'none', logLevel: 'warning' };
mkdirSync('dist/hooks', { recursive: true });
const hookShebang = process.env.OVMF_HOOK_NODE || '/usr/bin/node';

await build({
  ...common,
  entryPoints: ['hooks/qemu.ts'],
  outfile: 'dist/hooks/qemu',
  format: 'cjs',
  banner: { js: `#!${hookShebang}\n// ovmf-hook: libvirt QEMU hook (installed by ovmf-hook's install.sh; do not edit, re-run it)` },
  metafile: true,
}).then((r) => {
  const inputs = Object.keys(r.metafile.inputs);
  const forbidden = inputs.filter((p) => /node_modules\/(yargs|fs-extra|cliui|y18n)\//.test(p));
  if (forbidden.length) throw new Error(`hook bundle must not include CLI-only modules: ${forbidden.slice(0, 3).join(', ')}`);
});
await build({
  ...common,
  entryPoints: ['src/cli/bin.ts'],
  outfile: 'dist/cli.mjs',
  format: 'esm',
  banner: { js: "#!/usr/bin/env node\nimport { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" },
});
chmodSync('dist/hooks/qemu', 0o755);
chmodSync('dist/cli.mjs', 0o755);
for (const f of ['dist/hooks/qemu', 'dist/cli.mjs']) console.log(`${f}  ${(statSync(f).size / 1024).toFixed(0)} KiB`);
