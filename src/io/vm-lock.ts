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
 */
import { createConnection, createServer, type Server } from 'node:net';
import { realpathSync } from 'node:fs';
import { RefusedError } from '../core/errors';
import { normalizeUuid } from './archive';

export interface VmLock {
  release(): Promise<void>;
}

/** FNV-1a (64 bit) of the state directory: hosts simulated in one namespace (tests) keep apart. */
function digest(s: string): string {
  let h = 0xcbf29ce484222325n;
  for (const b of Buffer.from(s)) h = BigInt.asUintN(64, (h ^ BigInt(b)) * 0x100000001b3n);
  return h.toString(16).padStart(16, '0');
}

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
    const sock = createConnection({ path: name });
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
 * Take the VM's lock for `holder` (e.g. "nvram restore (pid 123)"), or throw RefusedError via
 * `busy(holderOfLock)` when another process has it.
 */
export async function lockVm(stateDir: string, uuid: string, holder: string, busy: (other: string) => string): Promise<VmLock> {
  const name = lockName(stateDir, uuid);
  const server: Server = createServer((conn) => conn.end(`${holder}\n`));
  const bound = await new Promise<boolean>((resolve, reject) => {
    server.once('error', (e: NodeJS.ErrnoException) => (e.code === 'EADDRINUSE' ? resolve(false) : reject(e)));
    server.listen({ path: name }, () => resolve(true));
  });
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
