/**
 * The hook's journal lines (src/io/log.ts) against a stand-in for journald's stream socket: the
 * header sd_journal_stream_fd() writes, one line per message, and flushLog, after which the hook
 * may exit at once (hooks/qemu.ts calls process.exit) without losing a line. And the log file
 * (`logFile`), which the hook appends to as root: never followed through a symlink, never a file
 * or directory someone else controls; an unsafe one gets no line, the journal one warning.
 */
import { execFileSync } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  closeSync,
  constants,
  existsSync,
  lchownSync,
  linkSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { flushLog, logFileProblem, makeLogger } from '../../src/io/log';

const dirs: string[] = [];
const servers: Server[] = [];
afterEach(() => {
  servers.splice(0).forEach((s) => s.close());
  dirs.splice(0).forEach((d) => rmSync(d, { recursive: true, force: true }));
});

/** A journald stream socket stand-in: `received` gets each connection's full text. */
async function journal(): Promise<{ socket: string; received: string[] }> {
  const dir = mkdtempSync(path.join(tmpdir(), 'ovmfhook-journal-'));
  dirs.push(dir);
  const socket = path.join(dir, 'stdout');
  const received: string[] = [];
  const server = createServer((c) => {
    let text = '';
    c.on('data', (d) => (text += d.toString()));
    c.on('end', () => received.push(text));
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(socket, r));
  return { socket, received };
}

describe('journal lines', () => {
  it('each message is one connection with the sd_journal_stream_fd header, priority by level', async () => {
    const j = await journal();
    const log = makeLogger({ vm: 'vm1', journalSocket: j.socket, syslogSocket: '/nonexistent' });
    log('err', 'archive failed');
    log('info', 'two\nlines');
    await flushLog();
    await vi.waitFor(() => expect(j.received).toHaveLength(2));
    expect(j.received.sort()).toEqual(['ovmf-hook\n\n3\n0\n0\n0\n0\nvm1: archive failed\n', 'ovmf-hook\n\n6\n0\n0\n0\n0\nvm1: two\\x0alines\n'].sort());
  });

  it('flushLog resolves only once every line is handed over, then at once', async () => {
    const j = await journal();
    const log = makeLogger({ journalSocket: j.socket, syslogSocket: '/nonexistent' });
    log('warning', 'one');
    log('warning', 'two');
    let flushed = false;
    const f = flushLog().then(() => (flushed = true));
    await Promise.resolve();
    expect(flushed).toBe(false); // the sockets are still connecting
    await f;
    // handed over: the lines reach the server even though nothing of ours waits for it any more
    await vi.waitFor(() => expect(j.received).toHaveLength(2));
    let again = false;
    void flushLog().then(() => (again = true));
    await Promise.resolve();
    await Promise.resolve();
    expect(again).toBe(true);
  });

  it('no journald (no socket) and no syslog: nothing to wait for', async () => {
    const log = makeLogger({ journalSocket: '/nonexistent/stdout', syslogSocket: '/nonexistent/log' });
    log('info', 'lost');
    let flushed = false;
    void flushLog().then(() => (flushed = true));
    await Promise.resolve();
    await Promise.resolve();
    expect(flushed).toBe(true);
  });
});

describe('log file (issue 11 item 7: root must not append to a file a user points it at)', () => {
  const NOBODY = 65534;

  /** A private (0700, root-owned) temp dir, removed after the test. */
  const tempDir = (): string => {
    const d = mkdtempSync(path.join(tmpdir(), 'ovmfhook-logfile-'));
    dirs.push(d);
    return d;
  };

  /** A logger writing to `file` and to a stand-in journal; `warnings()`: journal texts naming `file` as unsafe. */
  async function setup(file: string) {
    const j = await journal();
    const log = makeLogger({ file, vm: 'vm1', journalSocket: j.socket, syslogSocket: '/nonexistent' });
    const settle = async (lines: number) => {
      await flushLog();
      await vi.waitFor(() => expect(j.received.length).toBeGreaterThanOrEqual(lines));
    };
    const warnings = () => j.received.filter((t) => t.includes(file) && !t.includes('vm1: line'));
    return { log, settle, warnings, received: j.received };
  }

  /** Two lines logged; then: nothing in the file, one warning (priority 4) naming the file and `fix`. */
  async function expectRefused(file: string, fix: RegExp): Promise<string> {
    const s = await setup(file);
    s.log('info', 'line one');
    s.log('err', 'line two');
    await s.settle(3);
    await new Promise((r) => setTimeout(r, 50)); // a second warning would arrive by now
    expect(s.warnings()).toHaveLength(1);
    const w = s.warnings()[0]!;
    expect(w).toMatch(/^ovmf-hook\n\n4\n/);
    expect(w).toMatch(fix);
    expect(logFileProblem(file)).toMatch(fix);
    return w;
  }

  it('(a) a symlink to a file that does not exist: the target is not created, one warning', async () => {
    const d = tempDir();
    const victim = path.join(d, 'victim');
    const file = path.join(d, 'hook.log');
    symlinkSync(victim, file);
    await expectRefused(file, /symlink.*rm /);
    expect(existsSync(victim)).toBe(false);
  });

  it('(a) a symlink to an existing file: the target is not appended to', async () => {
    const d = tempDir();
    const victim = path.join(d, 'victim');
    writeFileSync(victim, 'precious\n', { mode: 0o644 });
    const file = path.join(d, 'hook.log');
    symlinkSync(victim, file);
    await expectRefused(file, /symlink/);
    expect(readFileSync(victim, 'utf8')).toBe('precious\n');
    expect(statSync(victim).mode & 0o7777).toBe(0o644);
  });

  it('(b) a group/other-writable directory without the sticky bit: refused, nothing created', async () => {
    const d = path.join(tempDir(), 'logs');
    mkdirSync(d);
    chmodSync(d, 0o777);
    const file = path.join(d, 'hook.log');
    await expectRefused(file, new RegExp(`${d}.*writable.*chmod go-w ${d}`));
    expect(existsSync(file)).toBe(false);
  });

  it('(b) an ancestor that is group/other-writable without the sticky bit: refused, nothing created', async () => {
    const top = path.join(tempDir(), 'open');
    const d = path.join(top, 'logs');
    mkdirSync(d, { recursive: true });
    chmodSync(top, 0o777);
    chmodSync(d, 0o755);
    const file = path.join(d, 'hook.log');
    await expectRefused(file, new RegExp(`${top}.*writable.*chmod go-w ${top}`));
    expect(existsSync(file)).toBe(false);
  });

  it('(b) the directory reached through a symlink someone else owns: refused', async () => {
    const t = tempDir();
    const real = path.join(t, 'real');
    mkdirSync(real, { mode: 0o755 });
    const sticky = path.join(t, 'sticky');
    mkdirSync(sticky);
    chmodSync(sticky, 0o1777);
    const link = path.join(sticky, 'logs');
    symlinkSync(real, link);
    lchownSync(link, NOBODY, NOBODY);
    const file = path.join(link, 'hook.log');
    await expectRefused(file, /symlink.*owned by uid 65534/);
    expect(existsSync(path.join(real, 'hook.log'))).toBe(false);
  });

  it('(b) a sticky 1777 directory with a root-owned 0600 file: accepted, lines appended', async () => {
    const d = path.join(tempDir(), 'sticky');
    mkdirSync(d);
    chmodSync(d, 0o1777);
    const file = path.join(d, 'hook.log');
    writeFileSync(file, 'old\n', { mode: 0o600 });
    expect(logFileProblem(file)).toBeNull();
    const s = await setup(file);
    s.log('info', 'line one');
    s.log('info', 'line two');
    await s.settle(2);
    expect(s.warnings()).toEqual([]);
    const lines = readFileSync(file, 'utf8').split('\n');
    expect(lines[0]).toBe('old');
    expect(lines.slice(1)).toEqual([expect.stringMatching(/ovmf-hook\[\d+\] info: vm1: line one$/), expect.stringMatching(/info: vm1: line two$/), '']);
  });

  it('(c) a file owned by another uid: refused, left as it was', async () => {
    const d = tempDir();
    const file = path.join(d, 'hook.log');
    writeFileSync(file, 'theirs\n', { mode: 0o600 });
    chownSync(file, NOBODY, NOBODY);
    await expectRefused(file, /owned by uid 65534.*(chown|rm)/);
    expect(readFileSync(file, 'utf8')).toBe('theirs\n');
  });

  it('(c) a group/other-writable file: refused, left as it was', async () => {
    const d = tempDir();
    const file = path.join(d, 'hook.log');
    writeFileSync(file, 'old\n');
    chmodSync(file, 0o666);
    await expectRefused(file, /writable.*chmod 600/);
    expect(readFileSync(file, 'utf8')).toBe('old\n');
  });

  it('(d) a hard-linked file (nlink 2): refused, neither name appended to', async () => {
    const d = tempDir();
    const victim = path.join(d, 'victim');
    writeFileSync(victim, 'precious\n', { mode: 0o600 });
    const file = path.join(d, 'hook.log');
    linkSync(victim, file);
    await expectRefused(file, /2 hard links/);
    expect(readFileSync(victim, 'utf8')).toBe('precious\n');
  });

  it('(e) a FIFO: refused without blocking, nothing written into it', async () => {
    const d = tempDir();
    // with a reader (today's code would not block here, so this fails cleanly instead of hanging)
    const withReader = path.join(d, 'hook.log');
    execFileSync('mkfifo', ['-m', '600', withReader]);
    const reader = openSync(withReader, constants.O_RDONLY | constants.O_NONBLOCK);
    try {
      await expectRefused(withReader, /not a regular file/);
      // nothing in the pipe: EOF (no writer left) or EAGAIN (a writer still holds it open)
      let got = 0;
      try {
        got = readSync(reader, Buffer.alloc(4096));
      } catch (e) {
        expect((e as NodeJS.ErrnoException).code).toBe('EAGAIN');
      }
      expect(got).toBe(0);
    } finally {
      closeSync(reader);
    }
    // no reader: a blocking open would wait forever
    const noReader = path.join(d, 'other.log');
    execFileSync('mkfifo', ['-m', '600', noReader]);
    const t0 = Date.now();
    await expectRefused(noReader, /(not a regular file|FIFO)/);
    expect(Date.now() - t0).toBeLessThan(2000);
  });

  it('(f) the safe case: created 0600, every line appended, the checked file kept for later lines', async () => {
    const d = tempDir();
    const file = path.join(d, 'hook.log');
    expect(logFileProblem(file)).toBeNull();
    expect(existsSync(file)).toBe(false); // the check creates nothing
    const s = await setup(file);
    s.log('info', 'line one');
    const st = statSync(file);
    expect({ uid: st.uid, mode: st.mode & 0o7777, nlink: st.nlink }).toEqual({ uid: process.geteuid!(), mode: 0o600, nlink: 1 });
    // the file is opened and checked once: a symlink planted at the name later is never followed
    const kept = path.join(d, 'kept.log');
    renameSync(file, kept);
    const victim = path.join(d, 'victim');
    symlinkSync(victim, file);
    s.log('warning', 'line two');
    s.log('err', 'line\nthree');
    await s.settle(3);
    expect(s.warnings()).toEqual([]);
    expect(existsSync(victim)).toBe(false);
    expect(readFileSync(kept, 'utf8')).toMatch(
      /^\S+Z ovmf-hook\[\d+\] info: vm1: line one\n\S+Z ovmf-hook\[\d+\] warning: vm1: line two\n\S+Z ovmf-hook\[\d+\] err: vm1: line\\x0athree\n$/,
    );
  });

  it('logFileProblem: a missing directory is reported, nothing is created', () => {
    const d = path.join(tempDir(), 'missing');
    expect(logFileProblem(path.join(d, 'hook.log'))).toMatch(/does not exist/);
    expect(existsSync(d)).toBe(false);
  });

  it('a logger whose file is unsafe never throws, also without journal or syslog', () => {
    const d = tempDir();
    chmodSync(d, 0o777);
    const log = makeLogger({ file: path.join(d, 'hook.log'), journalSocket: '/nonexistent/stdout', syslogSocket: '/nonexistent/log' });
    expect(() => log('info', 'x')).not.toThrow();
    expect(() => makeLogger({ file: '/nonexistent/dir/hook.log', syslog: false })('info', 'x')).not.toThrow();
  });
});
