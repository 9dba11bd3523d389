/**
 * The CLI's only door to libvirt: `timeout 30 virsh -c qemu:///system …` (the hook never calls
 * libvirt). Commands take a `VirshRunner` so unit tests can answer for libvirt.
 */
import { execFile } from 'node:child_process';
import { RefusedError } from '../errors';

export const LIBVIRT_URI = 'qemu:///system';
export const VIRSH_TIMEOUT_SECONDS = 30;

export interface VirshResult {
  /** virsh's exit code; 124 = timed out, 127 = virsh (or timeout) not installed */
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `virsh <args…>` against the system libvirt and never throws: failures come back in the result. */
export type VirshRunner = (args: readonly string[]) => Promise<VirshResult>;

export const runVirsh: VirshRunner = (args) =>
  new Promise((resolve) => {
    execFile(
      'timeout',
      [String(VIRSH_TIMEOUT_SECONDS), 'virsh', '-c', LIBVIRT_URI, ...args],
      { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : 127) : 0;
        resolve({ code, stdout: String(stdout ?? ''), stderr: String(stderr ?? (err ? err.message : '')) });
      },
    );
  });

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
