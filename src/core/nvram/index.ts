/** NVRAM lifecycle decisions and the data shapes of the archive (pure; src/io carries them out). */
export type { ClaimInfo, GenerationKind, GenerationMeta, LocalNvram, LocalState } from './types';
export { AUTO_RESTORE_KINDS, isAutoRestorable, START_WINDOW_MS, withinStartWindow } from './types';
export { planPrepare, planRelease, type PrepareInput, type PreparePlan, type ReleaseInput, type ReleasePlan } from './plan';
