/**
 * A test install of the hook on this host, shared by the tests that install it into the real libvirtd
 * (test/hook/hook.libvirt.test.ts by install.sh, test/install/deb.libvirt.test.ts by apt-get):
 * the host guard (scripts/host-guard.mjs) taken first and put back at the end, libvirtd reloaded
 * around it; a foreign hook (it logs its calls) in libvirt's hooks dir and the test config (only
 * VMs that opt in with `<ovmf:policy archive="yes"/>`, archive/state/log in a temp dir) before the
 * install; the hook's log, the foreign hook's calls, a VM's NVRAM.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CONF_DIR, HOOKS_DIR, NVRAM_DIR, restoreFromGuard, takeGuard, testInstallConfig } from '../../scripts/host-guard.mjs';
import { ROOT } from '../hook/harness';

export const HOOK = `${HOOKS_DIR}/qemu`;
export const HOOK_D = `${HOOKS_DIR}/qemu.d`;
/** install.sh's record of /etc/libvirt/hooks. */
export const RECORD = join(CONF_DIR, 'installs', 'etc-libvirt-hooks');
export const CONFIG = join(CONF_DIR, 'config.json');

/** `timeout <timeoutSec> cmd args…` in the checkout (environment: this process's plus `env`); the exit code and stdout + stderr. */
export function sh(cmd: string, args: string[], timeoutSec = 120, env: NodeJS.ProcessEnv = {}): { code: number; out: string } {
  const r = spawnSync('timeout', [String(timeoutSec), cmd, ...args], { encoding: 'utf8', cwd: ROOT, env: { ...process.env, ...env } });
  return { code: r.status ?? 128, out: `${r.stdout ?? ''}${r.stderr ?? ''}` };
}

/** SIGHUP libvirtd (scripts/libvirt-reload.sh) and wait until it answers again. */
export function reloadLibvirt(): void {
  const r = sh('bash', [join(ROOT, 'scripts/libvirt-reload.sh')], 90);
  if (r.code !== 0) throw new Error(`libvirt-reload.sh: ${r.out}`);
}

/** A file's text, '' while it does not exist. */
const textOf = (path: string): string => (existsSync(path) ? readFileSync(path, 'utf8') : '');

/** One test file's install on this host; everything is set in its beforeAll (a skipped file creates nothing). */
export class TestInstall {
  /** This file holds the host guard: its end puts the saved install back. */
  guarded = false;
  /** This file's temp dir, removed at its end ('' until made). */
  tmp = '';
  /** The test config (scripts/host-guard.mjs testInstallConfig), its archive dir and log file. */
  config: Record<string, unknown> = {};
  archiveDir = '';
  logFile = '';
  /** The foreign hook: where it logs its calls, its script. */
  foreignLog = '';
  foreign = '';

  /** Take the host guard (saving the install on this host; a dead owner's saved state put back first, then libvirtd reloaded). */
  async guard(label: string): Promise<void> {
    await takeGuard({ label, onRecovered: reloadLibvirt });
    this.guarded = true;
  }

  /**
   * The test config with archive, state and log under `dir` (default `tmp`), and the foreign hook: it
   * appends its arguments to `<tmp>/foreign.log` and never fails (exit 0 even when its log is gone),
   * so if it is ever left behind, VM starts still work.
   */
  setUp(dir = this.tmp): void {
    const config = testInstallConfig(dir);
    this.config = config;
    this.archiveDir = config.archiveDir;
    this.logFile = config.logFile;
    this.foreignLog = join(this.tmp, 'foreign.log');
    this.foreign = `#!/bin/sh\n# a hook that was here before ovmf-hook\necho "$@" >> '${this.foreignLog}' 2>/dev/null\nexit 0\n`;
  }

  /** The state an install starts from: the foreign hook alone in the hooks dir (no qemu.d, no install record), the test config. */
  startingPoint(): void {
    mkdirSync(HOOKS_DIR, { recursive: true });
    rmSync(HOOK_D, { recursive: true, force: true });
    rmSync(HOOK, { force: true });
    writeFileSync(HOOK, this.foreign, { mode: 0o755 });
    rmSync(RECORD, { force: true });
    mkdirSync(CONF_DIR, { recursive: true });
    writeFileSync(CONFIG, JSON.stringify(this.config, null, 2));
  }

  /** The hook's log so far ('' before its first line). */
  hookLog(): string {
    return textOf(this.logFile);
  }

  /** The foreign hook's calls so far, one line each. */
  foreignCalls(): string {
    return textOf(this.foreignLog);
  }

  /**
   * The file's end: `undo` (its own uninstall), then the saved install put back and libvirtd
   * reloaded (when guarded), then the temp dir removed, each whatever went before.
   */
  release(undo: () => void): void {
    try {
      undo();
    } finally {
      try {
        if (this.guarded) {
          restoreFromGuard();
          reloadLibvirt();
        }
      } finally {
        if (this.tmp) rmSync(this.tmp, { recursive: true, force: true });
      }
    }
  }
}

/** Opt a test VM into NVRAM archiving (the test config leaves other VMs alone). */
export const archived = (xml: string): string =>
  xml.replace(/(<\/name>\n)/, '$1  <metadata>\n    <ovmf:policy xmlns:ovmf="urn:ovmf-hook:policy:1" archive="yes"/>\n  </metadata>\n');

/** libvirt's NVRAM file of `vm`. */
export const nvramOf = (vm: string): string => `${NVRAM_DIR}/${vm}_VARS.fd`;
