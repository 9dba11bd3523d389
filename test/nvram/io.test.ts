import { mkdtempSync, realpathSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ioFor, isLocalFilesystem, setSyncIoRoots, useSyncIoOnLocalDirs } from '../../src/io/fs-api';

const tmp = realpathSync(tmpdir());
const initialRoots = (): string[] => (ioFor(path.join(tmp, 'x')) === ioFor('/nonexistent-root/x') ? [] : [tmp]);
const before = initialRoots(); // the unit-sync-io project starts with the temp dir registered
afterEach(() => setSyncIoRoots(before));

describe('ioFor: which file API a path gets', () => {
  it('paths under a registered directory (normalised) get one API, all others the other', () => {
    setSyncIoRoots([]);
    const async = ioFor('/srv/anything');
    expect(ioFor(path.join(tmp, 'a'))).toBe(async);
    setSyncIoRoots(['/srv/./local/']);
    const sync = ioFor('/srv/local/a/b');
    expect(sync).not.toBe(async);
    expect(ioFor('/srv/local')).toBe(sync);
    expect(ioFor('/srv/localother/a')).toBe(async); // a name prefix is not a parent
    expect(ioFor('/srv')).toBe(async);
  });

  it.each([['fs.promises', [] as string[]], ['synchronous', [tmp]]])('%s: errors are rejections, never synchronous throws', async (_, roots) => {
    setSyncIoRoots(roots);
    const missing = path.join(tmp, `ovmfhook-io-missing-${process.pid}`, 'f');
    const io = ioFor(missing);
    let p: Promise<unknown> | undefined;
    expect(() => (p = io.unlink(missing))).not.toThrow();
    await expect(p).rejects.toMatchObject({ code: 'ENOENT' });
    await expect(io.open(missing, 0)).rejects.toMatchObject({ code: 'ENOENT' });
    await expect(io.lstat(missing)).rejects.toMatchObject({ code: 'ENOENT' });
  });
});

describe('isLocalFilesystem / useSyncIoOnLocalDirs', () => {
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

  it('registers only the local directories (trailing slashes ignored) and says which', async () => {
    setSyncIoRoots([]);
    const d = mkdtempSync(path.join(tmp, 'ovmfhook-io-'));
    made.push(d);
    const before = ioFor('/proc/self');
    expect(await useSyncIoOnLocalDirs([`${d}/`, '/proc', path.join(d, 'missing')])).toEqual([d]);
    expect(ioFor(path.join(d, 'f'))).not.toBe(before);
    expect(ioFor('/proc/self')).toBe(before);
    expect(ioFor(path.join(d, 'missing', 'f'))).not.toBe(before); // under a local directory
  });
});
