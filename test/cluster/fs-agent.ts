/**
 * File-system agent for the GlusterFS probe: reads one JSON command per line on stdin, runs it and
 * answers one JSON line ({ok, value} or {ok:false, code}) on stdout, one command at a time. The
 * probe bundles it with esbuild and starts it inside host B's mount namespace (nsenter), so its
 * paths go through B's own GlusterFS client while the test process uses host A's. `at` (epoch ms)
 * delays a command until then, to race the two hosts. `readRegular*` use the archive's own reader.
 */
import * as fs from 'node:fs';
import { createInterface } from 'node:readline';
import { readRegularFile } from '../../src/io/safe-fs';

const code = (e: unknown): string => String((e as NodeJS.ErrnoException)?.code ?? e);

/** open/read/close by hand: readFileSync aborts the process when close() fails (ESTALE on FUSE). */
function rawRead(path: string): string {
  const fd = fs.openSync(path, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK);
  try {
    const buf = Buffer.alloc(fs.fstatSync(fd).size + 1);
    return buf.subarray(0, fs.readSync(fd, buf, 0, buf.length, 0)).toString('utf8');
  } finally {
    try {
      fs.closeSync(fd);
    } catch {
      /* the read result stands */
    }
  }
}

/** Run `read` over and over for `ms`: how often each result ("=content" or "!error code") was seen. */
async function loop(ms: number, read: () => Promise<string>): Promise<Record<string, number>> {
  const seen: Record<string, number> = {};
  const end = Date.now() + ms;
  while (Date.now() < end) {
    let k: string;
    try {
      k = `=${await read()}`;
    } catch (e) {
      k = `!${code(e)}`;
    }
    seen[k] = (seen[k] ?? 0) + 1;
  }
  return seen;
}

type Cmd = Record<string, any>;
const regular = async (path: string): Promise<string> => {
  const r = await readRegularFile(path, { singleLink: false });
  return r ? r.data.toString('utf8') : '(missing)';
};

const ops: Record<string, (c: Cmd) => unknown> = {
  read: ({ path }) => rawRead(path),
  readRegular: ({ path }) => regular(path),
  stat: ({ path }) => {
    const s = fs.lstatSync(path);
    return { size: s.size, nlink: s.nlink, ino: s.ino, mtimeMs: s.mtimeMs, mode: s.mode, uid: s.uid };
  },
  readdir: ({ path }) => fs.readdirSync(path).sort(),
  createExcl: ({ path, data }) => {
    const fd = fs.openSync(path, 'wx', 0o600);
    fs.writeSync(fd, data);
    fs.fsyncSync(fd);
    fs.closeSync(fd);
  },
  link: ({ from, to }) => fs.linkSync(from, to),
  rename: ({ from, to }) => fs.renameSync(from, to),
  unlink: ({ path }) => fs.unlinkSync(path),
  readLoop: ({ path, ms }) => loop(ms, async () => rawRead(path)),
  readRegularLoop: ({ path, ms }) => loop(ms, () => regular(path)),
};

let chain: Promise<void> = Promise.resolve();
createInterface({ input: process.stdin }).on('line', (line) => {
  const cmd = JSON.parse(line) as Cmd;
  chain = chain.then(async () => {
    if (cmd.at) while (Date.now() < cmd.at); // spin: both hosts act within the same millisecond
    let reply;
    try {
      reply = { ok: true, value: (await ops[cmd.op](cmd)) ?? null };
    } catch (e) {
      reply = { ok: false, code: code(e) };
    }
    process.stdout.write(`${JSON.stringify(reply)}\n`);
  });
});
