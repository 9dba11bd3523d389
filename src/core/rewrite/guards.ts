/**
 * Which domains the rewrite touches at all, and which ones get the i440fx → Q35 conversion.
 */
import type { Domain } from '../domain';

/** i440fx machine types: `pc`, `pc-i440fx-7.2`, old `pc-1.2`, Ubuntu's `ubuntu` / `pc-i440fx-jammy`. */
export function isI440fx(machine: string | undefined): boolean {
  return machine === undefined || (!/q35/.test(machine) && /^(pc|ubuntu)(-|$)/.test(machine));
}

/**
 * The chipset conversion (R6–R14) is due: an x86_64 QEMU/KVM domain whose machine is i440fx or
 * unset (QEMU's x86_64 default is i440fx). A q35 domain is left alone (R3), and so are exotic
 * machines (`microvm`, `isapc`).
 */
export const convertsChipset = (d: Domain): boolean => d.isX86Qemu && d.osType !== undefined && isI440fx(d.machine);

/** Why the rewrite leaves a domain untouched (undefined: it does not). */
export function skipReason(d: Domain): string | undefined {
  if (d.isX86Qemu) return undefined;
  const vt = d.virtType;
  if (vt !== 'qemu' && vt !== 'kvm') return `${d.name}: domain type '${vt ?? '(none)'}' is not qemu or kvm; left untouched`;
  const osType = d.osType?.text().trim() ?? 'hvm';
  if (osType !== 'hvm') return `${d.name}: os type '${osType}' is not hvm; left untouched`;
  return `${d.name}: architecture '${d.arch}' is not x86_64; left untouched`;
}
