/**
 * Host-local mutual exclusion per VM between everything that replaces a VM's NVRAM file: the
 * hook's `prepare` and the CLI's `nvram restore` / `nvram reset`. Without it, a restore that
 * checked "shut off" and then renamed its file while `virsh start` ran left QEMU on the old,
 * unlinked inode: the boot's variable writes went nowhere.
 *
 * The lock is a listening Unix socket in the abstract namespace (`\0ovmf-hook:<state dir>:<uuid>`):
 * bind() is exclusive, and the kernel frees the name when the holder exits — a crash, `kill -9`
 * or a killed hook leaves no stale lock to break (Node has no flock(); a lock file would need
 * stale-lock breaking, which races). Whoever finds it taken connects and reads one line naming the
 * holder (what it does, its pid) for the refusal message. Abstract names are per network
 * namespace: libvirtd, its hooks and an admin's shell share the host's.
 *
 * Node < 20 cannot bind an abstract name: its `net` cuts a socket path at the first NUL, so every
 * `\0…` name would be one and the same host-wide lock. There the lock is a socket file in the state
 * directory (`.vm-lock-<uuid>`), bound exclusively the same way. A holder that dies leaves its file
 * behind; the next taker finds nobody listening on it and removes it, under a short host-wide guard
 * (the one abstract name such a node has) so that two takers never both remove it — the second would
 * remove the first one's new lock.
 */
import type * as Net from 'node:net';
import type { Server } from 'node:net';
import { realpathSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { OvmfHookError, RefusedError } from '../core/errors';
import { fnv1a64 } from '../core/text';
import { normalizeUuid } from './archive';

// loaded on first use: only prepare and nvram restore/reset lock, and `net` is a noticeable part
// of a hook call's start-up (the filters and release never need it)
// eslint-disable-next-line @typescript-eslint/no-require-imports
const net = (): typeof Net => require('node:net') as typeof Net;
import { ensurePrivateDir } from './safe-fs';

export interface VmLock {
  release(): Promise<void>;
}

/** The state directory's digest keeps hosts simulated in one namespace (tests) apart. */
const digest = fnv1a64;

const lockName = (stateDir: string, uuid: string): string => {
  let dir = stateDir;
  try {
    dir = realpathSync(stateDir);
  } catch {
    /* not created yet: the configured path names it */
  }
  return `\0ovmf-hook:${digest(dir)}:${normalizeUuid(uuid)}`;
};

/** The holder's own line, or a generic one when it does not answer within 500 ms. */
function askHolder(name: string): Promise<string> {
  return new Promise((resolve) => {
    let text = '';
    const sock = net().createConnection({ path: name });
    const done = () => {
      clearTimeout(timer);
      sock.destroy();
      resolve(text.trim().slice(0, 200) || 'another ovmf-hook process (a VM start or an nvram restore/reset)');
    };
    const timer = setTimeout(done, 500);
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => (text += d));
    sock.on('end', done);
    sock.on('error', done);
  });
}

/**
 * How locks are named: abstract sockets where node can bind them (node >= 20), else socket files.
 * A setting only for tests, which run the file kind on a newer node too.
 */
export const lockKind = { abstract: Number(process.versions.node.split('.')[0]) >= 20 };

/** Longest socket path (sun_path); an older node would silently cut a longer one. */
const MAX_SOCKET_PATH = 107;

/** The socket file of the VM's lock (node < 20), in the state directory (created if missing). */
async function lockFile(stateDir: string, uuid: string): Promise<string> {
  await ensurePrivateDir(stateDir, { create: true });
  const file = join(stateDir, `.vm-lock-${normalizeUuid(uuid)}`);
  if (Buffer.byteLength(file) > MAX_SOCKET_PATH)
    throw new OvmfHookError(`${file}: the lock's socket path is longer than ${MAX_SOCKET_PATH} bytes; on Node.js < 20, set a shorter "stateDir" or use Node.js 20 or newer`, 1);
  return file;
}

/** Bind `server` to `name`: true, or false when the name is taken. */
function listen(server: Server, name: string): Promise<boolean> {
  return new Promise<boolean>((resolve, reject) => {
    const onError = (e: NodeJS.ErrnoException) => (e.code === 'EADDRINUSE' ? resolve(false) : reject(e));
    server.once('error', onError);
    server.listen({ path: name }, () => {
      server.off('error', onError);
      resolve(true);
    });
  });
}

/** Whether a process listens on the socket file (connection refused or no file: nobody does). */
function hasListener(file: string): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = net().createConnection({ path: file });
    const done = (live: boolean) => {
      clearTimeout(timer);
      sock.destroy();
      resolve(live);
    };
    const timer = setTimeout(() => done(true), 500);
    sock.on('connect', () => done(true));
    sock.on('error', (e: NodeJS.ErrnoException) => done(e.code !== 'ECONNREFUSED' && e.code !== 'ENOENT'));
  });
}

/**
 * The host-wide guard around removing a dead holder's socket file (node < 20 binds every abstract
 * name as the same one, which is what it is here): held for a few system calls, so it is waited for.
 */
async function takeGuard(): Promise<Server | undefined> {
  const guard = net().createServer();
  for (let waited = 0; waited < 2000; waited += 10) {
    if (await listen(guard, '\0ovmf-hook:lock-guard')) return guard.unref();
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  return undefined;
}

/** Take a socket file that nobody listens on (its holder died): true, or false when it has a live holder. */
async function takeDeadHoldersFile(server: Server, file: string): Promise<boolean> {
  if (await hasListener(file)) return false;
  const guard = await takeGuard();
  if (!guard) return false;
  try {
    if (await listen(server, file)) return true; // removed meanwhile
    if (await hasListener(file)) return false; // taken meanwhile
    try {
      unlinkSync(file);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
    return await listen(server, file);
  } finally {
    guard.close();
  }
}

/**
 * Take the VM's lock for `holder` (e.g. "nvram restore (pid 123)"), or throw RefusedError via
 * `busy(holderOfLock)` when another process has it.
 */
export async function lockVm(stateDir: string, uuid: string, holder: string, busy: (other: string) => string): Promise<VmLock> {
  const name = lockKind.abstract ? lockName(stateDir, uuid) : await lockFile(stateDir, uuid);
  // a peer that hangs up at once (hasListener, any local process) must not crash the holder: EPIPE ignored
  const server: Server = net().createServer((conn) => conn.on('error', () => {}).end(`${holder}\n`));
  const bound = (await listen(server, name)) || (!lockKind.abstract && (await takeDeadHoldersFile(server, name)));
  if (!bound) throw new RefusedError(busy(await askHolder(name)));
  server.unref(); // never keeps a process alive by itself
  held.add(server);
  return {
    release: () =>
      new Promise<void>((resolve) => {
        held.delete(server);
        server.close(() => resolve());
      }),
  };
}

const held = new Set<Server>();

/** What the exit of this process does to its locks: for tests that simulate a crash in-process. */
export async function dropLocksOfThisProcess(): Promise<void> {
  const all = [...held];
  held.clear();
  await Promise.all(all.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
}
