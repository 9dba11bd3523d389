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

/** How the hook treats one `<op> <subop>` call it acts on. */
export interface OpRule {
  /** a failure must never be reported to libvirt (it would kill or taint the VM): log it, exit 0 */
  readonly neverFail: boolean;
  /** libvirt reads stdout as the new domain XML (the migrate/restore filter) */
  readonly filter: boolean;
}

/**
 * The calls the hook acts on, the one table of them: hooks/qemu.ts passes every other call
 * through at once, and src/hook/main.ts dispatches on these keys (a switch TypeScript checks
 * to cover them all).
 */
export const OPS = {
  'prepare begin': { neverFail: false, filter: false },
  'release end': { neverFail: true, filter: false },
  'migrate begin': { neverFail: false, filter: true },
  'restore begin': { neverFail: false, filter: true },
} as const satisfies Record<string, OpRule>;

export type HandledOp = keyof typeof OPS;

/** Ops the hook only passes through whose failure must never be reported either (reconnect would kill the VM). */
const PASS_THROUGH_NEVER_FAIL = ['stopped', 'reconnect', 'attach', 'started'] as const;

const handled = Object.entries(OPS) as [HandledOp, OpRule][];
const opOf = (key: HandledOp): string => key.split(' ')[0]!;

/** `<op> <subop>` keys the hook acts on; everything else is a fast pass-through. */
export const HANDLED: ReadonlySet<string> = new Set(handled.map(([key]) => key));

/** Ops (argv[1]) for which a failure must never be reported to libvirt. */
export const NEVER_FAIL: ReadonlySet<string> = new Set([...handled.filter(([, r]) => r.neverFail).map(([key]) => opOf(key)), ...PASS_THROUGH_NEVER_FAIL]);

/** Ops whose stdout libvirt reads as the new domain XML. */
export const FILTER_OPS: ReadonlySet<string> = new Set(handled.filter(([, r]) => r.filter).map(([key]) => opOf(key)));

/** The OPS key of a call, or undefined for a pass-through call. */
export const handledOp = (args: Pick<HookArgs, 'op' | 'subop'>): HandledOp | undefined => {
  const key = `${args.op} ${args.subop}`;
  return HANDLED.has(key) ? (key as HandledOp) : undefined;
};

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
