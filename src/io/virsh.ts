/**
 * The CLI's only door to libvirt: `virsh -c qemu:///system …` killed after 30 s (the hook never calls
 * libvirt). Commands take a `VirshRunner` so unit tests can answer for libvirt.
 */
import { execFile } from 'node:child_process';
import { RefusedError } from '../core/errors';
import { randomHex } from './safe-fs';

export const LIBVIRT_URI = 'qemu:///system';
export const VIRSH_TIMEOUT_SECONDS = 30;

export interface VirshResult {
  /** virsh's exit code; 124 = timed out (killed after VIRSH_TIMEOUT_SECONDS), 127 = virsh not installed */
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `virsh <args…>` against the system libvirt and never throws: failures come back in the result. */
export type VirshRunner = (args: readonly string[]) => Promise<VirshResult>;

/**
 * virsh with a kill timer of node's own (killed → code 124, like timeout(1), without the extra
 * exec timeout(1) would cost per call; not found → 127).
 */
export const runVirsh: VirshRunner = (args) =>
  new Promise((resolve) => {
    execFile(
      'virsh',
      ['-c', LIBVIRT_URI, ...args],
      { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024, timeout: VIRSH_TIMEOUT_SECONDS * 1000, killSignal: 'SIGKILL' },
      (err, stdout, stderr) => {
        const code = !err ? 0 : err.killed ? 124 : typeof err.code === 'number' ? err.code : 127;
        resolve({ code, stdout: String(stdout ?? ''), stderr: String(stderr ?? (err ? err.message : '')) });
      },
    );
  });

/** Runs several virsh commands and answers each as if it had run alone (code, stdout, stderr). */
export type VirshBatchRunner = (commands: readonly (readonly string[])[]) => Promise<VirshResult[]>;

/** A word for virsh's own command parser (`virsh 'cmd arg; cmd2'`): single quotes, as in sh. */
export const virshWord = (s: string): string => `'${s.replace(/'/g, "'\\''")}'`;

/**
 * The command string of a batch: before each command and at the end, `echo M; echo --err M` with
 * a random marker M, so that each command's output and errors can be told apart (one virsh
 * process instead of one per command: each process spends most of its time connecting to libvirtd).
 */
export function batchScript(commands: readonly (readonly string[])[], marker: string): string {
  const mark = (i: number) => `echo ${marker}-${i}; echo --err ${marker}-${i}`;
  return [...commands.map((c, i) => `${mark(i)}; ${c.map(virshWord).join(' ')}`), mark(commands.length)].join('; ');
}

/**
 * Split the output of batchScript into one result per command. In a batch, virsh goes on after a
 * failed command and exits with the status of the last one, so a command failed when an `error:`
 * line stands between its markers on stderr (an `echo --err` line also prints an empty line on
 * stdout). Commands the output does not reach (virsh could not connect, or was killed) get the
 * exit code of virsh (1 when that was 0) and all of its stderr.
 */
export function splitBatch(count: number, marker: string, out: VirshResult): VirshResult[] {
  const cut = (text: string, head: (i: number) => string): (string | undefined)[] => {
    const parts: (string | undefined)[] = [];
    let at = text.indexOf(head(0));
    for (let i = 0; i < count; i++) {
      const next = at < 0 ? -1 : text.indexOf(head(i + 1), at);
      parts.push(next < 0 ? undefined : text.slice(at + head(i).length, next));
      at = next;
    }
    return parts;
  };
  const stdout = cut(out.stdout, (i) => `${marker}-${i}\n\n`);
  const stderr = cut(out.stderr, (i) => `error: ${marker}-${i}\n`);
  return stdout.map((o, i) => {
    const e = stderr[i];
    if (o === undefined || e === undefined) return { code: out.code || 1, stdout: '', stderr: out.stderr };
    return { code: /^error:/m.test(e) ? 1 : 0, stdout: o, stderr: e };
  });
}

/** VirshBatchRunner of the system libvirt: one `virsh -c qemu:///system '…; …'`. */
export const runVirshBatch: VirshBatchRunner = async (commands) => {
  if (commands.length === 0) return [];
  const marker = `ovmf-hook-${randomHex(12)}`; // unpredictable: no text in a definition can pose as a marker
  return splitBatch(commands.length, marker, await runVirsh([batchScript(commands, marker)]));
};

/**
 * Most command text per batch: virsh gets a batch as one argument, which Linux caps at 128 KiB
 * (MAX_ARG_STRLEN); half of that leaves room for the markers and long names.
 */
export const BATCH_MAX_CHARS = 64 * 1024;

/**
 * Run many commands in as few batches as BATCH_MAX_CHARS allows (`parallel` batches at a time:
 * each virsh process waits mostly on libvirtd); the answers in the order of `commands`.
 */
export async function runInBatches(
  batch: VirshBatchRunner,
  commands: readonly (readonly string[])[],
  { maxChars = BATCH_MAX_CHARS, parallel = 4 }: { maxChars?: number; parallel?: number } = {},
): Promise<VirshResult[]> {
  const groups: (readonly string[])[][] = [];
  let size = Infinity;
  for (const c of commands) {
    const n = c.reduce((sum, w) => sum + virshWord(w).length + 1, 0) + 120; // + batchScript's markers around it
    if (size + n > maxChars) {
      groups.push([]);
      size = 0;
    }
    groups[groups.length - 1]!.push(c);
    size += n;
  }
  const answers: VirshResult[][] = new Array(groups.length);
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < groups.length; i = next++) answers[i] = await batch(groups[i]!);
  };
  await Promise.all(Array.from({ length: Math.min(parallel, groups.length) }, worker));
  return answers.flat();
}

/** What `convert` asks libvirt about a domain, in the order it asks (one batch, src/cli/commands/convert.ts). */
export function convertQuestions(name: string, o: { dryRun?: boolean; force?: boolean }): string[][] {
  return [
    ['dominfo', '--domain', name],
    // the definition with its secrets (R1), except for a dry run whose diff goes to stdout
    ['dumpxml', '--inactive', ...(o.dryRun ? [] : ['--security-info']), '--domain', name],
    ...(o.force ? [] : [['snapshot-list', '--active', '--name', '--domain', name]]),
  ];
}

/** First meaningful line of virsh's complaint, without its `error: ` prefix. */
export const virshError = (r: VirshResult): string =>
  r.code === 124
    ? `virsh did not answer within ${VIRSH_TIMEOUT_SECONDS} s`
    : (r.stderr.split('\n').map((l) => l.replace(/^error:\s*/, '').trim()).find(Boolean) ?? `virsh exited with ${r.code}`);

/** `virsh domstate VM` → e.g. `running`, `shut off`, `paused`. */
export async function domainState(virsh: VirshRunner, vm: string): Promise<string> {
  const r = await virsh(['domstate', vm]);
  if (r.code !== 0) throw new RefusedError(`cannot ask libvirt for the state of ${vm}: ${virshError(r)}; is libvirtd running?`);
  return r.stdout.trim().split('\n')[0].trim();
}
