// Build two self-contained bundles with esbuild:
//  - dist/hooks/qemu : the libvirt hook (node:fs + fast-xml-parser only; no yargs, no fs-extra)
//  - dist/cli.mjs    : the admin CLI (yargs, fs-extra)
// The hook is CommonJS (fastest start on Node 20) with a #!/usr/bin/node shebang: AppArmor lets
// libvirtd's hooks exec interpreters from /usr/bin only, and libvirt gives hooks a bare PATH.
// hooks/qemu.ts answers the operations the hook does not handle before the core is required
// (esbuild keeps that require lazy), so those cost Node's bare start-up only.
//
// The CLI runs mostly yargs and the rewrite once per call, so it is worth a V8 code cache: it is
// bundled as CommonJS (yargs 18 is ESM-only; esbuild converts it, import.meta.url becomes the
// loader's file URL) and dist/cli.mjs is a small ESM loader (the name package.json's bin and
// install.sh expect) followed by two trailing `//` comment lines, the base64 of that bundle and of
// its code cache. The cache is made here by a training run (a rewrite) with the shebang's node in
// a clean environment. The loader reads its own file, compiles the bundle with the cache
// (vm.Script cachedData) and runs it: ~20 % less CPU per CLI call (measured with `npm run bench`
// and wait4 CPU times). A cache that does not fit the node that runs it (another V8 version or
// flags) is rejected by V8, which then compiles as usual: slower, same behaviour.
// OVMF_HOOK_CODE_CACHE=0 builds without it. The same for the hook measured no gain (its run is
// short: deserializing the cache cost what compiling saved) and cost the pass-through path the
// extra file size, so the hook stays a plain bundle.
import { build } from 'esbuild';
import { spawnSync } from 'node:child_process';
import { accessSync, chmodSync, constants, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const common = { bundle: true, platform: 'node', target: 'node20', minify: true, legalComments: 'none', logLevel: 'warning' };
mkdirSync('dist/hooks', { recursive: true });
const hookShebang = process.env.OVMF_HOOK_NODE || '/usr/bin/node';
const withCache = process.env.OVMF_HOOK_CODE_CACHE !== '0';

// 1. the hook
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

// 2. the CLI: a CommonJS bundle (wrapped like a CommonJS module) and its code cache, behind an ESM loader
const cli = await build({ ...common, entryPoints: ['src/cli/bin.ts'], format: 'cjs', write: false, define: { 'import.meta.url': '__ovmfImportMetaUrl' } });
const cliSource = `(function (exports, require, module, __filename, __dirname) {var __ovmfImportMetaUrl = require('node:url').pathToFileURL(__filename).href;\n${cli.outputFiles[0].text}\n})`;
const cliCache = withCache ? trainCodeCache(cliSource) : null;
writeFileSync(
  'dist/cli.mjs',
  [
    '#!/usr/bin/env node',
    '// ovmf-hook admin CLI (built by scripts/build.mjs: this loader, then the bundle and its V8 code cache as base64 comment lines)',
    "import { readFileSync } from 'node:fs';",
    "import { createRequire } from 'node:module';",
    "import { dirname } from 'node:path';",
    "import { fileURLToPath } from 'node:url';",
    "import { Script } from 'node:vm';",
    'const filename = fileURLToPath(import.meta.url);',
    "const text = readFileSync(filename, 'latin1');",
    'const part = (tag) => {',
    '  const i = text.lastIndexOf(`\n//${tag}:`);',
    "  return i < 0 ? undefined : Buffer.from(text.slice(i + tag.length + 4, text.indexOf('\\n', i + 1)), 'base64');",
    '};',
    'const module = { exports: {} };',
    "const script = new Script(part('ovmf-hook-bundle').toString('utf8'), { filename, cachedData: part('ovmf-hook-cache') });",
    'script.runInThisContext()(module.exports, createRequire(import.meta.url), module, filename, dirname(filename));',
    `//ovmf-hook-bundle:${Buffer.from(cliSource).toString('base64')}`,
    ...(cliCache ? [`//ovmf-hook-cache:${cliCache.toString('base64')}`] : []),
    '',
  ].join('\n'),
);
chmodSync('dist/hooks/qemu', 0o755);
chmodSync('dist/cli.mjs', 0o755);
for (const f of ['dist/hooks/qemu', 'dist/cli.mjs']) console.log(`${f}  ${(statSync(f).size / 1024).toFixed(0)} KiB`);
console.log(`cli code cache: ${cliCache ? `${(cliCache.length / 1024).toFixed(0)} KiB (${hookShebang} ${nodeVersion(hookShebang)})` : 'none'}`);

// ---------------------------------------------------------------------------------------------

function nodeVersion(node) {
  return spawnSync(node, ['--version'], { env: { PATH: '/usr/bin:/bin' }, encoding: 'utf8' }).stdout?.trim() ?? '?';
}

/**
 * Run the CLI bundle once in a child process of the node the hook's shebang names (install.sh
 * gives the CLI the same one; clean environment, no NODE_OPTIONS: V8 only accepts a cache made
 * with the same flags) and return its code cache. Null (with a warning) when that node is missing
 * or the run fails.
 */
function trainCodeCache(source) {
  try {
    accessSync(hookShebang, constants.X_OK);
  } catch {
    console.warn(`warning: ${hookShebang} is not executable here; the CLI is built without a code cache`);
    return null;
  }
  const dir = mkdtempSync(join(tmpdir(), 'ovmf-hook-build-'));
  try {
    writeFileSync(join(dir, 'core.js'), source);
    writeFileSync(join(dir, 'train.cjs'), `(${trainer.toString()})();\n`);
    const r = spawnSync(hookShebang, [join(dir, 'train.cjs'), join(dir, 'core.js'), join(dir, 'cache.bin'), dir], {
      env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LC_ALL: 'C' },
      stdio: ['ignore', 'ignore', 'pipe'],
      encoding: 'utf8',
      timeout: 120_000,
    });
    if (r.status !== 0) {
      console.warn(`warning: the CLI code-cache training run failed (${r.error?.message ?? `exit ${r.status}`}); built without a code cache\n${r.stderr}`);
      return null;
    }
    return readFileSync(join(dir, 'cache.bin'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * The training run (serialized into the child process, so self-contained): the CLI (which runs on
 * load) rewrites a generated i440fx domain with a hermetic config and fake firmware descriptors;
 * stdout goes to /dev/null. Then `script.createCachedData()` holds every function it compiled.
 */
function trainer() {
  const [, , corePath, outPath, work] = process.argv;
  const fs = require('node:fs');
  const path = require('node:path');
  const vm = require('node:vm');
  const script = new vm.Script(fs.readFileSync(corePath, 'utf8'), { filename: corePath });
  const d = (p) => path.join(work, p);
  fs.mkdirSync(d('descriptors'), { recursive: true });
  const code = d('OVMF_CODE_4M.fd');
  const vars = d('OVMF_VARS_4M.fd');
  fs.writeFileSync(code, '');
  fs.writeFileSync(vars, '');
  fs.writeFileSync(
    d('descriptors/60-edk2-x86_64.json'),
    JSON.stringify({
      description: 'training',
      'interface-types': ['uefi'],
      mapping: { device: 'flash', executable: { filename: code, format: 'raw' }, 'nvram-template': { filename: vars, format: 'raw' } },
      targets: [{ architecture: 'x86_64', machines: ['pc-i440fx-*', 'pc-q35-*'] }],
      features: ['acpi-s3', 'amd-sev', 'verbose-dynamic'],
      tags: [],
    }),
  );
  fs.writeFileSync(d('config.json'), JSON.stringify({ archiveDir: d('archive'), stateDir: d('state'), nvramDir: d('nvram'), firmwareDirs: [d('descriptors')] }));
  process.env.OVMF_HOOK_CONFIG = d('config.json');
  const devices = Array.from({ length: 12 }, (_, i) =>
    [
      `    <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='/var/lib/libvirt/images/t${i}.qcow2'/><target dev='hd${String.fromCharCode(97 + i)}' bus='ide'/><address type='drive' controller='0' bus='0' target='0' unit='${i % 2}'/></disk>`,
      `    <interface type='network'><mac address='52:54:00:00:00:${(16 + i).toString(16)}'/><source network='default'/><model type='e1000'/><address type='pci' domain='0x0000' bus='0x00' slot='0x${(3 + i).toString(16).padStart(2, '0')}' function='0x0'/></interface>`,
    ].join('\n'),
  ).join('\n');
  const file = d('domain.xml');
  fs.writeFileSync(
    file,
    `<domain type='kvm'>\n  <name>train-vm</name>\n  <uuid>5b0a3b9e-6c1d-4f7e-9a2b-1c3d4e5f6a7b</uuid>\n  <memory unit='KiB'>1048576</memory>\n  <os>\n    <type arch='x86_64' machine='pc-i440fx-7.2'>hvm</type>\n    <boot dev='hd'/>\n  </os>\n  <features><acpi/><apic/></features>\n  <devices>\n${devices}\n    <controller type='ide' index='0'/>\n    <sound model='ich6'/>\n    <video><model type='cirrus'/></video>\n  </devices>\n</domain>\n`,
  );
  process.argv = [process.argv[0], corePath, 'rewrite', file];
  const mod = { exports: {} };
  script.runInThisContext()(mod.exports, require, mod, corePath, path.dirname(corePath));
  process.once('beforeExit', () => fs.writeFileSync(outPath, script.createCachedData()));
}
