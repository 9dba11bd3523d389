/**
 * The file API a path gets: synchronous calls on directories proven local, `fs.promises` elsewhere.
 *
 * libvirt waits for every hook call, and each `fs.promises` call is a round trip through libuv's
 * thread pool: ~70–90 µs in a fresh process (measured: 50 calls cost 4.2 ms more than the same
 * calls made synchronously), and a prepare makes about a hundred. A synchronous call costs only its
 * syscall, but one blocked on a hung network mount stalls the main thread, so the watchdog could
 * never fire (hook-engineering.md §3.4: "async I/O only on network filesystems"). So a directory
 * gets the synchronous API only after an asynchronous statfs() — which the watchdog still covers —
 * has shown that it lives on a local disk filesystem; NFS, FUSE (GlusterFS), CephFS, SMB, cluster
 * filesystems and anything unknown keep `fs.promises`, and so does every path under no probed
 * directory (the CLI and the library never probe). Both APIs go through the same code in
 * safe-fs.ts, archive.ts and claims.ts: same checks, same fsyncs, same order.
 */
import * as nodeFs from 'node:fs';
import type { MakeDirectoryOptions, Stats } from 'node:fs';
import path from 'node:path';

/** What safe-fs needs of an open file. */
export interface IoHandle {
  stat(): Promise<Stats>;
  read(buf: Uint8Array, offset: number, length: number, position: number): Promise<{ bytesRead: number }>;
  writeFile(data: Uint8Array): Promise<void>;
  sync(): Promise<void>;
  chown(uid: number, gid: number): Promise<void>;
  chmod(mode: number): Promise<void>;
  close(): Promise<void>;
}

/** What safe-fs, archive.ts and claims.ts need of the file system. */
export interface Io {
  open(file: string, flags: number, mode?: number): Promise<IoHandle>;
  unlink(file: string): Promise<void>;
  rename(from: string, to: string): Promise<void>;
  link(existing: string, created: string): Promise<void>;
  lstat(file: string): Promise<Stats>;
  readdir(dir: string): Promise<string[]>;
  mkdir(dir: string, opts: MakeDirectoryOptions): Promise<unknown>;
  realpath(file: string): Promise<string>;
}

/** fs.promises (loaded on first use: a hook call that only touches local disks never loads it). */
const asyncIo: Io = {
  open: (f, flags, mode) => nodeFs.promises.open(f, flags, mode),
  unlink: (f) => nodeFs.promises.unlink(f),
  rename: (a, b) => nodeFs.promises.rename(a, b),
  link: (a, b) => nodeFs.promises.link(a, b),
  lstat: (f) => nodeFs.promises.lstat(f),
  readdir: (d) => nodeFs.promises.readdir(d),
  mkdir: (d, o) => nodeFs.promises.mkdir(d, o),
  realpath: (f) => nodeFs.promises.realpath(f),
};

/** The same calls made synchronously; `async` turns their exceptions into rejections, as above. */
class SyncHandle implements IoHandle {
  constructor(private readonly fd: number) {}
  async stat() {
    return nodeFs.fstatSync(this.fd);
  }
  async read(buf: Uint8Array, offset: number, length: number, position: number) {
    return { bytesRead: nodeFs.readSync(this.fd, buf, offset, length, position) };
  }
  async writeFile(data: Uint8Array) {
    for (let off = 0; off < data.length; ) off += nodeFs.writeSync(this.fd, data, off, data.length - off);
  }
  async sync() {
    nodeFs.fsyncSync(this.fd);
  }
  async chown(uid: number, gid: number) {
    nodeFs.fchownSync(this.fd, uid, gid);
  }
  async chmod(mode: number) {
    nodeFs.fchmodSync(this.fd, mode);
  }
  async close() {
    nodeFs.closeSync(this.fd);
  }
}

const syncIo: Io = {
  open: async (f, flags, mode) => new SyncHandle(nodeFs.openSync(f, flags, mode)),
  unlink: async (f) => nodeFs.unlinkSync(f),
  rename: async (a, b) => nodeFs.renameSync(a, b),
  link: async (a, b) => nodeFs.linkSync(a, b),
  lstat: async (f) => nodeFs.lstatSync(f),
  readdir: async (d) => nodeFs.readdirSync(d),
  mkdir: async (d, o) => nodeFs.mkdirSync(d, o),
  realpath: async (f) => nodeFs.realpathSync(f),
};

/** Directories (absolute, no trailing slash) whose files get the synchronous API. */
let syncRoots: string[] = [];

const under = (p: string, root: string): boolean => p === root || p.startsWith(root === '/' ? '/' : `${root}/`);

/** The API for `p`: synchronous under a directory proven local, else fs.promises. */
export const ioFor = (p: string): Io => (syncRoots.length && syncRoots.some((r) => under(p, r)) ? syncIo : asyncIo);

/**
 * statfs(2) f_type of the disk filesystems that never hang on a remote peer (linux/magic.h):
 * ext2/3/4, XFS, Btrfs, tmpfs, overlayfs, ZFS, F2FS, bcachefs, ramfs, JFS, ReiserFS.
 */
const LOCAL_FS_TYPES = new Set([0xef53, 0x58465342, 0x9123683e, 0x01021994, 0x794c7630, 0x2fc12fc1, 0xf2f52010, 0xca451a4e, 0x858458f6, 0x3153464a, 0x52654973]);

/** A directory as ioFor compares it: absolute, normalised, no trailing slash. */
const normal = (d: string): string => path.resolve(d);

/** Whether `dir` is on a local disk filesystem, by an asynchronous statfs (a missing dir: false). */
export function isLocalFilesystem(dir: string): Promise<boolean> {
  return new Promise((resolve) => nodeFs.statfs(dir, (e, s) => resolve(!e && LOCAL_FS_TYPES.has(Number(s.type)))));
}

/**
 * Probe `dirs` (absolute) concurrently and give the local ones the synchronous API; resolves to
 * those. A probe on a hung mount never resolves: callers run it under their watchdog.
 */
export async function useSyncIoOnLocalDirs(dirs: readonly string[]): Promise<string[]> {
  const wanted = [...new Set(dirs.map(normal))];
  const local = (await Promise.all(wanted.map(async (d) => ((await isLocalFilesystem(d)) ? d : null)))).filter((d): d is string => d !== null);
  syncRoots = [...new Set([...syncRoots, ...local])];
  return local;
}

/** Tests: set (or with no argument, clear) the directories that get the synchronous API, unprobed. */
export function setSyncIoRoots(dirs: readonly string[] = []): void {
  syncRoots = dirs.map(normal);
}
