/**
 * Claim hand-over on live migration (pure decisions; src/io/claims.ts carries them out).
 *
 * The destination's `prepare` of an incoming migration writes an incoming record
 * `<archive>/<uuid>/incoming.json` naming itself. The source's `release` then replaces its claim by one naming the destination
 * instead of giving it back, so the VM is never without an owner in the archive. A record is
 * "pending" while it is fresh and names another host than the claim; a pending hand-over refuses
 * every ordinary start (the VM may already run on the destination).
 */
import type { ClaimInfo } from './types';

/** Content of `<archive>/<uuid>/incoming.json`: a host receiving the VM by live migration. */
export interface IncomingRecord {
  host: string;
  hostId: string;
  /** Tells this record from a later one of the same host (only its writer removes it). */
  token: string;
  vmName: string;
  /** ISO time of the destination's incoming `prepare`. */
  time: string;
  /** The destination's `claimLeaseSeconds`: the lease of the claim handed over to it. */
  leaseSeconds: number;
}

/**
 * How long an incoming record counts: a migration that has not ended after this long has failed
 * with its destination gone (a failed migration's destination removes its record at `release`).
 * An older record is ignored and removed by the next start or release.
 */
export const HANDOVER_WINDOW_MS = 3600_000;

export const isFreshIncoming = (r: IncomingRecord, now: Date): boolean => {
  const age = now.getTime() - Date.parse(r.time);
  return Number.isFinite(age) && age < HANDOVER_WINDOW_MS;
};

/**
 * The host the source's `release` hands its claim to, or null (give it back as usual).
 * Only a claim of ours is handed over, only to another host, and only when the release ends a
 * migration: libvirt ≥ 10.5 says so (`migrated`); before, a fresh record from another host is the
 * evidence (a failed migration's destination removed its record before the source resumed).
 */
export function handOverTarget(i: { claim: ClaimInfo | null; incoming: IncomingRecord | null; hostId: string; reason?: string; now: Date }): IncomingRecord | null {
  const { claim, incoming } = i;
  if (!claim || !incoming || claim.hostId !== i.hostId || incoming.hostId === i.hostId) return null;
  return i.reason === 'migrated' || isFreshIncoming(incoming, i.now) ? incoming : null;
}

/** The claim the destination receives: a new token, its own lease. */
export const handedOverClaim = (to: IncomingRecord, from: ClaimInfo, now: Date, token: string): ClaimInfo => ({
  host: to.host,
  hostId: to.hostId,
  token,
  vmName: from.vmName,
  since: now.toISOString(),
  expires: to.leaseSeconds > 0 ? new Date(now.getTime() + to.leaseSeconds * 1000).toISOString() : null,
  generation: from.generation,
});

/** "name" or "name (host id X)" when the id tells two hosts of the same name apart. */
export const holderName = (c: { host: string; hostId: string }): string => (c.hostId === c.host ? c.host : `${c.host} (host id ${c.hostId})`);

/**
 * Why an ordinary start (or a CLI write) by `hostId` must wait for a pending hand-over, or null.
 * Pending: the record is fresh, from another host, and the claim does not name that host yet
 * (once it does, the hand-over is done and the claim alone decides).
 */
export function pendingHandOver(i: { claim: ClaimInfo | null; incoming: IncomingRecord | null; hostId: string; vmName: string; now: Date }): string | null {
  const { claim, incoming } = i;
  if (!incoming || incoming.hostId === i.hostId || !isFreshIncoming(incoming, i.now)) return null;
  if (claim && claim.hostId === incoming.hostId) return null;
  const from = claim ? `from host ${holderName(claim)} ` : '';
  return `${i.vmName}: NVRAM is being handed over ${from}to host ${holderName(incoming)} by a live migration since ${incoming.time} (the VM may run on ${incoming.host}); if it runs nowhere, run: ovmf-hook nvram unlock ${i.vmName}`;
}
