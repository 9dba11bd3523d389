/** Thin I/O around ./config: read the config file, qemu.conf's user/group, the host identity. */
import { closeSync, constants as C, fstatSync, openSync, promises as fsp, readFileSync, type Stats } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { hostname } from 'node:os';
import { ConfigError, OvmfHookError } from '../core/errors';
import { CONFIG_PATH, defaultConfig, parseConfig, type Config } from '../core/config/config';

export const MAX_CONFIG_BYTES = 64 * 1024;

/** `$OVMF_HOOK_CONFIG`, else /etc/ovmf-hook/config.json. */
export const configPath = (): string => process.env.OVMF_HOOK_CONFIG || CONFIG_PATH;

/** What the config file is when it is not a regular file (a FIFO would block a read, a device never ends). */
function notRegular(st: Stats): string | null {
  if (st.isFile()) return null;
  if (st.isDirectory()) return 'a directory';
  if (st.isFIFO()) return 'a FIFO';
  if (st.isCharacterDevice() || st.isBlockDevice()) return 'a device';
  if (st.isSocket()) return 'a socket';
  return 'not a regular file';
}

const bad = (path: string, what: string): ConfigError =>
  new ConfigError(path, `${path} is ${what}; make it a regular JSON file (check it with: ovmf-hook config check), or remove it to use the defaults`);

/** Config text after the checks both readers share: regular file, bounded size, UTF-8 BOM dropped. */
function configText(path: string, st: Stats, read: () => Buffer): string {
  const what = notRegular(st);
  if (what) throw bad(path, what);
  if (st.size > MAX_CONFIG_BYTES) throw bad(path, `larger than ${MAX_CONFIG_BYTES / 1024} KiB`);
  const data = read();
  if (data.length > MAX_CONFIG_BYTES) throw bad(path, `larger than ${MAX_CONFIG_BYTES / 1024} KiB`);
  const text = data.toString('utf8').replace(/^\uFEFF/, '');
  if (!text.trim()) throw bad(path, 'empty');
  return text;
}

/** Open flags: never block on a FIFO's open; a symlinked config (config management) is followed. */
const OPEN_FLAGS = C.O_RDONLY | C.O_NONBLOCK;

function configFailure(path: string, e: unknown): Config {
  if ((e as NodeJS.ErrnoException).code === 'ENOENT') return defaultConfig();
  if (e instanceof OvmfHookError) throw e instanceof ConfigError ? e : new ConfigError(path, e.message);
  throw new ConfigError(path, `${path} cannot be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}); fix its permissions, or remove it to use the defaults`);
}

/**
 * Read and validate the config file (or `path`); a missing file means the defaults. Regular files
 * only (a FIFO, a device or a directory is a ConfigError and is never read), at most 64 KiB, a
 * UTF-8 BOM is accepted. Synchronous, for the CLI; the hook uses loadConfigAsync under its watchdog.
 */
export function loadConfig(path = configPath()): Config {
  let fd: number | undefined;
  try {
    fd = openSync(path, OPEN_FLAGS);
    const file = fd;
    return parseConfig(configText(path, fstatSync(file), () => readFileSync(file)), path);
  } catch (e) {
    return configFailure(path, e);
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** loadConfig through the thread pool: a config on a hung mount leaves the hook's watchdog free to fire. */
export async function loadConfigAsync(path = configPath()): Promise<Config> {
  let fh: FileHandle | undefined;
  try {
    fh = await fsp.open(path, OPEN_FLAGS);
    const st = await fh.stat();
    const data = notRegular(st) || st.size > MAX_CONFIG_BYTES ? Buffer.alloc(0) : await fh.readFile();
    return parseConfig(configText(path, st, () => data), path);
  } catch (e) {
    return configFailure(path, e);
  } finally {
    await fh?.close();
  }
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

/**
 * Numeric id of a user or group `name` in a passwd/group file (`name:x:id:…`); "+N" and plain
 * numbers are ids already. Undefined when the name is not there or the file is unreadable.
 */
export function lookupId(file: string, name: string): number | undefined {
  if (/^\+?\d+$/.test(name)) return Number(name.replace('+', ''));
  try {
    const line = readFileSync(file, 'utf8').split('\n').find((l) => l.split(':')[0] === name);
    return line === undefined ? undefined : Number(line.split(':')[2]);
  } catch {
    return undefined;
  }
}

/**
 * Resolve a user/group name (or "+uid") to numeric ids via /etc/passwd and /etc/group. A name that
 * is not there resolves to 0 (root) and is listed in `unresolved` (e.g. 'user "qemu"'), for the
 * caller to report.
 */
export function resolveIds(names: { user: string; group: string }): { uid: number; gid: number; unresolved: string[] } {
  const unresolved: string[] = [];
  const lookup = (file: string, kind: string, name: string): number => {
    const id = lookupId(file, name);
    if (id === undefined) unresolved.push(`${kind} "${name}"`);
    return id ?? 0;
  };
  return { uid: lookup('/etc/passwd', 'user', names.user), gid: lookup('/etc/group', 'group', names.group), unresolved };
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
