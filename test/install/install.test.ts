/**
 * install.sh itself, run for real as root, but only ever into temp directories: every run passes
 * `--hooks-dir`, `--prefix`, `--config-dir`, `--state-dir` under a temp dir, `--no-build` (dist/ is
 * built once by ensureBuilt) and `--no-reload`, and a CLI link under the temp dir or none. The one
 * case that needs install.sh's default (no CLI link for a non-default install) runs in a private
 * mount namespace with an empty tmpfs over /usr/local/bin. No libvirt needed.
 *
 * `OVMF_HOOK_TEST_INSTALL_SH=/path/install.sh` runs these cases against another install.sh (with a
 * dist/ next to it), e.g. an older one inside `unshare -m` with tmpfs over the host paths.
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureBuilt, ROOT, TEST_NODE } from '../hook/harness';
import { exists } from '../../scripts/host-guard.mjs';

const INSTALL_SH = process.env.OVMF_HOOK_TEST_INSTALL_SH || join(ROOT, 'install.sh');
const MARKER = 'ovmf-hook: libvirt QEMU hook';
const REAL_BIN_LINK = '/usr/local/bin/ovmf-hook';
const asRoot = process.getuid?.() === 0;
const canUnshare = asRoot && spawnSync('unshare', ['-m', '--propagation', 'private', 'true']).status === 0;

interface Run {
  code: number | null;
  out: string;
  err: string;
}
/** What a path is, enough to tell whether anyone touched it. */
const fingerprint = (p: string) => {
  try {
    const st = lstatSync(p);
    return { ino: st.ino, mtimeMs: st.mtimeMs, ctimeMs: st.ctimeMs, link: st.isSymbolicLink() ? readlinkSync(p) : null };
  } catch {
    return 'absent';
  }
};
const ours = (p: string) => existsSync(p) && readFileSync(p, 'utf8').slice(0, 4096).includes(MARKER);
/** install.sh names a hooks dir's record like `systemd-escape --path` (enough of it for mkdtemp names). */
const recordName = (dir: string) => dir.replace(/^\/+/, '').replace(/-/g, '\\x2d').replace(/\//g, '-');

let base = '';
let n = 0;

/** A fresh tree: hooks dir, prefix, config dir, state dir, and the options that point install.sh at them. */
function tree(name = `t${++n}`) {
  const root = join(base, name);
  const t = {
    root,
    hooks: join(root, 'hooks'),
    prefix: join(root, 'prefix'),
    conf: join(root, 'etc'),
    state: join(root, 'var'),
    bin: join(root, 'bin', 'ovmf-hook'),
    get hook() {
      return join(this.hooks, 'qemu');
    },
    get saved() {
      return join(this.hooks, 'qemu.d', '00-original-qemu');
    },
    get record() {
      return join(this.conf, 'installs', recordName(this.hooks));
    },
    opts(extra: string[] = []) {
      return ['--hooks-dir', this.hooks, '--prefix', this.prefix, '--config-dir', this.conf, '--state-dir', this.state, '--bin-link', this.bin, '--no-reload', ...extra];
    },
  };
  mkdirSync(t.hooks, { recursive: true });
  return t;
}
type Tree = ReturnType<typeof tree>;

/**
 * install.sh writes the `node` it finds on PATH into the installed hook's and CLI's shebang: with
 * OVMF_HOOK_TEST_NODE set (scripts/test-node18.sh), PATH starts with a `node` that is TEST_NODE, so
 * the installed CLI runs under it too.
 */
function installEnv(): NodeJS.ProcessEnv | undefined {
  if (TEST_NODE === process.execPath) return undefined;
  const bin = join(base, 'test-node-bin');
  if (!existsSync(bin)) {
    mkdirSync(bin);
    symlinkSync(TEST_NODE, join(bin, 'node'));
  }
  return { ...process.env, PATH: `${bin}:${process.env.PATH ?? '/usr/bin:/bin'}` };
}

const install = (args: string[]): Run => {
  const r = spawnSync('bash', [INSTALL_SH, ...args], { encoding: 'utf8', timeout: 60_000, env: installEnv() });
  return { code: r.status, out: r.stdout, err: r.stderr };
};
const doInstall = (t: Tree, extra: string[] = []) => install(['--no-build', ...t.opts(extra)]);
const doUninstall = (t: Tree, args?: string[]) => install(['--uninstall', ...(args ?? t.opts())]);
const okRun = (r: Run) => expect(r.code, `${r.out}\n${r.err}`).toBe(0);

/** A foreign hook: a shell script appending its argv to `marker`. */
function foreignScript(path: string, marker: string) {
  mkdirSync(join(path, '..'), { recursive: true });
  writeFileSync(path, `#!/bin/sh\necho "$@" >> '${marker}'\n`, { mode: 0o755 });
}
const runHook = (path: string) => spawnSync(path, ['vm1', 'prepare', 'begin', '-'], { input: '<domain/>', encoding: 'utf8' });

// the host paths install.sh would touch by default: none of them may change
const HOST_PATHS = [REAL_BIN_LINK, '/etc/ovmf-hook', '/etc/ovmf-hook/config.json', '/etc/ovmf-hook/installs', '/etc/ovmf-hook/install-state', '/etc/libvirt/hooks', '/etc/libvirt/hooks/qemu', '/usr/local/lib/ovmf-hook', '/var/lib/ovmf-hook'];
let hostBefore: unknown[] = [];

describe.skipIf(!asRoot)('install.sh (as root, into temp directories)', () => {
  beforeAll(() => {
    ensureBuilt();
    hostBefore = HOST_PATHS.map(fingerprint);
    base = mkdtempSync(join(tmpdir(), 'ovmfhook-install-'));
  }, 200_000);
  afterAll(() => {
    if (base) rmSync(base, { recursive: true, force: true });
  });

  it('(a) a relative-symlink hook keeps its target in qemu.d and runs; --uninstall puts back the same link text', () => {
    const t = tree();
    const marker = join(t.root, 'marker');
    foreignScript(join(t.root, 'admin', 'hook.sh'), marker);
    const text = '../admin/hook.sh';
    symlinkSync(text, t.hook);

    const r = doInstall(t);
    okRun(r);
    expect(ours(t.hook)).toBe(true);
    expect(lstatSync(t.saved).isSymbolicLink()).toBe(true);
    expect(realpathSync(t.saved)).toBe(realpathSync(join(t.root, 'admin', 'hook.sh')));
    expect(runHook(t.saved).status).toBe(0);
    expect(readFileSync(marker, 'utf8')).toBe('vm1 prepare begin -\n');
    expect(readFileSync(t.record, 'utf8')).toContain(`foreign_hook_link=${text}\n`);

    // an upgrade changes nothing about the moved link; the config is created once
    const movedText = readlinkSync(t.saved);
    const again = doInstall(t);
    okRun(again);
    expect(again.out).toContain('kept existing');
    expect(readlinkSync(t.saved)).toBe(movedText);
    expect(ours(t.hook)).toBe(true);

    const u = doUninstall(t);
    okRun(u);
    expect(lstatSync(t.hook).isSymbolicLink()).toBe(true);
    expect(readlinkSync(t.hook)).toBe(text);
    expect(exists(join(t.hooks, 'qemu.d'))).toBe(false);
    expect(exists(t.record)).toBe(false);
    expect(runHook(t.hook).status).toBe(0);
    expect(readFileSync(marker, 'utf8')).toBe('vm1 prepare begin -\n'.repeat(2));
    expect(existsSync(join(t.conf, 'config.json'))).toBe(true); // config kept
  });

  it('(a) a dangling hook link is moved and put back verbatim, and install.sh says so', () => {
    const t = tree();
    symlinkSync('not/there', t.hook);
    const r = doInstall(t);
    okRun(r);
    expect(r.out).toMatch(/dangling/);
    expect(ours(t.hook)).toBe(true);
    expect(readlinkSync(t.saved)).toBe('not/there');
    okRun(doUninstall(t));
    expect(readlinkSync(t.hook)).toBe('not/there');
    expect(exists(t.record)).toBe(false);
  });

  it('(b) two hooks dirs keep two records; uninstalling one leaves the other\'s record and files', () => {
    const a = tree('two-a');
    const b = tree('two-b');
    b.conf = a.conf; // one config dir, as on a real host
    foreignScript(b.hook, join(b.root, 'marker'));
    const foreignB = readFileSync(b.hook, 'utf8');
    okRun(doInstall(a));
    okRun(doInstall(b));
    expect(readdirSync(join(a.conf, 'installs')).sort()).toEqual([recordName(a.hooks), recordName(b.hooks)].sort());
    expect(readFileSync(a.record, 'utf8')).toContain(`hooks_dir=${a.hooks}\n`);
    expect(readFileSync(b.record, 'utf8')).toMatch(new RegExp(`hooks_dir=${b.hooks}\\n[^]*moved_foreign_hook=1\\n`));
    const bRecord = readFileSync(b.record, 'utf8');

    // only --hooks-dir (and the config dir): the prefix and CLI link come from a's record
    okRun(doUninstall(a, ['--hooks-dir', a.hooks, '--config-dir', a.conf, '--no-reload']));
    expect(exists(a.hook) || exists(a.record) || exists(a.prefix) || exists(a.bin)).toBe(false);
    expect(readFileSync(b.record, 'utf8')).toBe(bRecord);
    expect(ours(b.hook)).toBe(true);
    expect(readFileSync(b.saved, 'utf8')).toBe(foreignB);
    expect(existsSync(join(b.prefix, 'dist', 'cli.cjs')) && existsSync(join(b.prefix, 'dist', 'hooks', 'qemu'))).toBe(true);
    expect(readlinkSync(b.bin)).toBe(join(b.prefix, 'dist', 'cli.cjs'));

    // a hooks dir without a record: nothing recorded is deleted
    const c = tree('two-c');
    c.conf = a.conf;
    okRun(doUninstall(c));
    expect(readFileSync(b.record, 'utf8')).toBe(bRecord);

    okRun(doUninstall(b));
    expect(readFileSync(b.hook, 'utf8')).toBe(foreignB);
    expect(exists(b.record) || exists(b.prefix) || exists(b.bin)).toBe(false);
  });

  it('(c) an uninstall that cannot put the previous hook back keeps the record and says why in one line', () => {
    const t = tree();
    foreignScript(t.hook, join(t.root, 'marker'));
    okRun(doInstall(t));
    const record = readFileSync(t.record, 'utf8');
    rmSync(t.saved); // removed by hand

    const u = doUninstall(t);
    expect(u.code).toBe(1);
    expect(u.err.trim().split('\n')).toHaveLength(1);
    expect(u.err).toMatch(/cannot put back the previous hook: .*00-original-qemu is gone; kept the install and .*: put that hook back/);
    expect(readFileSync(t.record, 'utf8')).toBe(record);
    expect(ours(t.hook)).toBe(true);
    expect(existsSync(join(t.prefix, 'dist', 'cli.cjs'))).toBe(true);
  });

  it('(c) an uninstall refuses a record that names another hooks dir, and keeps it', () => {
    const a = tree('other-a');
    const b = tree('other-b');
    b.conf = a.conf;
    foreignScript(a.hook, join(a.root, 'marker'));
    okRun(doInstall(a));
    okRun(doInstall(b));
    copyFileSync(a.record, b.record); // b's record now describes a
    const u = doUninstall(b);
    expect(u.code).toBe(1);
    expect(u.err.trim().split('\n')).toHaveLength(1);
    expect(u.err).toContain(`is the install record of hooks dir '${a.hooks}', not ${b.hooks}`);
    expect(readFileSync(b.record, 'utf8')).toBe(readFileSync(a.record, 'utf8'));
    expect(ours(b.hook) && ours(a.hook)).toBe(true);
  });

  it('(d) a non-default install links the CLI only where --bin-link says, never /usr/local/bin/ovmf-hook', () => {
    const before = fingerprint(REAL_BIN_LINK);
    const t = tree();
    const r = doInstall(t);
    okRun(r);
    expect(readlinkSync(t.bin)).toBe(join(t.prefix, 'dist', 'cli.cjs'));
    expect(readFileSync(t.record, 'utf8')).toContain(`bin_link=${t.bin}\n`);
    expect(fingerprint(REAL_BIN_LINK)).toEqual(before);
    okRun(doUninstall(t, ['--hooks-dir', t.hooks, '--config-dir', t.conf, '--no-reload']));
    expect(exists(t.bin)).toBe(false);
    expect(fingerprint(REAL_BIN_LINK)).toEqual(before);
  });

  it.skipIf(!canUnshare)('(d) without --bin-link, a non-default install creates no CLI link (private mount namespace, empty /usr/local/bin)', () => {
    const t = tree();
    const args = t.opts().filter((a, i, all) => a !== '--bin-link' && all[i - 1] !== '--bin-link');
    const script = 'mount -t tmpfs ovmfhook-test /usr/local/bin || exit 99; bash "$0" --no-build "$@"; rc=$?; echo "@@bin:$(ls -A /usr/local/bin)@@"; exit $rc';
    const r = spawnSync('unshare', ['-m', '--propagation', 'private', 'sh', '-c', script, INSTALL_SH, ...args], { encoding: 'utf8', timeout: 60_000, env: installEnv() });
    expect(r.status, `${r.stdout}\n${r.stderr}`).toBe(0);
    expect(r.stdout).toContain('@@bin:@@');
    expect(readFileSync(t.record, 'utf8')).toContain('bin_link=\n');
    expect(exists(t.bin)).toBe(false);
  });

  it('(e) the installed CLI checks the config: valid → one line; unusable → shown with its fix, the install goes on', () => {
    const t = tree();
    const conf = join(t.conf, 'config.json');
    const r = doInstall(t);
    okRun(r);
    expect(r.out).toContain(`ovmf-hook install: config check: ${conf}: valid\n`);

    writeFileSync(conf, '{"archivedir": "/srv/archive"}');
    const bad = doInstall(t);
    okRun(bad);
    expect(ours(t.hook)).toBe(true);
    expect(bad.err).toContain('******** CONFIG PROBLEM ********');
    expect(bad.err).toContain(`ovmf-hook install: ${conf}: unknown key "archivedir" (did you mean "archiveDir"?)`);
    expect(bad.err).toContain(`the hook refuses UEFI VM starts (BIOS ones and archive="no" ones go ahead) until it is fixed; fix ${conf} as the line above says, then run: ${t.bin} config check --file ${conf}\n`);
    expect(readFileSync(conf, 'utf8')).toBe('{"archivedir": "/srv/archive"}'); // never overwritten
  });

  it('touched none of the host\'s install paths', () => {
    expect(HOST_PATHS.map(fingerprint)).toEqual(hostBefore);
  });
});
