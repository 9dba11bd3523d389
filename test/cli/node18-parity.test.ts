/**
 * Node 18 parity (issue 13): the built CLI gives the same stdout, stderr and exit code under Debian
 * 12's own Node 18.20 (scripts/node18.sh: what a Debian 12 host without NodeSource has as
 * /usr/bin/node) as under the node running vitest (Node 20), command by command. The CLI is built by
 * `npm run build`'s own function into a temp dir, with its code cache trained by Node 20: Node 20
 * runs it with the cache, Node 18's V8 rejects the cache and compiles as usual — both paths are
 * compared. doctor is compared without its `node` check (it names the node binary that runs it).
 *
 * Every command and subcommand of `--help` is run at least once (a success, and a refusal where
 * cheap). Runs see identical inputs by construction: each run gets the same directory (RUN), made
 * afresh — empty, or a copy (timestamps kept) of the fleet seeded once in beforeAll — so the paths
 * and times in the outputs are the same for both nodes while neither sees what the other wrote.
 *
 * Needs root and the unpacked Node 18 (/var/cache/ovmf-hook-node18, or $OVMF_HOOK_NODE18_DIR):
 * scripts/test-node18.sh (CI's node18 lane) prepares it; without it the test is skipped, saying so.
 */
import { spawnSync } from 'node:child_process';
import { accessSync, constants, copyFileSync, cpSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildProduct } from '../../scripts/build.mjs';
import { openArchive } from '../../src/io';
import { MS_VARS_4M as MS } from '../support/ms-2023';
import { makeFirmware, ROOT, type Firmware } from '../hook/harness';
import { fakeVirshBin, type FakeVirshDomain } from './fake-virsh-bin';
import { biosDomainXml, uefiDomainXml } from './nvram-support';
import { scratchDir, writeConfig, type CliRun } from './support';

const NODE18_SH = join(ROOT, 'scripts', 'node18.sh');
const NODE18_DIR = process.env.OVMF_HOOK_NODE18_DIR || '/var/cache/ovmf-hook-node18';
const DOMAINS = join(ROOT, 'test', 'fixtures', 'domains');
const BOOTED = join(ROOT, 'test', 'nvram', 'varstore', 'fixtures', 'booted-4m.fd');
const BLANK = '/usr/share/OVMF/OVMF_VARS_4M.fd';
const SECURE_CODE = '/usr/share/OVMF/OVMF_CODE_4M.ms.fd';

const node18Ready = (() => {
  if (process.getuid?.() !== 0) return 'needs root (scripts/node18.sh uses a private mount namespace)';
  try {
    accessSync(join(NODE18_DIR, 'root', 'usr', 'bin', 'node'), constants.X_OK);
  } catch {
    return `${NODE18_DIR} is not prepared`;
  }
  // the nvram and firmware template cases read Debian's OVMF VARS templates
  if (![MS, BLANK, SECURE_CODE].every(existsSync)) return 'needs /usr/share/OVMF (Debian ovmf)';
  return '';
})();
if (node18Ready)
  console.log(`node18-parity: SKIPPED: ${node18Ready}; to enable it run (as root) once: scripts/node18.sh --version (unpacks Debian 12's Node 18 there), or bash scripts/test-node18.sh`);

type Env = Record<string, string>;
interface Case {
  name: string;
  args: string[];
  /** the exit code both must give */
  code: number;
  input?: string;
  /** per run (each node gets a fresh one): extra environment, e.g. a fake virsh */
  env?: (dir: string) => Env;
  /** drop lines before comparing (doctor's node line) */
  drop?: RegExp;
  /** rewrite stdout before comparing (doctor --json without its node check) */
  stdoutAs?: (stdout: string) => string;
  /** the run's directory starts as a copy of the seeded fleet (see seedFleet) instead of empty */
  fleet?: boolean;
}

let scratch: ReturnType<typeof scratchDir>;
let cli = '';
let fw: Firmware;
let config = '';
let unsafeConfig = '';

/** Every run's directory (HOME, cwd, the `env` hook's dir): one path for both nodes, made afresh for each run. */
const RUN = () => join(scratch.dir, 'run');
/** The seeded fleet's tree, copied to RUN for each `fleet` case. */
const SEED = () => join(scratch.dir, 'seed');

/** RUN, empty or a copy of the seeded fleet (timestamps kept: `nvram list` shows none that differ). */
function freshRun(fleet = false): string {
  rmSync(RUN(), { recursive: true, force: true });
  if (fleet) cpSync(SEED(), RUN(), { recursive: true, preserveTimestamps: true });
  else mkdirSync(RUN());
  return RUN();
}

/** Run the CLI under `node` (argv[0]) in a small fixed environment, in a fresh RUN. */
const run = (node: string[], c: Case): CliRun => runIn(freshRun(c.fleet), node, c);

/** Run the CLI under `node` with `dir` as it is (HOME, cwd, the `env` hook's dir). */
function runIn(dir: string, node: string[], c: Case): CliRun {
  const env: Env = { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', HOME: dir, LC_ALL: 'C', OVMF_HOOK_CONFIG: config, ...c.env?.(dir) };
  const r = spawnSync(node[0], [...node.slice(1), cli, ...c.args], { input: c.input ?? '', env, cwd: dir, encoding: 'utf8', timeout: 60_000, maxBuffer: 64 * 1024 * 1024 });
  if (r.error) throw r.error;
  const keep = (s: string) => (c.drop ? s.split('\n').filter((l) => !c.drop!.test(l)).join('\n') : s);
  return { code: r.status ?? -1, stdout: (c.stdoutAs ?? String)(keep(r.stdout)), stderr: keep(r.stderr) };
}

const virsh = (domains: Parameters<typeof fakeVirshBin>[1]) => (dir: string) => fakeVirshBin(dir, domains).env;
const bios = (name: string, state?: string, persistent?: boolean) => {
  const xml = readFileSync(join(DOMAINS, 'bios-i440fx-linux.xml'), 'utf8').replace(/<name>[^<]*<\/name>/, `<name>${name}</name>`);
  return { [name]: { xml, state, persistent } };
};

// ─── the fleet: a host tree with a config, a fake virsh and an archive, seeded once ─────────

const VM = 'ovmfhook-t-p18-sb'; // Secure Boot, enrolled with the 2023 certificates by the CLI: generations 1 (2011 only) and 2
const NEW = 'ovmfhook-t-p18-new'; // Secure Boot, its NVRAM Debian's 2011-only template, nothing archived
const UP = 'ovmfhook-t-p18-up'; // running, one archived generation
const BIOS = 'ovmfhook-t-p18-bios';
const GONE = '5a5a5a5a-0000-4000-8000-00000018dead'; // only the archive knows it: 3 generations and another host's claim
const UUIDS: Record<string, string> = { [VM]: '5a5a5a5a-0000-4000-8000-000000180001', [NEW]: '5a5a5a5a-0000-4000-8000-000000180002', [UP]: '5a5a5a5a-0000-4000-8000-000000180003', [BIOS]: '5a5a5a5a-0000-4000-8000-000000180004' };
/** Fixed times of the generations and the claim seeded through the archive API. */
const SEEDED_AT = new Date('2024-05-06T07:08:09.000Z');

/** The fleet's domains under `dir` (by name and by UUID: the CLI asks both ways). */
function fleetDomains(dir: string): Record<string, FakeVirshDomain> {
  const uefi = (name: string, state?: string) => ({
    xml: uefiDomainXml({ name, uuid: UUIDS[name], nvram: join(dir, 'nvram', `${name}_VARS.fd`), template: MS, loader: SECURE_CODE }),
    state,
  });
  const domains: Record<string, FakeVirshDomain> = { [VM]: uefi(VM), [NEW]: uefi(NEW), [UP]: uefi(UP, 'running'), [BIOS]: { xml: biosDomainXml({ name: BIOS, uuid: UUIDS[BIOS] }) } };
  return Object.fromEntries(Object.entries(domains).flatMap(([name, d]) => [[name, d], [UUIDS[name], d]]));
}

/** The fleet's environment in `dir`: its fake virsh (state as seeded) and its config. */
const fleetEnv = (dir: string): Env => ({ ...fakeVirshBin(dir, fleetDomains(dir)).env, OVMF_HOOK_CONFIG: join(dir, 'config.json') });

/**
 * Seed the fleet in RUN (the path every run uses), then move it to SEED: NVRAM files, the config,
 * `nvram enroll VM --ms-2023` run by the CLI itself (generations 1 and 2 of VM, its local state),
 * and through the archive API (as test/cli/nvram-cli.test.ts does) a generation of UP and three of
 * GONE with another host's claim, at fixed times.
 */
async function seedFleet(): Promise<void> {
  const dir = freshRun();
  mkdirSync(join(dir, 'nvram'));
  for (const name of [VM, NEW, UP]) copyFileSync(MS, join(dir, 'nvram', `${name}_VARS.fd`));
  writeConfig(dir, 'config.json', {
    archiveDir: join(dir, 'archive'),
    stateDir: join(dir, 'state'),
    templateDir: join(dir, 'templates'),
    nvramDir: join(dir, 'nvram'),
    firmwareDirs: [join(dir, 'firmware')],
    hostId: 'parity-host',
    qemuUser: 'root',
    qemuGroup: 'root',
  });
  const enrolled = runIn(dir, [process.execPath], { name: 'seed', args: ['nvram', 'enroll', VM, '--ms-2023'], code: 0, env: fleetEnv });
  if (enrolled.code !== 0) throw new Error(`seeding the fleet: nvram enroll: ${enrolled.stderr}`);
  const here = await openArchive({ root: join(dir, 'archive'), host: 'parity', hostId: 'parity-host' });
  await here.add(UUIDS[UP], readFileSync(MS), { kind: 'archive', reason: 'release (shutdown)', vmName: UP, now: SEEDED_AT });
  const other = await openArchive({ root: join(dir, 'archive'), host: 'other', hostId: 'other-host' });
  for (const n of [1, 2, 3]) await other.add(GONE, Buffer.alloc(4096, n), { kind: 'archive', reason: 'release (shutdown)', vmName: 'ovmfhook-t-p18-gone', now: SEEDED_AT });
  await other.claim(GONE, { vmName: 'ovmfhook-t-p18-gone', now: SEEDED_AT });
  renameSync(dir, SEED());
}

/** A case run in a copy of the fleet. */
const fleet = (name: string, args: string[], code: number): Case => ({ name, args: ['nvram', ...args], code, env: fleetEnv, fleet: true });

/** The environment of `firmware template`: a config whose last firmwareDirs entry and templateDir are in the run's dir (nothing goes to /etc/qemu). */
const templateEnv = (dir: string): Env => ({
  OVMF_HOOK_CONFIG: writeConfig(dir, 'config.json', { firmwareDirs: ['/usr/share/qemu/firmware', join(dir, 'firmware')], templateDir: join(dir, 'templates') }),
});

/**
 * doctor --json without its node check: it names the node binary that runs the CLI, and
 * scripts/node18.sh's lives outside /usr/bin (a warning about AppArmor where Node 20's is ok).
 */
function withoutNodeCheck(stdout: string): string {
  const doc = JSON.parse(stdout) as { checks: { check: string }[] };
  return JSON.stringify({ ...doc, checks: doc.checks.filter((c) => c.check !== 'node') }, null, 2);
}

/**
 * templateEnv with `firmware template --ms-2023` run first (by the node running vitest), so that
 * --remove has files to remove; a fake virsh knowing no domain answers its "which domains name the
 * copy?" (the host's libvirt is not asked).
 */
function installedTemplateEnv(dir: string): Env {
  const env = { ...templateEnv(dir), ...virsh({})(dir) };
  const r = runIn(dir, [process.execPath], { name: 'install', args: ['firmware', 'template', '--ms-2023'], code: 0, env: () => env });
  if (r.code !== 0) throw new Error(`firmware template --ms-2023: ${r.stderr}`);
  return env;
}

const CASES: Case[] = [
  { name: '--help', args: ['--help'], code: 0 },
  { name: 'nvram --help', args: ['nvram', '--help'], code: 0 },
  { name: 'rewrite --help', args: ['rewrite', '--help'], code: 0 },
  { name: 'firmware list', args: ['firmware', 'list'], code: 0 },
  { name: 'firmware list --json', args: ['firmware', 'list', '--json'], code: 0 },
  { name: 'rewrite FILE', args: ['rewrite', join(DOMAINS, 'bios-i440fx-linux.xml')], code: 0 },
  { name: 'rewrite --json --tpm --secure-boot FILE', args: ['rewrite', '--json', '--tpm', '--secure-boot', join(DOMAINS, 'bios-i440fx-windows.xml')], code: 0 },
  { name: 'rewrite --print-diff (stdin, CRLF)', args: ['rewrite', '--print-diff', '-'], input: readFileSync(join(DOMAINS, 'edge-namespaces-comments.xml'), 'utf8'), code: 0 },
  { name: 'nvram vars FILE', args: ['nvram', 'vars', BOOTED], code: 0 },
  { name: 'nvram vars FILE --json', args: ['nvram', 'vars', BOOTED, '--json'], code: 0 },
  { name: 'config check', args: ['config', 'check'], code: 0 },
  { name: 'config show', args: ['config', 'show'], code: 0 },
  { name: 'config show --json', args: ['config', 'show', '--json'], code: 0 },
  { name: 'convert --dry-run (fake virsh)', args: ['convert', 'web-1', '--dry-run'], env: virsh(bios('web-1')), code: 0 },
  { name: 'doctor (without its node line)', args: ['doctor'], drop: /^\S+\s+node\s/, code: -1 },
  { name: 'doctor --json (without its node check)', args: ['doctor', '--json'], stdoutAs: withoutNodeCheck, code: -1 },
  // help of the command groups and of the newer subcommands
  { name: 'firmware --help', args: ['firmware', '--help'], code: 0 },
  { name: 'config --help', args: ['config', '--help'], code: 0 },
  { name: 'firmware template --help', args: ['firmware', 'template', '--help'], code: 0 },
  { name: 'nvram enroll --help', args: ['nvram', 'enroll', '--help'], code: 0 },
  { name: 'nvram boot --help', args: ['nvram', 'boot', '--help'], code: 0 },
  { name: 'config check --json', args: ['config', 'check', '--json'], code: 0 },
  { name: 'convert --all --match --dry-run (fake virsh)', args: ['convert', '--all', '--match', 'web-*', '--dry-run'], env: virsh({ ...bios('web-1'), ...bios('web-2'), ...bios('db-1') }), code: 0 },
  // firmware template: the descriptor and the copy go to the run's dir (templateEnv)
  { name: 'firmware template --ms-2023 --dry-run', args: ['firmware', 'template', '--ms-2023', '--dry-run'], env: templateEnv, code: 0 },
  { name: 'firmware template --ms-2023', args: ['firmware', 'template', '--ms-2023'], env: templateEnv, code: 0 },
  { name: 'firmware template --ms-2023 --json', args: ['firmware', 'template', '--ms-2023', '--json'], env: templateEnv, code: 0 },
  { name: 'firmware template --remove (nothing installed)', args: ['firmware', 'template', '--remove'], env: templateEnv, code: 0 },
  { name: 'firmware template --remove (installed by --ms-2023 first)', args: ['firmware', 'template', '--remove'], env: installedTemplateEnv, code: 0 },
  // nvram on files
  { name: 'nvram list (no archive yet)', args: ['nvram', 'list'], code: 0 },
  { name: 'nvram list --json (no archive yet)', args: ['nvram', 'list', '--json'], code: 0 },
  { name: 'nvram diff FILE FILE', args: ['nvram', 'diff', BLANK, BOOTED], code: 0 },
  { name: 'nvram diff FILE FILE --json', args: ['nvram', 'diff', BLANK, BOOTED, '--json'], code: 0 },
  { name: 'nvram enroll FILE --ms-2023 --output OUT', args: ['nvram', 'enroll', MS, '--ms-2023', '--output', 'out.fd'], code: 0 },
  { name: 'nvram enroll FILE --ms-2023 --dry-run', args: ['nvram', 'enroll', MS, '--ms-2023', '--dry-run'], code: 0 },
  { name: 'nvram enroll FILE --ms-2023 --output OUT --json', args: ['nvram', 'enroll', MS, '--ms-2023', '--output', 'out.fd', '--json'], code: 0 },
  { name: 'nvram boot FILE', args: ['nvram', 'boot', BOOTED], code: 0 },
  { name: 'nvram boot FILE --json', args: ['nvram', 'boot', BOOTED, '--json'], code: 0 },
  { name: 'nvram boot FILE --add --label --next --output OUT', args: ['nvram', 'boot', BOOTED, '--add', '\\EFI\\test\\shell.efi', '--label', 'test', '--next', '--output', 'out.fd'], code: 0 },
  { name: 'nvram boot FILE --order --remove --dry-run --json', args: ['nvram', 'boot', BOOTED, '--order', '1,0', '--remove', '2', '--dry-run', '--json'], code: 0 },
  // nvram on the fleet's VMs and archive
  fleet('nvram list (fleet)', ['list'], 0),
  fleet('nvram list --json (fleet)', ['list', '--json'], 0),
  fleet('nvram list VM', ['list', VM], 0),
  fleet('nvram list UUID --json (archive only, claimed)', ['list', GONE, '--json'], 0),
  fleet('nvram show VM', ['show', VM], 0),
  fleet('nvram show UUID --generation 2 --json', ['show', GONE, '--generation', '2', '--json'], 0),
  fleet('nvram restore VM', ['restore', VM], 0),
  fleet('nvram restore VM --generation 1 --force --json (a warning)', ['restore', VM, '--generation', '1', '--force', '--json'], 0),
  fleet('nvram reset VM --force (a warning)', ['reset', VM, '--force'], 0),
  fleet('nvram reset VM --json (2011-only, nothing to lose)', ['reset', NEW, '--json'], 0),
  fleet('nvram prune --keep 1', ['prune', '--keep', '1'], 0),
  fleet('nvram prune UUID --keep 2 --json', ['prune', GONE, '--keep', '2', '--json'], 0),
  fleet('nvram unlock UUID --force', ['unlock', GONE, '--force'], 0),
  fleet('nvram unlock VM --json (no claim)', ['unlock', VM, '--json'], 0),
  fleet('nvram repair', ['repair'], 0),
  fleet('nvram repair VM --json', ['repair', VM, '--json'], 0),
  fleet('nvram vars VM', ['vars', VM], 0),
  fleet('nvram diff VM --from 1', ['diff', VM, '--from', '1'], 0),
  fleet('nvram enroll VM --ms-2023', ['enroll', NEW, '--ms-2023'], 0),
  fleet('nvram enroll VM --ms-2023 --dry-run --json (already there)', ['enroll', VM, '--ms-2023', '--dry-run', '--json'], 0),
  fleet('nvram boot VM', ['boot', VM], 0),
  fleet('nvram boot VM --add --label --next --json', ['boot', VM, '--add', '\\EFI\\test\\shell.efi', '--label', 'test', '--next', '--json'], 0),
  fleet('nvram certs VM... (enrolled, 2011 only, BIOS)', ['certs', VM, NEW, BIOS], 0),
  fleet('nvram certs --all --json', ['certs', '--all', '--json'], 0),
  // refused and bad input
  { name: 'refused: convert of a running transient domain (exit 1)', args: ['convert', 'tmp'], env: virsh(bios('tmp', 'running', false)), code: 1 },
  { name: 'refused: config check of an unsafe logFile (exit 1)', args: ['config', 'check'], env: () => ({ OVMF_HOOK_CONFIG: unsafeConfig }), code: 1 },
  { name: 'usage: an unknown command (exit 2)', args: ['frobnicate'], code: 2 },
  { name: 'usage: nvram vars of a missing file (exit 2)', args: ['nvram', 'vars', '/nonexistent/ovmf-hook-vars.fd'], code: 2 },
  { name: 'usage: rewrite of a non-XML input (exit 2)', args: ['rewrite'], input: 'not xml\n', code: 2 },
  { name: 'usage: firmware template without --ms-2023 or --remove (exit 2)', args: ['firmware', 'template'], env: templateEnv, code: 2 },
  { name: 'usage: nvram diff of a missing file (exit 2)', args: ['nvram', 'diff', BOOTED, '/nonexistent/ovmf-hook-vars.fd'], code: 2 },
  { name: 'usage: nvram enroll FILE without --output or --in-place (exit 2)', args: ['nvram', 'enroll', MS, '--ms-2023'], code: 2 },
  { name: 'usage: nvram boot FILE --order naming no entry (exit 2)', args: ['nvram', 'boot', BOOTED, '--order', '1,99', '--dry-run'], code: 2 },
  { name: 'refused: nvram show of a UUID while there is no archive (exit 1)', args: ['nvram', 'show', GONE], env: virsh({}), code: 1 },
  fleet('usage: nvram show of an unknown VM (exit 2)', ['show', 'ovmfhook-t-p18-nonesuch'], 2),
  fleet('refused: nvram restore of a running VM (exit 1)', ['restore', UP], 1),
  fleet('refused: nvram restore losing the 2023 certificates without --force (exit 1)', ['restore', VM, '--generation', '1'], 1),
  fleet('refused: nvram reset losing the 2023 certificates without --force (exit 1)', ['reset', VM], 1),
  fleet('usage: nvram reset of a BIOS VM (exit 2)', ['reset', BIOS], 2),
  fleet("refused: nvram unlock of another host's live claim (exit 1)", ['unlock', GONE], 1),
  fleet('refused: nvram enroll of a running VM (exit 1)', ['enroll', UP, '--ms-2023'], 1),
  fleet('refused: nvram boot --next of a running VM (exit 1)', ['boot', UP, '--next', '0'], 1),
  fleet('usage: nvram prune --keep 0 (exit 2)', ['prune', '--keep', '0'], 2),
  fleet('usage: nvram certs of an unknown VM (exit 2)', ['certs', 'ovmfhook-t-p18-nonesuch'], 2),
];

describe.skipIf(node18Ready !== '')('the built CLI under Node 18.20 (scripts/node18.sh) and Node 20: identical output', () => {
  beforeAll(async () => {
    scratch = scratchDir('node18-parity');
    cli = (await buildProduct({ root: ROOT, outDir: join(scratch.dir, 'dist'), codeCache: true, node: process.execPath })).cli;
    fw = makeFirmware(join(scratch.dir, 'fw'));
    config = writeConfig(scratch.dir, 'config.json', {
      firmwareDirs: [fw.descriptorDir],
      archiveDir: join(scratch.dir, 'archive'),
      stateDir: join(scratch.dir, 'state'),
    });
    const logDir = join(scratch.dir, 'unsafe');
    mkdirSync(logDir);
    symlinkSync('/etc/passwd', join(logDir, 'hook.log'));
    unsafeConfig = writeConfig(logDir, 'config.json', { logFile: join(logDir, 'hook.log') });
    await seedFleet();
  }, 120_000);
  afterAll(() => scratch?.cleanup());

  it('the two nodes are Node 18.20 and a newer major', () => {
    const v18 = spawnSync(NODE18_SH, ['-p', 'process.version'], { encoding: 'utf8' });
    expect(v18.stdout.trim()).toMatch(/^v18\.20\./);
    expect(Number(process.versions.node.split('.')[0])).toBeGreaterThanOrEqual(20);
  });

  it.each(CASES)('$name', (c) => {
    const n20 = run([process.execPath], c);
    const n18 = run([NODE18_SH], c);
    if (c.code >= 0) expect(n20.code, n20.stderr).toBe(c.code);
    if (c.code > 0) expect(n20.stderr).not.toBe(''); // says why
    if (c.code === 0) expect(n20.stdout).not.toBe('');
    expect(n18).toEqual(n20);
  });
});
