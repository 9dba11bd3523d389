/**
 * Executor of the NVRAM plans: gathers the facts (local file, archive, per-host state, claim),
 * asks plan.ts what to do and does it with the safe file layer. The per-host state it writes is
 * the plan's `state` (written by local-state.ts), never one of its own choosing.
 *
 * - prepareNvram  (`prepare begin`): claim, then keep / restore / provision, update the state; then
 *   the start's own `edit`, if any (the hook's certificate policy; committed as enrollNvram commits).
 *   Throws OvmfHookError on refusal (the hook exits 1 and libvirt aborts the start).
 * - releaseNvram  (`release end <reason>`): archive, prune, update the state, give the claim back.
 *   Never throws and never touches the local NVRAM: failures come back as {action:'failed'}
 *   (the claim is then kept, so no other host starts the VM from an older archive).
 * - resetNvram / restoreGeneration / enrollNvram: CLI helpers for a shut-off VM (the caller's
 *   whileLocked checks that, under this host's VM lock).
 *
 * On incoming migration prepare takes no claim but records this host as the destination
 * (`incoming.json`); the source keeps its claim until its `release` ('migrated' → skip; '-' on
 * libvirt < 10.5 → it archives the state at migration time) and hands it over to the destination
 * (handover.ts), which then archives and gives it back at its own release. A destination whose
 * migration failed removes its record at its release; the claim stays with the source.
 */
import path from 'node:path';
import { ArchiveCorruptError, RefusedError, UsageError } from '../core/errors';
import { normalizeUuid, type Archive } from './archive';
import type { ClaimResult } from './claims';
import { allAsync, type Io, type IoFor } from './fs-api';
import { checkFileOwner, claimFile, forgetClaimToken, getLocalState, recordSync, stageStateUpdate, writeStateUpdate, type FileOwner, type StateAccess } from './local-state';
import { lockVm } from './vm-lock';
import { planPrepare, planRelease, type PreparePlan } from '../core/nvram/plan';
import { ARCHIVED, WRITTEN, type StateFacts, type StateUpdate } from '../core/nvram/state-update';
import { cleanupTemps, MAX_NVRAM_BYTES, readNvramSafely, readRegularFile, sha256, stageFileAtomic, writeFileAtomic, type Faults } from './safe-fs';
import { newestRestorable, withinStartWindow, type GenerationMeta } from '../core/nvram/types';
import { handOverTarget, holderName, isFreshIncoming } from '../core/nvram/handover';
import { lostMicrosoft2023 } from '../core/varstore/readiness';

export interface NvramOwner {
  uid?: number;
  gid?: number;
  /** Default 0o600. */
  mode?: number;
}

interface Common {
  archive: Archive;
  /** Per-host state directory (config `stateDir`). */
  stateDir: string;
  uuid: string;
  vmName: string;
  nvramPath: string;
  /**
   * The same file reached through a held directory handle (nvram-dir.ts: `/proc/self/fd/N/name`):
   * every read and write goes there; `nvramPath` stays the name recorded and shown.
   */
  nvramIo?: string;
  /**
   * The file API of each directory touched (NVRAM, state, template; fs-api.ts): the hook's choice
   * after its statfs probe. Default fs.promises everywhere. The archive has its own (openArchive).
   */
  io?: IoFor;
  now?: Date;
  /** Told of each generation found corrupt (and moved aside) on the way. */
  onCorrupt?: (generation: number, problem: string) => void;
  /** Fault injection for the local NVRAM write. */
  faults?: Faults;
  /** Fault injection for the per-host state writes. */
  stateFaults?: Faults;
  /**
   * Temp files of this VM in the nvram and state directories (and archive leftovers, at release)
   * older than this are removed: what a killed hook left behind. Default 1 h.
   */
  leftoverAgeMs?: number;
}

export interface PrepareOptions extends Common {
  /** OVMF VARS template (trusted, root-owned; may be a symlink). */
  templatePath?: string;
  owner: NvramOwner;
  /** Flash size the firmware expects (usually the template size); mismatches are replaced, never silently deleted. */
  expectedSize?: number;
  incomingMigration: boolean;
  /** 0 = the claim never expires by itself. */
  claimLeaseSeconds?: number;
  /** false: another host's expired claim is refused (no lock manager here; core/config/lock-manager.ts). Default true. */
  takeOverExpired?: boolean;
  /** Told when the NVRAM file was recorded for a gone domain of the same name (see claimFile). */
  onAdopted?: (previous: FileOwner) => void;
  /**
   * A change this start makes to the NVRAM once the plan is carried out (the hook's
   * `secure-boot-certs` policy): `apply` gets what the local file holds then and gives the edit, or
   * null for none. Never applied to an incoming migration, nor when no local NVRAM is left. It is
   * committed as `nvram enroll` commits (commitEdit: archive first, the result the newest
   * generation, the copy before named "copy taken before <name>"), with the claim held; a failure
   * to archive or write fails the prepare like any other step (the claim this call took is given back).
   */
  edit?: { name: string; apply: (current: Buffer) => NvramEdit | null };
}

export interface PrepareResult {
  action: 'keep' | 'restore' | 'provision';
  why: string;
  /** Restored generation. */
  generation?: number;
  /** Generation now holding the local copy that was pushed aside. */
  displaced?: number;
  claim?: ClaimResult['how'];
  /**
   * Microsoft 2023 Secure Boot certificates the replaced local NVRAM trusted and the written one
   * does not (restore, provision); the start goes ahead (availability), the hook warns.
   */
  lostCertificates?: string[];
  /** `edit` committed: the newest generation now, the copy of the NVRAM before, the edit's reason. */
  edited?: { generation: number; saved: number; reason: string };
}

export interface ReleaseOptions extends Common {
  /** `release end <reason>` (libvirt ≥ 10.5; '-' before). */
  reason?: string;
  /** Generations to keep per VM (≥ 1). */
  keep: number;
}

export type ReleaseResult =
  /** `handedOverTo`: the live migration's destination now holds the claim (handover.ts). */
  | { action: 'archived'; generation: number; kind: 'archive' | 'fenced'; why: string; warnings: string[]; handedOverTo?: string }
  /** `takeOverUndone`: the start did not happen, the expired claim this host took over went back to that holder. */
  | { action: 'skip'; why: string; warnings: string[]; handedOverTo?: string; takeOverUndone?: string }
  | { action: 'failed'; why: string; error: unknown };

/** Where the local NVRAM is read and written (see Common.nvramIo). */
const ioPath = (o: Common): string => o.nvramIo ?? o.nvramPath;
/** The file API of `p` (see Common.io). */
const ioOf = (o: Common, p: string): Io => (o.io ?? allAsync)(p);
/** The local NVRAM's file API. */
const nvramApi = (o: Common): Io => ioOf(o, ioPath(o));
/** How the state directory is reached (its file API and fault injection). */
const stateAccess = (o: Common): StateAccess => ({ io: ioOf(o, o.stateDir), faults: o.stateFaults });
const localFacts = (l: { data: Buffer } | null) => l && { sha256: sha256(l.data), size: l.data.length };
const generationOf = (r: GenerationMeta | { generation: number }): number => r.generation;

async function readTemplate(o: Common, templatePath: string | undefined): Promise<Buffer | null> {
  if (!templatePath) return null;
  const r = await readRegularFile(templatePath, { noFollow: false, singleLink: false, maxBytes: MAX_NVRAM_BYTES, io: ioOf(o, templatePath) });
  return r?.data ?? null;
}

export const LEFTOVER_AGE_MS = 3600_000;

/**
 * Best effort: remove what an interrupted (killed) earlier run left for this VM — temps of the
 * local NVRAM and state writes, and, with `archive`, the archive's uncommitted leftovers.
 * Only files older than `leftoverAgeMs`, so a writer still in progress is never disturbed.
 */
async function sweepLeftovers(o: Common, uuid: string, archive: boolean): Promise<string[]> {
  const opts = { olderThanMs: o.leftoverAgeMs ?? LEFTOVER_AGE_MS };
  const quiet = (p: Promise<string[]>) => p.catch(() => [] as string[]);
  // three directories, independent of each other: swept at the same time
  const removed = await Promise.all([
    quiet(cleanupTemps(path.dirname(ioPath(o)), path.basename(ioPath(o)), { ...opts, io: nvramApi(o) })),
    quiet(cleanupTemps(o.stateDir, `${uuid}.json`, { ...opts, io: stateAccess(o).io })),
    archive ? quiet(o.archive.repair(uuid, { ...opts, verify: false }).then((r) => r.removed)) : [],
  ]);
  return removed.flat();
}

/**
 * Promise.all for independent reads, with the outcome of sequential awaits: all of them settle
 * (nothing is left running behind an error), and the first failure in argument order is thrown.
 */
async function inOrder<T extends readonly unknown[]>(ps: { [K in keyof T]: Promise<T[K]> }): Promise<T> {
  const settled = await Promise.allSettled(ps);
  for (const r of settled) if (r.status === 'rejected') throw r.reason;
  return settled.map((r) => (r as PromiseFulfilledResult<unknown>).value) as unknown as T;
}

async function takeClaim(o: Common & { claimLeaseSeconds?: number; takeOverExpired?: boolean }): Promise<ClaimResult> {
  return o.archive.claim(o.uuid, { vmName: o.vmName, leaseSeconds: o.claimLeaseSeconds ?? 0, now: o.now, takeOver: o.takeOverExpired });
}

export async function prepareNvram(o: PrepareOptions): Promise<PrepareResult> {
  const uuid = normalizeUuid(o.uuid);
  const { archive, stateDir, vmName } = o;
  const access = stateAccess(o);
  // before the archive claim: a file of another domain is refused without touching the archive
  const file = await claimFile(stateDir, o.nvramPath, { uuid, vmName }, access);
  if (file.adopted) o.onAdopted?.(file.adopted);
  const claim = o.incomingMigration ? undefined : await takeClaim({ ...o, uuid });
  // incoming migration: the archive records this host as the destination, and the source's release
  // hands its claim over (handover.ts). Written here, not at `migrate begin`: a prepare that fails
  // after it is followed by libvirt's release, which removes the record again.
  const incoming = o.incomingMigration ? await archive.markIncoming(uuid, { vmName, leaseSeconds: o.claimLeaseSeconds ?? 0, now: o.now }) : undefined;
  try {
    // with the claim held: the sweep and the reads are independent of each other
    const [, local, metas, state, template] = await inOrder([
      sweepLeftovers(o, uuid, false),
      readNvramSafely(ioPath(o), { io: nvramApi(o) }),
      archive.list(uuid),
      getLocalState(stateDir, uuid, access),
      readTemplate(o, o.templatePath),
    ] as const);
    const localInfo = localFacts(local);
    // plan, and read what a restore needs before anything changes; a generation whose data does
    // not verify is moved aside and the plan made again without it (the newest valid one wins)
    const corrupt: GenerationMeta[] = [];
    let newest: GenerationMeta | null;
    let plan: PreparePlan;
    let restored: Buffer | undefined;
    for (;;) {
      const valid = metas.filter((m) => !corrupt.includes(m));
      newest = newestRestorable(valid);
      plan = planPrepare({
        local: localInfo,
        newest,
        knownShas: new Set(valid.map((m) => m.sha256)),
        corrupt,
        state,
        templateAvailable: template !== null,
        expectedSize: o.expectedSize,
        incomingMigration: o.incomingMigration,
      });
      if (plan.action !== 'restore') break;
      try {
        restored = await archive.read(uuid, plan.generation);
        break;
      } catch (e) {
        if (!(e instanceof ArchiveCorruptError)) throw e;
        const bad = metas.find((m) => m.generation === (plan as { generation: number }).generation)!;
        corrupt.push(bad);
        await archive.quarantine(uuid, bad.generation);
        o.onCorrupt?.(bad.generation, e.message);
      }
    }
    // what only this execution knows, for the state the plan records
    const facts = { now: o.now ?? new Date(), previous: state, claimToken: claim?.claim.token };
    const displace = async (why: string): Promise<number | undefined> => {
      if (!local) return undefined;
      const r = await archive.add(uuid, local.data, { kind: 'displaced', reason: why, vmName, basedOn: state?.generation ?? null, now: o.now, sha256: localInfo?.sha256 });
      return generationOf(r);
    };
    // The local NVRAM and the state that names it: both written and fsynced at the same time, then
    // put in place in that order (the NVRAM durable before the state). Nothing is replaced unless
    // both were written. `written`: the hash of `data`, when the plan's state names it (WRITTEN).
    const writeAndSave = async (data: Buffer, update: StateUpdate, written?: string): Promise<void> => {
      const [nvram, next] = await Promise.allSettled([
        stageFileAtomic(ioPath(o), data, { ...o.owner, mode: o.owner.mode ?? 0o600, faults: o.faults, io: nvramApi(o) }),
        stageStateUpdate(stateDir, uuid, update, { ...facts, written }, access),
      ]);
      if (nvram.status === 'rejected' || next.status === 'rejected') {
        await Promise.all([nvram, next].map((r) => (r.status === 'fulfilled' ? r.value.discard() : undefined)));
        throw nvram.status === 'rejected' ? nvram.reason : (next as PromiseRejectedResult).reason;
      }
      try {
        await nvram.value.commit();
      } catch (e) {
        await next.value.discard();
        throw e;
      }
      await next.value.commit();
    };
    const how = claim?.how;
    // the plan is carried out (`current`: what the local file holds now); then the start's own edit
    const edited = async (done: PrepareResult, current: Buffer | undefined): Promise<PrepareResult> =>
      o.edit && current && !o.incomingMigration ? { ...done, ...(await editAtStart(o, uuid, current, o.edit, facts)) } : done;

    switch (plan.action) {
      case 'refuse':
        throw new RefusedError(`${vmName}: ${plan.why}`);
      case 'keep':
        await writeStateUpdate(stateDir, uuid, plan.state, facts, access);
        return await edited({ action: 'keep', why: plan.why, claim: how }, local?.data);
      case 'restore': {
        const data = restored as Buffer; // verified before anything changes
        const displaced = plan.displaceLocal ? await displace(`displaced by restore of generation ${plan.generation}`) : undefined;
        await writeAndSave(data, plan.state);
        return await edited({ action: 'restore', generation: plan.generation, displaced, why: plan.why, claim: how, ...lostBy(local, data) }, data);
      }
      case 'provision': {
        const data = template as Buffer;
        const displaced = plan.displaceLocal ? await displace('displaced by provisioning from the template') : undefined;
        await writeAndSave(data, plan.state, sha256(data));
        return await edited({ action: 'provision', displaced, why: plan.why, claim: how, ...lostBy(local, data) }, data);
      }
    }
  } catch (e) {
    // The VM will not start: give back a claim taken by this call, so the release hook and other
    // hosts are not fenced. A claim we already held (a crash or a failed archive left it) stays:
    // it protects a local copy that may not be archived yet.
    if (claim && claim.how !== 'refreshed') {
      await archive.releaseClaim(uuid, claim.claim.token).catch(() => {});
      await forgetClaimToken(stateDir, uuid, access).catch(() => {});
    }
    if (incoming) await archive.dropIncoming(uuid, incoming.token).catch(() => {});
    throw e;
  }
}

export async function releaseNvram(o: ReleaseOptions): Promise<ReleaseResult> {
  try {
    const uuid = normalizeUuid(o.uuid);
    const { archive, stateDir, vmName } = o;
    const access = stateAccess(o);
    await checkFileOwner(stateDir, o.nvramPath, { uuid, vmName }, access);
    // the archive and state reads run while the local NVRAM is read and hashed
    // an unreadable incoming record must not stop the archive: the claim alone then decides
    const facts = inOrder([archive.list(uuid), getLocalState(stateDir, uuid, access), archive.claimInfo(uuid), archive.incomingInfo(uuid).catch(() => null)] as const);
    facts.catch(() => {}); // awaited below, after the local read (which may fail first)
    const local = await readNvramSafely(ioPath(o), { io: nvramApi(o) });
    const localInfo = localFacts(local);
    const [metas, state, claim, incoming] = await facts;
    let newest = newestRestorable(metas);
    // "equals the newest generation" is the one case in which release keeps no copy of its own:
    // that copy must be intact (rare: OVMF rewrites its store on every boot, so a stop usually
    // brings new content). A corrupt one is moved aside and the local copy archived again.
    if (localInfo && newest && localInfo.sha256 === newest.sha256) {
      const problem = await archive.verify(uuid, newest.generation);
      if (problem) {
        await archive.quarantine(uuid, newest.generation);
        o.onCorrupt?.(newest.generation, problem);
        const bad = newest;
        newest = newestRestorable(metas.filter((m) => m !== bad));
      }
    }
    // Ours if the claim names this host; with no claim at all, ours unless we had one (then it was taken).
    const held = claim ? claim.hostId === archive.hostId : !state?.claimToken;
    // a start libvirt refused after this host's prepare took an expired claim over (a lock manager
    // found the VM still running on the old holder): the file is as prepare left it, the start is
    // recent. Nothing ran here: archive nothing, and give the claim back (undoTakeOver).
    const refusedTakeOver =
      held && !!claim?.tookOverFrom && claim.token === state?.claimToken && !!localInfo && localInfo.sha256 === state?.sha256 && withinStartWindow(state?.preparedAt, o.now);
    const startRefused = withinStartWindow(state?.startRefused, o.now) || refusedTakeOver;
    const plan = planRelease({ local: localInfo, newest, reason: o.reason, claimHeldByUs: held, startRefused, state });
    const warnings: string[] = [];
    const now = o.now ?? new Date();
    let result: ReleaseResult;
    let pruned: Promise<unknown> = Promise.resolve();

    if (plan.action === 'archive' && local && localInfo) {
      const r = await archive.add(uuid, local.data, {
        kind: plan.kind,
        reason: `release (${o.reason ?? '-'})`,
        vmName,
        basedOn: state?.generation ?? null,
        now: o.now,
        sha256: localInfo.sha256,
      });
      const generation = generationOf(r);
      await writeStateUpdate(stateDir, uuid, plan.state, { now, previous: state, archived: generation }, access);
      // pruning old generations and giving the claim back touch different files: done at the same time
      pruned = archive.prune(uuid, o.keep).catch((e: Error) => warnings.push(`prune failed: ${e.message}`));
      result = { action: 'archived', generation, kind: plan.kind, why: plan.why, warnings };
    } else {
      await writeStateUpdate(stateDir, uuid, plan.state, { now, previous: state }, access);
      result = { action: 'skip', why: plan.why, warnings };
    }
    // after a refused start a claim of ours predates it and protects a local copy: keep it. At the
    // end of a live migration it goes to the destination instead of back (handover.ts).
    const handTo = handOverTarget({ claim, incoming, hostId: archive.hostId, reason: o.reason, now });
    if (held && claim && !startRefused) {
      if (!handTo) await archive.releaseClaim(uuid, archive.hostId).catch((e: Error) => warnings.push(`claim release failed: ${e.message}`));
      else {
        try {
          const to = await archive.handOver(uuid, claim, handTo, now);
          if (to) result.handedOverTo = holderName(to);
          else warnings.push(`claim hand-over to ${handTo.host} skipped: the claim changed meanwhile`);
        } catch (e) {
          warnings.push(`claim hand-over to ${handTo.host} failed: ${(e as Error).message}`);
        }
      }
    }
    if (refusedTakeOver && result.action === 'skip' && !withinStartWindow(state?.startRefused, o.now))
      result.why = "libvirt did not start the VM after this host's prepare (the local NVRAM is as prepare left it): nothing to archive";
    if (refusedTakeOver && claim) {
      try {
        const back = await archive.undoTakeOver(uuid, claim);
        if (back) {
          if (result.action === 'skip') result.takeOverUndone = holderName(back);
          await forgetClaimToken(stateDir, uuid, access);
        }
      } catch (e) {
        warnings.push(`giving the taken-over claim back failed: ${(e as Error).message}`);
      }
    }
    // this host's own record (the migration to here has ended, or failed) or a stale one goes
    if (incoming && (incoming.hostId === archive.hostId || !isFreshIncoming(incoming, now)))
      await archive.dropIncoming(uuid, incoming.token).catch((e: Error) => warnings.push(`incoming record removal failed: ${e.message}`));
    await pruned;
    // after the claim release: the sweep removes old claim.released-* leftovers, never the one in flight
    await sweepLeftovers(o, uuid, true);
    return result;
  } catch (error) {
    return { action: 'failed', why: `archiving the NVRAM of ${o.vmName} failed: ${(error as Error)?.message ?? error}`, error };
  }
}

/** `lostCertificates` of a PrepareResult when `next` replaces `local` (nothing when none is lost). */
const lostBy = (local: { data: Buffer } | null, next: Buffer): Pick<PrepareResult, 'lostCertificates'> => {
  const lost = local ? lostMicrosoft2023(local.data, next) : [];
  return lost.length ? { lostCertificates: lost } : {};
};

/** Tell the CLI writer (which may refuse) when `next` trusts fewer Microsoft 2023 certificates than `local`; before anything is written. */
function checkCertificates(o: CliWrite, local: { data: Buffer } | null, next: Buffer): void {
  const lost = local && o.onCertificatesLost ? lostMicrosoft2023(local.data, next) : [];
  if (lost.length) o.onCertificatesLost!(lost);
}

export interface ResetOptions extends CliWrite {
  templatePath: string;
}

/**
 * Run `fn` as the only writer of the VM's NVRAM: this host's VM lock (no hook prepare runs
 * meanwhile), `o.whileLocked` (the caller's "is it shut off?" asked only now, under the lock), no
 * start still under way since a recent prepare, the file is this domain's, and the archive claim
 * (refused if another host holds it). Claim and lock are given back afterwards.
 */
async function withClaim<T>(o: CliWrite, verb: string, fn: () => Promise<T>): Promise<T> {
  const command = o.command ?? `nvram ${verb}`;
  const lock = await lockVm(o.stateDir, o.uuid, `ovmf-hook ${command} (pid ${process.pid})`, (other) =>
    `${o.vmName}: its NVRAM is in use by ${other}; ${command} works only on a shut-off VM: try again once the start has finished and the VM is shut down`);
  try {
    await o.whileLocked?.();
    const state = await getLocalState(o.stateDir, o.uuid, stateAccess(o));
    if (withinStartWindow(state?.preparedAt, o.now))
      throw new RefusedError(`${o.vmName} was started at ${state!.preparedAt} and libvirt has not opened its NVRAM yet, or that start is still failing; ${command} works only on a shut-off VM: try again in a minute`);
    await claimFile(o.stateDir, o.nvramPath, { uuid: o.uuid, vmName: o.vmName }, stateAccess(o));
    const claim = await takeClaim(o);
    try {
      await sweepLeftovers(o, o.uuid, false);
      return await fn();
    } finally {
      await o.archive.releaseClaim(o.uuid, claim.claim.token).catch(() => {});
    }
  } finally {
    await lock.release();
  }
}

/** What the CLI's writers (reset, restore) share. */
interface CliWrite extends Common {
  owner: NvramOwner;
  claimLeaseSeconds?: number;
  /** Called once this host's VM lock is held, before anything is read or written (e.g. "is it shut off?"). */
  whileLocked?: () => Promise<void>;
  /** The command named in refusals, the lock holder and the saved copy's reason; default `nvram <verb>`. */
  command?: string;
  /**
   * reset/restore: called before anything is written when the NVRAM to be written trusts fewer
   * Microsoft 2023 Secure Boot certificates than the local one (their names); a throw refuses.
   */
  onCertificatesLost?: (lost: readonly string[]) => void;
}

/**
 * `nvram reset VM`: archive the current local NVRAM (kind `manual`), commit the template as a
 * `reset` generation (so every host restores the reset), then write it locally.
 */
export async function resetNvram(o: ResetOptions): Promise<{ action: 'reset'; generation: number; saved?: number }> {
  const uuid = normalizeUuid(o.uuid);
  return withClaim({ ...o, uuid }, 'reset', async () => {
    const template = await readTemplate(o, o.templatePath);
    if (!template) throw new UsageError(`template ${o.templatePath} does not exist; pass the VM's OVMF VARS template`);
    const local = await readNvramSafely(ioPath(o), { io: nvramApi(o) });
    checkCertificates(o, local, template);
    const state = await getLocalState(o.stateDir, uuid, stateAccess(o));
    const base = { vmName: o.vmName, now: o.now };
    const saved = local
      ? generationOf(await o.archive.add(uuid, local.data, { ...base, kind: 'manual', reason: 'copy taken before nvram reset', basedOn: state?.generation ?? null }))
      : undefined;
    const generation = generationOf(await o.archive.add(uuid, template, { ...base, kind: 'reset', reason: 'nvram reset' }));
    await writeFileAtomic(ioPath(o), template, { ...o.owner, mode: o.owner.mode ?? 0o600, faults: o.faults, io: nvramApi(o) });
    await recordSync(o.stateDir, uuid, { generation, sha256: sha256(template) }, o.now, stateAccess(o));
    return { action: 'reset', generation, saved };
  });
}

export interface RestoreGenerationOptions extends CliWrite {
  generation: number;
}

/**
 * `nvram restore VM --generation N`: any kind (also displaced/fenced). The content is committed
 * again as a new `manual` generation so it becomes the newest everywhere; an unarchived local
 * copy is displaced first.
 */
export async function restoreGeneration(
  o: RestoreGenerationOptions,
): Promise<{ action: 'restore'; generation: number; from: number; displaced?: number }> {
  const uuid = normalizeUuid(o.uuid);
  return withClaim({ ...o, uuid }, 'restore', async () => {
    const data = await o.archive.read(uuid, o.generation);
    const metas = await o.archive.list(uuid);
    const local = await readNvramSafely(ioPath(o), { io: nvramApi(o) });
    checkCertificates(o, local, data);
    const state = await getLocalState(o.stateDir, uuid, stateAccess(o));
    const base = { vmName: o.vmName, now: o.now };
    const localSha = local && sha256(local.data);
    const known = localSha !== null && metas.some((m) => m.sha256 === localSha);
    const displaced =
      local && !known
        ? generationOf(await o.archive.add(uuid, local.data, { ...base, kind: 'displaced', reason: `displaced by nvram restore --generation ${o.generation}`, basedOn: state?.generation ?? null, sha256: localSha ?? undefined }))
        : undefined;
    const generation = generationOf(await o.archive.add(uuid, data, { ...base, kind: 'manual', reason: `restore of generation ${o.generation}`, basedOn: o.generation }));
    await writeFileAtomic(ioPath(o), data, { ...o.owner, mode: o.owner.mode ?? 0o600, faults: o.faults, io: nvramApi(o) });
    await recordSync(o.stateDir, uuid, { generation, sha256: sha256(data) }, o.now, stateAccess(o));
    return { action: 'restore', generation, from: o.generation, displaced };
  });
}

/** What `nvram enroll`'s pure step gives back: the new NVRAM (or no change) and the generation's reason. */
export interface NvramEdit {
  data: Uint8Array;
  changed: boolean;
  /** Reason recorded with the new generation, e.g. `nvram enroll: KEK +1, db +3 (--ms-2023)`. */
  reason: string;
}

export interface EnrollNvramOptions<R extends NvramEdit> extends CliWrite {
  /**
   * The new NVRAM from the current local one: pure, called with the VM lock and the claim held.
   * A throw refuses the enrolment; nothing has been written then.
   */
  edit: (current: Buffer) => R;
}

/**
 * `nvram enroll VM`: replace a shut-off VM's NVRAM with `o.edit(current)`. The current NVRAM is
 * kept as a generation first (kind `manual`; an intact generation with the same content is reused
 * instead of archiving it twice), then the result is committed as the newest generation (kind
 * `manual`, `basedOn` that copy, so every host restores it and `nvram restore --generation <saved>`
 * undoes it), then written locally. An unchanged result writes nothing.
 */
export async function enrollNvram<R extends NvramEdit>(
  o: EnrollNvramOptions<R>,
): Promise<{ action: 'enroll'; result: R; generation?: number; saved?: number }> {
  const uuid = normalizeUuid(o.uuid);
  return withClaim({ ...o, uuid }, 'enroll', async () => {
    const local = await readNvramSafely(ioPath(o), { io: nvramApi(o) });
    if (!local)
      throw new UsageError(`${o.vmName}: its NVRAM ${o.nvramPath} does not exist yet; start the VM once (libvirt creates it from the template), shut it down, then enrol`);
    const result = o.edit(local.data);
    if (!result.changed) return { action: 'enroll', result };
    const data = Buffer.from(result.data);
    const state = await getLocalState(o.stateDir, uuid, stateAccess(o));
    const { generation, saved } = await commitEdit(o, uuid, local.data, data, { reason: result.reason, before: o.command ?? 'nvram enroll', basedOn: state?.generation ?? null });
    await recordSync(o.stateDir, uuid, { generation, sha256: sha256(data) }, o.now, stateAccess(o));
    return { action: 'enroll', result, generation, saved };
  });
}

/**
 * `data`, an edit of the local NVRAM `local`, committed archive first — what `nvram enroll` and the
 * hook's certificate policy share: `local` kept as a generation (kind `manual`, "copy taken before
 * <before>", `basedOn` the sync point; an intact generation holding this very content already is
 * reused instead: it is the undo point), then `data` the newest generation (kind `manual`, `reason`,
 * based on that copy, so every host restores it), then the local file. The caller holds the VM's
 * lock and claim, and records the new sync point.
 */
async function commitEdit(
  o: Common & { owner: NvramOwner },
  uuid: string,
  local: Buffer,
  data: Buffer,
  what: { reason: string; before: string; basedOn: number | null },
): Promise<{ generation: number; saved: number }> {
  if (data.length !== local.length) throw new UsageError(`internal error: the edited NVRAM is ${data.length} bytes, the VM's ${local.length}; nothing was written`);
  const metas = await o.archive.list(uuid);
  const base = { vmName: o.vmName, now: o.now };
  const localSha = sha256(local);
  const same = metas.filter((m) => m.sha256 === localSha).at(-1);
  const reusable = same && (await o.archive.verify(uuid, same.generation)) === null ? same.generation : undefined;
  const saved =
    reusable ?? generationOf(await o.archive.add(uuid, local, { ...base, kind: 'manual', reason: `copy taken before ${what.before}`, basedOn: what.basedOn, sha256: localSha }));
  const generation = generationOf(await o.archive.add(uuid, data, { ...base, kind: 'manual', reason: what.reason, basedOn: saved }));
  await writeFileAtomic(ioPath(o), data, { ...o.owner, mode: o.owner.mode ?? 0o600, faults: o.faults, io: nvramApi(o) });
  return { generation, saved };
}

/**
 * prepareNvram's `edit`, once its plan is carried out: committed (commitEdit), then the new sync
 * point recorded with the marks the plan's state had (this start's claim token, preparedAt). So the
 * release archives what the running VM changes as usual, and a later start finds the local NVRAM
 * in sync with the new generation (not an unarchived copy to keep, nor an older one to replace).
 */
async function editAtStart(o: PrepareOptions, uuid: string, current: Buffer, edit: NonNullable<PrepareOptions['edit']>, facts: StateFacts): Promise<Pick<PrepareResult, 'edited'>> {
  const e = edit.apply(current);
  if (!e?.changed) return {};
  const data = Buffer.from(e.data);
  const state = await getLocalState(o.stateDir, uuid, stateAccess(o));
  const r = await commitEdit(o, uuid, current, data, { reason: e.reason, before: edit.name, basedOn: state?.generation ?? null });
  await writeStateUpdate(o.stateDir, uuid, { do: 'record', generation: ARCHIVED, sha256: WRITTEN, prepared: true }, { ...facts, previous: state, archived: r.generation, written: sha256(data) }, stateAccess(o));
  return { edited: { ...r, reason: e.reason } };
}
