/**
 * Harness for the two-host cluster tests (`test/cluster/*.libvirt.test.ts`), on top of
 * `scripts/cluster-testbed.sh`: host A = the system libvirtd, host B = a second libvirtd in its own
 * mount namespace, the NVRAM archive on a GlusterFS volume both hosts mount (each with its own
 * client). Everything here runs in host A's namespace; B's files are reached through their real
 * location under the testbed directory, B's commands through `nsenter` into B's namespace.
 *
 * Rules: every virsh call has a timeout; only transient domains named `ovmfhook-t-cl-*` are created
 * (and destroyed by `cleanupClusterVms`, which also removes their NVRAM files and state).
 */
import { spawn, spawnSync, type ChildProcessByStdio, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { afterAll, beforeAll, beforeEach, describe, it } from 'vitest';
import type { ClaimInfo, GenerationMeta } from '../../src/core/nvram';
import { makeDomainXml, type VirshResult } from './libvirt';

const REPO_ROOT = join(__dirname, '..', '..');
const TESTBED_SCRIPT = join(REPO_ROOT, 'scripts', 'cluster-testbed.sh');
export const CLUSTER_ROOT = '/srv/ovmfhook-cluster';
export const ARCHIVE_MOUNT = `${CLUSTER_ROOT}/archive-mnt`;
export const ARCHIVE_DIR = `${ARCHIVE_MOUNT}/archive`;
const HOOK_BIN = join(REPO_ROOT, 'dist', 'hooks', 'qemu');
/** Prefix of every VM the cluster tests create. */
export const CLUSTER_VM_PREFIX = 'ovmfhook-t-cl-';

export type HostName = 'A' | 'B' | 'C';

export interface ClusterHost {
  name: HostName;
  uri: string;
  /** `hostId` of the host's ovmf-hook config (recorded in claims and generations). */
  hostId: string;
  /** libvirt's nvram directory, as seen from the test process. */
  nvramDir: string;
  /** The hook's per-host state directory, as seen from the test process. */
  stateDir: string;
  logFile: string;
  /** The host's /etc/ovmf-hook/config.json, as seen from the test process. */
  configPath: string;
  /** Where this host's OVMF files are (the path in its own namespace). */
  ovmfDir: string;
}

export const hostA: ClusterHost = {
  name: 'A',
  uri: 'qemu:///system',
  hostId: 'ovmfhook-host-a',
  nvramDir: '/var/lib/libvirt/qemu/nvram',
  stateDir: `${CLUSTER_ROOT}/a/state`,
  logFile: `${CLUSTER_ROOT}/a/hook.log`,
  configPath: '/etc/ovmf-hook/config.json',
  ovmfDir: '/usr/share/OVMF',
};

/** The testbed directory of a namespaced host (B, C): everything it sees in place of /etc, /var/lib, /run. */
const testbedDir = (name: HostName): string => `${CLUSTER_ROOT}/${name.toLowerCase()}`;
const dirOf = (host: ClusterHost): string => testbedDir(host.name);

/** A namespaced host as scripts/cluster-testbed.sh builds it: its libvirtd on `port`, its files in its testbed dir, its own OVMF path. */
function namespacedHost(name: 'B' | 'C', port: number): ClusterHost {
  const dir = testbedDir(name);
  return {
    name,
    uri: `qemu+tcp://127.0.0.1:${port}/system`,
    hostId: `ovmfhook-host-${name.toLowerCase()}`,
    nvramDir: `${dir}/var-lib-libvirt/qemu/nvram`,
    stateDir: `${dir}/var-lib-ovmf-hook/state`,
    logFile: `${dir}/hook.log`,
    configPath: `${dir}/etc/ovmf-hook/config.json`,
    ovmfDir: `${dir}-ovmf`,
  };
}

export const hostB = namespacedHost('B', 16510);
/** Host C: only in lock-manager mode (`describeCluster(…, { lockd: true })`), built like B. */
export const hostC = namespacedHost('C', 16511);

export const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');
export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------------------------
// The testbed

/** Run `scripts/cluster-testbed.sh <args>`; throws with its output on failure. */
export function testbed(args: string[], timeoutSec = 240): string {
  const r = spawnSync('timeout', [String(timeoutSec), 'bash', TESTBED_SCRIPT, ...args], { encoding: 'utf8' });
  const out = `${r.stdout ?? ''}${r.stderr ?? ''}`;
  if (r.status !== 0) throw new Error(`cluster-testbed.sh ${args.join(' ')} failed (exit ${r.status}): ${out.trim().split('\n').slice(-8).join(' | ')}`);
  return out;
}

/** Is the testbed still as `up` left it (in the wanted mode)? (cheap: files only) Another test may have reinstalled host A's hook. */
function testbedIntact(lockd: boolean): boolean {
  try {
    const mode = (h: string) => readFileSync(`${CLUSTER_ROOT}/${h}/mode`, 'utf8').trim();
    return (
      JSON.parse(readFileSync(hostA.configPath, 'utf8')).hostId === hostA.hostId &&
      existsSync('/etc/libvirt/hooks/qemu') &&
      existsSync(`${dirOf(hostB)}/anchor.pid`) &&
      mode('b') === (lockd ? 'lockd' : 'plain') &&
      (!lockd || (existsSync(`${dirOf(hostC)}/anchor.pid`) && mode('c') === 'lockd'))
    );
  } catch {
    return false;
  }
}

const isCi = (): boolean => {
  const ci = process.env.CI;
  return !!ci && ci !== 'false' && ci !== '0';
};

/**
 * `describe` for tests on the two-host testbed. `beforeAll` brings it up (installing GlusterFS on
 * first use), `afterAll` destroys the VMs this process made and tears it down again. Not root:
 * skipped with a warning locally, a failing test under CI. A testbed that fails to come up fails
 * the tests, in CI and locally.
 */
export function describeCluster(name: string, fn: () => void, o: { lockd?: boolean } = {}): void {
  const mode = o.lockd ? ['--lockd'] : [];
  if (process.geteuid?.() !== 0) {
    const why = 'the cluster testbed needs root (GlusterFS, mount namespaces, a second libvirtd)';
    if (isCi()) {
      describe(name, () => {
        it('runs as root (CI must not skip the cluster tests)', () => {
          throw new Error(why);
        });
      });
    } else {
      console.warn(`[cluster tests skipped] ${name}: ${why}`);
      describe.skip(name, fn);
    }
    return;
  }
  describe(name, () => {
    beforeAll(() => {
      const t0 = Date.now();
      testbed(['up', ...mode, ...(process.env.OVMFHOOK_CLUSTER_NO_BUILD ? [] : ['--build'])]);
      console.info(`[cluster] testbed up in ${Date.now() - t0} ms`);
    }, 300_000);
    beforeEach(() => {
      if (!testbedIntact(!!o.lockd)) testbed(['up', ...mode]);
    }, 120_000);
    afterAll(async () => {
      try {
        await cleanupClusterVms();
      } finally {
        if (!process.env.OVMFHOOK_CLUSTER_KEEP) {
          const t0 = Date.now();
          testbed(['down'], 120);
          console.info(`[cluster] testbed down in ${Date.now() - t0} ms`);
        }
      }
    }, 180_000);
    fn();
  });
}

// ---------------------------------------------------------------------------------------------
// Commands on a host

export interface RunOptions {
  timeoutSec?: number;
  allowFail?: boolean;
  input?: string;
}

function check(what: string, r: VirshResult, o: RunOptions): VirshResult {
  if (r.code !== 0 && !o.allowFail) {
    const why = r.code === 124 ? `timed out after ${o.timeoutSec ?? 60}s` : `exit ${r.code}`;
    throw new Error(`${what} failed (${why}): ${r.stderr.trim() || r.stdout.trim()}`);
  }
  return r;
}

/** `timeout <t> virsh -c <host uri> <args…>` (synchronous). */
export function virshOn(host: ClusterHost, args: string[], o: RunOptions = {}): VirshResult {
  const r = spawnSync('timeout', [String(o.timeoutSec ?? 60), 'virsh', '-c', host.uri, ...args], { encoding: 'utf8', input: o.input });
  return check(`virsh -c ${host.uri} ${args.join(' ')}`, { code: r.status ?? 128, stdout: r.stdout ?? '', stderr: r.stderr ?? String(r.error ?? '') }, o);
}

/** Same as virshOn, without blocking the event loop (for commands that must run at the same time). */
export async function virshOnAsync(host: ClusterHost, args: string[], o: RunOptions = {}): Promise<VirshResult> {
  const p = spawn('timeout', [String(o.timeoutSec ?? 60), 'virsh', '-c', host.uri, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const { code, stdout, stderr } = await outputOf(p);
  return check(`virsh -c ${host.uri} ${args.join(' ')}`, { code: code ?? 128, stdout, stderr }, o);
}

/** A child's exit code and everything it wrote, once it has exited and closed both pipes. */
function outputOf(p: ChildProcessWithoutNullStreams | ChildProcessByStdio<null, Readable, Readable>): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    p.on('error', reject);
    p.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** pid of a namespaced host's daemon (`anchor`: the process that keeps its mount namespace alive). */
export const daemonPid = (host: ClusterHost, daemon: 'anchor' | 'libvirtd' | 'virtlockd'): number => Number(readFileSync(`${dirOf(host)}/${daemon}.pid`, 'utf8').trim());

/** pid of the process that keeps host B's mount namespace alive. */
export const bAnchorPid = (): number => daemonPid(hostB, 'anchor');

/** pid of host B's libvirtd. */
export const bLibvirtdPid = (): number => daemonPid(hostB, 'libvirtd');

/** argv prefix that runs a command in `host`'s mount namespace. */
export const inHost = (host: ClusterHost): string[] => (host.name === 'A' ? [] : ['nsenter', '-t', String(daemonPid(host, 'anchor')), '-m', '--']);

/** Run a command in the host's mount namespace (synchronous). */
export function runOn(host: ClusterHost, argv: string[], o: RunOptions = {}): VirshResult {
  const full = ['timeout', String(o.timeoutSec ?? 60), ...inHost(host), ...argv];
  const r = spawnSync(full[0], full.slice(1), { encoding: 'utf8', input: o.input });
  return check(argv.join(' '), { code: r.status ?? 128, stdout: r.stdout ?? '', stderr: r.stderr ?? String(r.error ?? '') }, o);
}

/** Start a namespaced host's libvirtd again (after a test killed it; `virtlockd` first, in lock-manager mode), inside its namespace. */
export async function restartLibvirtd(host: ClusterHost, o: { virtlockd?: boolean } = {}): Promise<void> {
  if (o.virtlockd) runOn(host, ['virtlockd', '-d', '-p', `${dirOf(host)}/virtlockd.pid`]);
  runOn(host, ['libvirtd', '--listen', '-d', '-p', `${dirOf(host)}/libvirtd.pid`]);
  await waitUntil(() => virshOn(host, ['version'], { allowFail: true, timeoutSec: 10 }).code === 0, 60_000, `host ${host.name}'s libvirtd answering again`);
}

/** Start host B's libvirtd again (after a test killed it), inside B's namespace. */
export const restartBLibvirtd = (): Promise<void> => restartLibvirtd(hostB);

// ---------------------------------------------------------------------------------------------
// Hook logs, configs, archive

/** The host's hook log (the config's logFile), '' when none yet. */
export function hookLog(host: ClusterHost): string {
  return existsSync(host.logFile) ? readFileSync(host.logFile, 'utf8') : '';
}

/** Lines of the host's hook log about `vm` written after `mark` (a previous `hookLog(host).length`). */
export function hookLogSince(host: ClusterHost, mark: number, vm?: string): string[] {
  return hookLog(host)
    .slice(mark)
    .split('\n')
    .filter((l) => l && (!vm || l.includes(`: ${vm}: `)));
}

/** Change keys of the host's hook config (read per hook call); returns the undo. */
export function patchConfig(host: ClusterHost, patch: Record<string, unknown>): () => void {
  const before = readFileSync(host.configPath, 'utf8');
  writeFileSync(host.configPath, JSON.stringify({ ...JSON.parse(before), ...patch }, null, 2));
  return () => writeFileSync(host.configPath, before);
}

const vmArchive = (uuid: string): string => join(ARCHIVE_DIR, uuid.toLowerCase());

/** Committed generations of a VM (gen-N.json), ascending; read through host A's client. */
export function archiveGenerations(uuid: string): GenerationMeta[] {
  const dir = vmArchive(uuid);
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((n) => /^gen-\d{6,}\.json$/.test(n))
    .map((n) => JSON.parse(readFileSync(join(dir, n), 'utf8')) as GenerationMeta)
    .sort((a, b) => a.generation - b.generation);
}

const AUTO_KINDS = new Set(['archive', 'reset', 'manual']);

/** Newest auto-restorable generation. */
export const newestRestorable = (uuid: string): GenerationMeta | undefined => archiveGenerations(uuid).filter((m) => AUTO_KINDS.has(m.kind)).at(-1);

export function archiveData(uuid: string, generation: number): Buffer {
  return readFileSync(join(vmArchive(uuid), `gen-${String(generation).padStart(6, '0')}.fd`));
}

export function archiveClaim(uuid: string): ClaimInfo | null {
  const f = join(vmArchive(uuid), 'claim.json');
  return existsSync(f) ? (JSON.parse(readFileSync(f, 'utf8')) as ClaimInfo) : null;
}

/** Names in the VM's archive directory. */
export const archiveFiles = (uuid: string): string[] => (existsSync(vmArchive(uuid)) ? readdirSync(vmArchive(uuid)).sort() : []);

// ---------------------------------------------------------------------------------------------
// Test VMs (transient)

export interface ClusterVm {
  name: string;
  uuid: string;
  /** Serial console log (appended to by whichever host runs the VM). */
  serialLog: string;
  /**
   * A raw disk, what libvirt's lock manager locks: the same path on B and C (`/var/lib/libvirt/images`),
   * but each host's own file, so QEMU's own image locking (which a shared file would trip first)
   * stays out of the way and only virtlockd's lockspace on the GlusterFS volume can refuse a start.
   */
  disk?: string;
  /** false: `<ovmf:policy archive="no"/>`, the hook leaves the VM alone. Default true. */
  archive?: boolean;
}

const created = new Map<string, ClusterVm>();
const SERIAL_DIR = `${CLUSTER_ROOT}/serial`;

const DISK_DIR = '/var/lib/libvirt/images';
/** The disk's file of each namespaced host, as seen from the test process. */
const diskFiles = (vm: ClusterVm): string[] => (vm.disk ? [hostB, hostC].map((h) => `${dirOf(h)}/var-lib-libvirt/images/${vm.name}.img`) : []);

/** A new test VM; `disk`: with a 1 MiB raw disk (for the lock manager), `archive: false`: not archived by the hook. */
export function newClusterVm(prefix: string, o: { disk?: boolean; archive?: boolean } = {}): ClusterVm {
  const name = `${CLUSTER_VM_PREFIX}${prefix}-${randomUUID().slice(0, 8)}`;
  mkdirSync(SERIAL_DIR, { recursive: true, mode: 0o755 });
  const vm: ClusterVm = { name, uuid: randomUUID(), serialLog: join(SERIAL_DIR, `${name}.log`), archive: o.archive ?? true };
  if (o.disk) {
    vm.disk = join(DISK_DIR, `${name}.img`);
    for (const f of diskFiles(vm)) if (existsSync(join(f, '..'))) writeFileSync(f, Buffer.alloc(1024 * 1024));
  }
  created.set(name, vm);
  return vm;
}

/**
 * Domain XML for `vm` on `host`: TCG q35, 256 MiB, no disks, OVMF from the host's own firmware
 * directory, the default NVRAM path, archiving switched on by the domain's ovmf-hook policy
 * metadata (the testbed's configs leave every other VM alone).
 */
export function clusterDomainXml(vm: ClusterVm, host: ClusterHost, loaderDir = host.ovmfDir): string {
  return makeDomainXml({
    name: vm.name,
    uuid: vm.uuid,
    machine: 'q35',
    firmware: 'ovmf',
    ovmfDir: loaderDir,
    metadata: `<ovmf:policy xmlns:ovmf="urn:ovmf-hook:policy:1" archive="${vm.archive === false ? 'no' : 'yes'}"/>`,
    disks: vm.disk ? [{ path: vm.disk, format: 'raw' }] : [],
    serialLog: vm.serialLog,
    serialAppend: true,
  });
}

const xmlFile = (vm: ClusterVm, host: ClusterHost, loaderDir?: string): string => {
  const f = join(SERIAL_DIR, `${vm.name}.${host.name}.xml`);
  writeFileSync(f, clusterDomainXml(vm, host, loaderDir));
  return f;
};

/** `virsh create` (transient) on `host`; `paused`: QEMU up, guest CPUs not running. */
export function createOn(host: ClusterHost, vm: ClusterVm, o: RunOptions & { paused?: boolean; loaderDir?: string } = {}): VirshResult {
  return virshOn(host, ['create', ...(o.paused ? ['--paused'] : []), xmlFile(vm, host, o.loaderDir)], o);
}

export function createOnAsync(host: ClusterHost, vm: ClusterVm, o: RunOptions & { paused?: boolean } = {}): Promise<VirshResult> {
  return virshOnAsync(host, ['create', ...(o.paused ? ['--paused'] : []), xmlFile(vm, host)], o);
}

export const destroyOn = (host: ClusterHost, vm: ClusterVm, o: RunOptions = {}): VirshResult => virshOn(host, ['destroy', vm.name], o);

/** Running test VMs on the host (names). */
export const runningOn = (host: ClusterHost): string[] =>
  virshOn(host, ['list', '--name'], { timeoutSec: 20 })
    .stdout.split('\n')
    .map((s) => s.trim())
    .filter(Boolean);

export const nvramPath = (host: ClusterHost, vm: ClusterVm): string => join(host.nvramDir, `${vm.name}_VARS.fd`);
export const nvramOf = (host: ClusterHost, vm: ClusterVm): Buffer => readFileSync(nvramPath(host, vm));

/** pid of the VM's QEMU on the host (libvirt's pid file). */
export function qemuPid(host: ClusterHost, vm: ClusterVm): number {
  const run = host.name === 'A' ? '/run/libvirt' : `${dirOf(host)}/run-libvirt`;
  return Number(readFileSync(`${run}/qemu/${vm.name}.pid`, 'utf8').trim());
}

/** How many times OVMF has reached its boot manager's "starting Boot…" on the serial console. */
export const bootCount = (vm: ClusterVm): number => {
  if (!existsSync(vm.serialLog)) return 0;
  return readFileSync(vm.serialLog, 'latin1').split('BdsDxe: starting').length - 1;
};

/**
 * Wait until OVMF has booted to its boot manager `count` times in total (each boot rewrites
 * UEFI variables: the NVRAM changes), then until the host's NVRAM file stops changing.
 */
export async function waitForBoot(vm: ClusterVm, count: number, host: ClusterHost, timeoutMs = 90_000): Promise<void> {
  await waitUntil(() => bootCount(vm) >= count, timeoutMs, `${vm.name}: boot #${count} on host ${host.name} (serial log ${vm.serialLog})`);
  let last = '';
  await waitUntil(
    () => {
      const now = existsSync(nvramPath(host, vm)) ? sha256(nvramOf(host, vm)) : '';
      const stable = now === last;
      last = now;
      return stable;
    },
    20_000,
    `${vm.name}: NVRAM on host ${host.name} settling`,
    1000,
  );
}

/** Poll `cond` every `everyMs` until true; throws naming `what` after `timeoutMs`. */
export async function waitUntil(cond: () => boolean | Promise<boolean>, timeoutMs: number, what: string, everyMs = 200): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

/** Destroy every VM this process created (both hosts) and remove their NVRAM files, state and serial logs. */
export async function cleanupClusterVms(): Promise<void> {
  for (const host of [hostA, hostB, ...(existsSync(`${dirOf(hostC)}/anchor.pid`) ? [hostC] : [])]) {
    const ok = virshOn(host, ['version'], { allowFail: true, timeoutSec: 10 }).code === 0;
    for (const vm of created.values()) {
      if (ok) virshOn(host, ['destroy', vm.name], { allowFail: true, timeoutSec: 30 });
      rmSync(nvramPath(host, vm), { force: true });
      rmSync(join(host.stateDir, `${vm.uuid}.json`), { force: true });
    }
  }
  for (const vm of created.values()) {
    rmSync(vm.serialLog, { force: true });
    for (const f of diskFiles(vm)) rmSync(f, { force: true });
    for (const h of ['A', 'B', 'C']) rmSync(join(SERIAL_DIR, `${vm.name}.${h}.xml`), { force: true });
    rmSync(vmArchive(vm.uuid), { recursive: true, force: true });
  }
  created.clear();
}

// ---------------------------------------------------------------------------------------------
// The built hook, run directly (the churn test): like libvirt, but with an explicit config

export interface HookRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Run `dist/hooks/qemu <argv>` in `host`'s mount namespace (so B's calls go through B's
 * GlusterFS client) with `OVMF_HOOK_CONFIG=<config>` and the domain XML on stdin.
 */
export async function runHookOn(host: ClusterHost, config: string, argv: string[], xml: string, timeoutMs = 60_000): Promise<HookRun> {
  const cmd = [...inHost(host), process.execPath, HOOK_BIN, ...argv];
  const p = spawn(cmd[0], cmd.slice(1), {
    env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LC_ALL: 'C', OVMF_HOOK_CONFIG: config },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const timer = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
  p.stdin.on('error', () => {});
  p.stdin.end(xml);
  try {
    return await outputOf(p);
  } finally {
    clearTimeout(timer);
  }
}
