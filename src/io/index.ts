/** The I/O shell: safe files, the NVRAM archive and claims, per-host state, the lifecycle executor, loaders of the config and the firmware catalog. */
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
export { isLocalFilesystem, useSyncIoOnLocalDirs } from './fs-api';
export { clearLocalState, DEFAULT_STATE_DIR, getLocalState, setLocalState } from './local-state';
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
export { configPath, hostIdentity, loadConfig, loadConfigAsync, MAX_CONFIG_BYTES, parseQemuConfOwner, qemuOwnerNames, resolveIds } from './config';
export { DEFAULT_FIRMWARE_ROOTS, loadCatalog, statSizes, type FirmwareCatalog, type LoadCatalogOptions } from './firmware';
export { openNvramDir, withNvramDir, type NvramDir } from './nvram-dir';
