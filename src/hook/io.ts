/**
 * stdio for a libvirt hook (see shared/design/hook-engineering.md §3.3):
 * stdin is read as a stream (so the watchdog can still fire when it never closes), stdout is
 * written with a full-write loop on fd 1 (never process.stdout: pipe writes are async and a
 * process exit can cut them), and nothing but domain XML ever goes to stdout.
 */
import { writeSync } from 'node:fs';
import { XmlInputError } from '../errors';

/** Read all of stdin, refusing more than `maxBytes`. */
export function readStdin(maxBytes: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const stdin = process.stdin;
    stdin.on('data', (c: Buffer) => {
      size += c.length;
      if (size > maxBytes) {
        stdin.destroy();
        reject(new XmlInputError(`stdin is larger than ${(maxBytes / 1048576).toFixed(0)} MiB; refusing it`));
        return;
      }
      chunks.push(c);
    });
    stdin.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    stdin.on('error', (e) => reject(e));
  });
}

/** Write everything to fd 1, retrying short writes and EAGAIN (a full non-blocking pipe). */
export function writeStdout(text: string): void {
  const buf = Buffer.from(text, 'utf8');
  let off = 0;
  let pause: Int32Array | undefined;
  while (off < buf.length) {
    try {
      off += writeSync(1, buf, off, buf.length - off);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EAGAIN') throw e;
      // the reader (libvirt's poll loop) is behind: wait 1 ms instead of spinning
      pause ??= new Int32Array(new SharedArrayBuffer(4));
      Atomics.wait(pause, 0, 0, 1);
    }
  }
}
