/**
 * libvirt's nvram directory, opened once and then reached only through that open directory.
 *
 * `/var/lib/libvirt/qemu` belongs to the QEMU user (libvirt-qemu), who can therefore swap its
 * `nvram/` entry for a symlink to any directory; a root process that keeps using the path would
 * then create and replace files wherever the link points. So the directory is opened once with
 * O_NOFOLLOW (a symlink is refused), checked on that descriptor (a directory, owned by root or the
 * QEMU user, not writable by others), and every later call goes through `/proc/self/fd/<fd>/…`,
 * which names the very directory that was checked — openat() semantics for Node, which has no
 * *at() calls. Swapping the entry afterwards changes nothing for this process.
 */
import { constants as C, existsSync, promises as fsp } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { UnsafePathError, UsageError } from '../core/errors';
import { octalMode } from '../core/text';

export interface NvramDir {
  /** the directory as configured (for messages and records) */
  readonly dir: string;
  /** the same directory through the held descriptor: `/proc/self/fd/<fd>` */
  readonly handle: string;
  /** The held directory's path to `file`, a file directly in the configured directory (else UsageError). */
  file(file: string): string;
  /** `text` with the handle written back as the configured directory (for messages) */
  shown(text: string): string;
  close(): Promise<void>;
}

/** Directories opened by this process: a FileHandle must stay referenced while its fd is in use. */
const open = new Set<FileHandle>();

/**
 * Open and check `dir`; `owners` are the uids allowed to own it (root and the QEMU user). Without
 * /proc (not Linux) the configured path is used as it is.
 */
export async function openNvramDir(dir: string, owners: readonly number[]): Promise<NvramDir> {
  const plain = dir.replace(/\/+$/, '');
  let fh: FileHandle;
  try {
    fh = await fsp.open(plain, C.O_RDONLY | C.O_DIRECTORY | C.O_NOFOLLOW);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const link = code === 'ELOOP' || (code === 'ENOTDIR' && (await fsp.lstat(plain).then((s) => s.isSymbolicLink(), () => false)));
    if (link) throw new UnsafePathError(plain, `libvirt's nvram directory ${plain} is a symlink; refusing to write NVRAM files through it (make it a real directory owned by root or the QEMU user, or point "nvramDir" and libvirt's nvram_dir at the real one)`);
    if (code === 'ENOENT') throw new UsageError(`libvirt's nvram directory ${plain} does not exist; create it (install -d -o libvirt-qemu -g libvirt-qemu ${plain}) or fix "nvramDir" in the config`);
    throw e;
  }
  try {
    const st = await fh.stat();
    if (!owners.includes(st.uid))
      throw new UnsafePathError(plain, `libvirt's nvram directory ${plain} is owned by uid ${st.uid}, not by root or the QEMU user (uids ${owners.join(', ')}); refusing to write NVRAM files there (chown it back)`);
    if (st.mode & 0o002 && !(st.mode & 0o1000))
      throw new UnsafePathError(plain, `libvirt's nvram directory ${plain} is writable by everyone (mode ${octalMode(st.mode)}); run: chmod o-w ${plain}`);
  } catch (e) {
    await fh.close();
    throw e;
  }
  const viaProc = existsSync(`/proc/self/fd/${fh.fd}`);
  const handle = viaProc ? `/proc/self/fd/${fh.fd}` : plain;
  open.add(fh);
  return {
    dir: plain,
    handle,
    file: (file) => {
      const name = file.slice(file.lastIndexOf('/') + 1);
      if (file.slice(0, file.lastIndexOf('/')) !== plain || !name || name === '.' || name === '..')
        throw new UsageError(`NVRAM path ${JSON.stringify(file)} does not name a file in ${plain}`);
      return `${handle}/${name}`;
    },
    shown: (text) => (viaProc ? text.split(handle).join(plain) : text),
    close: async () => {
      open.delete(fh);
      await fh.close();
    },
  };
}

/** Run `fn` with the nvram directory held; errors show the configured path; the handle is closed afterwards. */
export async function withNvramDir<T>(dir: string, owners: readonly number[], fn: (d: NvramDir) => Promise<T>): Promise<T> {
  const d = await openNvramDir(dir, owners);
  try {
    return await fn(d);
  } catch (e) {
    if (e instanceof Error) e.message = d.shown(e.message);
    throw e;
  } finally {
    await d.close();
  }
}
