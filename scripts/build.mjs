// Build two self-contained bundles with esbuild:
//  - dist/hooks/qemu : the libvirt hook (node:fs + fast-xml-parser only; no yargs, no fs-extra)
//  - dist/cli.mjs    : the admin CLI (yargs, fs-extra; ESM because yargs 18 is ESM-only)
// The hook is CommonJS (fastest start on Node 20) with a #!/usr/bin/node shebang: AppArmor lets
// libvirtd's hooks exec interpreters from /usr/bin only, and libvirt gives hooks a bare PATH.
//
// The hook is one file in two parts. hooks/qemu.ts is the entry: it answers the operations the
// hook does not handle at once; only the handled ones `require('../src/hook/main')`, the core.
// The core is bundled separately and embedded in the hook as a string together with a V8 code
// cache made by running it here (a training run of prepare/release/migrate/restore against a temp
// tree, with the node of the shebang and a clean environment). The hook compiles the core with
// that cache (vm.Script cachedData), which saves V8 compiling the functions on every call — about
// a fifth of a handled call's own time (`npm run bench`). When the cache does not fit the node that
// runs the hook (another V8 version or flags), V8 rejects it and compiles as usual: slower, same
// behaviour. OVMF_HOOK_CODE_CACHE=0 builds without it.
import { build } from 'esbuild';
import { spawnSync } from 'node:child_process';
import { accessSync, chmodSync, constants, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const common = { bundle: true, platform: 'node', target: 'node20', minify: true, legalComments: 'none', logLevel: 'warning' };
mkdirSync('dist/hooks', { recursive: true });
const hookShebang = process.env.OVMF_HOOK_NODE || '/usr/bin/node';
const CLI_ONLY = /node_modules\/(yargs|fs-extra|cliui|y18n)\//;
const WRAP_HEAD = '(function (exports, require, module, __filename, __dirname) {';

// 1. the core: src/hook/main.ts as CommonJS exporting runHook
const core = await build({ ...common, entryPoints: ['src/hook/main.ts'], format: 'cjs', write: false, metafile: true });
const forbidden = Object.keys(core.metafile.inputs).filter((p) => CLI_ONLY.test(p));
if (forbidden.length) throw new Error(`hook bundle must not include CLI-only modules: ${forbidden.slice(0, 3).join(', ')}`);
const coreSource = `${WRAP_HEAD}${core.outputFiles[0].text}\n})`;

// 2. its V8 code cache, from a training run
const codeCache = process.env.OVMF_HOOK_CODE_CACHE === '0' ? null : trainCodeCache(coreSource);

// 3. the hook: hooks/qemu.ts, with '../src/hook/main' served by the embedded core
const embeddedCore = {
  name: 'embedded-core',
  setup(b) {
    b.onResolve({ filter: /\/src\/hook\/main$/ }, (a) => (a.importer.endsWith('hooks/qemu.ts') ? { path: 'core', namespace: 'embedded-core' } : undefined));
    b.onLoad({ filter: /.*/, namespace: 'embedded-core' }, () => ({
      loader: 'js',
      contents: [
        "const { Script } = require('node:vm');",
        `const cache = ${codeCache ? `Buffer.from(${JSON.stringify(codeCache.toString('base64'))}, 'base64')` : 'undefined'};`,
        `const script = new Script(${JSON.stringify(coreSource)}, { filename: __filename, cachedData: cache });`,
        'script.runInThisContext()(module.exports, require, module, __filename, __dirname);',
      ].join('\n'),
    }));
  },
};
await build({
  ...common,
  entryPoints: ['hooks/qemu.ts'],
  outfile: 'dist/hooks/qemu',
  format: 'cjs',
  banner: { js: `#!${hookShebang}\n// ovmf-hook: libvirt QEMU hook (installed by ovmf-hook's install.sh; do not edit, re-run it)` },
  plugins: [embeddedCore],
  metafile: true,
}).then((r) => {
  const inputs = Object.keys(r.metafile.inputs);
  const forbiddenHook = inputs.filter((p) => CLI_ONLY.test(p));
  if (forbiddenHook.length) throw new Error(`hook bundle must not include CLI-only modules: ${forbiddenHook.slice(0, 3).join(', ')}`);
  if (inputs.some((p) => p.startsWith('src/') && !p.startsWith('src/hook/args') && p !== 'src/errors.ts'))
    throw new Error('the hook entry must reach the core only through the embedded-core plugin');
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
console.log(`hook core ${(coreSource.length / 1024).toFixed(0)} KiB, code cache ${codeCache ? `${(codeCache.length / 1024).toFixed(0)} KiB (${hookShebang} ${nodeVersion(hookShebang)})` : 'none'}`);

// ---------------------------------------------------------------------------------------------

function nodeVersion(node) {
  return spawnSync(node, ['--version'], { env: { PATH: '/usr/bin:/bin' }, encoding: 'utf8' }).stdout?.trim() ?? '?';
}

/**
 * Run the core through the hook's operations in a child process of the shebang's node (clean
 * environment, no NODE_OPTIONS: V8 only accepts a cache made with the same flags) and return
 * `script.createCachedData()`, which then holds every function compiled during the run.
 * Returns null (with a warning) when that node is missing or the run fails.
 */
function trainCodeCache(source) {
  try {
    accessSync(hookShebang, constants.X_OK);
  } catch {
    console.warn(`warning: ${hookShebang} is not executable here; the hook is built without a code cache`);
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
      console.warn(`warning: the code-cache training run failed (${r.error?.message ?? `exit ${r.status}`}); the hook is built without a code cache\n${r.stderr}`);
      return null;
    }
    return readFileSync(join(dir, 'cache.bin'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * The training run (serialized into the child process; self-contained). Hermetic: fake firmware
 * and descriptors, archive/state/nvram in `work`, journal and logger stubbed out, stdin fed per
 * call, stdout (filter output) going to /dev/null.
 */
function trainer() {
  const [, , corePath, outPath, work] = process.argv;
  const fs = require('node:fs');
  const path = require('node:path');
  const vm = require('node:vm');
  const { Readable } = require('node:stream');
  const script = new vm.Script(fs.readFileSync(corePath, 'utf8'), { filename: corePath });
  const mod = { exports: {} };
  script.runInThisContext()(mod.exports, require, mod, corePath, path.dirname(corePath));
  const { runHook } = mod.exports;

  // no journal or syslog lines from a build
  const quiet = { on() { return this; }, setTimeout() { return this; }, end() {}, destroy() {}, unref() {} };
  require('node:net').createConnection = () => quiet;
  require('node:child_process').spawn = () => quiet;

  const d = (p) => path.join(work, p);
  for (const p of ['fw', 'descriptors', 'archive', 'state', 'nvram']) fs.mkdirSync(d(p), { recursive: true, mode: 0o700 });
  const sparse = (file, size) => {
    const fd = fs.openSync(file, 'w', 0o644);
    fs.ftruncateSync(fd, size);
    fs.closeSync(fd);
  };
  const code = d('fw/OVMF_CODE_4M.fd');
  const vars = d('fw/OVMF_VARS_4M.fd');
  sparse(code, 3653632);
  fs.writeFileSync(vars, Buffer.alloc(540672, 0x5a));
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
  const config = d('config.json');
  fs.writeFileSync(
    config,
    JSON.stringify({
      archiveDir: d('archive'),
      stateDir: d('state'),
      nvramDir: d('nvram'),
      firmwareDirs: [d('descriptors')],
      hostId: 'build-host',
      qemuUser: `+${process.getuid()}`,
      qemuGroup: `+${process.getgid()}`,
      logFile: d('hook.log'),
    }),
  );
  process.env.OVMF_HOOK_CONFIG = config;

  const vm1 = 'train-vm';
  const devices = Array.from({ length: 40 }, (_, i) =>
    [
      `    <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='/var/lib/libvirt/images/t${i}.qcow2'/><target dev='vd${String.fromCharCode(97 + (i % 26))}${i}' bus='virtio'/></disk>`,
      `    <interface type='network'><mac address='52:54:00:00:00:${(i % 256).toString(16).padStart(2, '0')}'/><source network='default'/><model type='virtio'/></interface>`,
      `    <!-- comment ${i} --><serial type='pty'><target port='${i}'/></serial>`,
    ].join('\n'),
  ).join('\n');
  const uefi = (loader, template) => `<domain type='kvm'>
  <name>${vm1}</name>
  <uuid>5b0a3b9e-6c1d-4f7e-9a2b-1c3d4e5f6a7b</uuid>
  <metadata><ovmf:policy xmlns:ovmf="urn:ovmf-hook:policy:1" archive="yes"/></metadata>
  <memory unit='KiB'>1048576</memory>
  <os>
    <type arch='x86_64' machine='pc-q35-7.2'>hvm</type>
    <loader readonly='yes' type='pflash'>${loader}</loader>
    <nvram template='${template}'>${d(`nvram/${vm1}_VARS.fd`)}</nvram>
  </os>
  <features><acpi/><apic/></features>
  <devices>
${devices}
  </devices>
</domain>
`;
  const bios = uefi(code, vars).replace(/<loader[^]*?<\/nvram>/, '');
  const moved = uefi('/opt/elsewhere/OVMF_CODE_4M.fd', '/opt/elsewhere/OVMF_VARS_4M.fd').replace(d('nvram'), '/opt/elsewhere/nvram');
  const call = async (args, xml) => {
    Object.defineProperty(process, 'stdin', { configurable: true, get: () => Readable.from([Buffer.from(xml)]) });
    return runHook([vm1, ...args]);
  };
  (async () => {
    const nvram = d(`nvram/${vm1}_VARS.fd`);
    for (let round = 0; round < 3; round++) {
      fs.rmSync(nvram, { force: true });
      await call(['prepare', 'begin', '-'], uefi(code, vars)); // provision or restore
      fs.writeFileSync(nvram, Buffer.alloc(540672, round + 1));
      await call(['release', 'end', '-'], uefi(code, vars)); // archive
      await call(['prepare', 'begin', '-'], uefi(code, vars)); // keep
      fs.rmSync(nvram, { force: true });
      await call(['prepare', 'begin', '-'], uefi(code, vars)); // restore
      await call(['migrate', 'begin', '-'], moved); // filter: map paths
      await call(['restore', 'begin', '-'], moved);
      await call(['prepare', 'begin', '-'], bios); // refused by policy
      await call(['release', 'end', '-'], bios);
      await call(['prepare', 'begin', '-'], '<domain'); // bad input
    }
    fs.writeFileSync(outPath, script.createCachedData());
  })().catch((e) => {
    process.stderr.write(`${e?.stack ?? e}\n`);
    process.exitCode = 1;
  });
}
