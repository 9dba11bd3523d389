import { execFileSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { UnsafePathError } from '../../src/core/errors';
import { ATOMIC_WRITE_STEPS, cleanupTemps, readNvramSafely, readRegularFile, sha256, writeFileAtomic } from '../../src/io/safe-fs';
import { bytes, io, killAt, recorder, tempDir, throwAt } from './helpers';

const isRoot = process.geteuid?.() === 0;

describe('readNvramSafely', () => {
  it('returns null for a missing file and the data + stat for a regular one', async () => {
    const d = await tempDir();
    expect(await readNvramSafely(path.join(d, 'nope.fd'), { io })).toBeNull();
    await fs.writeFile(path.join(d, 'vm_VARS.fd'), bytes(7));
    const r = await readNvramSafely(path.join(d, 'vm_VARS.fd'), { io });
    expect(r?.data.equals(bytes(7))).toBe(true);
    expect(r?.stat.size).toBe(4096);
  });

  const unsafe: Array<[string, (d: string, target: string, p: string) => Promise<void>]> = [
    ['a symlink to a file outside', (_d, target, p) => fs.symlink(target, p)],
    ['a hard link to a file outside', (_d, target, p) => fs.link(target, p)],
    ['a directory', async (_d, _t, p) => fs.mkdir(p)],
    ['a FIFO (must not block)', async (_d, _t, p) => void execFileSync('mkfifo', [p])],
  ];
  it.each(unsafe)('refuses %s with UnsafePathError and leaves the target untouched', async (_n, plant) => {
    const d = await tempDir();
    const shadow = path.join(d, 'shadow');
    await fs.writeFile(shadow, 'root:secret:19000::::::\n', { mode: 0o640 });
    const p = path.join(d, 'vm_VARS.fd');
    await plant(d, shadow, p);
    await expect(readNvramSafely(p, { io })).rejects.toBeInstanceOf(UnsafePathError);
    expect(await fs.readFile(shadow, 'utf8')).toBe('root:secret:19000::::::\n');
  });

  it('reads a file renamed over by a writer after the open (link count 0) as the complete old version', async () => {
    const d = await tempDir();
    const p = path.join(d, 'state.json');
    await fs.writeFile(p, bytes(1));
    const fh = await fs.open(p, 'r');
    try {
      await writeFileAtomic(p, bytes(2), { io }); // the name now points to the new file; ours has no name left
      // /proc/self/fd/N reaches the replaced inode exactly as an fd opened just before the rename
      const r = await readRegularFile(`/proc/self/fd/${fh.fd}`, { noFollow: false, singleLink: true, io });
      expect(r?.stat.nlink).toBe(0);
      expect(r?.data.equals(bytes(1))).toBe(true);
    } finally {
      await fh.close();
    }
  });

  it('refuses a file larger than maxBytes and a foreign owner', async () => {
    const d = await tempDir();
    const p = path.join(d, 'vm_VARS.fd');
    await fs.writeFile(p, bytes(1, 2048));
    await expect(readNvramSafely(p, { maxBytes: 1024, io })).rejects.toThrow(/more than the 1024/);
    await expect(readNvramSafely(p, { uids: [4242], io })).rejects.toThrow(/owned by uid/);
  });
});

describe('writeFileAtomic', () => {
  it('writes the content, mode and (as root) owner, and leaves no temp', async () => {
    const d = await tempDir();
    const p = path.join(d, 'vm_VARS.fd');
    const rec = recorder();
    await writeFileAtomic(p, bytes(3), { mode: 0o600, ...(isRoot ? { uid: 1234, gid: 5678 } : {}), faults: rec, io });
    const st = await fs.stat(p);
    expect(st.mode & 0o777).toBe(0o600);
    if (isRoot) expect([st.uid, st.gid]).toEqual([1234, 5678]);
    expect((await fs.readFile(p)).equals(bytes(3))).toBe(true);
    expect(await fs.readdir(d)).toEqual(['vm_VARS.fd']);
    expect(rec.steps).toEqual([...ATOMIC_WRITE_STEPS]);
  });

  it('replaces a planted symlink instead of writing through it', async () => {
    const d = await tempDir();
    const shadow = path.join(d, 'shadow');
    await fs.writeFile(shadow, 'root:secret\n');
    const p = path.join(d, 'vm_VARS.fd');
    await fs.symlink(shadow, p);
    await writeFileAtomic(p, bytes(9), { io });
    expect(await fs.readFile(shadow, 'utf8')).toBe('root:secret\n');
    expect((await fs.lstat(p)).isFile()).toBe(true);
  });

  it('detects the final name being swapped after the rename, removes it and fails', async () => {
    const d = await tempDir();
    const shadow = path.join(d, 'shadow');
    await fs.writeFile(shadow, 'root:secret\n');
    const p = path.join(d, 'vm_VARS.fd');
    const swap = {
      at: async (s: string) => {
        if (s !== 'verify') return;
        await fs.unlink(p);
        await fs.symlink(shadow, p);
      },
    };
    await expect(writeFileAtomic(p, bytes(9), { faults: swap, io })).rejects.toBeInstanceOf(UnsafePathError);
    expect(await fs.readdir(d)).toEqual(['shadow']);
    expect(await fs.readFile(shadow, 'utf8')).toBe('root:secret\n');
  });

  it("a concurrent writer's complete file at the final name is left in place (the loser fails, nothing is deleted)", async () => {
    const d = await tempDir();
    const p = path.join(d, 'state.json');
    const other = {
      at: async (s: string) => {
        if (s === 'verify') await writeFileAtomic(p, bytes(7), { io }); // another writer renames its file in
      },
    };
    await expect(writeFileAtomic(p, bytes(6), { faults: other, io })).rejects.toThrow(/replaced by someone else.*; try again/);
    expect((await fs.readFile(p)).equals(bytes(7))).toBe(true);
    expect(await fs.readdir(d)).toEqual(['state.json']);
  });

  it('a hard link planted at the final name after the rename is unlinked (its target untouched)', async () => {
    const d = await tempDir();
    const shadow = path.join(d, 'shadow');
    await fs.writeFile(shadow, 'root:secret\n');
    const p = path.join(d, 'vm_VARS.fd');
    const plant = {
      at: async (s: string) => {
        if (s !== 'verify') return;
        await fs.unlink(p);
        await fs.link(shadow, p);
      },
    };
    await expect(writeFileAtomic(p, bytes(9), { faults: plant, io })).rejects.toThrow(/removed it/);
    expect(await fs.readdir(d)).toEqual(['shadow']);
    expect(await fs.readFile(shadow, 'utf8')).toBe('root:secret\n');
  });

  const old = bytes(1, 8192);
  const neu = bytes(2, 8192);
  const afterRename = (s: string) => ATOMIC_WRITE_STEPS.indexOf(s as never) > ATOMIC_WRITE_STEPS.indexOf('rename');

  describe(`an error at each of the ${ATOMIC_WRITE_STEPS.length} steps leaves old or new content and no temp`, () => {
    it.each([...ATOMIC_WRITE_STEPS])('error at %s', async (s) => {
      const d = await tempDir();
      const p = path.join(d, 'vm_VARS.fd');
      await fs.writeFile(p, old);
      await expect(writeFileAtomic(p, neu, { faults: throwAt(s), io })).rejects.toThrow(/injected/);
      const now = await fs.readFile(p);
      expect(sha256(now)).toBe(sha256(afterRename(s) ? neu : old));
      expect(await fs.readdir(d)).toEqual(['vm_VARS.fd']);
    });
  });

  describe(`a kill at each of the ${ATOMIC_WRITE_STEPS.length} steps leaves old or new content; cleanupTemps removes the rest`, () => {
    it.each([...ATOMIC_WRITE_STEPS])('kill at %s', async (s) => {
      const d = await tempDir();
      const p = path.join(d, 'vm_VARS.fd');
      await fs.writeFile(p, old);
      const k = killAt(s);
      await k.start(writeFileAtomic(p, neu, { faults: k.faults, io }));
      expect([sha256(old), sha256(neu)]).toContain(sha256(await fs.readFile(p)));
      await cleanupTemps(d, 'vm_VARS.fd', { io });
      expect(await fs.readdir(d)).toEqual(['vm_VARS.fd']);
    });
  });
});

describe('cleanupTemps', () => {
  it('removes only our temps, optionally per basename and by age', async () => {
    const d = await tempDir();
    const names = ['a.fd', '.a.fd.ovmf-hook-tmp-1', '.b.fd.ovmf-hook-tmp-2', '.a.fd.other'];
    for (const n of names) await fs.writeFile(path.join(d, n), 'x');
    expect(await cleanupTemps(d, 'a.fd', { olderThanMs: 60_000, io })).toEqual([]);
    expect(await cleanupTemps(d, 'a.fd', { io })).toEqual([path.join(d, '.a.fd.ovmf-hook-tmp-1')]);
    await cleanupTemps(d, undefined, { io });
    expect((await fs.readdir(d)).sort()).toEqual(['.a.fd.other', 'a.fd']);
  });
});
