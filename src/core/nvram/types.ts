/** Data shapes shared by the NVRAM archive, the per-host state, the planner and the executor. */

/**
 * Why a generation was written:
 * - `archive`   local NVRAM archived at VM stop (auto-restorable);
 * - `reset`     the pristine template after `nvram reset` (auto-restorable);
 * - `manual`    written by the CLI (`nvram restore --generation`, the copy taken before a reset) (auto-restorable);
 * - `displaced` a local copy pushed aside during a restore — recoverable, never auto-restored;
 * - `fenced`    archived by a host that no longer held the VM's claim — recoverable, never auto-restored.
 */
export const GENERATION_KINDS = ['archive', 'displaced', 'fenced', 'reset', 'manual'] as const;
export type GenerationKind = (typeof GENERATION_KINDS)[number];

export const AUTO_RESTORE_KINDS: readonly GenerationKind[] = ['archive', 'reset', 'manual'];
export const isAutoRestorable = (kind: GenerationKind): boolean => AUTO_RESTORE_KINDS.includes(kind);

/** Metadata of one committed generation (`gen-NNNNNN.json`). */
export interface GenerationMeta {
  generation: number;
  sha256: string;
  size: number;
  host: string;
  hostId: string;
  /** ISO 8601 */
  time: string;
  reason: string;
  kind: GenerationKind;
  vmName: string;
  /** The generation the archived content was derived from, when known. */
  basedOn?: number | null;
}

/**
 * The newest generation of `metas` (in generation order, as the archive lists them) whose kind is
 * one of `kinds` — by default the newest auto-restorable one, what a start restores; null if none.
 */
export const newestRestorable = (metas: readonly GenerationMeta[], kinds: readonly GenerationKind[] = AUTO_RESTORE_KINDS): GenerationMeta | null =>
  metas.filter((m) => kinds.includes(m.kind)).at(-1) ?? null;

/** Content of `<archive>/<uuid>/claim.json`: which host runs (or last ran) the VM. */
export interface ClaimInfo {
  host: string;
  hostId: string;
  token: string;
  vmName: string;
  /** ISO time the claim was taken. */
  since: string;
  /** ISO time after which another host may take the claim over; null = never (admin unlock). */
  expires: string | null;
  /** Newest auto-restorable generation when the claim was taken. */
  generation: number | null;
  /**
   * Token of the expired claim this one took over (its tombstone `claim.stale-<token>.json` holds
   * it): a start that libvirt then refuses gives it back (claims.ts undoTakeOver).
   */
  tookOverFrom?: string;
}

/** Another host may take the claim over: it has an expiry and `now` is past it. */
export const isExpired = (c: ClaimInfo, now: Date): boolean => c.expires !== null && Date.parse(c.expires) <= now.getTime();

/** A libvirt domain UUID (8-4-4-4-12 hex digits, either case): the archive's directory names. */
export const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Per-host record of what the local NVRAM file was last synced with (`<state>/<uuid>.json`). */
export interface LocalState {
  /** Archive generation the local file was restored from or archived as; null = none (provisioned). */
  generation: number | null;
  /** sha256 of the local file at that moment. */
  sha256: string | null;
  /** ISO time of the sync. */
  time: string;
  /** The VM arrived by incoming migration: the local content came from QEMU's migration stream. */
  incomingMigration?: boolean;
  /** Token of the archive claim this host took at prepare; its absence means "never claimed". */
  claimToken?: string;
  /**
   * ISO time this host's `prepare` let the VM start; cleared by its `release`. While it is younger
   * than START_WINDOW_MS and libvirt still says "shut off", the start is under way (QEMU may not
   * have opened the NVRAM yet): the CLI must not replace the file.
   */
  preparedAt?: string;
  /**
   * ISO time of this host's `restore begin` for the VM (`virsh restore`, a managed-save start) whose
   * policy changes the NVRAM at a cold start: the `prepare` that follows resumes a saved RAM image,
   * whose firmware expects the NVRAM as it was, so it changes nothing of its own. The plan's state
   * after that prepare no longer has it.
   */
  restoringImage?: string;
  /**
   * ISO time this host's `prepare` refused to start the VM. libvirt runs `release` right after a
   * refused start; that release must not archive (the VM never ran here, the local file may be stale).
   */
  startRefused?: string;
}

/**
 * How long a start takes at most from `prepare` to QEMU holding its files, and from a refused
 * `prepare` to the `release` libvirt runs after it (libvirt runs them at once; two minutes is wide).
 */
export const START_WINDOW_MS = 120_000;

/** `iso` (a state's time stamp) lies less than START_WINDOW_MS before `now`. */
export const withinStartWindow = (iso: string | undefined, now = new Date()): boolean =>
  iso !== undefined && now.getTime() - Date.parse(iso) < START_WINDOW_MS;

export interface LocalNvram {
  sha256: string;
  size: number;
}
