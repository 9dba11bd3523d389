/**
 * The two file APIs (`Io`) and the choice between them: synchronous calls on directories proven
 * local, `fs.promises` elsewhere. Nothing here holds a mode: a caller decides once and passes the
 * value down (openArchive's `io`, the local-state functions, the safe-fs options, the lifecycle's
 * `io: IoFor`).
 *
 * libvirt waits for every hook call, and each `fs.promises` call is a round trip through libuv's
 * thread pool, of which a prepare makes about a hundred (docs/BENCH.md has the figures). A
 * synchronous call costs only its syscall, but one blocked on a hung network mount stalls the main
 * thread, so the watchdog could never fire (docs/HOOK.md §3.4). So the hook gives a directory the
 * synchronous API only after an asynchronous statfs() — which the watchdog still covers — has shown
 * that it lives on a local disk filesystem (localDirs, ioForLocalDirs); NFS, FUSE (GlusterFS),
 * CephFS, SMB, cluster filesystems and anything unknown keep `fs.promises`, and so does everything
 * the CLI and the library do (they never probe: `asyncIo`, `allAsync`). Both APIs go through the
 * same code in safe-fs.ts, archive.ts and claims.ts: same checks, same fsyncs, same order.
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

/** Which API a path gets (a caller touching several directories: the hook's lifecycle calls). */
export type IoFor = (path: string) => Io;

/** fs.promises (loaded on first use: a hook call that only touches local disks never loads it). */
export const asyncIo: Io = {
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

/** Only for directories on a local disk: a call blocked on a hung mount would stall the watchdog too. */
export const syncIo: Io = {
  open: async (f, flags, mode) => new SyncHandle(nodeFs.openSync(f, flags, mode)),
  unlink: async (f) => nodeFs.unlinkSync(f),
  rename: async (a, b) => nodeFs.renameSync(a, b),
  link: async (a, b) => nodeFs.linkSync(a, b),
  lstat: async (f) => nodeFs.lstatSync(f),
  readdir: async (d) => nodeFs.readdirSync(d),
  mkdir: async (d, o) => nodeFs.mkdirSync(d, o),
  realpath: async (f) => nodeFs.realpathSync(f),
};

/** fs.promises everywhere: what the CLI and the library use. */
export const allAsync: IoFor = () => asyncIo;

/** A directory as ioForLocalDirs compares it: absolute, normalised, no trailing slash. */
const normal = (d: string): string => path.resolve(d);

const under = (p: string, root: string): boolean => p === root || p.startsWith(root === '/' ? '/' : `${root}/`);

/**
 * The synchronous API for paths under one of `localDirs` (directories shown local, see localDirs),
 * fs.promises for every other path. Pure: the same directories always give the same answers.
 */
export function ioForLocalDirs(localDirs: readonly string[]): IoFor {
  const roots = [...new Set(localDirs.map(normal))];
  return roots.length ? (p) => (roots.some((r) => under(p, r)) ? syncIo : asyncIo) : allAsync;
}

/**
 * statfs(2) f_type of the disk filesystems that never hang on a remote peer (linux/magic.h):
 * ext2/3/4, XFS, Btrfs, tmpfs, overlayfs, ZFS, F2FS, bcachefs, ramfs, JFS, ReiserFS.
 */
const LOCAL_FS_TYPES = new Set([0xef53, 0x58465342, 0x9123683e, 0x01021994, 0x794c7630, 0x2fc12fc1, 0xf2f52010, 0xca451a4e, 0x858458f6, 0x3153464a, 0x52654973]);

/**
 * Whether `dir` is on a local disk filesystem, by an asynchronous statfs (a missing dir: false;
 * a node without fs.statfs, older than 18.15: false, so everything keeps fs.promises).
 */
export function isLocalFilesystem(dir: string): Promise<boolean> {
  if (typeof nodeFs.statfs !== 'function') return Promise.resolve(false);
  return new Promise((resolve) => nodeFs.statfs(dir, (e, s) => resolve(!e && LOCAL_FS_TYPES.has(Number(s.type)))));
}

/**
 * Those of `dirs` (absolute) that are on a local disk filesystem, probed concurrently and
 * normalised (no trailing slash, no duplicates). A probe on a hung mount never resolves: callers
 * run it under their watchdog.
 */
export async function localDirs(dirs: readonly string[]): Promise<string[]> {
  const wanted = [...new Set(dirs.map(normal))];
  return (await Promise.all(wanted.map(async (d) => ((await isLocalFilesystem(d)) ? d : null)))).filter((d): d is string => d !== null);
}
