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
 * Leases are a crash-recovery aid: a running VM's claim is not renewed by the hook itself, so a
 * lease shorter than a VM's run time needs a periodic refresh (claim() again from the same host).
 */
import path from 'node:path';
import { ArchiveCorruptError, RefusedError } from '../core/errors';
import type { Io } from './fs-api';
import { fsyncDir, linkExclusive, randomHex, readRegularFile, step, unlinkQuiet, writeFileAtomic, writeTemp, type Faults } from './safe-fs';
import { isExpired, type ClaimInfo } from '../core/nvram/types';

export const CLAIM_FILE = 'claim.json';

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
}

export interface ClaimResult {
  claim: ClaimInfo;
  /** 'new' = created, 'refreshed' = ours already, 'took-over' = an expired claim of another host. */
  how: 'new' | 'refreshed' | 'took-over';
  previous?: ClaimInfo;
}

const MAX_ATTEMPTS = 4;

async function readClaimFile(file: string, io: Io): Promise<ClaimInfo | null> {
  const r = await readRegularFile(file, { maxBytes: 64 * 1024, singleLink: false, io });
  if (!r) return null;
  try {
    const c = JSON.parse(r.data.toString('utf8')) as ClaimInfo;
    if (typeof c.token === 'string' && typeof c.hostId === 'string' && typeof c.host === 'string') return c;
  } catch {
    /* fall through */
  }
  throw new ArchiveCorruptError(file, `${file} is unreadable; if no host runs the VM, run: ovmf-hook nvram unlock`);
}

export const readClaim = (dir: string, io: Io): Promise<ClaimInfo | null> => readClaimFile(path.join(dir, CLAIM_FILE), io);

/** "name" or "name (host id X)" when the id tells two hosts of the same name apart. */
const holder = (c: ClaimInfo): string => (c.hostId === c.host ? c.host : `${c.host} (host id ${c.hostId})`);

const encode = (c: ClaimInfo): Buffer => Buffer.from(`${JSON.stringify(c, null, 2)}\n`);

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
 * Rename claim.json to `aside` if it still carries `token`. If it turns out to be someone else's
 * (it changed between read and rename) it is put back. Returns true when it is now aside.
 */
async function moveAside(dir: string, token: string, aside: string, io: Io): Promise<boolean> {
  const final = path.join(dir, CLAIM_FILE);
  try {
    await io.rename(final, aside);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw e;
  }
  const moved = await readClaimFile(aside, io).catch(() => null);
  if (moved?.token === token) {
    await fsyncDir(dir, io);
    return true;
  }
  if (await linkExclusive(aside, final, io)) await unlinkQuiet(aside, io); // put the other claim back
  return false;
}

/** Take over the expired claim `old`: exclusive tombstone first, then an atomic replace. */
async function takeOver(ctx: ClaimContext, old: ClaimInfo, c: ClaimInfo): Promise<boolean> {
  const tombstone = path.join(ctx.dir, `claim.stale-${old.token}.json`);
  const { tmp } = await writeTemp(tombstone, encode(old), { faults: ctx.faults, io: ctx.io });
  try {
    if (!(await linkExclusive(tmp, tombstone, ctx.io))) return false; // another host is taking it over
  } finally {
    await unlinkQuiet(tmp, ctx.io);
  }
  if ((await readClaim(ctx.dir, ctx.io))?.token !== old.token) return false; // released meanwhile: start over
  await writeFileAtomic(path.join(ctx.dir, CLAIM_FILE), encode(c), { faults: ctx.faults, io: ctx.io });
  return true;
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
    const cur = await readClaim(ctx.dir, ctx.io);
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
    if (!isExpired(cur, now)) {
      throw new RefusedError(
        `${o.vmName}: NVRAM is claimed by host ${holder(cur)} since ${cur.since} (the VM may run there); if it does not, run: ovmf-hook nvram unlock ${o.vmName}`,
      );
    }
    const c = fresh();
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
  const aside = path.join(dir, `claim.released-${cur.token}-${randomHex(6)}.json`);
  await step(faults, 'release-rename');
  if (!(await moveAside(dir, cur.token, aside, io))) return false;
  await step(faults, 'release-unlink');
  await unlinkQuiet(aside, io);
  await fsyncDir(dir, io);
  return true;
}

/** Admin unlock: move any claim aside (its holder becomes fenced). Returns the removed claim. */
export async function breakClaim(dir: string, io: Io): Promise<ClaimInfo | null> {
  const cur = await readClaim(dir, io);
  if (!cur) return null;
  const aside = path.join(dir, `claim.stale-${cur.token}-unlocked-${randomHex(6)}.json`);
  return (await moveAside(dir, cur.token, aside, io)) ? cur : null;
}
