/**
 * What a plan records in the per-host state (LocalState, `<state dir>/<uuid>.json`) once its
 * action is done, and the state that makes (pure). The plan (plan.ts) decides the update;
 * src/io/local-state.ts writes it. What only the execution knows — the time, the claim token the
 * prepare took, the generation number the archive gave, the hash of the template written — comes
 * in as StateFacts.
 */
import type { LocalState } from './types';

/** Marks of the state a `forget` update removes (the sync point stays). */
export type StateMark = keyof Pick<LocalState, 'claimToken' | 'preparedAt' | 'startRefused' | 'incomingMigration'>;

/** Stands for a value only the execution knows (given as StateFacts when the update is written). */
export type Fact<K extends 'archived' | 'written'> = { readonly fact: K };
/** The generation number the action's archive step returned. */
export const ARCHIVED: Fact<'archived'> = { fact: 'archived' };
/** The sha256 of the data the action wrote. */
export const WRITTEN: Fact<'written'> = { fact: 'written' };

export type StateUpdate =
  /** Nothing is written. */
  | { do: 'keep' }
  /** The state file is removed: no sync point is known, so the local copy never counts as synced. */
  | { do: 'clear' }
  /**
   * The state becomes this sync point, stamped with the time; nothing else of the previous state
   * is kept. `prepared`: this host's prepare lets the VM start, so `preparedAt` and the claim token
   * it took are recorded too.
   */
  | { do: 'record'; generation: number | null | Fact<'archived'>; sha256: string | null | Fact<'written'>; incomingMigration?: true; prepared?: true }
  /** The previous state without these marks; nothing is written when it has none of them. */
  | { do: 'forget'; marks: readonly StateMark[] };

export interface StateFacts {
  now: Date;
  /** The state read before the action: what a `forget` keeps. */
  previous: LocalState | null;
  /** Token of the claim the prepare took (recorded with `prepared`). */
  claimToken?: string;
  /** The generation the archive step returned (ARCHIVED). */
  archived?: number;
  /** The sha256 of the data the action wrote (WRITTEN). */
  written?: string;
}

/** `v` itself, or the fact it stands for. */
function resolve<T extends number | string>(v: T | null | Fact<'archived' | 'written'>, f: StateFacts): T | null {
  if (v === null || typeof v !== 'object') return v;
  const known = f[v.fact];
  if (known === undefined) throw new Error(`state update: the "${v.fact}" fact is missing`);
  return known as T;
}

/** The state `u` leaves: a LocalState to write, null to remove the file, undefined to leave it as it is. */
export function stateAfter(u: StateUpdate, f: StateFacts): LocalState | null | undefined {
  switch (u.do) {
    case 'keep':
      return undefined;
    case 'clear':
      return null;
    case 'forget': {
      if (!f.previous || !u.marks.some((m) => f.previous![m] !== undefined)) return undefined;
      const s: LocalState = { ...f.previous };
      for (const m of u.marks) delete s[m];
      return s;
    }
    case 'record': {
      const time = f.now.toISOString();
      return {
        generation: resolve(u.generation, f),
        sha256: resolve(u.sha256, f),
        ...(u.incomingMigration ? { incomingMigration: true } : {}),
        time,
        ...(u.prepared ? { preparedAt: time, ...(f.claimToken ? { claimToken: f.claimToken } : {}) } : {}),
      };
    }
  }
}
