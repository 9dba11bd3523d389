/**
 * Node 18 parity (issue 13): the built CLI gives the same stdout, stderr and exit code under Debian
 * 12's own Node 18.20 (scripts/node18.sh: what a Debian 12 host without NodeSource has as
 * /usr/bin/node) as under the node running vitest (Node 20), command by command. The CLI is built by
 * `npm run build`'s own function into a temp dir, with its code cache trained by Node 20: Node 20
 * runs it with the cache, Node 18's V8 rejects the cache and compiles as usual — both paths are
 * compared. doctor is compared without its `node` line (it names the node that runs it).
 *
 * Needs root and the unpacked Node 18 (/var/cache/ovmf-hook-node18, or $OVMF_HOOK_NODE18_DIR):
 * scripts/test-node18.sh (CI's node18 lane) prepares it; without it the test is skipped, saying so.
 */
import { spawnSync } from 'node:child_process';
import { accessSync, constants, mkdirSync, readFileSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildProduct } from '../../scripts/build.mjs';
import { makeFirmware, ROOT, type Firmware } from '../hook/harness';
import { fakeVirshBin } from './fake-virsh-bin';
import { scratchDir, writeConfig, type CliRun } from './support';

const NODE18_SH = join(ROOT, 'scripts', 'node18.sh');
const NODE18_DIR = process.env.OVMF_HOOK_NODE18_DIR || '/var/cache/ovmf-hook-node18';
const DOMAINS = join(ROOT, 'test', 'fixtures', 'domains');
const BOOTED = join(ROOT, 'test', 'nvram', 'varstore', 'fixtures', 'booted-4m.fd');

const node18Ready = (() => {
  if (process.getuid?.() !== 0) return 'needs root (scripts/node18.sh uses a private mount namespace)';
  try {
    accessSync(join(NODE18_DIR, 'root', 'usr', 'bin', 'node'), constants.X_OK);
    return '';
  } catch {
    return `${NODE18_DIR} is not prepared`;
  }
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
}

let scratch: ReturnType<typeof scratchDir>;
let cli = '';
let fw: Firmware;
let config = '';
let unsafeConfig = '';
let runs = 0;

/** Run the CLI under `node` (argv[0]) in a small fixed environment. */
function run(node: string[], c: Case): CliRun {
  const dir = join(scratch.dir, `run-${++runs}`);
  mkdirSync(dir);
  const env: Env = { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', HOME: dir, LC_ALL: 'C', OVMF_HOOK_CONFIG: config, ...c.env?.(dir) };
  const r = spawnSync(node[0], [...node.slice(1), cli, ...c.args], { input: c.input ?? '', env, cwd: dir, encoding: 'utf8', timeout: 60_000, maxBuffer: 64 * 1024 * 1024 });
  if (r.error) throw r.error;
  const keep = (s: string) => (c.drop ? s.split('\n').filter((l) => !c.drop!.test(l)).join('\n') : s);
  return { code: r.status ?? -1, stdout: keep(r.stdout), stderr: keep(r.stderr) };
}

const virsh = (domains: Parameters<typeof fakeVirshBin>[1]) => (dir: string) => fakeVirshBin(dir, domains).env;
const bios = (name: string, state?: string, persistent?: boolean) => {
  const xml = readFileSync(join(DOMAINS, 'bios-i440fx-linux.xml'), 'utf8').replace(/<name>[^<]*<\/name>/, `<name>${name}</name>`);
  return { [name]: { xml, state, persistent } };
};

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
  // refused and bad input
  { name: 'refused: convert of a running transient domain (exit 1)', args: ['convert', 'tmp'], env: virsh(bios('tmp', 'running', false)), code: 1 },
  { name: 'refused: config check of an unsafe logFile (exit 1)', args: ['config', 'check'], env: () => ({ OVMF_HOOK_CONFIG: unsafeConfig }), code: 1 },
  { name: 'usage: an unknown command (exit 2)', args: ['frobnicate'], code: 2 },
  { name: 'usage: nvram vars of a missing file (exit 2)', args: ['nvram', 'vars', '/nonexistent/ovmf-hook-vars.fd'], code: 2 },
  { name: 'usage: rewrite of a non-XML input (exit 2)', args: ['rewrite'], input: 'not xml\n', code: 2 },
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
