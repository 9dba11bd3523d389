#!/usr/bin/env node
/**
 * `npm run bench`: what the hook costs libvirt, and how fast the rewrite is. A script, not a test:
 * it prints numbers and goals (PASS/MISS, informational) and exits non-zero only when a measured
 * command fails.
 *
 * Every process is spawned in a clean environment, like libvirt's (`env -i PATH=… LC_ALL=C`), plus
 * OVMF_HOOK_CONFIG naming a config whose archive, state, nvram and firmware directories all live in
 * a temp tree (so the bench needs no OVMF package and touches nothing of the host). The rows run
 * interleaved (one run of each row per round) after warm-up rounds, so drift hits them alike.
 * Peak RSS comes from GNU time (`/usr/bin/time -f %M`, Debian package `time`) in separate runs.
 *
 *   node scripts/bench.mjs [--runs N] [--quick] [--json] [--no-build] [--no-libvirt] [--keep] [--cluster]
 *
 *   --runs N      timed runs per row (default 25; --quick: 3)
 *   --quick       few runs and smaller generated inputs (proves the bench works; numbers are rough)
 *   --json        one JSON document on stdout instead of the tables (progress still on stderr)
 *   --no-build    use dist/ as it is (default: run scripts/build.mjs first)
 *   --no-libvirt  skip the convert-vs-virt-xml row (it defines a throw-away ovmfhook-t-bench-* VM)
 *   --keep        keep the temp tree (its path is printed)
 *   --cluster     also time prepare and release with the archive on the cluster testbed's GlusterFS
 *                 mount (scripts/cluster-testbed.sh up; rows skipped with a note when it is not
 *                 mounted), printed with their ratio to the same rows on local disk. Opt-in: the
 *                 bench never brings the testbed up or down itself.
 *
 * The fleet rows time `ovmf-hook nvram certs --all --json` over 100 and 1,000 generated VMs (--quick:
 * 20 and 200): NVRAM files that are copies of Debian's OVMF_VARS_4M.ms.fd, every other one enrolled
 * with the 2023 certificates, and a fake virsh (test/cli/fake-virsh-bin.ts) that knows their
 * definitions; skipped (with a note) without that template.
 */
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import {
  accessSync,
  chmodSync,
  closeSync,
  constants,
  existsSync,
  ftruncateSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { benchUuid, fillArchive, generationMeta, i440fxDomain, uefiDomain, writeGeneration } from './bench/domains.mjs';
import { median, quantile, table } from './bench/stats.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const HOOK = path.join(ROOT, 'dist/hooks/qemu');
const CLI = path.join(ROOT, 'dist/cli.cjs');
const GNU_TIME = '/usr/bin/time';
const CLEAN_PATH = '/usr/sbin:/usr/bin:/sbin:/bin';
const LIBVIRT_URI = 'qemu:///system';
const MS_VARS = '/usr/share/OVMF/OVMF_VARS_4M.ms.fd'; // the fleet rows' NVRAM content (Debian's ovmf)
const CODE_SIZE = 3653632; // Debian's OVMF_CODE_4M.fd
const VARS_SIZE = 540672; // Debian's OVMF_VARS_4M.fd
const RELEASE_NVRAM_BYTES = 4 * 1024 * 1024;

// ---------------------------------------------------------------------------------------------
// options

function usage(msg) {
  if (msg) process.stderr.write(`bench: ${msg}\n`);
  process.stderr.write('usage: node scripts/bench.mjs [--runs N] [--quick] [--json] [--no-build] [--no-libvirt] [--keep] [--cluster]\n');
  process.exit(msg ? 2 : 0);
}

function parseArgs(argv) {
  const o = { runs: undefined, quick: false, json: false, build: true, libvirt: true, keep: false, cluster: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--quick') o.quick = true;
    else if (a === '--json') o.json = true;
    else if (a === '--no-build') o.build = false;
    else if (a === '--no-libvirt') o.libvirt = false;
    else if (a === '--keep') o.keep = true;
    else if (a === '--cluster') o.cluster = true;
    else if (a === '--help' || a === '-h') usage();
    else if (a === '--runs' || a.startsWith('--runs=')) {
      const v = a.includes('=') ? a.slice(7) : argv[++i];
      if (!/^\d+$/.test(v ?? '') || Number(v) < 1) usage(`--runs needs a positive integer, got ${v}`);
      o.runs = Number(v);
    } else usage(`unknown argument ${a}`);
  }
  o.runs ??= o.quick ? 3 : 25;
  o.warmup = o.quick ? 1 : 3;
  o.rssRuns = o.quick ? 1 : 3;
  o.sizes = o.quick
    ? { migrateDevices: 100, rewriteSmall: 100, rewriteLarge: 1000, archiveSmall: 10, archiveLarge: 500, fleetSmall: 20, fleetLarge: 200 }
    : { migrateDevices: 1000, rewriteSmall: 1000, rewriteLarge: 10000, archiveSmall: 10, archiveLarge: 10000, fleetSmall: 100, fleetLarge: 1000 };
  o.fleetRuns = o.quick ? 2 : 5;
  return o;
}

const opts = parseArgs(process.argv.slice(2));
const progress = (msg) => process.stderr.write(`bench: ${msg}\n`);
const fmt = (n, d = 1) => (Number.isFinite(n) ? n.toFixed(d) : 'n/a');
const int = (n) => n.toLocaleString('en-US');

// ---------------------------------------------------------------------------------------------
// processes

/** Spawn `cmd args` with `env` only, feeding `input`; wall-clock ms around spawnSync. */
function run(cmd, args, { env, input, timeoutMs = 120_000 } = {}) {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(cmd, args, { env, input, maxBuffer: 256 * 1024 * 1024, timeout: timeoutMs });
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  // EPIPE: the command exited without reading all of stdin (a pass-through hook need not read it;
  // libvirt ignores that too)
  const error = r.error && r.error.code !== 'EPIPE' ? r.error : undefined;
  return { ms, status: r.status, signal: r.signal, error, stdout: r.stdout ?? Buffer.alloc(0), stderr: r.stderr ?? Buffer.alloc(0) };
}

const failure = (r) =>
  r.error ? String(r.error.message) : r.status !== 0 ? `exit ${r.status ?? r.signal}: ${r.stderr.toString().trim().split('\n').slice(-3).join(' | ')}` : undefined;

const executable = (p) => {
  try {
    accessSync(p, constants.X_OK);
    return true;
  } catch {
    return false;
  }
};

// ---------------------------------------------------------------------------------------------
// build

if (opts.build) {
  progress('building dist/ (scripts/build.mjs)');
  const r = spawnSync(process.execPath, [path.join(ROOT, 'scripts/build.mjs')], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
  if (r.status !== 0) {
    process.stderr.write(r.stdout?.toString() ?? '');
    process.exit(1);
  }
}
if (!existsSync(HOOK) || !existsSync(CLI)) {
  progress('dist/ is missing; run npm run build (or drop --no-build)');
  process.exit(1);
}
const hookNode = /^#!(\S+)/.exec(readFileSync(HOOK, 'utf8').slice(0, 200))?.[1] ?? '/usr/bin/node';

// a bench-only bundle of the pure core, for the in-process timing
const tree = mkdtempSync(path.join(os.tmpdir(), 'ovmf-hook-bench-'));
chmodSync(tree, 0o700);
let convertVm; // the throw-away libvirt domain of the convert rows, while it exists
process.on('exit', () => {
  cleanupVm();
  if (opts.keep) progress(`kept ${tree}`);
  else rmSync(tree, { recursive: true, force: true });
});
const { build } = await import('esbuild');
const bundleDir = path.join(tree, 'bundles');
/** Bundle a TypeScript entry of this repo into bundleDir/OUT (CommonJS for this node); its path. */
const bundle = async (entry, out) => {
  const outfile = path.join(bundleDir, out);
  await build({ entryPoints: [path.join(ROOT, entry)], outfile, bundle: true, platform: 'node', target: 'node20', format: 'cjs', logLevel: 'warning' });
  return outfile;
};
const core = createRequire(import.meta.url)(await bundle('scripts/bench/core-entry.ts', 'core.cjs'));
// the fleet rows' stand-in for libvirt: the tests' fake virsh executable
const { fakeVirshBin } = createRequire(import.meta.url)(await bundle('test/cli/fake-virsh-bin.ts', 'fake-virsh-bin.cjs'));

// ---------------------------------------------------------------------------------------------
// machine

function machine() {
  const cpus = os.cpus();
  const nodeV = spawnSync(hookNode, ['--version'], { env: { PATH: CLEAN_PATH } }).stdout?.toString().trim();
  return {
    cpu: cpus[0]?.model?.trim() ?? 'unknown',
    cores: cpus.length,
    memGiB: Number((os.totalmem() / 2 ** 30).toFixed(1)),
    kernel: `${os.type()} ${os.release()}`,
    node: nodeV || process.version,
    nodeBinary: hookNode,
    loadavg: os.loadavg().map((x) => Number(x.toFixed(2))),
  };
}

// ---------------------------------------------------------------------------------------------
// the temp tree: fake firmware + descriptors, archive/state/nvram dirs, configs

const fwDir = path.join(tree, 'firmware');
const descDir = path.join(tree, 'descriptors');
mkdirSync(fwDir, { recursive: true });
mkdirSync(descDir, { recursive: true });
const fw = {
  code: path.join(fwDir, 'OVMF_CODE_4M.fd'),
  vars: path.join(fwDir, 'OVMF_VARS_4M.fd'),
  msCode: path.join(fwDir, 'OVMF_CODE_4M.ms.fd'),
  msVars: path.join(fwDir, 'OVMF_VARS_4M.ms.fd'),
};
const sparse = (file, size) => {
  const fd = openSync(file, 'w', 0o644);
  ftruncateSync(fd, size);
  closeSync(fd);
};
sparse(fw.code, CODE_SIZE);
sparse(fw.msCode, CODE_SIZE);
writeFileSync(fw.vars, randomBytes(VARS_SIZE), { mode: 0o644 });
writeFileSync(fw.msVars, randomBytes(VARS_SIZE), { mode: 0o644 });
const descriptor = (description, code, vars, features) =>
  JSON.stringify(
    {
      description,
      'interface-types': ['uefi'],
      mapping: { device: 'flash', executable: { filename: code, format: 'raw' }, 'nvram-template': { filename: vars, format: 'raw' } },
      targets: [{ architecture: 'x86_64', machines: ['pc-i440fx-*', 'pc-q35-*'] }],
      features,
      tags: [],
    },
    null,
    4,
  );
// the same three descriptors Debian 12's ovmf package installs, pointing at the fake files
writeFileSync(path.join(descDir, '40-edk2-x86_64-secure-enrolled.json'), descriptor('secure, enrolled', fw.msCode, fw.msVars, ['acpi-s3', 'amd-sev', 'enrolled-keys', 'requires-smm', 'secure-boot', 'verbose-dynamic']));
writeFileSync(path.join(descDir, '50-edk2-x86_64-secure.json'), descriptor('secure', fw.msCode, fw.vars, ['acpi-s3', 'amd-sev', 'requires-smm', 'secure-boot', 'verbose-dynamic']));
writeFileSync(path.join(descDir, '60-edk2-x86_64.json'), descriptor('plain', fw.code, fw.vars, ['acpi-s3', 'amd-sev', 'verbose-dynamic']));

const uid = process.getuid?.() ?? 0;
const gid = process.getgid?.() ?? 0;

/** One hook installation's worth of directories and its config file (`archiveDir`: elsewhere than the tree). */
function site(name, archiveDir) {
  const dir = path.join(tree, name);
  const s = { dir, archiveDir: archiveDir ?? path.join(dir, 'archive'), stateDir: path.join(dir, 'state'), nvramDir: path.join(dir, 'nvram'), config: path.join(dir, 'config.json') };
  for (const d of [s.dir, s.archiveDir, s.stateDir, s.nvramDir]) mkdirSync(d, { recursive: true, mode: 0o700 });
  const config = {
    archiveDir: s.archiveDir,
    stateDir: s.stateDir,
    nvramDir: s.nvramDir,
    firmwareDirs: [descDir],
    hostId: 'bench-host',
    qemuUser: `+${uid}`,
    qemuGroup: `+${gid}`,
  };
  writeFileSync(s.config, `${JSON.stringify(config, null, 2)}\n`, { mode: 0o644 });
  s.env = { PATH: CLEAN_PATH, LC_ALL: 'C', OVMF_HOOK_CONFIG: s.config };
  return s;
}

const small = site('small');
const large = site('large');

// --cluster: an archive on the cluster testbed's GlusterFS mount (state and NVRAM stay local, as on a real host)
const GLUSTER_MOUNT = '/srv/ovmfhook-cluster/archive-mnt';
const glusterMounted = () => {
  try {
    return readFileSync('/proc/mounts', 'utf8').split('\n').some((l) => l.split(' ')[1] === GLUSTER_MOUNT && l.split(' ')[2] === 'fuse.glusterfs');
  } catch {
    return false;
  }
};
let gluster = null;
const glusterSkipped = opts.cluster && !glusterMounted() ? `GlusterFS rows: skipped (${GLUSTER_MOUNT} is not mounted; bring the testbed up first: scripts/cluster-testbed.sh up)` : null;
if (opts.cluster && !glusterSkipped) {
  const archiveDir = mkdtempSync(path.join(GLUSTER_MOUNT, 'ovmfhook-bench-'));
  process.on('exit', () => rmSync(archiveDir, { recursive: true, force: true }));
  gluster = site('gluster', archiveDir);
}
const floorEnv = small.env;

progress(`temp tree ${tree}`);
progress(`archives: ${opts.sizes.archiveSmall} and ${int(opts.sizes.archiveLarge)} VMs`);
fillArchive(small.archiveDir, opts.sizes.archiveSmall - 1);
fillArchive(large.archiveDir, opts.sizes.archiveLarge - 1);

// prepare subject: a UEFI VM whose archive holds one generation; its local NVRAM goes before each run
const prep = { name: 'bench-prepare', uuid: benchUuid('prepare', 0) };
const prepData = randomBytes(VARS_SIZE);
const prepXml = (s) => uefiDomain({ name: prep.name, uuid: prep.uuid, n: 12, loader: fw.code, template: fw.vars, nvram: path.join(s.nvramDir, `${prep.name}_VARS.fd`) });
for (const s of [small, large, ...(gluster ? [gluster] : [])]) {
  const meta = generationMeta({ generation: 1, data: prepData, vmName: prep.name });
  writeGeneration(s.archiveDir, prep.uuid, meta, prepData);
  writeFileSync(path.join(s.stateDir, `${prep.uuid}.json`), `${JSON.stringify({ generation: 1, sha256: meta.sha256, time: meta.time }, null, 2)}\n`, { mode: 0o600 });
}
const prepBefore = (s) => () => {
  rmSync(path.join(s.nvramDir, `${prep.name}_VARS.fd`), { force: true });
  rmSync(path.join(s.archiveDir, prep.uuid, 'claim.json'), { force: true }); // as after a release
};
const prepCheck = (s) => () => {
  const got = readFileSync(path.join(s.nvramDir, `${prep.name}_VARS.fd`));
  if (!got.equals(prepData)) throw new Error('prepare did not restore the archived generation');
};

// release subject: a fresh 4 MiB NVRAM before each run, so every run archives a new generation
const rel = { name: 'bench-release', uuid: benchUuid('release', 0) };
/** The release subject on `s`: its NVRAM, XML, and what goes before and after each run. */
const relSubject = (s) => {
  const nvram = path.join(s.nvramDir, `${rel.name}_VARS.fd`);
  let last;
  return {
    nvram,
    xml: uefiDomain({ name: rel.name, uuid: rel.uuid, n: 12, loader: fw.code, template: fw.vars, nvram }),
    before: () => {
      last = randomBytes(RELEASE_NVRAM_BYTES);
      writeFileSync(nvram, last, { mode: 0o600 });
    },
    check: () => {
      const dir = path.join(s.archiveDir, rel.uuid);
      const newest = readdirSync(dir).filter((n) => /^gen-\d+\.json$/.test(n)).sort().at(-1);
      const meta = newest && JSON.parse(readFileSync(path.join(dir, newest), 'utf8'));
      if (meta?.sha256 !== createHash('sha256').update(last).digest('hex')) throw new Error('release did not archive the NVRAM');
    },
  };
};
const { nvram: relNvram, xml: relXml, before: relBefore, check: relCheck } = relSubject(small);

// migrate subject: a big UEFI domain from a host that keeps OVMF elsewhere
const mig = { name: 'bench-migrate', uuid: benchUuid('migrate', 0) };
const migXml = uefiDomain({
  name: mig.name,
  uuid: mig.uuid,
  n: opts.sizes.migrateDevices,
  loader: '/opt/other-host/ovmf/OVMF_CODE_4M.fd',
  template: '/opt/other-host/ovmf/OVMF_VARS_4M.fd',
  nvram: path.join(small.nvramDir, `${mig.name}_VARS.fd`),
});
const migCheck = (r) => {
  const out = r.stdout.toString();
  if (!out.includes(`>${fw.code}</loader>`) || !out.includes(`template='${fw.vars}'`)) throw new Error('migrate begin did not map the firmware paths');
};

// ---------------------------------------------------------------------------------------------
// rows

const nodeArgs = (script) => ({ cmd: hookNode, args: script });
/** prepare with NVRAM restore on `site`, whose archive holds `vms` VMs */
const prepareRow = (id, site, vms) => ({
  id,
  label: `hook prepare begin (restore; ${int(vms)}-VM archive)`,
  cmd: HOOK,
  args: [prep.name, 'prepare', 'begin', '-'],
  env: site.env,
  input: Buffer.from(prepXml(site)),
  before: prepBefore(site),
  check: prepCheck(site),
});
const rows = [
  { id: 'floor', label: 'node -e 0 (floor)', ...nodeArgs(['-e', '0']), env: floorEnv, input: Buffer.from(prepXml(small)) },
  { id: 'sh', label: "sh -c 'exit 0' (shell hook)", cmd: '/bin/sh', args: ['-c', 'exit 0'], env: floorEnv, input: Buffer.from(prepXml(small)) },
  { id: 'started', label: 'hook started begin (pass-through)', cmd: HOOK, args: [prep.name, 'started', 'begin', '-'], env: small.env, input: Buffer.from(prepXml(small)) },
  prepareRow('prepare', small, opts.sizes.archiveSmall),
  prepareRow('prepareLarge', large, opts.sizes.archiveLarge),
  { id: 'release', label: 'hook release end (archive 4 MiB NVRAM)', cmd: HOOK, args: [rel.name, 'release', 'end', '-'], env: small.env, input: Buffer.from(relXml), before: relBefore, check: relCheck },
  {
    id: 'migrate',
    label: `hook migrate begin (${int(opts.sizes.migrateDevices)} devices, loader mapped)`,
    cmd: HOOK,
    args: [mig.name, 'migrate', 'begin', '-'],
    env: small.env,
    input: Buffer.from(migXml),
    check: migCheck,
  },
];

if (gluster) {
  const r = relSubject(gluster);
  rows.push(
    { ...prepareRow('prepareGluster', gluster, 1), label: 'hook prepare begin (restore; archive on GlusterFS)', local: 'prepare' },
    { id: 'releaseGluster', label: 'hook release end (archive 4 MiB NVRAM on GlusterFS)', cmd: HOOK, args: [rel.name, 'release', 'end', '-'], env: gluster.env, input: Buffer.from(r.xml), before: r.before, check: r.check, local: 'release' },
  );
}

// lower bounds (scripts/bench/bound.cjs): the same unavoidable I/O, sha256 and fsyncs as the hook
// rows above, in a plain script; a goal below its bound cannot be met here by any implementation
// that keeps the guarantees
const BOUND = path.join(ROOT, 'scripts/bench/bound.cjs');
const boundDir = path.join(tree, 'bound');
mkdirSync(path.join(boundDir, 'archive'), { recursive: true, mode: 0o700 });
const boundRow = (id, of, label, args, input) => ({ id, of, label: `lower bound of ${label}`, cmd: hookNode, args: [BOUND, ...args], env: small.env, input });
rows.push(
  boundRow('boundPrepare', 'prepare', 'prepare (claim, read + sha256, restore, state)', ['prepare', path.join(small.archiveDir, prep.uuid, 'gen-000001.fd'), path.join(boundDir, 'bound_VARS.fd'), path.join(boundDir, 'archive'), boundDir], Buffer.from(prepXml(small))),
  boundRow('boundRelease', 'release', 'release (read + sha256, 4 MiB archived, state)', ['release', relNvram, path.join(boundDir, 'archive'), boundDir], Buffer.from(relXml)),
  boundRow('boundMigrate', 'migrate', 'migrate (read, state, XML out)', ['migrate', boundDir], Buffer.from(migXml)),
);

// --keep: leave each hook row's stdin, argv and env in the tree, to profile one call by hand
if (opts.keep) {
  for (const r of rows.filter((x) => x.cmd === HOOK)) {
    writeFileSync(path.join(tree, `${r.id}.xml`), r.input);
    writeFileSync(path.join(tree, `${r.id}.sh`), `env -i ${Object.entries(r.env).map(([k, v]) => `${k}=${v}`).join(' ')} ${HOOK} ${r.args.join(' ')} < ${path.join(tree, `${r.id}.xml`)}\n`);
  }
}

// ---------------------------------------------------------------------------------------------
// convert vs virt-xml (needs libvirt; defines a throw-away domain)

const notes = [];
if (glusterSkipped) notes.push(glusterSkipped);

function virsh(args, input) {
  return run('timeout', ['60', 'virsh', '-c', LIBVIRT_URI, ...args], { env: { PATH: CLEAN_PATH, LC_ALL: 'C' }, input });
}

function cleanupVm() {
  if (!convertVm) return;
  virsh(['undefine', convertVm, '--nvram']);
  convertVm = undefined;
}

function setupConvert() {
  if (!opts.libvirt) return notes.push('convert vs virt-xml: skipped (--no-libvirt)');
  const virtXml = ['/usr/bin/virt-xml', '/usr/local/bin/virt-xml'].find(executable);
  if (!virtXml) return notes.push('convert vs virt-xml: skipped (virt-xml is not installed; Debian package virtinst)');
  if (!executable('/usr/bin/virsh') || failure(virsh(['version']))) return notes.push('convert vs virt-xml: skipped (libvirt / virsh is not available)');

  const name = `ovmfhook-t-bench-${process.pid}`;
  const xml = readFileSync(path.join(ROOT, 'test/fixtures/domains/bios-i440fx-windows.xml'), 'utf8')
    .replace(/ovmfhook-fix-bios-i440fx-windows/g, name)
    .replace(/<uuid>[^<]*<\/uuid>\n\s*/, '');
  const file = path.join(tree, 'convert-input.xml');
  writeFileSync(file, xml);
  const def = virsh(['define', file]);
  if (failure(def)) return notes.push(`convert vs virt-xml: skipped (virsh define failed: ${failure(def)})`);
  convertVm = name;
  const dumped = path.join(tree, 'convert-dumped.xml');
  writeFileSync(dumped, virsh(['dumpxml', '--inactive', name]).stdout);

  const env = { PATH: CLEAN_PATH, LC_ALL: 'C', HOME: path.join(tree, 'home'), OVMF_HOOK_CONFIG: small.config };
  mkdirSync(env.HOME, { recursive: true });
  const help = (args) => run(hookNode, [CLI, ...args, '--help'], { env }).stdout.toString();
  const top = help([]);
  const has = (cmd) => new RegExp(`^\\s*ovmf-hook ${cmd}\\b`, 'm').test(top);
  if (!has('convert')) return notes.push('convert vs virt-xml: skipped (dist/cli.cjs has no convert command)');
  const ours = { label: 'ovmf-hook convert <vm> --dry-run', cmd: hookNode, args: [CLI, 'convert', name, '--dry-run'] };
  // the same rewrite without the virsh calls of convert: what the CLI itself costs
  const rewrite = has('rewrite') ? { label: 'ovmf-hook rewrite <dumped xml>', cmd: hookNode, args: [CLI, 'rewrite', dumped] } : undefined;
  const vxHelp = run(virtXml, ['--help'], { env }).stdout.toString();
  let vx;
  if (vxHelp.includes('--convert-to-q35')) {
    vx = { label: 'virt-xml <vm> --convert-to-q35 --print-xml', args: ['-c', LIBVIRT_URI, name, '--convert-to-q35', '--print-xml'] };
  } else {
    const v = run(virtXml, ['--version'], { env }).stdout.toString().trim() || run(virtXml, ['--version'], { env }).stderr.toString().trim();
    vx = { label: 'virt-xml <vm> --edit --boot uefi,machine=q35 --print-xml', args: ['-c', LIBVIRT_URI, name, '--edit', '--boot', 'uefi,machine=q35', '--print-xml'] };
    notes.push(`convert: virt-xml ${v} has no --convert-to-q35 (virt-manager ≥ 5.0); measured --edit --boot uefi,machine=q35 --print-xml instead, which does less work (no device conversion)`);
  }
  return { ours, rewrite, vx: { ...vx, cmd: virtXml }, env };
}

async function addConvertRows() {
  const c = setupConvert();
  if (typeof c !== 'object') return;
  // convert --dry-run prints a diff, the others the whole XML: either way it names the new machine
  const isQ35 = (r) => {
    if (!/q35/.test(r.stdout.toString())) throw new Error('output does not show a q35 domain');
  };
  rows.push({ id: 'convertOurs', label: c.ours.label, cmd: c.ours.cmd, args: c.ours.args, env: c.env, check: isQ35 });
  if (c.rewrite) rows.push({ id: 'rewriteCli', label: c.rewrite.label, cmd: c.rewrite.cmd, args: c.rewrite.args, env: c.env, check: isQ35 });
  rows.push({ id: 'convertVirtXml', label: c.vx.label, cmd: c.vx.cmd, args: c.vx.args, env: c.env, check: isQ35 });
}

// ---------------------------------------------------------------------------------------------
// measuring

function once(row, record) {
  if (row.failed) return;
  try {
    row.before?.();
  } catch (e) {
    row.failed = `set-up failed: ${e.message}`;
    return;
  }
  const r = run(row.cmd, row.args, { env: row.env, input: row.input });
  const f = failure(r);
  if (f) {
    row.failed = f;
    return;
  }
  try {
    row.check?.(r);
  } catch (e) {
    row.failed = e.message;
    return;
  }
  if (record) row.ms.push(r.ms);
}

function peakRss(row) {
  if (row.failed || !executable(GNU_TIME)) return undefined;
  const out = path.join(tree, 'rss.txt');
  const kib = [];
  for (let i = 0; i < opts.rssRuns; i++) {
    row.before?.();
    const r = run(GNU_TIME, ['-f', '%M', '-o', out, row.cmd, ...row.args], { env: row.env, input: row.input });
    if (failure(r)) return undefined;
    kib.push(Number(readFileSync(out, 'utf8').trim().split('\n').at(-1)));
  }
  return median(kib);
}

function inProcessRewrite() {
  const pick = core.catalogPicker([descDir]);
  const out = [];
  for (const [id, n] of [
    ['rewriteSmall', opts.sizes.rewriteSmall],
    ['rewriteLarge', opts.sizes.rewriteLarge],
  ]) {
    const xml = i440fxDomain({ name: `bench-rewrite-${n}`, uuid: benchUuid('rewrite', n), n });
    const reps = Math.max(3, Math.round((opts.runs * opts.sizes.rewriteSmall) / n));
    const first = core.rewriteXml(xml, { pickFirmware: pick });
    if (!first.changed || !/machine='pc-q35|machine='q35/.test(first.xml)) throw new Error(`rewriteXml of the ${n}-device domain did not convert it`);
    for (let i = 0; i < 3; i++) core.rewriteXml(xml, { pickFirmware: pick }); // warm-up (JIT)
    const ms = [];
    for (let i = 0; i < reps; i++) {
      const t0 = process.hrtime.bigint();
      core.rewriteXml(xml, { pickFirmware: pick });
      ms.push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
    const m = median(ms);
    out.push({ id, devices: n, xmlKiB: Math.round(Buffer.byteLength(xml) / 1024), changes: first.changes.length, runs: reps, medianMs: m, p90Ms: quantile(ms, 0.9), usPerDevice: (m * 1000) / n });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// fleet: nvram certs --all over N generated VMs

/** A fleet of `n` VMs (even: the MS template as it is, odd: enrolled with the 2023 certificates) and its fake virsh. */
function makeFleet(n, enrolled) {
  const s = site(`fleet-${n}`);
  const template = readFileSync(MS_VARS);
  const domains = {};
  for (let i = 0; i < n; i++) {
    const name = `fleet-${String(i).padStart(4, '0')}`;
    const nvram = path.join(s.nvramDir, `${name}_VARS.fd`);
    writeFileSync(nvram, i % 2 ? enrolled : template, { mode: 0o600 });
    domains[name] = { xml: uefiDomain({ name, uuid: benchUuid('fleet', i), n: 12, loader: fw.msCode, template: fw.msVars, nvram }) };
  }
  const virsh = fakeVirshBin(s.dir, domains);
  return { n, env: { ...s.env, ...virsh.env, PATH: `${virsh.env.PATH.split(':')[0]}:${CLEAN_PATH}` } };
}

function fleetCerts() {
  if (!existsSync(MS_VARS)) {
    notes.push(`nvram certs fleet rows: skipped (${MS_VARS} is missing; Debian package ovmf)`);
    return [];
  }
  // the enrolled NVRAM, made by the product itself
  const enrolledFile = path.join(tree, 'enrolled_VARS.fd');
  const e = run(hookNode, [CLI, 'nvram', 'enroll', MS_VARS, '--ms-2023', '--output', enrolledFile], { env: small.env });
  if (failure(e)) throw new Error(`nvram enroll --ms-2023 for the fleet rows failed: ${failure(e)}`);
  const enrolled = readFileSync(enrolledFile);
  const out = [];
  for (const n of [opts.sizes.fleetSmall, opts.sizes.fleetLarge]) {
    const fleet = makeFleet(n, enrolled);
    const once = () => {
      const r = run(hookNode, [CLI, 'nvram', 'certs', '--all', '--json'], { env: fleet.env });
      const f = failure(r);
      if (f) throw new Error(`nvram certs --all over ${n} VMs: ${f}`);
      const counts = JSON.parse(r.stdout.toString()).counts;
      if (counts.current !== Math.floor(n / 2) || counts['update-available'] !== Math.ceil(n / 2))
        throw new Error(`nvram certs --all over ${n} VMs: wrong states ${JSON.stringify(counts)}`);
      return r.ms;
    };
    once(); // warm-up (page cache)
    const ms = Array.from({ length: opts.fleetRuns }, once);
    const m = median(ms);
    out.push({ vms: n, runs: ms.length, medianMs: m, p90Ms: quantile(ms, 0.9), msPerVm: m / n });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// main

const failures = [];
let exitCode = 0;
const onSignal = () => {
  cleanupVm();
  process.exit(130);
};
process.on('SIGINT', onSignal);
process.on('SIGTERM', onSignal);

let result;
try {
  await addConvertRows();
  for (const row of rows) row.ms = [];
  progress(`${opts.warmup} warm-up + ${opts.runs} timed rounds of ${rows.length} commands`);
  for (let i = 0; i < opts.warmup; i++) for (const row of rows) once(row, false);
  for (let i = 0; i < opts.runs; i++) {
    for (const row of rows) once(row, true);
    if ((i + 1) % 5 === 0 || i + 1 === opts.runs) progress(`round ${i + 1}/${opts.runs}`);
  }
  progress(executable(GNU_TIME) ? `peak RSS (${GNU_TIME} -f %M, ${opts.rssRuns} run(s) each)` : `peak RSS: ${GNU_TIME} missing (Debian package time); not measured`);
  for (const row of rows) row.rssKiB = peakRss(row);
  if (!executable(GNU_TIME)) notes.push(`peak RSS not measured: ${GNU_TIME} is missing (install the Debian package "time")`);
  progress('in-process rewriteXml');
  const rewrite = inProcessRewrite();
  progress(`nvram certs --all over ${int(opts.sizes.fleetSmall)} and ${int(opts.sizes.fleetLarge)} generated VMs`);
  const fleet = fleetCerts();

  for (const row of rows) if (row.failed) failures.push(`${row.label}: ${row.failed}`);
  const by = Object.fromEntries(rows.map((r) => [r.id, r]));
  const med = (id) => (by[id] && !by[id].failed ? median(by[id].ms) : NaN);
  const floor = med('floor');
  const goals = [];
  const goal = (id, label, value, op, limit, unit = '×') => {
    if (!Number.isFinite(value)) return;
    const pass = op === '≤' ? value <= limit : op === '<' ? value < limit : value >= limit;
    goals.push({ id, label, value: Number(value.toFixed(3)), goal: `${op} ${limit}${unit === '×' ? '' : ` ${unit}`}`, unit, pass });
  };
  goal('started', 'started begin / floor', med('started') / floor, '≤', 1.1);
  goal('prepare', 'prepare begin / floor', med('prepare') / floor, '≤', 1.3);
  goal('release', 'release end (4 MiB) / floor', med('release') / floor, '≤', 1.3);
  goal('migrate', `migrate begin (${int(opts.sizes.migrateDevices)} devices) / floor`, med('migrate') / floor, '≤', 1.4);
  // per operation: its bound, as a ratio to the floor (the least any hook can reach here) and ours to it
  const bounds = rows
    .filter((r) => r.of && !r.failed && by[r.of] && !by[r.of].failed)
    .map((r) => {
      const g = goals.find((x) => x.id === r.of);
      const boundRatio = med(r.id) / floor;
      return { id: r.of, boundMs: Number(med(r.id).toFixed(2)), boundToFloor: Number(boundRatio.toFixed(3)), hookToBound: Number((med(r.of) / med(r.id)).toFixed(3)), goal: g?.goal ?? null, goalReachable: g ? boundRatio <= Number(g.goal.split(' ')[1]) : null };
    });
  goal('archiveScale', `prepare, ${int(opts.sizes.archiveLarge)}-VM / ${opts.sizes.archiveSmall}-VM archive`, med('prepareLarge') / med('prepare'), '≤', 1.05);
  const [rs, rl] = rewrite;
  goal('rewriteSmall', `rewriteXml ${int(rs.devices)} devices`, rs.medianMs, '<', 20, 'ms');
  goal('rewriteLinear', `rewriteXml per-device cost, ${int(rl.devices)} / ${int(rs.devices)} devices`, rl.usPerDevice / rs.usPerDevice, '≤', 1.5);
  goal('convert', 'virt-xml / ovmf-hook convert', med('convertVirtXml') / med('convertOurs'), '≥', 3);
  if (fleet.length === 2) {
    const [fs, fl] = fleet;
    goal('certsTotal', `nvram certs --all, ${int(fl.vms)} VMs`, fl.medianMs, '<', 2000, 'ms');
    goal('certsFlat', `nvram certs per-VM cost, ${int(fl.vms)} / ${int(fs.vms)} VMs`, fl.msPerVm / fs.msPerVm, '≤', 1.1);
  }

  result = {
    machine: machine(),
    options: { runs: opts.runs, warmup: opts.warmup, quick: opts.quick, sizes: opts.sizes, env: 'env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C OVMF_HOOK_CONFIG=<temp>' },
    rows: rows.map((r) => ({
      id: r.id,
      label: r.label,
      runs: r.ms.length,
      medianMs: r.failed ? null : Number(median(r.ms).toFixed(2)),
      p90Ms: r.failed ? null : Number(quantile(r.ms, 0.9).toFixed(2)),
      ratioToFloor: r.failed ? null : Number((median(r.ms) / floor).toFixed(3)),
      peakRssKiB: r.rssKiB ?? null,
      failed: r.failed,
    })),
    rewrite: rewrite.map((r) => ({ ...r, medianMs: Number(r.medianMs.toFixed(3)), p90Ms: Number(r.p90Ms.toFixed(3)), usPerDevice: Number(r.usPerDevice.toFixed(3)) })),
    certs: fleet.map((r) => ({ ...r, medianMs: Number(r.medianMs.toFixed(1)), p90Ms: Number(r.p90Ms.toFixed(1)), msPerVm: Number(r.msPerVm.toFixed(3)) })),
    // --cluster: each GlusterFS row against the same row on local disk
    cluster: rows
      .filter((r) => r.local && !r.failed && by[r.local] && !by[r.local].failed)
      .map((r) => ({ id: r.id, label: r.label, medianMs: Number(med(r.id).toFixed(2)), localMs: Number(med(r.local).toFixed(2)), ratioToLocal: Number((med(r.id) / med(r.local)).toFixed(3)) })),
    goals,
    bounds,
    notes,
    failures,
  };
  if (failures.length) exitCode = 1;
} catch (e) {
  process.stderr.write(`bench: ${e.stack ?? e}\n`);
  exitCode = 1;
}

if (result) {
  if (opts.json) process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  else process.stdout.write(render(result));
}
process.exitCode = exitCode;

function render(r) {
  const m = r.machine;
  const lines = [];
  lines.push(`machine: ${m.cpu}, ${m.cores} cores, ${m.memGiB} GiB, ${m.kernel}; node ${m.node} (${m.nodeBinary}); load ${m.loadavg.join(' ')}`);
  lines.push(`method:  ${r.options.runs} timed runs per row (median, p90) after ${r.options.warmup} warm-up rounds, rows interleaved; ${r.options.env}${r.options.quick ? '; --quick (rough numbers)' : ''}`);
  lines.push('');
  lines.push(
    table(
      ['command', 'median ms', '× floor', 'p90 ms', 'peak RSS MiB'],
      r.rows.map((x) => [x.label, x.failed ? 'FAILED' : fmt(x.medianMs), x.failed ? '' : fmt(x.ratioToFloor, 2), x.failed ? '' : fmt(x.p90Ms), x.peakRssKiB ? fmt(x.peakRssKiB / 1024) : 'n/a']),
    ),
  );
  lines.push('');
  lines.push(
    table(
      ['in-process rewriteXml (i440fx → q35 + UEFI)', 'XML KiB', 'changes', 'median ms', 'p90 ms', 'µs/device'],
      r.rewrite.map((x) => [`${int(x.devices)} devices (${x.runs} runs)`, x.xmlKiB, x.changes, fmt(x.medianMs, 2), fmt(x.p90Ms, 2), fmt(x.usPerDevice, 2)]),
    ),
  );
  if (r.certs.length) {
    lines.push('');
    lines.push(
      table(
        ['nvram certs --all --json (fake virsh, half enrolled)', 'median ms', 'p90 ms', 'ms/VM'],
        r.certs.map((x) => [`${int(x.vms)} VMs (${x.runs} runs)`, fmt(x.medianMs), fmt(x.p90Ms), fmt(x.msPerVm, 3)]),
      ),
    );
  }
  if (r.cluster.length) {
    lines.push('');
    lines.push(table(['archive on GlusterFS (cluster testbed)', 'median ms', 'local disk ms', '× local'], r.cluster.map((x) => [x.label, fmt(x.medianMs), fmt(x.localMs), `${fmt(x.ratioToLocal, 2)}×`])));
  }
  lines.push('');
  lines.push(table(['goal', 'measured', 'goal', ''], r.goals.map((g) => [g.label, g.unit === '×' ? `${fmt(g.value, 2)}×` : `${fmt(g.value, 2)} ${g.unit}`, g.goal, g.pass ? 'PASS' : 'MISS'])));
  if (r.bounds.length) {
    lines.push('');
    lines.push(
      table(
        ['operation', 'lower bound ms', 'bound × floor', 'goal', 'reachable here', 'hook × bound'],
        r.bounds.map((b) => [b.id, fmt(b.boundMs), `${fmt(b.boundToFloor, 2)}×`, b.goal ?? '', b.goalReachable === null ? '' : b.goalReachable ? 'yes' : 'no', `${fmt(b.hookToBound, 2)}×`]),
      ),
    );
  }
  for (const n of r.notes) lines.push(`note: ${n}`);
  for (const f of r.failures) lines.push(`FAILED: ${f}`);
  return `${lines.join('\n')}\n`;
}
