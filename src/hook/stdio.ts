/**
 * stdio for a libvirt hook (docs/HOOK.md §3.3):
 * stdin is read without ever blocking the main thread (so the watchdog can still fire when it
 * never closes), stdout is written with a full-write loop on fd 1 (never process.stdout: pipe
 * writes are async and a process exit can cut them), and nothing but domain XML ever goes to stdout.
 */
import { closeSync, constants as C, openSync, readSync, writeSync } from 'node:fs';
import { XmlInputError } from '../core/errors';

const CHUNK = 64 * 1024;
/** After this long without data, poll every POLL_MS instead of at once (a stdin that never closes). */
const SPIN_MS = 5;
const POLL_MS = 5;

const tooBig = (maxBytes: number): XmlInputError => new XmlInputError(`stdin is larger than ${(maxBytes / 1048576).toFixed(0)} MiB; refusing it`);

/**
 * Read all of stdin, refusing more than `maxBytes`. stdin is reopened through /proc/self/fd/0
 * with O_NONBLOCK of its own (libvirt's pipe keeps its flags; fd 0 is never touched) and read with
 * readSync, retried on EAGAIN from the event loop: no stream, so neither `net` nor the stream
 * modules are loaded (docs/BENCH.md), and a stdin that never closes leaves the watchdog
 * free to fire — and process.exit() free to end the process, which a thread-pool read blocked in
 * the kernel would not (measured). stdin that cannot be reopened (a socket, a closed fd) is read
 * as a stream.
 */
export function readStdin(maxBytes: number): Promise<string> {
  let fd: number;
  try {
    fd = openSync('/proc/self/fd/0', C.O_RDONLY | C.O_NONBLOCK);
  } catch {
    return readStdinStream(maxBytes);
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let lastData = Date.now();
    const done = (f: () => void): void => {
      closeSync(fd);
      f();
    };
    const pump = (): void => {
      for (;;) {
        const chunk = Buffer.allocUnsafe(CHUNK);
        let n: number;
        try {
          n = readSync(fd, chunk, 0, CHUNK, null);
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== 'EAGAIN') return done(() => reject(e));
          // the writer is behind (a large domain comes in pipe-sized pieces): retry at once for a
          // few milliseconds, then poll
          if (Date.now() - lastData < SPIN_MS) setImmediate(pump);
          else setTimeout(pump, POLL_MS);
          return;
        }
        if (n === 0) return done(() => resolve(Buffer.concat(chunks, size).toString('utf8')));
        size += n;
        if (size > maxBytes) return done(() => reject(tooBig(maxBytes)));
        chunks.push(chunk.subarray(0, n));
        lastData = Date.now();
      }
    };
    pump();
  });
}

/** stdin as a stream (when it cannot be reopened). */
function readStdinStream(maxBytes: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const stdin = process.stdin;
    stdin.on('data', (c: Buffer) => {
      size += c.length;
      if (size > maxBytes) {
        stdin.destroy();
        reject(tooBig(maxBytes));
        return;
      }
      chunks.push(c);
    });
    stdin.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    stdin.on('error', (e) => reject(e));
  });
}

/** Write everything to fd 1 (see writeAll). */
export const writeStdout = (text: string): void => writeAll(1, text);

/** Write everything to `fd`, retrying short writes and EAGAIN (a full non-blocking pipe). */
export function writeAll(fd: number, text: string): void {
  const buf = Buffer.from(text, 'utf8');
  let off = 0;
  let pause: Int32Array | undefined;
  while (off < buf.length) {
    try {
      off += writeSync(fd, buf, off, buf.length - off);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EAGAIN') throw e;
      // the reader (libvirt's poll loop) is behind: wait 1 ms instead of spinning
      pause ??= new Int32Array(new SharedArrayBuffer(4));
      Atomics.wait(pause, 0, 0, 1);
    }
  }
}
