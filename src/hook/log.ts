/**
 * Logging for the hook: the systemd journal, plus an optional plain log file. stderr is reserved
 * for the one line libvirt shows when an operation fails.
 *
 * Journal: one connection per line to journald's stream socket (`/run/systemd/journal/stdout`,
 * the socket behind sd_journal_stream_fd(3) and `systemd-cat`), identifier `ovmf-hook`. This costs
 * well under a millisecond; spawning `/usr/bin/logger` costs ~6 ms of a ~30 ms hook run (loading
 * child_process + fork/exec), measured by `npm run bench`. Without journald, the line goes to
 * `logger` (a detached child whose stdio is /dev/null, so it can never keep libvirt waiting) when
 * there is a syslog socket (`/dev/log`) for it to write to; with neither, only the file gets it.
 */
import { appendFileSync, existsSync } from 'node:fs';

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
  return (level, message) => {
    const line = oneLine(`${opts.vm ? `${opts.vm}: ` : ''}${message}`);
    if (opts.syslog !== false) toJournal(opts.journalSocket ?? JOURNAL_STREAM_SOCKET, level, line, () => toSyslog(opts.syslogSocket ?? SYSLOG_SOCKET, level, line));
    if (opts.file) {
      try {
        appendFileSync(opts.file, `${new Date().toISOString()} ovmf-hook[${process.pid}] ${level}: ${line}\n`, { mode: 0o600 });
      } catch {
        /* logging must never break the hook */
      }
    }
  };
}

/**
 * One line to journald's stream socket. The header is sd_journal_stream_fd()'s: identifier, unit
 * id (empty), priority, level prefix (0), forward to syslog/kmsg/console (0 = journald's defaults).
 * The socket is closed once the line is in the kernel's buffer (journald still reads it), so a
 * busy journald never delays the hook; a connect that hangs is dropped after 500 ms.
 * `fallback` runs when the socket cannot be reached (no journald).
 */
function toJournal(socket: string, level: Level, line: string, fallback: () => void): void {
  // no journald (a container, a host without systemd): no socket to try (~2 ms of a hook call)
  if (!existsSync(socket)) return fallback();
  try {
    let connected = false;
    // loaded here: `net` and the stream modules it needs cost ~2 ms, and only a journal line needs them
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
    // loaded here: child_process costs ~3 ms at start-up and is needed only without journald
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
