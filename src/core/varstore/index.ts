/** edk2/OVMF variable store: parse, decode, summarise, diff, render. Pure (no I/O). */
export {
  parseVarstore,
  decodeAttributes,
  EFI_AUTHENTICATED_VARIABLE_GUID,
  EFI_SYSTEM_NV_DATA_FV_GUID,
  EFI_VARIABLE_GUID,
  type Attributes,
  type AttributeFlag,
  type Layout,
  type ParsedVarstore,
  type Skipped,
  type Variable,
} from './parse';
export { devicePathsToText } from './devicepath';
export {
  certificateInfo,
  decodeLoadOption,
  decodeOrder,
  decodeSignatureLists,
  decodeU16,
  decodeU8,
  decodeVariable,
  diffVarstores,
  findVariable,
  optionName,
  secureBootSummary,
  type CertificateInfo,
  type Decoded,
  type LoadOption,
  type SecureBootSummary,
  type SignatureCounts,
  type SignatureEntry,
  type SignatureList,
  type Switch,
  type VariableChange,
  type VarstoreDiff,
} from './decode';
export {
  EFI_CERT_SHA256,
  EFI_CERT_X509,
  EFI_GLOBAL_VARIABLE,
  EFI_IMAGE_SECURITY_DATABASE,
  MICROSOFT_VENDOR,
  SHIM_LOCK,
  signatureTypeName,
  vendorName,
} from './guids';
export { diffToJson, renderDiff, renderVarsTable, variableToJson, varstoreToJson, type VariableJson } from './render';
