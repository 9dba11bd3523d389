/**
 * The hook's command line, as libvirt passes it: `qemu <vm> <op> <subop> <extra>`
 * (`extra` is `-` when absent; `release end` carries the shutoff reason since libvirt 10.5).
 * Pure.
 */
import { UsageError } from '../core/errors';

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
 * A libvirt domain name as the hook can use it: libvirt itself forbids '/' in names; we also refuse
 * what no libvirt domain is called — empty, ".", "..", control characters (NUL, newline) — since
 * names end up in file names and log lines. Length is libvirt's business: a name too long for the
 * NVRAM file name it implies is refused only where that file is needed (see prepare).
 */
export function checkVmName(name: string): string {
  const why =
    name === '' ? 'it is empty'
    : name === '.' || name === '..' ? `"${name}" is not a usable name`
    : name.includes('/') ? 'it contains "/"'
    // eslint-disable-next-line no-control-regex
    : /[\u0000-\u001f\u007f]/.test(name) ? 'it contains control characters'
    : null;
  if (why) throw new UsageError(`invalid domain name ${JSON.stringify(name).slice(0, 80)}: ${why}`);
  return name;
}
