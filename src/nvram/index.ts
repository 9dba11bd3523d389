/** Public API of the NVRAM archive, safe file layer and lifecycle (the varstore parser lives in ./varstore). */
export type { ClaimInfo, GenerationKind, GenerationMeta, LocalNvram, LocalState } from './types';
export { AUTO_RESTORE_KINDS, isAutoRestorable, START_WINDOW_MS, withinStartWindow } from './types';
export { lockVm, type VmLock } from './vm-lock';
export { checkFileOwner, claimFile, getFileOwner, type FileOwner } from './local-state';
export {
  cleanupTemps,
  fsyncDir,
  MAX_NVRAM_BYTES,
  NAME_MAX,
  readNvramSafely,
  sha256,
  writeFileAtomic,
  type Faults,
  type WriteOptions,
} from './safe-fs';
export {
  DEFAULT_ARCHIVE_ROOT,
  normalizeUuid,
  openArchive,
  type AddOptions,
  type AddResult,
  type Archive,
  type ArchiveOptions,
  type CorruptGeneration,
  type RepairReport,
} from './archive';
export type { ClaimOptions, ClaimResult } from './claims';
export { isLocalFilesystem, useSyncIoOnLocalDirs } from './io';
export { clearLocalState, DEFAULT_STATE_DIR, getLocalState, setLocalState } from './local-state';
export { planPrepare, planRelease, type PrepareInput, type PreparePlan, type ReleaseInput, type ReleasePlan } from './plan';
export {
  markStartRefused,
  prepareNvram,
  releaseNvram,
  resetNvram,
  restoreGeneration,
  type NvramOwner,
  type PrepareOptions,
  type PrepareResult,
  type ReleaseOptions,
  type ReleaseResult,
  type ResetOptions,
  type RestoreGenerationOptions,
} from './lifecycle';
