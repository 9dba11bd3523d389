/** QEMU firmware descriptors, libvirt's matcher, flash size classes (pure; src/io/firmware.ts reads them from disk). */
export {
  parseDescriptor,
  descriptorWarnings,
  type FirmwareDescriptor,
  type FirmwareTarget,
  type FlashFile,
  type FlashMode,
  type MappingDevice,
} from './descriptor';
export {
  orderDescriptorFiles,
  matchFirmware,
  mismatchReasons,
  describeRequest,
  globMatch,
  sizeClass,
  checkFlashPair,
  equivalentFirmware,
  sameFirmwareFile,
  type DirListing,
  type DescriptorFile,
  type FirmwareRequest,
  type FirmwareMatch,
  type SizeClass,
  type SizeMap,
  type ForeignFirmware,
} from './catalog';
export { KNOWN_FIRMWARE, BUILTIN_DIR, knownFirmwareFor } from './known-paths';
export {
  chooseTemplateSource,
  ms2023Template,
  readTemplateRecord,
  renderTemplateDescriptor,
  SECURE_BOOT_MS_REQUEST,
  TEMPLATE_COMMAND,
  TEMPLATE_MARKER,
  templateDescriptorName,
  templateFileName,
  type TemplateCopy,
  type TemplateRecord,
  type TemplateSource,
} from './template';
