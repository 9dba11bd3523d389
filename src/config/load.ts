/** Thin I/O around ./config: read the config file, qemu.conf's user/group, the host identity. */
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { CONFIG_PATH, DEFAULT_CONFIG, parseConfig, type Config } from './config';

/** Read `/etc/ovmf-hook/config.json` (or `path`); a missing file means the defaults. */
export function loadConfig(path = process.env.OVMF_HOOK_CONFIG || CONFIG_PATH): Config {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { ...DEFAULT_CONFIG, policy: { ...DEFAULT_CONFIG.policy } };
    throw e;
  }
  return parseConfig(text, path);
}

/** `user = "…"` / `group = "…"` from qemu.conf text (pure). */
export function parseQemuConfOwner(text: string): { user?: string; group?: string } {
  const get = (k: string) => new RegExp(`^\\s*${k}\\s*=\\s*"([^"]+)"`, 'm').exec(text)?.[1];
  return { user: get('user'), group: get('group') };
}

/** Which account owns NVRAM files: config, then qemu.conf, then the Debian/Ubuntu default. */
export function qemuOwnerNames(config: Config, qemuConf = '/etc/libvirt/qemu.conf'): { user: string; group: string } {
  let fromConf: { user?: string; group?: string } = {};
  try {
    fromConf = parseQemuConfOwner(readFileSync(qemuConf, 'utf8'));
  } catch {
    /* no qemu.conf: distro default */
  }
  return {
    user: config.qemuUser ?? fromConf.user ?? 'libvirt-qemu',
    group: config.qemuGroup ?? fromConf.group ?? 'libvirt-qemu',
  };
}

/** Resolve a user/group name (or "+uid") to numeric ids via /etc/passwd and /etc/group. */
export function resolveIds(names: { user: string; group: string }): { uid: number; gid: number } {
  const lookup = (file: string, name: string, fallback: number): number => {
    if (/^\+?\d+$/.test(name)) return Number(name.replace('+', ''));
    try {
      for (const line of readFileSync(file, 'utf8').split('\n')) {
        const f = line.split(':');
        if (f[0] === name) return Number(f[2]);
      }
    } catch {
      /* unreadable: fall back */
    }
    return fallback;
  };
  return { uid: lookup('/etc/passwd', names.user, 0), gid: lookup('/etc/group', names.group, 0) };
}

/** A stable host identity for archive claims: config, /etc/machine-id, else the hostname. */
export function hostIdentity(config: Config): { host: string; hostId: string } {
  const host = hostname();
  if (config.hostId) return { host, hostId: config.hostId };
  if (process.env.OVMF_HOOK_HOST_ID && /^[A-Za-z0-9._-]{1,128}$/.test(process.env.OVMF_HOOK_HOST_ID)) return { host, hostId: process.env.OVMF_HOOK_HOST_ID };
  try {
    const id = readFileSync('/etc/machine-id', 'utf8').trim();
    if (/^[0-9a-f]{32}$/.test(id)) return { host, hostId: id };
  } catch {
    /* none */
  }
  return { host, hostId: host.replace(/[^A-Za-z0-9._-]/g, '_') };
}
