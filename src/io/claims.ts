/**
 * Per-VM claims in the shared archive: which host runs (or last ran) a VM, so two hosts never
 * both treat their local NVRAM as the truth.
 *
 * Rule: a host takes the claim at `prepare` and gives it back at `release`. The claim is
 * `<archive>/<uuid>/claim.json`, created exclusively with link() (atomic on NFS, no flock).
 * - Claimed by the same host (hostId) → refreshed, token kept.
 * - Claimed by another host and not expired → RefusedError naming the holder and the fix.
 * - Expired (`expires` passed; leaseSeconds 0 = never expires, the admin runs
 *   `ovmf-hook nvram unlock`) → taken over: the taker first creates `claim.stale-<old token>.json`
 *   (a copy of the old claim) exclusively with link() — of several racing hosts exactly one
 *   succeeds, the others refuse — then, if claim.json still holds the old token, replaces it by
 *   rename (claim.json never disappears during a take-over).
 * - A host whose claim was taken over (or unlocked) is *fenced*: its later archive is written as
 *   kind `fenced`, which is kept but never auto-restored and never the newest.
 * Leases are a crash-recovery aid: a running VM's claim is not renewed, so the hook uses them only
 * with libvirt's lock manager on, which refuses a start of a VM still running elsewhere
 * (core/config/lock-manager.ts); a take-over that libvirt then refuses is given back (undoTakeOver).
 *
 * Live migration (core/nvram/handover.ts): the destination's incoming `prepare` writes
 * `incoming.json` (writeIncoming); the source's release hands its claim over (handOver: the same
 * tombstone + rename as a take-over, so it races safely with one); the destination's release
 * removes its own record (dropIncoming). While a fresh record names another host than the claim,
 * takeClaim refuses (the VM may already run on the destination).
 */
import path from 'node:path';
import { ArchiveCorruptError, RefusedError } from '../core/errors';
import type { Io } from './fs-api';
import { fsyncDir, linkExclusive, prefixFaults, randomHex, readRegularFile, step, unlinkQuiet, writeFileAtomic, writeTemp, type Faults } from './safe-fs';
import { isExpired, type ClaimInfo } from '../core/nvram/types';
import { handedOverClaim, holderName as holder, isFreshIncoming, pendingHandOver, type IncomingRecord } from '../core/nvram/handover';

export const CLAIM_FILE = 'claim.json';
export const INCOMING_FILE = 'incoming.json';
/** Prefix of files moved aside to be deleted: repair() removes leftovers of a killed run. */
const RELEASED = 'claim.released-';

export interface ClaimContext {
  dir: string;
  /** The file API of the archive directory (fs-api.ts). */
  io: Io;
  host: string;
  hostId: string;
  faults?: Faults;
}

export interface ClaimOptions {
  vmName: string;
  /** 0 (default) = the claim never expires by itself. */
  leaseSeconds?: number;
  now?: Date;
  /** Recorded for diagnostics: newest auto-restorable generation at claim time. */
  generation?: number | null;
  /**
   * false: another host's expired claim is refused like a live one (no lock manager on this host:
   * nothing would refuse the start of a VM that still runs there; core/config/lock-manager.ts). Default true.
   */
  takeOver?: boolean;
}

export interface ClaimResult {
  claim: ClaimInfo;
  /** 'new' = created, 'refreshed' = ours already, 'took-over' = an expired claim of another host. */
  how: 'new' | 'refreshed' | 'took-over';
  previous?: ClaimInfo;
}

const MAX_ATTEMPTS = 4;

/** A claim or an incoming record (both name a host by token, hostId and host). */
async function readRecordFile<T extends { token: string; hostId: string; host: string }>(file: string, io: Io): Promise<T | null> {
  const r = await readRegularFile(file, { maxBytes: 64 * 1024, singleLink: false, io });
  if (!r) return null;
  try {
    const c = JSON.parse(r.data.toString('utf8')) as T;
    if (typeof c.token === 'string' && typeof c.hostId === 'string' && typeof c.host === 'string') return c;
  } catch {
    /* fall through */
  }
  throw new ArchiveCorruptError(file, `${file} is unreadable; if no host runs the VM, run: ovmf-hook nvram unlock`);
}
const readClaimFile = (file: string, io: Io): Promise<ClaimInfo | null> => readRecordFile<ClaimInfo>(file, io);

export const readClaim = (dir: string, io: Io): Promise<ClaimInfo | null> => readClaimFile(path.join(dir, CLAIM_FILE), io);
export const readIncoming = (dir: string, io: Io): Promise<IncomingRecord | null> => readRecordFile<IncomingRecord>(path.join(dir, INCOMING_FILE), io);

const encode = (c: ClaimInfo | IncomingRecord): Buffer => Buffer.from(`${JSON.stringify(c, null, 2)}\n`);

/** Create claim.json exclusively; false when one already exists. */
async function linkNewClaim(ctx: ClaimContext, c: ClaimInfo): Promise<boolean> {
  const final = path.join(ctx.dir, CLAIM_FILE);
  const { tmp } = await writeTemp(final, encode(c), { faults: ctx.faults, io: ctx.io });
  try {
    const ok = await linkExclusive(tmp, final, ctx.io);
    if (ok) await fsyncDir(ctx.dir, ctx.io);
    return ok;
  } finally {
    await unlinkQuiet(tmp, ctx.io);
  }
}

/**
 * Rename `name` (claim.json, incoming.json) to `aside` if it still carries `token`. If it turns out
 * to be someone else's (it changed between read and rename) it is put back. Returns true when it
 * is now aside.
 */
async function moveAside(dir: string, token: string, aside: string, io: Io, name = CLAIM_FILE): Promise<boolean> {
  const final = path.join(dir, name);
  try {
    await io.rename(final, aside);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw e;
  }
  const moved = await readRecordFile(aside, io).catch(() => null);
  if (moved?.token === token) {
    await fsyncDir(dir, io);
    return true;
  }
  if (await linkExclusive(aside, final, io)) await unlinkQuiet(aside, io); // put the other claim back
  return false;
}

/**
 * Replace the claim `old` by `c` (a take-over of an expired claim, or a hand-over of our own):
 * exclusive tombstone first — of several hosts replacing the same claim exactly one wins — then an
 * atomic replace (claim.json never disappears). `faults`: the steps' names (see handOver).
 */
async function takeOver(ctx: ClaimContext, old: ClaimInfo, c: ClaimInfo, faults = ctx.faults): Promise<boolean> {
  const tombstone = path.join(ctx.dir, `claim.stale-${old.token}.json`);
  const { tmp } = await writeTemp(tombstone, encode(old), { faults, io: ctx.io });
  try {
    await step(faults, 'tombstone-link');
    if (!(await linkExclusive(tmp, tombstone, ctx.io))) return false; // another host is taking it over
  } finally {
    await unlinkQuiet(tmp, ctx.io);
  }
  if ((await readClaim(ctx.dir, ctx.io))?.token !== old.token) return false; // released meanwhile: start over
  await writeFileAtomic(path.join(ctx.dir, CLAIM_FILE), encode(c), { faults, io: ctx.io });
  return true;
}

/**
 * The destination's incoming `prepare`: record that this host is about to receive the VM (replacing
 * an earlier record: the newest migration attempt is the one under way). Fault steps
 * `incoming-temp-*`, `incoming-rename`, `incoming-verify`, `incoming-dir-fsync`.
 */
export async function writeIncoming(ctx: ClaimContext, o: { vmName: string; leaseSeconds?: number; now?: Date }): Promise<IncomingRecord> {
  const r: IncomingRecord = { host: ctx.host, hostId: ctx.hostId, token: randomHex(16), vmName: o.vmName, time: (o.now ?? new Date()).toISOString(), leaseSeconds: o.leaseSeconds ?? 0 };
  await writeFileAtomic(path.join(ctx.dir, INCOMING_FILE), encode(r), { faults: prefixFaults(ctx.faults, 'incoming'), io: ctx.io });
  return r;
}

/**
 * Remove the incoming record if it is still `tokenOrHostId`'s (a later one of another host stays).
 * Fault steps `incoming-drop-rename`, `incoming-drop-unlink` (a kill in between leaves a
 * claim.released-* file for repair()).
 */
export async function dropIncoming(dir: string, tokenOrHostId: string, io: Io, faults?: Faults): Promise<boolean> {
  const cur = await readIncoming(dir, io).catch(() => null);
  if (!cur || (cur.token !== tokenOrHostId && cur.hostId !== tokenOrHostId)) return false;
  const aside = path.join(dir, `${RELEASED}incoming-${cur.token}-${randomHex(6)}.json`);
  await step(faults, 'incoming-drop-rename');
  if (!(await moveAside(dir, cur.token, aside, io, INCOMING_FILE))) return false;
  await step(faults, 'incoming-drop-unlink');
  await unlinkQuiet(aside, io);
  await fsyncDir(dir, io);
  return true;
}

/**
 * The source's release at the end of a live migration: replace our claim `from` by one naming the
 * destination of record `to`, then remove the record. Returns the new claim, or null when `from`
 * is no longer the claim (nothing changed). Fault steps `handover-temp-*` (tombstone),
 * `handover-tombstone-link`, `handover-{temp-*,rename,verify,dir-fsync}` (the claim), then
 * dropIncoming's.
 */
export async function handOver(ctx: ClaimContext, from: ClaimInfo, to: IncomingRecord, now = new Date()): Promise<ClaimInfo | null> {
  const c = handedOverClaim(to, from, now, randomHex(16));
  if (!(await takeOver(ctx, from, c, prefixFaults(ctx.faults, 'handover')))) return null;
  await dropIncoming(ctx.dir, to.token, ctx.io, ctx.faults);
  return c;
}

export async function takeClaim(ctx: ClaimContext, o: ClaimOptions): Promise<ClaimResult> {
  const now = o.now ?? new Date();
  const lease = o.leaseSeconds ?? 0;
  const fresh = (): ClaimInfo => ({
    host: ctx.host,
    hostId: ctx.hostId,
    token: randomHex(16),
    vmName: o.vmName,
    since: now.toISOString(),
    expires: lease > 0 ? new Date(now.getTime() + lease * 1000).toISOString() : null,
    generation: o.generation ?? null,
  });
  for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
    const [cur, incoming] = await Promise.all([readClaim(ctx.dir, ctx.io), readIncoming(ctx.dir, ctx.io)]);
    const pending = pendingHandOver({ claim: cur, incoming, hostId: ctx.hostId, vmName: o.vmName, now });
    if (pending) throw new RefusedError(pending);
    // a record older than the window: its migration failed with the destination gone
    if (incoming && !isFreshIncoming(incoming, now)) await dropIncoming(ctx.dir, incoming.token, ctx.io).catch(() => {});
    if (!cur) {
      const c = fresh();
      if (await linkNewClaim(ctx, c)) return { claim: c, how: 'new' };
      continue;
    }
    if (cur.hostId === ctx.hostId) {
      const c: ClaimInfo = { ...fresh(), token: cur.token, since: cur.since };
      await writeFileAtomic(path.join(ctx.dir, CLAIM_FILE), encode(c), { faults: ctx.faults, io: ctx.io });
      return { claim: c, how: 'refreshed', previous: cur };
    }
    if (!isExpired(cur, now) || o.takeOver === false) {
      const expired = isExpired(cur, now) ? ` (its lease expired at ${cur.expires}, but without libvirt's lock manager this host does not take a claim over)` : '';
      throw new RefusedError(
        `${o.vmName}: NVRAM is claimed by host ${holder(cur)} since ${cur.since}${expired} (the VM may run there); if it does not, run: ovmf-hook nvram unlock ${o.vmName}`,
      );
    }
    const c: ClaimInfo = { ...fresh(), tookOverFrom: cur.token };
    if (await takeOver(ctx, cur, c)) return { claim: c, how: 'took-over', previous: cur };
    const now2 = await readClaim(ctx.dir, ctx.io);
    if (now2 && now2.token !== cur.token) continue; // someone else won: the next round refuses
    if (now2) throw new RefusedError(`${o.vmName}: another host is taking over the expired NVRAM claim of ${cur.host}; try again, and if this persists run: ovmf-hook nvram unlock ${o.vmName}`);
  }
  throw new RefusedError(`${o.vmName}: another host is taking the NVRAM claim at the same time; try again`);
}

/**
 * Give the claim back if it is still held by `tokenOrHostId`. Returns true when removed.
 * Fault steps: 'release-rename' (claim.json → claim.released-*), 'release-unlink' (the aside
 * copy; a crash in between leaves it for repair()).
 */
export async function releaseClaim(dir: string, tokenOrHostId: string, io: Io, faults?: Faults): Promise<boolean> {
  const cur = await readClaim(dir, io);
  if (!cur || (cur.token !== tokenOrHostId && cur.hostId !== tokenOrHostId)) return false;
  const aside = path.join(dir, `${RELEASED}${cur.token}-${randomHex(6)}.json`);
  await step(faults, 'release-rename');
  if (!(await moveAside(dir, cur.token, aside, io))) return false;
  await step(faults, 'release-unlink');
  await unlinkQuiet(aside, io);
  await fsyncDir(dir, io);
  return true;
}

/**
 * Give a take-over back: when `mine` (a claim that took over an expired one, `tookOverFrom`) is
 * still the claim, its tombstone — the old claim, byte for byte — is renamed back over claim.json
 * (one atomic step: the old claim is back and its tombstone gone, so a later take-over can happen
 * again). For a start libvirt refused after the hook's prepare took the claim over (a lock manager
 * found the VM still running on the old holder), so the old holder is not fenced. Returns the
 * restored claim, or null when nothing changed. Fault step `undo-rename`.
 */
export async function undoTakeOver(dir: string, mine: ClaimInfo, io: Io, faults?: Faults): Promise<ClaimInfo | null> {
  if (!mine.tookOverFrom) return null;
  const tombstone = path.join(dir, `claim.stale-${mine.tookOverFrom}.json`);
  const [cur, old] = await Promise.all([readClaim(dir, io), readClaimFile(tombstone, io).catch(() => null)]);
  if (cur?.token !== mine.token || old?.token !== mine.tookOverFrom) return null;
  await step(faults, 'undo-rename');
  await io.rename(tombstone, path.join(dir, CLAIM_FILE));
  await fsyncDir(dir, io);
  return old;
}

/**
 * Admin unlock: move any claim aside (its holder becomes fenced) and drop any incoming record (a
 * pending hand-over no longer refuses starts). Returns the removed claim.
 */
export async function breakClaim(dir: string, io: Io): Promise<ClaimInfo | null> {
  const incoming = await readIncoming(dir, io).catch(() => null);
  if (incoming) await dropIncoming(dir, incoming.token, io);
  const cur = await readClaim(dir, io);
  if (!cur) return null;
  const aside = path.join(dir, `claim.stale-${cur.token}-unlocked-${randomHex(6)}.json`);
  return (await moveAside(dir, cur.token, aside, io)) ? cur : null;
}
