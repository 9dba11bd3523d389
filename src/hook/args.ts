/**
 * The hook's command line, as libvirt passes it: `qemu <vm> <op> <subop> <extra>`
 * (`extra` is `-` when absent; `release end` carries the shutoff reason since libvirt 10.5).
 * Pure.
 */
import { UsageError } from '../errors';

export interface HookArgs {
  vm: string;
  op: string;
  subop: string;
  extra: string;
}

/** Ops for which a failure must never be reported to libvirt (it would kill or taint the VM). */
export const NEVER_FAIL = new Set(['stopped', 'release', 'reconnect', 'attach', 'started']);

/** Ops whose stdout libvirt reads as the new domain XML. */
export const FILTER_OPS = new Set(['migrate', 'restore']);

/** Ops the hook acts on; everything else is a fast pass-through. */
export const HANDLED = new Set(['prepare begin', 'release end', 'migrate begin', 'restore begin']);

export function parseHookArgs(argv: readonly string[]): HookArgs {
  if (argv.length < 3 || argv.length > 4) {
    throw new UsageError(`expected arguments <vm> <op> <subop> [<extra>] as libvirt passes them, got ${argv.length}`);
  }
  const [vm, op, subop, extra = '-'] = argv as [string, string, string, string?];
  return { vm, op, subop, extra };
}

/**
 * A libvirt domain name usable in a file name: libvirt forbids '/' in names; we also refuse
 * control characters, NUL, '.', '..' and over-long names, since the NVRAM path is derived from it.
 */
export function checkVmName(name: string): string {
  // eslint-disable-next-line no-control-regex
  if (name === '' || name === '.' || name === '..' || name.includes('/') || /[\u0000-\u001f\u007f]/.test(name) || Buffer.byteLength(name) > 200) {
    throw new UsageError(`invalid domain name ${JSON.stringify(name).slice(0, 80)}: it must not be empty, ".", "..", or contain "/" or control characters`);
  }
  return name;
}
