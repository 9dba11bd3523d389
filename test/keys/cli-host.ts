/**
 * The host the built-CLI tests of test/keys run against without libvirt: a temp tree with a config
 * (archive, state and nvram directories inside it, qemu user root) and a fake virsh on PATH
 * (test/cli/fake-virsh-bin.ts) knowing the given domains; and the CLI they run, built once per file.
 */
import { createHash } from 'node:crypto';
import { lstatSync, mkdirSync, readFileSync, readdirSync, readlinkSync, type Stats } from 'node:fs';
import { join, relative } from 'node:path';
import { afterAll, beforeAll, expect } from 'vitest';
import { fakeVirshBin, type FakeVirshDomain } from '../cli/fake-virsh-bin';
import { buildCli, runCli, scratchDir, writeConfig, type CliRun } from '../cli/support';

/**
 * The CLI built once for the calling test file (a beforeAll it registers) into `<scratch>/dist`, the
 * scratch dir (prefix `name`) removed after the file; read `cli` and `dir` inside tests and hooks.
 */
export function builtCli(name: string): { readonly cli: string; readonly dir: string } {
  let scratch: ReturnType<typeof scratchDir> | undefined;
  let cli = '';
  beforeAll(async () => {
    scratch = scratchDir(name);
    cli = await buildCli(join(scratch.dir, 'dist'));
  }, 60_000);
  afterAll(() => scratch?.cleanup());
  return {
    get cli() {
      return cli;
    },
    get dir() {
      if (!scratch) throw new Error(`builtCli(${name}): read before its beforeAll ran`);
      return scratch.dir;
    },
  };
}

export interface CliHostOptions {
  /** The temp tree's name prefix, also the config's hostId. */
  name: string;
  /** The domains the fake virsh knows (by name or UUID), given the nvram directory. */
  domains?: (nvramDir: string) => Record<string, FakeVirshDomain>;
  /** The config's firmware descriptor directory; default `<tree>/firmware` (none there). */
  firmwareDir?: string;
  /** Arguments `run` puts before its own (e.g. `['nvram']`). */
  command?: readonly string[];
}

export interface CliHost {
  dir: string;
  nvramDir: string;
  /** The environment of every run: the fake virsh first on PATH, OVMF_HOOK_CONFIG. */
  env: Record<string, string>;
  /** `<nvramDir>/<vm>_VARS.fd` */
  nvram: (vm: string) => string;
  /** The built CLI `cli` with `command`, then `args`. */
  run: (...args: string[]) => CliRun;
  virsh: ReturnType<typeof fakeVirshBin>;
  cleanup: () => void;
}

/** A temp tree (config, nvram dir) and a fake virsh, for the built CLI `cli`; `cleanup()` removes the tree. */
export function cliHost(cli: string, { name, domains = () => ({}), firmwareDir, command = [] }: CliHostOptions): CliHost {
  const { dir, cleanup } = scratchDir(name);
  const nvramDir = join(dir, 'nvram');
  mkdirSync(nvramDir, { mode: 0o755 });
  const config = writeConfig(dir, 'config.json', {
    archiveDir: join(dir, 'archive'),
    stateDir: join(dir, 'state'),
    templateDir: join(dir, 'templates'),
    nvramDir,
    firmwareDirs: [firmwareDir ?? join(dir, 'firmware')],
    hostId: name,
    qemuUser: 'root',
    qemuGroup: 'root',
  });
  const virsh = fakeVirshBin(dir, domains(nvramDir));
  const env = { ...virsh.env, OVMF_HOOK_CONFIG: config };
  const run = (...args: string[]) => runCli(cli, [...command, ...args], { env });
  const nvram = (vm: string) => join(nvramDir, `${vm}_VARS.fd`);
  return { dir, nvramDir, env, nvram, run, virsh, cleanup };
}

/**
 * What "nothing written" is checked against: every entry under `root` (but the fake virsh's own
 * record of calls) by its path relative to `root`, as `describe` renders it (undefined: not
 * recorded); directories are walked into, symlinks are not followed (lstat).
 */
export function treeSnapshot(root: string, describe: (path: string, st: Stats) => string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string) => {
    for (const n of readdirSync(d).sort()) {
      const p = join(d, n);
      const key = relative(root, p);
      if (key === join('fake-virsh', 'calls.jsonl')) continue;
      const st = lstatSync(p);
      const text = describe(p, st);
      if (text !== undefined) out[key] = text;
      if (st.isDirectory()) walk(p);
    }
  };
  walk(root);
  return out;
}

/** Every file, directory and symlink under `root`: type, mode, size, content hash, mtime (what "nothing written" is checked against). */
export const fullSnapshot = (root: string): Record<string, string> =>
  treeSnapshot(root, (p, st) =>
    st.isSymbolicLink()
      ? `link ${readlinkSync(p)}`
      : st.isDirectory()
        ? `dir ${(st.mode & 0o7777).toString(8)}`
        : `file ${(st.mode & 0o7777).toString(8)} ${st.size} ${createHash('sha256').update(readFileSync(p)).digest('hex')} ${st.mtimeMs}`,
  );

/** A refusal: `code`, one line on stderr matching `message`, nothing on stdout, the tree under `root` untouched. */
export function expectRefused(root: string, run: () => CliRun, code: 1 | 2, message: RegExp): CliRun {
  const before = fullSnapshot(root);
  const r = run();
  expect(r.stdout).toBe('');
  expect(r.stderr).toMatch(/^ovmf-hook: [^\n]+\n$/);
  expect(r.stderr).toMatch(message);
  expect(r.code, r.stderr).toBe(code);
  expect(fullSnapshot(root)).toEqual(before);
  return r;
}
