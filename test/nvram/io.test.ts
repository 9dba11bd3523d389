import { mkdtempSync, realpathSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { allAsync, asyncIo, ioForLocalDirs, isLocalFilesystem, localDirs, syncIo } from '../../src/io/fs-api';

const tmp = realpathSync(tmpdir());

describe('ioForLocalDirs: which file API a path gets', () => {
  it('paths under a given directory (normalised) get the synchronous API, all others fs.promises', () => {
    const io = ioForLocalDirs(['/srv/./local/']);
    expect(io('/srv/local/a/b')).toBe(syncIo);
    expect(io('/srv/local')).toBe(syncIo);
    expect(io('/srv/localother/a')).toBe(asyncIo); // a name prefix is not a parent
    expect(io('/srv')).toBe(asyncIo);
    expect(io(path.join(tmp, 'a'))).toBe(asyncIo);
  });

  it('no directories, or allAsync: fs.promises everywhere', () => {
    for (const io of [ioForLocalDirs([]), allAsync]) {
      expect(io('/srv/anything')).toBe(asyncIo);
      expect(io(path.join(tmp, 'a'))).toBe(asyncIo);
    }
  });

  it.each([['fs.promises', asyncIo], ['synchronous', syncIo]])('%s: errors are rejections, never synchronous throws', async (_, io) => {
    const missing = path.join(tmp, `ovmfhook-io-missing-${process.pid}`, 'f');
    let p: Promise<unknown> | undefined;
    expect(() => (p = io.unlink(missing))).not.toThrow();
    await expect(p).rejects.toMatchObject({ code: 'ENOENT' });
    await expect(io.open(missing, 0)).rejects.toMatchObject({ code: 'ENOENT' });
    await expect(io.lstat(missing)).rejects.toMatchObject({ code: 'ENOENT' });
  });
});

describe('isLocalFilesystem / localDirs', () => {
  const made: string[] = [];
  afterEach(() => made.splice(0).forEach((d) => rmSync(d, { recursive: true, force: true })));

  it('a disk filesystem is local; procfs, sysfs and a missing directory are not', async () => {
    const d = mkdtempSync(path.join(tmp, 'ovmfhook-io-'));
    made.push(d);
    // the temp dir of this machine is on ext4 (CI: Debian on a virtual disk)
    expect(await isLocalFilesystem(d)).toBe(true);
    expect(await isLocalFilesystem('/proc')).toBe(false);
    expect(await isLocalFilesystem('/sys')).toBe(false);
    expect(await isLocalFilesystem(path.join(d, 'missing'))).toBe(false);
  });

  it('keeps only the local directories (trailing slashes ignored); their files then get the synchronous API', async () => {
    const d = mkdtempSync(path.join(tmp, 'ovmfhook-io-'));
    made.push(d);
    const local = await localDirs([`${d}/`, '/proc', path.join(d, 'missing')]);
    expect(local).toEqual([d]);
    const io = ioForLocalDirs(local);
    expect(io(path.join(d, 'f'))).toBe(syncIo);
    expect(io('/proc/self')).toBe(asyncIo);
    expect(io(path.join(d, 'missing', 'f'))).toBe(syncIo); // under a local directory
  });
});
