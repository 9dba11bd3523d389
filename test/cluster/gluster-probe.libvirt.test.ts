/**
 * What the NVRAM archive code relies on, probed on the real GlusterFS volume of the testbed, with
 * host A (this process, A's FUSE client) and host B (an agent in B's mount namespace, B's own
 * FUSE client) acting on the same directory:
 *   - rename over an existing file is atomic (writeFileAtomic, claim take-over);
 *   - O_EXCL create and link() are exclusive across clients, a won link() shows nlink 2
 *     (linkExclusive: claims, generation numbers);
 *   - fsync works on files and directories (fsyncDir);
 *   - mtime has sub-second granularity and follows the clock (repair's age check);
 *   - a change by one client is seen by the other at once (claims are read right after another
 *     host wrote them) — which needs three GlusterFS client caches switched off (last test).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promises as fsp, constants as C, closeSync, fsyncSync, linkSync, lstatSync, mkdirSync, mkdtempSync, openSync, readFileSync, renameSync, rmSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildSync } from 'esbuild';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { ARCHIVE_MOUNT, bAnchorPid, describeCluster, sleep } from '../support/cluster';

interface Reply {
  ok: boolean;
  value?: any;
  code?: string;
}

/** The fs agent (fs-agent.ts, bundled to `bundle`) running in host B's mount namespace. */
function startAgent(bundle: string): { send: (cmd: Record<string, unknown>) => Promise<Reply>; close: () => void; proc: ChildProcess } {
  const proc = spawn('nsenter', ['-t', String(bAnchorPid()), '-m', '--', process.execPath, bundle], { stdio: ['pipe', 'pipe', 'inherit'] });
  const waiting: Array<(r: Reply) => void> = [];
  createInterface({ input: proc.stdout! }).on('line', (l) => waiting.shift()?.(JSON.parse(l) as Reply));
  return {
    proc,
    send: (cmd) =>
      new Promise((resolve) => {
        waiting.push(resolve);
        proc.stdin!.write(`${JSON.stringify(cmd)}\n`);
      }),
    close: () => proc.stdin!.end(),
  };
}

const spinUntil = (t: number): void => {
  while (Date.now() < t);
};
const errCode = (f: () => unknown): string | undefined => {
  try {
    f();
    return undefined;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code;
  }
};

describeCluster('GlusterFS archive volume: what the archive code relies on (host A and host B clients)', () => {
  let agent: ReturnType<typeof startAgent>;
  const dir = join(ARCHIVE_MOUNT, `probe-${randomBytes(4).toString('hex')}`);
  const p = (n: string) => join(dir, n);

  let tmp: string;
  beforeAll(() => {
    tmp = mkdtempSync(join(tmpdir(), 'ovmfhook-probe-'));
    buildSync({ entryPoints: [join(__dirname, 'fs-agent.ts')], bundle: true, platform: 'node', format: 'cjs', outfile: join(tmp, 'fs-agent.cjs'), logLevel: 'error' });
    agent = startAgent(join(tmp, 'fs-agent.cjs'));
    mkdirSync(dir, { mode: 0o700 });
  });
  afterAll(() => {
    agent?.close();
    rmSync(dir, { recursive: true, force: true });
    rmSync(tmp, { recursive: true, force: true });
  });

  it('host A and host B are two GlusterFS clients of the same volume', async () => {
    const aMount = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').find((l) => l.split(' ')[4] === ARCHIVE_MOUNT);
    const bMount = readFileSync(`/proc/${bAnchorPid()}/mountinfo`, 'utf8').split('\n').find((l) => l.split(' ')[4] === ARCHIVE_MOUNT);
    expect(aMount).toMatch(/ fuse\.glusterfs /);
    expect(bMount).toMatch(/ fuse\.glusterfs /);
    // each FUSE mount has its own device number: two separate client connections
    expect(aMount!.split(' ')[2]).not.toBe(bMount!.split(' ')[2]);
    writeFileSync(p('hello'), 'from A');
    expect(await agent.send({ op: 'read', path: p('hello') })).toEqual({ ok: true, value: 'from A' });
  });

  /** A renames new versions over `f` for ~2 s while B runs `op` in a loop; what B saw. */
  async function renameStorm(f: string, op: 'readLoop' | 'readRegularLoop') {
    const version = (i: number) => `v${i}:${'x'.repeat((i % 40) * 97)}`;
    writeFileSync(f, version(0));
    const start = Date.now() + 300;
    const loop = agent.send({ op, path: f, ms: 2000, at: start });
    spinUntil(start);
    let renames = 0;
    for (; Date.now() < start + 1900; renames++) {
      const tmp = `${f}.tmp-${renames}`;
      writeFileSync(tmp, version(renames + 1));
      renameSync(tmp, f);
    }
    const seen = (await loop).value as Record<string, number>;
    const count = (keys: string[]) => keys.reduce((a, k) => a + seen[k], 0);
    const whole = Object.keys(seen).filter((k) => {
      const m = /^=v(\d+):(x*)$/.exec(k);
      return m !== null && m[2].length === (Number(m[1]) % 40) * 97;
    });
    const other = Object.keys(seen).filter((k) => !whole.includes(k));
    return { renames, reads: count(Object.keys(seen)), whole: count(whole), other, otherCount: count(other) };
  }

  it('rename over an existing file is atomic: the other host reads whole versions, never ENOENT or a partial file (at most ESTALE)', async () => {
    const r = await renameStorm(p('renamed'), 'readLoop');
    console.info(`[probe] plain open+read on B during ${r.renames} renames on A: ${r.whole} whole versions, ${r.otherCount} failed (${r.other.join(', ') || 'none'})`);
    expect(r.renames).toBeGreaterThan(50);
    expect(r.whole).toBeGreaterThan(50);
    expect(r.other.filter((k) => k !== '!Unknown system error -116' && k !== '!ESTALE')).toEqual([]);
  });

  it("the archive's reader (readRegularFile) on the other host never fails during the same rename storm", async () => {
    const r = await renameStorm(p('claim.json'), 'readRegularLoop');
    console.info(`[probe] readRegularFile on B during ${r.renames} renames on A: ${r.whole} whole versions, ${r.otherCount} failed`);
    expect(r.whole).toBeGreaterThan(50);
    expect(r.other).toEqual([]);
  });

  it('a change on one host is seen by the other at once, in both directions (rename, unlink, create, readdir)', async () => {
    const f = p('fresh');
    const stale: string[] = [];
    for (let i = 0; i < 60; i++) {
      writeFileSync(p('.fresh.tmp'), `A${i}`);
      renameSync(p('.fresh.tmp'), f);
      const r = await agent.send({ op: 'read', path: f });
      if (r.value !== `A${i}`) stale.push(`B read ${JSON.stringify(r)} after A renamed A${i}`);
      await agent.send({ op: 'createExcl', path: p('.fresh.tmpb'), data: `B${i}` });
      await agent.send({ op: 'rename', from: p('.fresh.tmpb'), to: f });
      const a = readFileSync(f, 'utf8');
      if (a !== `B${i}`) stale.push(`A read ${a} after B renamed B${i}`);
      if (i % 6 === 0) {
        unlinkSync(f);
        const u = await agent.send({ op: 'read', path: f });
        if (u.code !== 'ENOENT') stale.push(`B read ${JSON.stringify(u)} after A unlinked`);
        writeFileSync(p(`new-${i}`), 'n');
        const d = await agent.send({ op: 'readdir', path: dir });
        if (!d.value.includes(`new-${i}`)) stale.push(`B's readdir misses new-${i}`);
      }
    }
    expect(stale).toEqual([]);
  });

  it('O_EXCL create: of two hosts racing for one name, exactly one wins (20 races)', async () => {
    const results: string[] = [];
    for (let i = 0; i < 20; i++) {
      const f = p(`excl-${i}`);
      const at = Date.now() + 40;
      const b = agent.send({ op: 'createExcl', path: f, data: 'B', at });
      spinUntil(at);
      const a = errCode(() => {
        const fd = openSync(f, C.O_CREAT | C.O_EXCL | C.O_WRONLY, 0o600);
        writeSync(fd, 'A');
        fsyncSync(fd);
        closeSync(fd);
      });
      const rb = await b;
      const winners = [a === undefined ? 'A' : null, rb.ok ? 'B' : null].filter(Boolean);
      expect(winners).toHaveLength(1);
      expect(a ?? rb.code).toBe('EEXIST');
      // read through the winner's client: the loser's kernel may hold the size it saw while the
      // winner was still writing (FUSE attribute cache, ≤ 1 s) — the archive never reads a file
      // before it is complete under its final name (temp + link/rename)
      const content = winners[0] === 'A' ? readFileSync(f, 'utf8') : (await agent.send({ op: 'read', path: f })).value;
      expect(content).toBe(winners[0]);
      results.push(winners[0]!);
    }
    console.info(`[probe] O_EXCL races won: A ${results.filter((w) => w === 'A').length}, B ${results.filter((w) => w === 'B').length}`);
  });

  it('link(): exactly one of two racing hosts creates the name; the winner sees nlink 2, the loser EEXIST and nlink 1', async () => {
    for (let i = 0; i < 20; i++) {
      const name = p(`lock-${i}`);
      const ta = p(`.lock-${i}.a`);
      const tb = p(`.lock-${i}.b`);
      writeFileSync(ta, 'A');
      await agent.send({ op: 'createExcl', path: tb, data: 'B' });
      const at = Date.now() + 40;
      const b = agent.send({ op: 'link', from: tb, to: name, at });
      spinUntil(at);
      const a = errCode(() => linkSync(ta, name));
      const rb = await b;
      expect([a === undefined, rb.ok].filter(Boolean)).toHaveLength(1);
      const winner = a === undefined ? ta : tb;
      const loser = a === undefined ? tb : ta;
      expect(a ?? rb.code).toBe('EEXIST');
      expect(lstatSync(winner).nlink).toBe(2);
      expect(lstatSync(loser).nlink).toBe(1);
      expect((await agent.send({ op: 'stat', path: winner })).value.nlink).toBe(2);
      expect(readFileSync(name, 'utf8')).toBe(a === undefined ? 'A' : 'B');
    }
  });

  it('fsync works on files and on directories (sync and async, as the archive code does it)', async () => {
    const fd = openSync(p('synced'), C.O_CREAT | C.O_WRONLY, 0o600);
    writeSync(fd, 'data');
    fsyncSync(fd);
    closeSync(fd);
    const dfd = openSync(dir, C.O_RDONLY | C.O_DIRECTORY);
    fsyncSync(dfd);
    closeSync(dfd);
    const fh = await fsp.open(dir, C.O_RDONLY | C.O_DIRECTORY);
    await fh.sync();
    await fh.close();
    expect((await agent.send({ op: 'read', path: p('synced') })).value).toBe('data');
  });

  it('mtime has sub-second granularity, is the same on both hosts and follows the local clock', async () => {
    const mtimes: number[] = [];
    for (let i = 0; i < 5; i++) {
      const before = Date.now();
      writeFileSync(p(`mt-${i}`), 'x');
      const m = lstatSync(p(`mt-${i}`)).mtimeMs;
      expect(Math.abs(m - before)).toBeLessThan(2000);
      expect((await agent.send({ op: 'stat', path: p(`mt-${i}`) })).value.mtimeMs).toBe(m);
      mtimes.push(m);
      await sleep(30);
    }
    // not whole seconds, and strictly increasing 30 ms apart
    expect(mtimes.some((m) => m % 1000 !== 0)).toBe(true);
    expect(mtimes.every((m, i) => i === 0 || m > mtimes[i - 1])).toBe(true);
  });

  it('root keeps ownership and modes: fchown/fchmod on the fd stick, seen from both hosts (no root squash)', async () => {
    mkdirSync(p('private'), { mode: 0o700 });
    const h = await fsp.open(p('private/f'), C.O_CREAT | C.O_EXCL | C.O_WRONLY | C.O_NOFOLLOW, 0o600);
    await h.chown(1234, 5678);
    await h.chmod(0o640);
    await h.close();
    const st = lstatSync(p('private'));
    expect([st.uid, st.mode & 0o777]).toEqual([0, 0o700]);
    const b = (await agent.send({ op: 'stat', path: p('private/f') })).value;
    expect([b.uid, b.mode & 0o777]).toEqual([1234, 0o640]);
  });

  // Last: changes the volume's options for a moment. With GlusterFS's default client caches
  // (md-cache, quick-read, open-behind) a file another client replaced is read stale for up to a
  // second; claims and generation listings must never be. docs/CLUSTER.md says to turn them off.
  it("with GlusterFS's default client caches the other host reads replaced files stale (why they must be off)", async () => {
    const opts = ['performance.stat-prefetch', 'performance.quick-read', 'performance.open-behind'];
    const gluster = (...a: string[]) => {
      const r = spawnSync('timeout', ['60', 'gluster', '--mode=script', 'volume', ...a], { encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`gluster volume ${a.join(' ')}: ${r.stderr || r.stdout}`);
    };
    const staleReads = async (n: number): Promise<number> => {
      let stale = 0;
      for (let i = 0; i < n; i++) {
        writeFileSync(p('.cache.tmp'), `c${i}`);
        renameSync(p('.cache.tmp'), p('cache'));
        if ((await agent.send({ op: 'read', path: p('cache') })).value !== `c${i}`) stale++;
      }
      return stale;
    };
    for (const o of opts) gluster('reset', 'ovmfhook', o);
    let withDefaults: number;
    try {
      await sleep(3000); // the clients switch to the new translator graph
      withDefaults = await staleReads(50);
    } finally {
      for (const o of opts) gluster('set', 'ovmfhook', o, 'off');
      await sleep(3000);
    }
    const withOptionsOff = await staleReads(50);
    console.info(`[probe] stale reads on B right after A renamed: ${withDefaults}/50 with GlusterFS defaults, ${withOptionsOff}/50 with ${opts.join(', ')} off`);
    expect(withDefaults).toBeGreaterThan(0);
    expect(withOptionsOff).toBe(0);
  });

  it("fcntl() record locks (virtlockd's, for a lockspace on the volume) are exclusive across the two clients and dropped when the holder dies", async () => {
    // python3's fcntl.lockf is fcntl(F_SETLK) with F_WRLCK, the call virtlockd makes (virFileLock)
    const lockf = (file: string, hold: number) =>
      `import fcntl,sys,time\nf=open(${JSON.stringify(file)},'a')\ntry:\n  fcntl.lockf(f,fcntl.LOCK_EX|fcntl.LOCK_NB)\nexcept OSError as e:\n  print('refused',e.errno,flush=True); sys.exit(0)\nprint('locked',flush=True)\ntime.sleep(${hold})\n`;
    const onB = (code: string) => spawnSync('nsenter', ['-t', String(bAnchorPid()), '-m', '--', 'python3', '-c', code], { encoding: 'utf8', timeout: 30_000 }).stdout.trim();
    const file = p('lockspace-probe');
    const holder = spawn('python3', ['-c', lockf(file, 60)], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      const first = await new Promise<string>((resolve) => createInterface({ input: holder.stdout! }).once('line', resolve));
      expect(first).toBe('locked');
      expect(onB(lockf(file, 0))).toMatch(/^refused 11$/); // EAGAIN: A's client holds it
    } finally {
      holder.kill('SIGKILL');
      await new Promise((r) => holder.once('exit', r));
    }
    expect(onB(lockf(file, 0))).toBe('locked'); // the dead holder's lock is gone at once
  });
});
