/**
 * Pure NVRAM lifecycle decisions (no I/O): what `prepare begin` and `release end` must do with the
 * local NVRAM file, and what the per-host state records afterwards (`state`, see state-update.ts),
 * given what the archive and the per-host state say. The executor (lifecycle.ts) performs the
 * returned plan and writes no state of its own choosing.
 *
 * Invariants: never lose data (a local copy that is not archived is displaced into the archive
 * before being overwritten) and never let a stale copy become the newest generation.
 */
import { ARCHIVED, WRITTEN, type StateUpdate } from './state-update';
import type { GenerationMeta, LocalNvram, LocalState } from './types';

/** Every plan but a refusal says what the state records once its action is done. */
export type PreparePlan =
  | { action: 'keep'; why: string; state: StateUpdate }
  | { action: 'restore'; generation: number; displaceLocal: boolean; why: string; state: StateUpdate }
  | { action: 'provision'; displaceLocal: boolean; why: string; state: StateUpdate }
  | { action: 'refuse'; why: string };

export interface PrepareInput {
  local: LocalNvram | null;
  /** Newest auto-restorable generation. */
  newest: GenerationMeta | null;
  /** sha256 of every committed generation (all kinds) whose data verified or was not read. */
  knownShas: ReadonlySet<string>;
  /** Generations found corrupt (moved aside): never restored; their recorded content is real data. */
  corrupt?: readonly GenerationMeta[];
  state: LocalState | null;
  templateAvailable: boolean;
  /** Guest-visible flash size the firmware expects (usually the VARS template size). */
  expectedSize?: number;
  incomingMigration: boolean;
}

const sizeOk = (size: number, expected?: number): boolean => expected === undefined || size === expected;

/** The sync point a prepare records: the local file holds `sha256`, last synced with `generation`. */
const prepared = (generation: number | null, sha256: string | null | typeof WRITTEN, incomingMigration?: true): StateUpdate => ({
  do: 'record',
  generation,
  sha256,
  ...(incomingMigration ? { incomingMigration } : {}),
  prepared: true,
});

export function planPrepare(i: PrepareInput): PreparePlan {
  const { local, newest, expectedSize } = i;
  if (i.incomingMigration)
    return { action: 'keep', why: 'incoming migration: QEMU streams the flash content', state: prepared(newest?.generation ?? null, local?.sha256 ?? null, true) };

  // the file is left as it is: the sync point known before stays (or, with none, the file's content)
  const unchanged = prepared(i.state?.generation ?? null, i.state?.sha256 ?? local?.sha256 ?? null);
  // a restore writes the generation's data, which read() checked against its sha256
  const restore = (n: GenerationMeta, displaceLocal: boolean, why: string): PreparePlan =>
    sizeOk(n.size, expectedSize)
      ? { action: 'restore', generation: n.generation, displaceLocal, why, state: prepared(n.generation, n.sha256) }
      : {
          action: 'refuse',
          why: `archived generation ${n.generation} is ${n.size} bytes but the firmware expects ${expectedSize}; pick a matching firmware or run: ovmf-hook nvram reset`,
        };

  const fromTemplate = prepared(null, WRITTEN);
  const corrupt = i.corrupt ?? [];
  const skipped = corrupt.length ? ` (generation${corrupt.length > 1 ? 's' : ''} ${corrupt.map((m) => m.generation).join(', ')} corrupt, moved aside)` : '';
  if (!local) {
    if (newest) return restore(newest, false, `no local NVRAM: restoring generation ${newest.generation}${skipped}`);
    // a blank template must never stand in for archived data: it would become the newest generation
    if (corrupt.length)
      return { action: 'refuse', why: `no local NVRAM and every archived generation that could be restored is corrupt${skipped}; restore an older one (ovmf-hook nvram list, nvram restore --generation N) or start from the template on purpose (ovmf-hook nvram reset)` };
    if (i.templateAvailable) return { action: 'provision', displaceLocal: false, why: 'no local NVRAM and no archive: provisioning from the template', state: fromTemplate };
    return { action: 'keep', why: 'no local NVRAM, no archive and no template: left to libvirt', state: unchanged };
  }

  const known = i.knownShas.has(local.sha256);
  if (!sizeOk(local.size, expectedSize)) {
    const why = `local NVRAM is ${local.size} bytes but the firmware expects ${expectedSize}`;
    if (newest) return restore(newest, !known, `${why}: restoring generation ${newest.generation}`);
    if (i.templateAvailable) return { action: 'provision', displaceLocal: !known, why: `${why}: provisioning from the template`, state: fromTemplate };
    return { action: 'refuse', why: `${why} and there is no archive or template to replace it; run: ovmf-hook nvram reset` };
  }

  const intact = corrupt.find((m) => m.sha256 === local.sha256);
  // not archived: newer than the newest valid generation, which it is recorded as synced with
  if (intact)
    return {
      action: 'keep',
      why: `local NVRAM is the content of generation ${intact.generation}, whose archived copy is corrupt (moved aside): keeping it; it is archived again at release`,
      state: prepared(newest?.generation ?? null, local.sha256),
    };
  if (!newest) return { action: 'keep', why: 'archive is empty: keeping the local NVRAM', state: unchanged };
  if (local.sha256 === newest.sha256) return { action: 'keep', why: `local NVRAM equals generation ${newest.generation}`, state: prepared(newest.generation, local.sha256) };
  if (known) return restore(newest, false, `local NVRAM is an older archived copy: restoring generation ${newest.generation}${skipped}`);
  if (i.state?.generation === newest.generation)
    return { action: 'keep', why: `local NVRAM changed since generation ${newest.generation} was synced (not archived yet): keeping it`, state: unchanged };
  return restore(newest, true, `archive generation ${newest.generation} is newer than the unarchived local NVRAM: displacing the local copy and restoring${skipped}`);
}

export type ReleasePlan =
  | { action: 'archive'; kind: 'archive' | 'fenced'; why: string; state: StateUpdate }
  | { action: 'skip'; why: string; state: StateUpdate };

export interface ReleaseInput {
  local: LocalNvram | null;
  /** Newest auto-restorable generation. */
  newest: GenerationMeta | null;
  /** libvirt's shutoff reason (`release end <reason>`, libvirt ≥ 10.5; '-' or undefined before). */
  reason?: string;
  claimHeldByUs: boolean;
  /** This host's prepare refused the start this release follows (see LocalState.startRefused). */
  startRefused?: boolean;
  /** The per-host state as the release found it. */
  state?: LocalState | null;
}

export function planRelease(i: ReleaseInput): ReleasePlan {
  // the VM is no longer running here: the marks of its start go (a skip keeps the sync point)
  const stopped: StateUpdate = i.state?.claimToken || i.state?.preparedAt ? { do: 'forget', marks: ['claimToken', 'preparedAt'] } : { do: 'keep' };
  if (i.startRefused)
    // the refusal is answered; a claim token stays: that claim predates the refused start and protects a local copy
    return { action: 'skip', why: "this host's prepare refused the start: the VM did not run here, nothing to archive", state: { do: 'forget', marks: ['startRefused', 'preparedAt'] } };
  if (i.reason === 'migrated')
    // the local file no longer reflects the archive sync point
    return { action: 'skip', why: 'VM migrated away: its NVRAM now lives on the destination', state: { do: 'clear' } };
  if (!i.local) return { action: 'skip', why: 'no local NVRAM to archive (archives are kept)', state: stopped };
  if (i.newest && i.local.sha256 === i.newest.sha256)
    return { action: 'skip', why: `local NVRAM equals generation ${i.newest.generation}`, state: { do: 'record', generation: i.newest.generation, sha256: i.local.sha256 } };
  if (!i.claimHeldByUs)
    // fenced: this copy must never count as synced
    return { action: 'archive', kind: 'fenced', why: 'this host no longer holds the VM claim: archiving as fenced (never auto-restored)', state: { do: 'clear' } };
  return { action: 'archive', kind: 'archive', why: 'archiving the local NVRAM', state: { do: 'record', generation: ARCHIVED, sha256: i.local.sha256 } };
}
