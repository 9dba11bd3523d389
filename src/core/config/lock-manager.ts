/**
 * Claim leases need libvirt's lock manager (docs/CLUSTER.md, "Leases need libvirt's lock
 * manager"). The hook has no call while a VM runs, so it cannot renew a lease; an expired lease
 * therefore says nothing about whether the VM still runs. Only libvirt's lock manager (virtlockd
 * or sanlock, `lock_manager` in qemu.conf) can refuse the start of a VM whose disks another host's
 * QEMU still holds. So a lease is accepted, and an expired claim taken over, only with one on. Pure.
 */

/** `lock_manager = "…"` of qemu.conf text, or null when it is not set (libvirt's default: no locking). */
export function parseLockManager(qemuConf: string): string | null {
  const m = /^\s*lock_manager\s*=\s*"([^"]*)"/m.exec(qemuConf);
  return m && m[1] !== '' && m[1] !== 'nop' ? m[1] : null;
}

export interface LeasePolicy {
  /** The lease the claims of this host get (0 = never expires). */
  leaseSeconds: number;
  /** This host may take over another host's expired claim. */
  takeOver: boolean;
  /** Why a configured lease is not in effect (logged by the hook, reported by doctor). */
  ignored?: string;
}

export function leasePolicy(claimLeaseSeconds: number, lockManager: string | null): LeasePolicy {
  if (lockManager) return { leaseSeconds: Math.max(0, claimLeaseSeconds), takeOver: true };
  if (claimLeaseSeconds <= 0) return { leaseSeconds: 0, takeOver: false };
  return {
    leaseSeconds: 0,
    takeOver: false,
    ignored: `"claimLeaseSeconds": ${claimLeaseSeconds} is ignored: libvirt's lock manager is off (no lock_manager in qemu.conf), so nothing refuses the start of a VM that still runs elsewhere; set lock_manager = "lockd" in /etc/libvirt/qemu.conf on every host, or "claimLeaseSeconds": 0`,
  };
}
