/**
 * Logging for the hook: syslog/journal via `logger -t ovmf-hook` (a detached child whose stdio
 * is /dev/null, so it can never keep libvirt waiting), plus an optional plain log file.
 * stderr is reserved for the one line libvirt shows when an operation fails.
 */
import { appendFileSync } from 'node:fs';
import { spawn } from 'node:child_process';

export type Level = 'info' | 'warning' | 'err';

export interface Logger {
  (level: Level, message: string): void;
}

export function makeLogger(opts: { file?: string; syslog?: boolean; vm?: string }): Logger {
  return (level, message) => {
    const line = `${opts.vm ? `${opts.vm}: ` : ''}${message}`;
    if (opts.syslog !== false) {
      try {
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
    if (opts.file) {
      try {
        appendFileSync(opts.file, `${new Date().toISOString()} ovmf-hook[${process.pid}] ${level}: ${line}\n`, { mode: 0o600 });
      } catch {
        /* logging must never break the hook */
      }
    }
  };
}
