// Builds the two self-contained product files with esbuild, in one function (buildProduct) that
// `npm run build` (this file run as a script) and the tests (into a temp dir, without code caches)
// both use:
//  - <outDir>/hooks/qemu : the libvirt hook (node:fs + fast-xml-parser only; no yargs, no fs-extra)
//  - <outDir>/cli.cjs    : the admin CLI (yargs, fs-extra)
// Both are CommonJS (an ESM entry makes node start slower) for Node >= 18. The hook has a
// #!/usr/bin/node shebang: AppArmor lets libvirtd's hooks exec interpreters from /usr/bin only, and
// libvirt gives hooks a bare PATH.
//
// Layout of both files (measurements in docs/BENCH.md):
//  - a small CommonJS loader: for the hook, hooks/qemu.ts, which answers the operations the hook
//    does not handle at once; only the handled ones `require('../src/hook/main')`, which this build
//    serves from the payload below; for the CLI, the loader alone;
//  - then, as trailing `//` comment lines, the base64 of the real bundle (CommonJS, wrapped like a
//    CommonJS module) and of a V8 code cache for it.
// The loader reads its own file, compiles the bundle with the cache (vm.Script cachedData) and runs
// it. Why: V8 has to pre-parse every line of JavaScript in a file even when it never runs, while a
// comment is skipped almost for free; and the code cache saves compiling the functions a run needs.
// The caches are made here by training runs with the node the shebang names, in a clean
// environment (hook: prepare/release/migrate/restore against a temp tree; CLI: a rewrite and a
// convert --dry-run against a stand-in virsh). Every training call must end as expected, or the
// build fails with the trainer's stderr: a cache trained on a failure path would silently hold the
// wrong functions. A cache that does not fit the node that runs it (another V8 version or other
// flags) is rejected by V8, which then compiles as usual: slower, same behaviour.
// As a script: OVMF_HOOK_NODE names the hook's node (default /usr/bin/node), OVMF_HOOK_CODE_CACHE=0
// builds without caches.
import { build } from 'esbuild';
import { spawnSync } from 'node:child_process';
import { accessSync, chmodSync, constants, mkdirSync, mkdtempSync, readFileSync, realpathSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const REPO = resolve(fileURLToPath(new URL('..', import.meta.url)));
const common = { bundle: true, platform: 'node', target: 'node18', minify: true, legalComments: 'none', logLevel: 'warning' };
const CLI_ONLY = /node_modules\/(yargs|fs-extra|cliui|y18n)\//;
const WRAP_HEAD = '(function (exports, require, module, __filename, __dirname) {';

/** The trailing comment lines: the bundle and (when there is one) its code cache. */
const payload = (source, cache) =>
  [`//ovmf-hook-bundle:${Buffer.from(source).toString('base64')}`, ...(cache ? [`//ovmf-hook-cache:${cache.toString('base64')}`] : []), ''].join('\n');

/** Loader statements: read this file (`file`), compile the bundle with its cache, run it with `req` and `mod`. */
const loaderJs = (file, req, mod) =>
  [
    `const ovmfText = require('node:fs').readFileSync(${file}, 'latin1');`,
    'const ovmfPart = (tag) => {',
    '  const i = ovmfText.lastIndexOf(`\\n//${tag}:`);',
    "  return i < 0 ? undefined : Buffer.from(ovmfText.slice(i + tag.length + 4, ovmfText.indexOf('\\n', i + 1)), 'base64');",
    '};',
    `const ovmfScript = new (require('node:vm').Script)(ovmfPart('ovmf-hook-bundle').toString('utf8'), { filename: ${file}, cachedData: ovmfPart('ovmf-hook-cache') });`,
    `ovmfScript.runInThisContext()(${mod}.exports, ${req}, ${mod}, ${file}, require('node:path').dirname(${file}));`,
  ].join('\n');

/**
 * yargs' CommonJS build, not the ESM one an `import` would pick: under its ESM build, cliui wraps
 * help text in the middle of words (it has no wrap-ansi there).
 */
const yargsCommonJs = {
  name: 'yargs-commonjs',
  setup(b) {
    b.onResolve({ filter: /^yargs(\/helpers)?$/ }, (a) => (a.kind === 'require-call' ? undefined : b.resolve(a.path, { kind: 'require-call', resolveDir: a.resolveDir })));
  },
};

/**
 * Build `<outDir>/hooks/qemu` and `<outDir>/cli.cjs` from the sources in `root`.
 * `codeCache`: train and embed the V8 code caches (with `node`, which is also the hook's shebang);
 * throws when a training run fails. Returns the two files and the caches' sizes (0: none).
 */
export async function buildProduct({ root = REPO, outDir = join(root, 'dist'), codeCache = true, node = '/usr/bin/node' } = {}) {
  const at = { ...common, absWorkingDir: root };
  mkdirSync(join(outDir, 'hooks'), { recursive: true });
  const train = (kind, source) => (codeCache ? trainCodeCache(node, kind, source) : null);

  // 1. the hook: the core (src/hook/main.ts, exporting runHook) as payload of hooks/qemu.ts
  const core = await build({ ...at, entryPoints: ['src/hook/main.ts'], format: 'cjs', write: false, metafile: true });
  const forbidden = Object.keys(core.metafile.inputs).filter((p) => CLI_ONLY.test(p));
  if (forbidden.length) throw new Error(`hook bundle must not include CLI-only modules: ${forbidden.slice(0, 3).join(', ')}`);
  const coreSource = `${WRAP_HEAD}${core.outputFiles[0].text}\n})`;
  const coreCache = train('hook', coreSource);
  const fromPayload = {
    name: 'core-from-payload',
    setup(b) {
      b.onResolve({ filter: /\/src\/hook\/main$/ }, (a) => (a.importer.endsWith('hooks/qemu.ts') ? { path: 'core', namespace: 'core-from-payload' } : undefined));
      b.onLoad({ filter: /.*/, namespace: 'core-from-payload' }, () => ({ loader: 'js', contents: loaderJs('__filename', 'require', 'module') }));
    },
  };
  const hook = await build({ ...at, entryPoints: ['hooks/qemu.ts'], format: 'cjs', write: false, plugins: [fromPayload], metafile: true });
  const hookInputs = Object.keys(hook.metafile.inputs);
  if (hookInputs.some((p) => p.startsWith('src/') && !['src/hook/args.ts', 'src/core/errors.ts'].includes(p)))
    throw new Error(`the hook loader must stay small; it pulls in ${hookInputs.filter((p) => p.startsWith('src/')).join(', ')}`);
  const hookFile = join(outDir, 'hooks', 'qemu');
  replaceFile(
    hookFile,
    `#!${node}\n// ovmf-hook: libvirt QEMU hook (installed by ovmf-hook's install.sh; do not edit, re-run it)\n${hook.outputFiles[0].text}${payload(coreSource, coreCache)}`,
  );

  // 2. the CLI: src/cli/bin.ts as CommonJS, as payload of a CommonJS loader like the hook's
  const cli = await build({ ...at, entryPoints: ['src/cli/bin.ts'], format: 'cjs', write: false, plugins: [yargsCommonJs] });
  const cliSource = `${WRAP_HEAD}${cli.outputFiles[0].text}\n})`;
  const cliCache = train('cli', cliSource);
  const cliFile = join(outDir, 'cli.cjs');
  replaceFile(
    cliFile,
    [
      '#!/usr/bin/env node',
      '// ovmf-hook admin CLI (built by scripts/build.mjs: this loader, then the bundle and its V8 code cache as base64 comment lines)',
      loaderJs('__filename', 'require', 'module'),
      payload(cliSource, cliCache),
    ].join('\n'),
  );
  return { hook: hookFile, cli: cliFile, hookCache: coreCache?.length ?? 0, cliCache: cliCache?.length ?? 0 };
}

// `node scripts/build.mjs` (npm run build): dist/ in this repository
if (isMain()) {
  const node = process.env.OVMF_HOOK_NODE || '/usr/bin/node';
  let codeCache = process.env.OVMF_HOOK_CODE_CACHE !== '0';
  if (codeCache && !isExecutable(node)) {
    console.warn(`warning: ${node} is not executable here; building without code caches`);
    codeCache = false;
  }
  try {
    const r = await buildProduct({ codeCache, node });
    rmSync(join(REPO, 'dist', 'cli.mjs'), { force: true }); // the ESM loader of earlier builds
    for (const f of [r.hook, r.cli]) console.log(`${f.slice(REPO.length + 1)}  ${(statSync(f).size / 1024).toFixed(0)} KiB`);
    const kib = (n) => (n ? `${(n / 1024).toFixed(0)} KiB` : 'none');
    console.log(`code caches: hook ${kib(r.hookCache)}, cli ${kib(r.cliCache)}${codeCache ? ` (${node} ${nodeVersion(node)})` : ''}`);
  } catch (e) {
    console.error(`build failed: ${e?.message ?? e}`);
    process.exit(1);
  }
}

// ---------------------------------------------------------------------------------------------

/**
 * Write an executable by temp + rename: a hook or CLI that is running meanwhile (tests run them
 * while others build) keeps its old file, and writing over a running file fails (ETXTBSY).
 */
function replaceFile(file, text) {
  const tmp = `${file}.tmp-${process.pid}`;
  writeFileSync(tmp, text, { mode: 0o755 });
  chmodSync(tmp, 0o755);
  renameSync(tmp, file);
}

/** Whether this file is the script node runs (not a module imported by a test). */
function isMain() {
  try {
    return import.meta.url === pathToFileURL(realpathSync(process.argv[1])).href;
  } catch {
    return false;
  }
}

function isExecutable(file) {
  try {
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function nodeVersion(node) {
  return spawnSync(node, ['--version'], { env: { PATH: '/usr/bin:/bin' }, encoding: 'utf8' }).stdout?.trim() ?? '?';
}

/**
 * Run a bundle through a training run in a child process of `node` (the hook's shebang; install.sh
 * gives the CLI the same one; clean environment, no NODE_OPTIONS: V8 only accepts a cache made with
 * the same flags) and return its code cache, which then holds every function the run compiled.
 * Throws, with the trainer's stderr, when the run fails or any of its calls ends unexpectedly.
 */
function trainCodeCache(node, kind, source) {
  const dir = mkdtempSync(join(tmpdir(), 'ovmf-hook-build-'));
  try {
    writeFileSync(join(dir, 'bundle.js'), source);
    writeFileSync(join(dir, 'train.cjs'), `(${trainer.toString()})();\n`);
    const r = spawnSync(node, [join(dir, 'train.cjs'), kind, join(dir, 'bundle.js'), join(dir, 'cache.bin'), dir], {
      env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LC_ALL: 'C' },
      stdio: ['ignore', 'ignore', 'pipe'],
      encoding: 'utf8',
      timeout: 120_000,
    });
    if (r.status !== 0 || r.error) {
      const why = r.error?.message ?? (r.signal ? `killed by ${r.signal}` : `exit ${r.status}`);
      throw new Error(`the ${kind} code-cache training run (${node}) failed (${why}); its stderr:\n${r.stderr || '(empty)'}`);
    }
    return readFileSync(join(dir, 'cache.bin'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * The training run (serialized into the child process, so self-contained). Hermetic: fake
 * firmware and descriptors, archive/state/nvram in `work`, no journal or syslog lines and no child
 * processes (stand-ins), stdout to /dev/null. `hook`: the core's runHook through every handled
 * operation, stdin fed per call. `cli`: the CLI (which runs on load) rewriting a domain file and
 * converting a domain. Each call's exit code is checked; any other ends the run with exit 1 and a
 * line on stderr (the build then fails and shows it).
 */
function trainer() {
  const [, , kind, bundlePath, outPath, work] = process.argv;
  const fs = require('node:fs');
  const path = require('node:path');
  const vm = require('node:vm');
  const net = require('node:net');
  const { EventEmitter } = require('node:events');
  const script = new vm.Script(fs.readFileSync(bundlePath, 'utf8'), { filename: bundlePath });
  const run = () => {
    const mod = { exports: {} };
    script.runInThisContext()(mod.exports, require, mod, bundlePath, path.dirname(bundlePath));
    return mod.exports;
  };
  const problems = [];
  const expect = (what, code, wanted) => {
    if (code !== wanted) problems.push(`${what}: exit ${code}, expected ${wanted}`);
  };
  const finish = () => {
    if (problems.length) {
      process.stderr.write(`${problems.map((p) => `training call failed: ${p}`).join('\n')}\n`);
      process.exitCode = 1;
      return;
    }
    fs.writeFileSync(outPath, script.createCachedData());
    process.exitCode = 0;
  };

  /**
   * Stand-in for a client socket (journald's stream socket, the holder of a VM lock) and for a
   * spawned child (logger): a peer that accepts, takes what it is sent and closes. It has every
   * method the product calls on them.
   */
  class StandIn extends EventEmitter {
    constructor(onConnect) {
      super();
      this.destroyed = false;
      setImmediate(() => {
        if (this.destroyed) return;
        if (onConnect) onConnect();
        this.emit('connect');
        this.emit('end');
        this.destroy();
      });
    }
    setEncoding() {
      return this;
    }
    setTimeout() {
      return this;
    }
    ref() {
      return this;
    }
    unref() {
      return this;
    }
    write(_data, cb) {
      if (typeof cb === 'function') setImmediate(cb);
      return true;
    }
    end(data, cb) {
      if (typeof data === 'function') cb = data;
      this.emit('finish');
      if (typeof cb === 'function') setImmediate(cb);
      return this;
    }
    destroy() {
      if (!this.destroyed) {
        this.destroyed = true;
        setImmediate(() => this.emit('close'));
      }
      return this;
    }
  }
  net.createConnection = (_where, onConnect) => new StandIn(typeof onConnect === 'function' ? onConnect : undefined);
  net.connect = net.createConnection;
  require('node:child_process').spawn = () => new StandIn();
  // Servers are real (a VM lock binds a unix socket in the abstract namespace, unique to `work`);
  // a lock lives until its process exits, so after each hook call they are closed as that exit would.
  const servers = new Set();
  const createServer = net.createServer;
  net.createServer = (...a) => {
    const server = createServer(...a);
    servers.add(server);
    return server;
  };
  const exitOfCall = () => Promise.all([...servers].map((server) => new Promise((resolve) => server.close(() => resolve())))).then(() => servers.clear());

  const d = (p) => path.join(work, p);
  for (const p of ['fw', 'descriptors', 'archive', 'state', 'nvram']) fs.mkdirSync(d(p), { recursive: true, mode: 0o700 });
  const code = d('fw/OVMF_CODE_4M.fd');
  const vars = d('fw/OVMF_VARS_4M.fd');
  const fd = fs.openSync(code, 'w', 0o644);
  fs.ftruncateSync(fd, 3653632);
  fs.closeSync(fd);
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
  fs.writeFileSync(
    d('config.json'),
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
  process.env.OVMF_HOOK_CONFIG = d('config.json');

  const vmName = 'train-vm';
  const devices = Array.from({ length: 30 }, (_, i) =>
    [
      `    <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='/var/lib/libvirt/images/t${i}.qcow2'/><target dev='hd${String.fromCharCode(97 + (i % 26))}' bus='ide'/><address type='drive' controller='0' bus='0' target='0' unit='${i % 2}'/></disk>`,
      `    <interface type='network'><mac address='52:54:00:00:00:${(16 + i).toString(16)}'/><source network='default'/><model type='e1000'/><address type='pci' domain='0x0000' bus='0x00' slot='0x${(3 + i).toString(16).padStart(2, '0')}' function='0x0'/></interface>`,
      `    <!-- comment ${i} --><serial type='pty'><target port='${i}'/></serial>`,
    ].join('\n'),
  ).join('\n');
  const domain = (os) =>
    `<domain type='kvm'>\n  <name>${vmName}</name>\n  <uuid>5b0a3b9e-6c1d-4f7e-9a2b-1c3d4e5f6a7b</uuid>\n  <metadata><ovmf:policy xmlns:ovmf="urn:ovmf-hook:policy:1" archive="yes"/></metadata>\n  <memory unit='KiB'>1048576</memory>\n  <os>\n${os}\n  </os>\n  <features><acpi/><apic/></features>\n  <devices>\n${devices}\n    <controller type='ide' index='0'/>\n    <sound model='ich6'/>\n    <video><model type='cirrus'/></video>\n  </devices>\n</domain>\n`;
  const uefiOs = (dir, nvramDir) =>
    `    <type arch='x86_64' machine='pc-q35-7.2'>hvm</type>\n    <loader readonly='yes' type='pflash'>${dir}/OVMF_CODE_4M.fd</loader>\n    <nvram template='${dir}/OVMF_VARS_4M.fd'>${nvramDir}/${vmName}_VARS.fd</nvram>`;
  const bios = domain("    <type arch='x86_64' machine='pc-i440fx-7.2'>hvm</type>\n    <boot dev='hd'/>");

  if (kind === 'cli') {
    fs.writeFileSync(d('domain.xml'), bios);
    // libvirt for `convert`: answers the one batched virsh call (src/io/virsh.ts batchScript) as
    // libvirt 9.0 does, for a shut-off BIOS domain without snapshots
    require('node:child_process').execFile = (file, args, opts, cb) => {
      let stdout = '';
      let stderr = '';
      for (const cmd of String(args.at(-1)).split('; ')) {
        const word = cmd.split(' ')[0].replace(/'/g, '');
        if (cmd.startsWith('echo --err ')) (stdout += '\n'), (stderr += `error: ${cmd.slice(11)}\n`);
        else if (cmd.startsWith('echo ')) stdout += `${cmd.slice(5)}\n`;
        else if (word === 'dominfo') stdout += `Id:             -\nName:           ${vmName}\nState:          shut off\nPersistent:     yes\nManaged save:   no\n\n`;
        else if (word === 'dumpxml') stdout += `${bios}\n`;
        else if (word === 'snapshot-list') stdout += '\n';
      }
      setImmediate(() => cb(null, stdout, stderr));
      return new StandIn();
    };
    // a finished command exits at once (src/cli/bin.ts): here it only ends that run
    let exited;
    process.exit = (code) => {
      exited = code;
    };
    // rewrite, then convert --dry-run (each run of the bundle is one CLI call), then the cache
    const runs = [['rewrite', d('domain.xml')], ['convert', vmName, '--dry-run']];
    let current;
    const next = () => {
      if (current) expect(`ovmf-hook ${current.join(' ')}`, exited ?? process.exitCode ?? 0, 0);
      current = runs.shift();
      if (!current) return finish();
      exited = undefined;
      process.exitCode = undefined;
      process.argv = [process.argv[0], bundlePath, ...current];
      process.once('beforeExit', next);
      run();
    };
    next();
    return;
  }
  const { runHook } = run();
  const uefi = domain(uefiOs(d('fw'), d('nvram')));
  const moved = domain(uefiOs('/opt/elsewhere', '/opt/elsewhere/nvram'));
  // stdin: the hook reopens /proc/self/fd/0 (src/hook/stdio.ts); here that name opens a file holding the XML
  const stdinFile = d('stdin.xml');
  const openSync = fs.openSync;
  fs.openSync = (p, ...rest) => openSync(p === '/proc/self/fd/0' ? stdinFile : p, ...rest);
  /** One hook call (`wanted`: its exit code), then what the end of its process would release. */
  const call = async (args, xml, wanted, what) => {
    fs.writeFileSync(stdinFile, xml);
    expect(`hook ${args.slice(0, 2).join(' ')} (${what})`, await runHook([vmName, ...args]), wanted);
    await exitOfCall();
  };
  (async () => {
    const nvram = d(`nvram/${vmName}_VARS.fd`);
    for (let round = 0; round < 3; round++) {
      fs.rmSync(nvram, { force: true });
      await call(['prepare', 'begin', '-'], uefi, 0, round ? 'restore' : 'provision');
      fs.writeFileSync(nvram, Buffer.alloc(540672, round + 1));
      await call(['release', 'end', '-'], uefi, 0, 'archive');
      await call(['prepare', 'begin', '-'], uefi, 0, 'keep');
      fs.rmSync(nvram, { force: true });
      await call(['prepare', 'begin', '-'], uefi, 0, 'restore');
      await call(['migrate', 'begin', '-'], moved, 0, 'filter: map the paths');
      await call(['restore', 'begin', '-'], moved, 0, 'filter');
      await call(['prepare', 'begin', '-'], bios, 0, 'breaks the policy: a warning (the default mode)');
      await call(['release', 'end', '-'], bios, 0, 'a BIOS domain');
      // (no malformed input: fast-xml-parser, which only that needs, stays out of the cache)
    }
    finish();
  })().catch((e) => {
    process.stderr.write(`${e?.stack ?? e}\n`);
    process.exitCode = 1;
  });
}
