/**
 * Logging for the hook: the systemd journal, plus an optional plain log file. stderr is reserved
 * for the one line libvirt shows when an operation fails.
 *
 * Journal: one connection per line to journald's stream socket (`/run/systemd/journal/stdout`,
 * the socket behind sd_journal_stream_fd(3) and `systemd-cat`), identifier `ovmf-hook`: far cheaper
 * than spawning `/usr/bin/logger`, which loads child_process and forks (docs/BENCH.md). Without journald, the line goes to
 * `logger` (a detached child whose stdio is /dev/null, so it can never keep libvirt waiting) when
 * there is a syslog socket (`/dev/log`) for it to write to; with neither, only the file gets it.
 *
 * Log file: the hook runs as root, so the file is opened once per process (at its first line) with
 * O_NOFOLLOW|O_NONBLOCK, and used only if nobody but root could have chosen what it is: every
 * directory on the way to it (symlinks resolved by hand) owned by root and not group/other-writable
 * unless sticky, a symlink on the way owned by root, and the opened fd a regular file owned by us,
 * with one link, not group/other-writable (logFileProblem). An unsafe file gets no line; the
 * journal gets one warning naming the file, the problem and the fix.
 */
import { closeSync, constants as C, existsSync, fstatSync, lstatSync, openSync, readlinkSync, writeSync, type Stats } from 'node:fs';
import path from 'node:path';
import { errorMessage } from '../core/errors';
import { octalMode } from '../core/text';

export type Level = 'info' | 'warning' | 'err';

export interface Logger {
  (level: Level, message: string): void;
}

/** Control characters (newlines included) escaped: one message is one line, in syslog, the file and stderr. */
// eslint-disable-next-line no-control-regex
export const oneLine = (s: string): string => s.replace(/[\u0000-\u001f\u007f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);

export interface LoggerOptions {
  /** also append lines to this file */
  file?: string;
  /** false: no journal/syslog at all */
  syslog?: boolean;
  /** prefix of every line */
  vm?: string;
  /** journald's stream socket (tests) */
  journalSocket?: string;
  /** the syslog socket whose presence makes the `logger` fallback worth spawning (tests) */
  syslogSocket?: string;
}

export const JOURNAL_STREAM_SOCKET = '/run/systemd/journal/stdout';
export const SYSLOG_SOCKET = '/dev/log';
const PRIORITY: Record<Level, number> = { err: 3, warning: 4, info: 6 };

export function makeLogger(opts: LoggerOptions): Logger {
  const toSystem = (level: Level, line: string): void => {
    if (opts.syslog !== false) toJournal(opts.journalSocket ?? JOURNAL_STREAM_SOCKET, level, line, () => toSyslog(opts.syslogSocket ?? SYSLOG_SOCKET, level, line));
  };
  return (level, message) => {
    const line = oneLine(`${opts.vm ? `${opts.vm}: ` : ''}${message}`);
    toSystem(level, line);
    if (opts.file) {
      try {
        const fd = logFd(opts.file, (problem) => toSystem('warning', oneLine(`log file ${opts.file} not written: ${problem}`)));
        // one write(2) per line: with O_APPEND, lines of concurrent hook calls never interleave
        if (fd !== null) writeSync(fd, Buffer.from(`${new Date().toISOString()} ovmf-hook[${process.pid}] ${level}: ${line}\n`));
      } catch {
        /* logging must never break the hook */
      }
    }
  };
}

// ---------------------------------------------------------------------------------------------
// The log file

/** Node has no name for it; libuv sets it on every open anyway (Linux value). */
const O_CLOEXEC = 0o2000000;
const LOG_OPEN_FLAGS = C.O_WRONLY | C.O_APPEND | C.O_CREAT | C.O_NOFOLLOW | C.O_NONBLOCK | O_CLOEXEC;

/** Per log file, for this process: its checked fd, or null once refused (and warned about). */
const logFds = new Map<string, number | null>();

/** The fd to append `file`'s lines to: opened and checked at the first call, null when unsafe (`warn` called once). */
function logFd(file: string, warn: (problem: string) => void): number | null {
  const known = logFds.get(file);
  if (known !== undefined) return known;
  try {
    const fd = openLogFile(file);
    logFds.set(file, fd);
    return fd;
  } catch (e) {
    logFds.set(file, null); // refused for the rest of this process, warned about once
    warn(e instanceof LogFileProblem ? e.message : `cannot open it: ${errorMessage(e)}`);
    return null;
  }
}

class LogFileProblem extends Error {}

function openLogFile(file: string): number {
  const abs = path.resolve(file);
  const dirProblem = logDirProblem(path.dirname(abs));
  if (dirProblem) throw new LogFileProblem(dirProblem);
  let fd: number;
  try {
    fd = openSync(abs, LOG_OPEN_FLAGS, 0o600);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException)?.code;
    if (code === 'ELOOP') throw new LogFileProblem(symlinkProblem(abs));
    // a FIFO nobody reads (O_NONBLOCK: ENXIO instead of waiting), a directory
    if (code === 'ENXIO' || code === 'EISDIR') {
      const st = lstatSync(abs, { throwIfNoEntry: false });
      if (st) throw new LogFileProblem(fileStatProblem(abs, st) ?? `${abs}: ${code}`);
    }
    throw e;
  }
  try {
    const problem = fileStatProblem(abs, fstatSync(fd));
    if (problem) throw new LogFileProblem(problem);
    return fd;
  } catch (e) {
    closeSync(fd);
    throw e;
  }
}

const euid = (): number => process.geteuid?.() ?? 0;
const errText = (e: unknown): string => (e as NodeJS.ErrnoException)?.code ?? String(e);

const symlinkProblem = (file: string): string => `${file} is a symlink; remove it (rm ${file}), the hook creates the log file itself`;

const kind = (st: Stats): string =>
  st.isDirectory() ? 'a directory' : st.isFIFO() ? 'a FIFO' : st.isSocket() ? 'a socket' : st.isCharacterDevice() || st.isBlockDevice() ? 'a device' : 'not a file';

/** What is wrong with the (opened or lstat'ed) log file itself, or null. */
function fileStatProblem(file: string, st: Stats): string | null {
  if (st.isSymbolicLink()) return symlinkProblem(file);
  if (!st.isFile()) return `${file} is not a regular file (${kind(st)}); remove it or point logFile at a file`;
  if (st.uid !== euid()) return `${file} is owned by uid ${st.uid}, not ${euid()}; remove it (rm ${file}), the hook creates it again`;
  if (st.nlink !== 1) return `${file} has ${st.nlink} hard links; remove it (rm ${file}), the hook creates it again`;
  if (st.mode & 0o022) return `${file} is writable by group/other (mode ${octalMode(st.mode)}); run: chmod 600 ${file}`;
  return null;
}

/** A directory on the way to the log file: owned by root (or us), not group/other-writable unless sticky. */
function dirStatProblem(dir: string, st: Stats): string | null {
  if (st.uid !== 0 && st.uid !== euid()) return `${dir} is owned by uid ${st.uid}; run: chown root ${dir}`;
  if (st.mode & 0o022 && !(st.mode & 0o1000 /* sticky */))
    return `${dir} is writable by group/other without the sticky bit (mode ${octalMode(st.mode)}); run: chmod go-w ${dir}`;
  return null;
}

/**
 * Resolve `dir` (absolute) component by component, symlinks by hand, and check every directory
 * the kernel would pass through — the directory itself and all its ancestors, of the path as given
 * and of each symlink's target — plus each symlink's owner (another user's symlink in a sticky
 * directory would let them choose where root writes).
 */
function logDirProblem(dir: string): string | null {
  let todo = dir.split('/').filter(Boolean);
  let cur = '/';
  const rootProblem = dirStatProblem('/', lstatSync('/'));
  if (rootProblem) return rootProblem;
  for (let hops = 0; todo.length; ) {
    const name = todo.shift()!;
    if (name === '.') continue;
    if (name === '..') {
      cur = path.dirname(cur); // cur is a real directory: its parent was checked on the way down
      continue;
    }
    const next = path.join(cur, name);
    let st: Stats | undefined;
    try {
      st = lstatSync(next, { throwIfNoEntry: false });
    } catch (e) {
      return `cannot check ${next}: ${errText(e)}`;
    }
    if (!st) return `${next} does not exist; create it: mkdir -p -m 755 ${dir}`;
    if (st.isSymbolicLink()) {
      if (st.uid !== 0 && st.uid !== euid()) return `${next} is a symlink owned by uid ${st.uid}; point logFile at a path without it`;
      if (++hops > 40) return `${dir}: too many symlinks`;
      const target = readlinkSync(next);
      if (target.startsWith('/')) cur = '/';
      todo = [...target.split('/').filter(Boolean), ...todo];
      continue;
    }
    if (!st.isDirectory()) return `${next} is not a directory`;
    const problem = dirStatProblem(next, st);
    if (problem) return problem;
    cur = next;
  }
  return null;
}

/**
 * Why the hook would refuse to write `file` as its log file (the config check and `doctor` show
 * it), or null: safe, or not there yet in a safe directory (the hook creates it, 0600). Checks the
 * same as the hook: every directory on the way (owner root, not group/other-writable unless
 * sticky, symlinks owned by root), the file itself (not a symlink, a regular file owned by the
 * effective uid, one link, not group/other-writable). Creates, opens and changes nothing.
 * The text names the path at fault and the fix, prefixed `log file <file>: `.
 */
export function logFileProblem(file: string): string | null {
  try {
    const abs = path.resolve(file);
    const problem = logDirProblem(path.dirname(abs)) ?? fileProblemByPath(abs);
    return problem && `log file ${file}: ${problem}`;
  } catch (e) {
    return `log file ${file}: cannot check it: ${errText(e)}`;
  }
}

function fileProblemByPath(file: string): string | null {
  const st = lstatSync(file, { throwIfNoEntry: false });
  return st ? fileStatProblem(file, st) : null;
}

/**
 * One line to journald's stream socket. The header is sd_journal_stream_fd()'s: identifier, unit
 * id (empty), priority, level prefix (0), forward to syslog/kmsg/console (0 = journald's defaults).
 * The socket is closed once the line is in the kernel's buffer (journald still reads it), so a
 * busy journald never delays the hook; a connect that hangs is dropped after 500 ms.
 * `fallback` runs when the socket cannot be reached (no journald).
 */
function toJournal(socket: string, level: Level, line: string, fallback: () => void): void {
  // no journald (a container, a host without systemd): no socket to try, and no `net` to load
  if (!existsSync(socket)) return fallback();
  try {
    let connected = false;
    // loaded here: `net` and its stream modules are a noticeable part of start-up, and only a journal line needs them
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { createConnection } = require('node:net') as typeof import('node:net');
    const s = createConnection(socket, () => {
      connected = true;
    });
    s.on('error', () => {
      s.destroy();
      if (!connected) fallback();
    });
    s.on('finish', () => s.destroy());
    s.setTimeout(500, () => s.destroy());
    const handedOver = new Promise<void>((resolve) => s.on('close', () => resolve()));
    pending.add(handedOver);
    void handedOver.then(() => pending.delete(handedOver));
    s.end(`ovmf-hook\n\n${PRIORITY[level]}\n0\n0\n0\n0\n${line}\n`);
  } catch {
    fallback();
  }
}

/** Journal lines on their way (each settles when its socket closes: sent, refused or timed out). */
const pending = new Set<Promise<void>>();

/**
 * Resolves once every journal line logged so far is in the kernel's socket buffer (or given up,
 * after at most 500 ms): from then on the process may exit at once without losing one.
 */
export async function flushLog(): Promise<void> {
  while (pending.size) await Promise.all([...pending]);
}

/** `logger -t ovmf-hook -p daemon.<level>` as a detached child, only when syslog has a socket. */
function toSyslog(socket: string, level: Level, line: string): void {
  if (!existsSync(socket)) return;
  try {
    // loaded here: child_process is needed only without journald
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { spawn } = require('node:child_process') as typeof import('node:child_process');
    const child = spawn('/usr/bin/logger', ['-t', 'ovmf-hook', '-p', `daemon.${level}`, '--', line], {
      stdio: 'ignore',
      detached: true,
    });
    child.on('error', () => undefined);
    child.unref();
  } catch {
    /* no logger binary: the file log (if any) still gets it */
  }
}
