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
export { allAsync, asyncIo, ioForLocalDirs, isLocalFilesystem, localDirs, syncIo, type Io, type IoFor } from './fs-api';
// the state's writers are the lifecycle (what its plans say) and these named operations
export {
  clearIncomingMigration,
  clearStartRefused,
  getLocalState,
  markIncomingMigration,
  markRestoringImage,
  markStartRefused,
  type StateAccess,
} from './local-state';
export {
  enrollNvram,
  prepareNvram,
  releaseNvram,
  resetNvram,
  restoreGeneration,
  type EnrollNvramOptions,
  type NvramEdit,
  type NvramOwner,
  type PrepareOptions,
  type PrepareResult,
  type ReleaseOptions,
  type ReleaseResult,
  type ResetOptions,
  type RestoreGenerationOptions,
} from './lifecycle';
export { configPath, hostIdentity, loadConfig, loadConfigAsync, lookupId, MAX_CONFIG_BYTES, parseQemuConfOwner, qemuOwnerNames, resolveIds } from './config';
export { loadCatalog, statSizes, type FirmwareCatalog, type LoadCatalogOptions } from './firmware';
export {
  applyTemplateInstall,
  applyTemplateRemove,
  ownDescriptors,
  planTemplateInstall,
  planTemplateRemove,
  secureBootTemplateStatus,
  type OwnDescriptor,
  type SecureBootTemplateStatus,
  type TemplateDirs,
  type TemplateInstallPlan,
  type TemplateRemovePlan,
} from './firmware-template';
export { openNvramDir, withNvramDir, type NvramDir } from './nvram-dir';
