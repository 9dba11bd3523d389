/**
 * Fake-libvirt harness for the built hook (`dist/hooks/qemu`), reproducing libvirt's contract
 * (docs/HOOK.md §1.1, §1.5): argv `<vm> <op> <subop> <extra>`, a bare
 * environment (`PATH` + `LC_ALL=C`), the domain XML written to stdin and stdin closed, stdout and
 * stderr collected until BOTH reach EOF (libvirt's poll loop), then the exit status.
 *
 * Each `HookHost` is one simulated hypervisor host: a private temp tree with its own config
 * (`OVMF_HOOK_CONFIG`), NVRAM, state and log, and a hermetic firmware catalog (fake OVMF images of
 * the real 4M sizes + Debian-style descriptors), so the unit tests need neither libvirt nor OVMF.
 * Hosts may share one archive directory to play a cluster.
 */
import { execFileSync, spawn, spawnSync, type StdioOptions } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, constants, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, statSync, write, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, posix, relative, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll } from 'vitest';
import { parseDescriptor, type FirmwareDescriptor } from '../../src/core/firmware';

export const ROOT = join(__dirname, '..', '..');
export const HOOK_BIN = join(ROOT, 'dist', 'hooks', 'qemu');
export const CLI_BIN = join(ROOT, 'dist', 'cli.cjs');
/**
 * The node that runs the built CLI in the tests (`TEST_NODE cli.cjs …`): `OVMF_HOOK_TEST_NODE` (a
 * node, or a wrapper such as scripts/node18.sh; scripts/test-node18.sh sets it), else the node
 * running vitest. The hook runs through its shebang, which `OVMF_HOOK_NODE` sets at build time.
 */
export const TEST_NODE = process.env.OVMF_HOOK_TEST_NODE ? resolve(process.env.OVMF_HOOK_TEST_NODE) : process.execPath;

/** libvirt passes only these (plus LD_*, HOME, USER, LOGNAME, TMPDIR when set). */
export const HOOK_PATH = '/usr/sbin:/usr/bin:/sbin:/bin';

const newestMtime = (p: string): number => {
  const st = statSync(p);
  if (!st.isDirectory()) return st.mtimeMs;
  return Math.max(st.mtimeMs, ...readdirSync(p).map((n) => newestMtime(join(p, n))));
};

const BUILD_LOCK = join(tmpdir(), 'ovmfhook-dist-build.lock');
const sleepSync = (ms: number) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);

const distIsFresh = (): boolean => {
  const sources = ['src', 'hooks', 'scripts/build.mjs', 'package-lock.json'].map((p) => join(ROOT, p)).filter(existsSync);
  const built = [HOOK_BIN, CLI_BIN].every(existsSync) ? Math.min(statSync(HOOK_BIN).mtimeMs, statSync(CLI_BIN).mtimeMs) : 0;
  return built > Math.max(...sources.map(newestMtime));
};

/**
 * Build dist/ with `npm run build` unless it is newer than every source it is made from. Test
 * files of one run call this in parallel: one builds (under a lock), the others wait for it, so no
 * test runs a half-written hook.
 */
export function ensureBuilt(): void {
  if (distIsFresh()) return;
  const deadline = Date.now() + 180_000;
  for (;;) {
    try {
      mkdirSync(BUILD_LOCK);
      break;
    } catch {
      const age = Date.now() - (statSync(BUILD_LOCK, { throwIfNoEntry: false })?.mtimeMs ?? Date.now());
      if (age > 180_000) rmSync(BUILD_LOCK, { recursive: true, force: true }); // a builder that died
      else if (Date.now() > deadline) throw new Error(`${BUILD_LOCK}: another build did not finish within 3 minutes`);
      else sleepSync(200);
    }
  }
  try {
    if (distIsFresh()) return; // built by whoever held the lock
    const r = spawnSync('npm', ['run', '--silent', 'build'], { cwd: ROOT, encoding: 'utf8', timeout: 170_000 });
    if (r.status !== 0) throw new Error(`npm run build failed: ${r.stderr || r.stdout || r.error}`);
  } finally {
    rmSync(BUILD_LOCK, { recursive: true, force: true });
  }
}

export const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

// ---------------------------------------------------------------------------------------------
// Running the hook

/**
 * What the hook gets on fd 0. Text is written to a pipe (a FIFO: pipe(2) semantics, as libvirt's
 * virPipe gives; Node's own child stdio would be a socketpair), then the pipe is closed.
 */
export type Stdin =
  | string
  | Buffer
  /** fd 0 is /dev/null */
  | { devNull: true }
  /** written to the pipe piece by piece, `pauseMs` apart (a daemon feeding a large domain), then closed */
  | { pieces: Array<string | Buffer>; pauseMs: number }
  /** through a socket (Node's child stdio), then closed: stdin that cannot be reopened */
  | { socket: string | Buffer }
  /** a pipe the "daemon" never closes (until the hook is gone); `socket`: a socket instead */
  | { keepOpen: true; socket?: boolean };

export interface RunOptions {
  /** Default: empty string (stdin closed at once). */
  stdin?: Stdin;
  /** Extra environment on top of PATH/LC_ALL (e.g. OVMF_HOOK_CONFIG). */
  env?: Record<string, string>;
  /** Run `[...wrap, HOOK_BIN, ...argv]` (e.g. to change the hook's mount namespace). */
  wrap?: string[];
  /** Safety net: SIGKILL the hook after this long (default 20 s); `killed` is then true. */
  killAfterMs?: number;
  /** Do not read stdout for this long after the spawn (a daemon slow to drain the pipe). */
  stdoutPauseMs?: number;
}

export interface HookResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** Spawn → the hook process exited. */
  exitMs: number;
  /** Spawn → exited AND stdout + stderr reached EOF (what libvirt waits for). */
  doneMs: number;
  killed: boolean;
}

/** Run the built hook like libvirt does. Never rejects for a failing hook; inspect the result. */
export function runHookBinary(argv: readonly string[], opts: RunOptions = {}): Promise<HookResult> {
  const stdin = opts.stdin ?? '';
  const keepOpen = typeof stdin === 'object' && 'keepOpen' in stdin;
  const devNull = typeof stdin === 'object' && 'devNull' in stdin;
  const socket = typeof stdin === 'object' && 'socket' in stdin && stdin.socket !== undefined && stdin.socket !== false;
  const pieces = stdinPieces(stdin);
  const pauseMs = typeof stdin === 'object' && 'pauseMs' in stdin ? stdin.pauseMs : 0;
  const pipe = devNull || socket ? undefined : openPipe();
  const stdio: StdioOptions = [devNull ? 'ignore' : (pipe?.readFd ?? 'pipe'), 'pipe', 'pipe'];
  const [cmd, ...pre] = [...(opts.wrap ?? []), HOOK_BIN];
  const t0 = performance.now();
  const child = spawn(cmd, [...pre, ...argv], {
    env: { PATH: HOOK_PATH, LC_ALL: 'C', ...opts.env },
    stdio,
  });
  pipe?.spawned();
  return new Promise((resolve, reject) => {
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let exitMs = NaN;
    let killed = false;
    const timer = setTimeout(() => {
      killed = true;
      child.kill('SIGKILL');
    }, opts.killAfterMs ?? 20_000);
    child.stdout!.on('data', (c: Buffer) => out.push(c));
    if (opts.stdoutPauseMs) {
      child.stdout!.pause();
      setTimeout(() => child.stdout!.resume(), opts.stdoutPauseMs);
    }
    child.stderr!.on('data', (c: Buffer) => err.push(c));
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('exit', () => {
      exitMs = performance.now() - t0;
      if (keepOpen) child.stdin?.destroy();
      pipe?.close();
    });
    // 'close' = the process exited and all its stdio streams reached EOF
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({
        code,
        signal,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
        exitMs,
        doneMs: performance.now() - t0,
        killed,
      });
    });
    if (child.stdin) {
      child.stdin.on('error', () => undefined); // EPIPE: the hook may stop reading early, libvirt ignores it
      if (!keepOpen) child.stdin.end(Buffer.concat(pieces.map((p) => Buffer.from(p))));
    }
    if (pipe) void pipe.feed(pieces, pauseMs, !keepOpen);
  });
}

function stdinPieces(stdin: Stdin): Array<string | Buffer> {
  if (typeof stdin === 'string' || Buffer.isBuffer(stdin)) return [stdin];
  if ('pieces' in stdin) return stdin.pieces;
  if ('socket' in stdin && (typeof stdin.socket === 'string' || Buffer.isBuffer(stdin.socket))) return [stdin.socket];
  return [];
}

const writeAsync = promisify(write);

/**
 * A FIFO for fd 0: pipe(2) semantics (what libvirt gives a hook) from Node, which has no pipe().
 * The child gets a blocking read end; we write through a blocking write end in the thread pool, so
 * a full pipe never stalls the test; when the hook exits without reading everything the write
 * fails with EPIPE (ignored, as libvirt does).
 */
function openPipe() {
  const dir = mkdtempSync(join(tmpdir(), 'ovmfhook-fifo-'));
  const fifo = join(dir, 'stdin');
  execFileSync('mkfifo', ['-m', '600', fifo]);
  const probe = openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK); // lets the writer open without blocking
  const writeFd = openSync(fifo, constants.O_WRONLY);
  const readFd = openSync(fifo, constants.O_RDONLY); // a writer exists: does not block
  closeSync(probe);
  // closed only when no write is queued: a write still in the thread pool would otherwise go to
  // whatever file gets the fd number next (another test's stdout)
  let writeOpen = true;
  let writing = false;
  let closeWanted = false;
  const closeWriter = () => {
    closeWanted = true;
    if (writeOpen && !writing) {
      writeOpen = false;
      closeSync(writeFd);
    }
  };
  return {
    readFd,
    /** the child holds the read end now: ours goes, so the child is the only reader */
    spawned: () => {
      closeSync(readFd);
      rmSync(dir, { recursive: true, force: true });
    },
    feed: async (pieces: Array<string | Buffer>, pauseMs: number, close: boolean) => {
      writing = true;
      try {
        for (const [i, p] of pieces.entries()) {
          if (i > 0 && pauseMs) await new Promise((r) => setTimeout(r, pauseMs));
          const b = Buffer.from(p);
          for (let off = 0; off < b.length && !closeWanted; ) off += (await writeAsync(writeFd, b, off, b.length - off, null)).bytesWritten;
        }
      } catch {
        /* EPIPE: the hook stopped reading */
      } finally {
        writing = false;
      }
      if (close || closeWanted) closeWriter();
    },
    close: closeWriter,
  };
}

// ---------------------------------------------------------------------------------------------
// Hermetic firmware: fake OVMF images with the real 4M layout sizes + Debian-style descriptors

export const CODE_SIZE = 3_653_632;
export const VARS_SIZE = 540_672;

export interface Firmware {
  dir: string;
  descriptorDir: string;
  code: string;
  secureCode: string;
  vars: string;
  msVars: string;
}

/** Deterministic content of `size` bytes, different per `seed`. */
export function pattern(size: number, seed: string): Buffer {
  const b = Buffer.alloc(size);
  const block = createHash('sha256').update(seed).digest();
  for (let off = 0; off < size; off += block.length) block.copy(b, off);
  return b;
}

function descriptor(code: string, vars: string, features: string[], machines: string[]): string {
  return JSON.stringify({
    description: 'test firmware',
    'interface-types': ['uefi'],
    mapping: { device: 'flash', executable: { filename: code, format: 'raw' }, 'nvram-template': { filename: vars, format: 'raw' } },
    targets: [{ architecture: 'x86_64', machines }],
    features,
    tags: [],
  });
}

/** Parsed Debian-style descriptors for firmware in `dir` (no file is read or written; for pure tests). */
/** Firmware paths for pure tests (nothing on disk; descriptorsIn('/fw') describes them). */
export const PURE_FIRMWARE: Firmware = {
  dir: '/fw',
  descriptorDir: '/test/descriptors',
  code: '/fw/OVMF_CODE_4M.fd',
  secureCode: '/fw/OVMF_CODE_4M.ms.fd',
  vars: '/fw/OVMF_VARS_4M.fd',
  msVars: '/fw/OVMF_VARS_4M.ms.fd',
};

export function descriptorsIn(dir: string): FirmwareDescriptor[] {
  const p = (f: string) => posix.join(dir, f);
  const sb = ['acpi-s3', 'requires-smm', 'secure-boot'];
  return [
    ['40-edk2-x86_64-secure-enrolled.json', descriptor(p('OVMF_CODE_4M.ms.fd'), p('OVMF_VARS_4M.ms.fd'), [...sb, 'enrolled-keys'], ['pc-q35-*'])],
    ['50-edk2-x86_64-secure.json', descriptor(p('OVMF_CODE_4M.ms.fd'), p('OVMF_VARS_4M.fd'), sb, ['pc-q35-*'])],
    ['60-edk2-x86_64.json', descriptor(p('OVMF_CODE_4M.fd'), p('OVMF_VARS_4M.fd'), ['acpi-s3'], ['pc-i440fx-*', 'pc-q35-*'])],
  ].map(([file, text]) => parseDescriptor(text, { file, dir: '/test/descriptors' }));
}

/** Fake OVMF build in `dir`: descriptors ordered like Debian's (SB + MS keys first, plain last). */
export function makeFirmware(dir: string): Firmware {
  mkdirSync(dir, { recursive: true });
  const fw: Firmware = {
    dir,
    descriptorDir: join(dir, 'descriptors'),
    code: join(dir, 'OVMF_CODE_4M.fd'),
    secureCode: join(dir, 'OVMF_CODE_4M.ms.fd'),
    vars: join(dir, 'OVMF_VARS_4M.fd'),
    msVars: join(dir, 'OVMF_VARS_4M.ms.fd'),
  };
  writeFileSync(fw.code, pattern(CODE_SIZE, 'code'));
  writeFileSync(fw.secureCode, pattern(CODE_SIZE, 'secure code'));
  writeFileSync(fw.vars, pattern(VARS_SIZE, 'vars'));
  writeFileSync(fw.msVars, pattern(VARS_SIZE, 'ms vars'));
  mkdirSync(fw.descriptorDir);
  const sb = ['acpi-s3', 'requires-smm', 'secure-boot'];
  writeFileSync(join(fw.descriptorDir, '40-edk2-x86_64-secure-enrolled.json'), descriptor(fw.secureCode, fw.msVars, [...sb, 'enrolled-keys'], ['pc-q35-*']));
  writeFileSync(join(fw.descriptorDir, '50-edk2-x86_64-secure.json'), descriptor(fw.secureCode, fw.vars, sb, ['pc-q35-*']));
  writeFileSync(join(fw.descriptorDir, '60-edk2-x86_64.json'), descriptor(fw.code, fw.vars, ['acpi-s3'], ['pc-i440fx-*', 'pc-q35-*']));
  return fw;
}

// ---------------------------------------------------------------------------------------------
// Simulated hosts

export interface HookHost {
  name: string;
  dir: string;
  configPath: string;
  nvramDir: string;
  archiveDir: string;
  stateDir: string;
  logFile: string;
  /** The config object last written. */
  config: Record<string, unknown>;
  /** Rewrite the config file: base settings merged with `extra`. */
  setConfig(extra?: Record<string, unknown>): void;
  /** Write raw text as the config file. */
  setConfigText(text: string): void;
  /** Run the hook on this host. */
  run(argv: readonly string[], stdin?: Stdin, opts?: Omit<RunOptions, 'stdin'>): Promise<HookResult>;
  /** Content of the hook's log file ('' when none). */
  log(): string;
  /** Files (recursively, relative paths) under the NVRAM and archive directories. */
  createdFiles(): string[];
  /** `<nvramDir>/<vm>_VARS.fd` */
  nvramPath(vm: string): string;
}

const listTree = (dir: string): string[] => {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => !e.isDirectory())
    .map((e) => relative(dir, join(e.parentPath, e.name)));
};

export interface HostOptions {
  name?: string;
  /** Shared archive directory (a cluster); default a private one. */
  archiveDir?: string;
  firmware: Firmware;
  config?: Record<string, unknown>;
}

/** A fresh simulated host under `root` (created; the caller removes `root`). */
export function makeHost(root: string, opts: HostOptions): HookHost {
  const name = opts.name ?? 'hostA';
  const dir = mkdtempSync(join(root, `${name}-`));
  const nvramDir = join(dir, 'nvram');
  mkdirSync(nvramDir);
  const host: HookHost = {
    name,
    dir,
    configPath: join(dir, 'config.json'),
    nvramDir,
    archiveDir: opts.archiveDir ?? join(dir, 'archive'),
    stateDir: join(dir, 'state'),
    logFile: join(dir, 'hook.log'),
    config: {},
    setConfig(extra = {}) {
      host.config = {
        hostId: name,
        archiveDir: host.archiveDir,
        stateDir: host.stateDir,
        nvramDir: host.nvramDir,
        logFile: host.logFile,
        firmwareDirs: [opts.firmware.descriptorDir],
        ...opts.config,
        ...extra,
      };
      writeFileSync(host.configPath, JSON.stringify(host.config, null, 2));
    },
    setConfigText(text) {
      writeFileSync(host.configPath, text);
    },
    run(argv, stdin, runOpts = {}) {
      return runHookBinary(argv, { ...runOpts, stdin, env: { OVMF_HOOK_CONFIG: host.configPath, ...runOpts.env } });
    },
    log: () => (existsSync(host.logFile) ? readFileSync(host.logFile, 'utf8') : ''),
    createdFiles: () =>
      [host.nvramDir, host.archiveDir].flatMap((d) => listTree(d).map((f) => join(relative(dir, d), f))),
    nvramPath: (vm) => join(nvramDir, `${vm}_VARS.fd`),
  };
  host.setConfig();
  return host;
}

/** A temp root for hosts; `cleanup()` removes it. */
export function tempRoot(): { root: string; cleanup: () => void } {
  const root = mkdtempSync(join(tmpdir(), 'ovmfhook-hook-'));
  return { root, cleanup: () => rmSync(root, { recursive: true, force: true }) };
}

/**
 * The simulated hosts of one test file: registers a beforeAll (dist/ built, a temp root, a fake
 * OVMF build in `<root>/fw`) and an afterAll removing the root; read `root` and `fw` once it ran.
 */
export function hostsFixture(): { readonly root: string; readonly fw: Firmware } {
  let tmp: ReturnType<typeof tempRoot> | undefined;
  let fw: Firmware | undefined;
  beforeAll(() => {
    ensureBuilt();
    tmp = tempRoot();
    fw = makeFirmware(join(tmp.root, 'fw'));
  }, 120_000);
  afterAll(() => tmp?.cleanup());
  const ready = () => {
    if (!tmp || !fw) throw new Error('hostsFixture: read before its beforeAll ran');
    return { root: tmp.root, fw };
  };
  return {
    get root() {
      return ready().root;
    },
    get fw() {
      return ready().fw;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Domain XML as libvirt hands it to the hook (one element per line, so line diffs are meaningful)

export interface XmlSpec {
  name: string;
  uuid?: string;
  /** 'efi-auto' = `<os firmware='efi'>` without paths (libvirt 9.0's prepare XML). */
  firmware: 'ovmf' | 'ovmf-secure' | 'bios' | 'efi-auto';
  machine?: string;
  loader?: string;
  template?: string;
  /** NVRAM path (text of `<nvram>`); omit for none */
  nvram?: string;
  /** attributes of `<ovmf:policy>` in `<metadata>` */
  policy?: Record<string, string>;
  /** extra lines inside `<os>` (e.g. firmware features) */
  osExtra?: string[];
  /** extra lines inside `<features>` */
  features?: string[];
  /** extra lines inside `<devices>` */
  devices?: string[];
}

export const DEFAULT_UUID = '6f1d3c2a-9b8e-4c7d-a6b5-0123456789ab';

export function domainXml(s: XmlSpec, fw: Firmware): string {
  const uefi = s.firmware === 'ovmf' || s.firmware === 'ovmf-secure';
  const secure = s.firmware === 'ovmf-secure';
  const loader = s.loader ?? (secure ? fw.secureCode : fw.code);
  const template = s.template ?? (secure ? fw.msVars : fw.vars);
  const esc = (v: string) => v.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/'/g, '&apos;');
  const policy = s.policy
    ? [
        '  <metadata>',
        `    <ovmf:policy xmlns:ovmf="urn:ovmf-hook:policy:1"${Object.entries(s.policy)
          .map(([k, v]) => ` ${k}="${v}"`)
          .join('')}/>`,
        '  </metadata>',
      ]
    : [];
  return [
    "<domain type='qemu'>",
    `  <name>${esc(s.name)}</name>`,
    `  <uuid>${s.uuid ?? DEFAULT_UUID}</uuid>`,
    ...policy,
    "  <memory unit='KiB'>262144</memory>",
    "  <vcpu placement='static'>1</vcpu>",
    s.firmware === 'efi-auto' ? "  <os firmware='efi'>" : '  <os>',
    `    <type arch='x86_64' machine='${s.machine ?? 'pc-q35-7.2'}'>hvm</type>`,
    ...(uefi ? [`    <loader readonly='yes'${secure ? " secure='yes'" : ''} type='pflash'>${esc(loader)}</loader>`] : []),
    ...(uefi && s.nvram ? [`    <nvram template='${esc(template)}'>${esc(s.nvram)}</nvram>`] : []),
    ...(s.osExtra ?? []).map((l) => `    ${l}`),
    "    <boot dev='hd'/>",
    '  </os>',
    '  <features>',
    '    <acpi/>',
    '    <apic/>',
    ...(secure ? ["    <smm state='on'/>"] : []),
    ...(s.features ?? []).map((l) => `    ${l}`),
    '  </features>',
    '  <devices>',
    '    <emulator>/usr/bin/qemu-system-x86_64</emulator>',
    ...(s.devices ?? []).map((l) => `    ${l}`),
    "    <memballoon model='none'/>",
    '  </devices>',
    '</domain>',
    '',
  ].join('\n');
}
