// Lock + crash-safe backup of this host's ovmf-hook install, for everything that installs the hook
// into the real libvirtd for a while (test/hook/hook.libvirt.test.ts, test/install/deb.libvirt.test.ts,
// scripts/soak.mjs).
// One directory: created with mkdir (atomic), holds the owner's pid, the saved paths and a
// `complete` marker. A later run that finds it with a dead owner first puts the saved state back
// (the crashed run never did), then proceeds.
import { cpSync, existsSync, lstatSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const GUARD = '/var/tmp/ovmfhook-hook-libvirt-test';
// where a host install lives (install.sh's defaults, libvirt's NVRAM directory)
export const HOOKS_DIR = '/etc/libvirt/hooks';
export const CONF_DIR = '/etc/ovmf-hook';
export const STATE_LIB = '/var/lib/ovmf-hook';
export const NVRAM_DIR = '/var/lib/libvirt/qemu/nvram';
/** Everything install.sh writes besides /var/lib/ovmf-hook (which it only creates). */
export const SAVED_PATHS = [`${HOOKS_DIR}/qemu`, `${HOOKS_DIR}/qemu.d`, CONF_DIR, '/usr/local/lib/ovmf-hook', '/usr/local/bin/ovmf-hook'];

/**
 * The config a test install on a real host writes: enforce, but manage only VMs whose metadata
 * opts in (every other VM of the host starts as before), archive, state and log under `tmp`.
 */
export const testInstallConfig = (tmp) => ({
  mode: 'enforce',
  policy: { uefi: 'no', archive: 'no' },
  archiveDir: join(tmp, 'archive'),
  stateDir: join(tmp, 'state'),
  logFile: join(tmp, 'hook.log'),
  nvramDir: NVRAM_DIR,
  hookTimeoutSeconds: 60,
});

/** Whether anything (a dangling symlink too) is at `p`. */
export const exists = (p) => {
  try {
    lstatSync(p);
    return true;
  } catch {
    return false;
  }
};
const copy = (from, to) => cpSync(from, to, { recursive: true, verbatimSymlinks: true, preserveTimestamps: true });
const alive = (pid) => {
  try {
    return pid > 0 && process.kill(pid, 0);
  } catch {
    return false;
  }
};

/** Put back what the guard saved (no-op without a complete backup), then drop the guard. */
export function restoreFromGuard() {
  const done = join(GUARD, 'complete');
  if (existsSync(done)) {
    for (const p of SAVED_PATHS) {
      rmSync(p, { recursive: true, force: true });
      if (exists(join(GUARD, 'backup', p))) copy(join(GUARD, 'backup', p), p);
    }
    if (readFileSync(done, 'utf8').trim() === 'state-lib-absent') rmSync(STATE_LIB, { recursive: true, force: true });
  }
  rmSync(GUARD, { recursive: true, force: true });
}

/**
 * Take the guard (waiting up to `waitMs` for a live owner), recover a dead owner's state (then call
 * `onRecovered`, e.g. to reload libvirtd), and save the current install.
 */
export async function takeGuard({ label, waitMs = 300_000, onRecovered = () => {} }) {
  const deadline = Date.now() + waitMs;
  for (let waited = false; ; ) {
    try {
      mkdirSync(GUARD, { mode: 0o700 });
      break;
    } catch (e) {
      if (e.code !== 'EEXIST') throw e;
      const pidFile = join(GUARD, 'pid');
      const pid = existsSync(pidFile) ? Number(readFileSync(pidFile, 'utf8')) : 0;
      const young = Date.now() - lstatSync(GUARD).mtimeMs < 10_000; // owner between mkdir and writing its pid
      if (!alive(pid) && !young) {
        console.warn(`${label}: ${GUARD}: owner ${pid || '?'} is gone; putting back the host state it saved`);
        restoreFromGuard();
        onRecovered();
      } else if (Date.now() > deadline) throw new Error(`${GUARD} is held by pid ${pid} for ${Math.round(waitMs / 60_000)} minutes`);
      else {
        if (!waited) console.log(`${label}: waiting for ${GUARD} (held by pid ${pid}: another libvirt hook test)`);
        waited = true;
        await new Promise((r) => setTimeout(r, 1000));
      }
    }
  }
  writeFileSync(join(GUARD, 'pid'), String(process.pid));
  for (const p of SAVED_PATHS) if (exists(p)) copy(p, join(GUARD, 'backup', p));
  writeFileSync(join(GUARD, 'complete'), existsSync(STATE_LIB) ? 'state-lib-present' : 'state-lib-absent');
}
