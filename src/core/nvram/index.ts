/** NVRAM lifecycle decisions and the data shapes of the archive (pure; src/io carries them out). */
export type { ClaimInfo, GenerationKind, GenerationMeta, LocalNvram, LocalState } from './types';
export { AUTO_RESTORE_KINDS, GENERATION_KINDS, isAutoRestorable, isExpired, newestRestorable, START_WINDOW_MS, UUID_RE, withinStartWindow } from './types';
export { planPrepare, planRelease, type PrepareInput, type PreparePlan, type ReleaseInput, type ReleasePlan } from './plan';
export { ARCHIVED, stateAfter, WRITTEN, type Fact, type StateFacts, type StateMark, type StateUpdate } from './state-update';
