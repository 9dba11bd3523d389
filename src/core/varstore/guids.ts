/** Well-known vendor / type GUIDs seen in OVMF variable stores (lowercase registry format). */

export const EFI_GLOBAL_VARIABLE = '8be4df61-93ca-11d2-aa0d-00e098032b8c';
export const EFI_IMAGE_SECURITY_DATABASE = 'd719b2cb-3d3a-4596-a3bc-dad00e67656f';
export const EFI_SECURE_BOOT_ENABLE_DISABLE = 'f0a30bc7-af08-4556-99c4-001009c93a44';
export const EFI_CUSTOM_MODE_ENABLE = 'c076ec0c-7028-4399-a072-71ee5c448b9f';
export const SHIM_LOCK = '605dab50-e046-4300-abb6-3dd810dd8b23';
export const MICROSOFT_VENDOR = '77fa9abd-0359-4d32-bd60-28f4e78f784b';

export const EFI_CERT_X509 = 'a5c059a1-94e4-4aa7-87b5-ab155c2bf072';
export const EFI_CERT_SHA256 = 'c1c41626-504c-4092-aca9-41f936934328';

/** Variable vendors (the namespace a variable lives in). */
const VENDORS: Readonly<Record<string, string>> = {
  [EFI_GLOBAL_VARIABLE]: 'EfiGlobalVariable',
  [EFI_IMAGE_SECURITY_DATABASE]: 'EfiImageSecurityDatabase',
  [EFI_SECURE_BOOT_ENABLE_DISABLE]: 'SecureBootEnableDisable',
  [EFI_CUSTOM_MODE_ENABLE]: 'CustomModeEnable',
  [SHIM_LOCK]: 'ShimLock',
  [MICROSOFT_VENDOR]: 'Microsoft',
  'd9bee56e-75dc-49d9-b4d7-b534210f637a': 'EfiCertDb',
  '9073e4e0-60ec-4b6e-9903-4c223c260f3c': 'EfiVendorKeysNv',
  '4c19049f-4137-4dd3-9c10-8b97a83ffdfa': 'EfiMemoryTypeInformation',
  'eb704011-1402-11d3-8e77-00a0c969723b': 'MtcVendor',
  '04b37fe8-f6ae-480b-bdd5-37d98c5e89aa': 'EdkiiVarErrorFlag',
  '4b47d616-a8d6-4552-9d44-ccad2e0f4cf9': 'IScsiConfig',
  '59324945-ec44-4c0d-b1cd-9db139df070c': 'IScsiInitiatorName',
  '5b446ed1-e30b-4faa-871a-3654eca36080': 'Ip4Config2',
  '937fe521-95ae-4d1a-8929-48bcd90ad31a': 'Ip6Config',
  '9fb9a8a1-2f4a-43a6-889c-d0f7b6c47ad5': 'Dhcp6ServiceBinding',
  '158def5a-f656-419c-b027-7a3192c079d2': 'ShellVariable',
  '7235c51c-0c80-4cab-87ac-3b084a6304b1': 'OvmfPlatformConfig',
  '4a67b082-0a4c-41cf-b6c7-440b29bb8c4f': 'LinuxLoader', // systemd-boot / systemd-stub
};

/** EFI_SIGNATURE_LIST.SignatureType values. */
const SIGNATURE_TYPES: Readonly<Record<string, string>> = {
  [EFI_CERT_X509]: 'X509',
  [EFI_CERT_SHA256]: 'SHA256',
  '826ca512-cf10-4ac9-b187-be01496631bd': 'SHA1',
  '0b6e5233-a65c-44c9-9407-d9ab83bfc8bd': 'SHA224',
  'ff3e5307-9fd0-48c9-85f1-8ad56c701e01': 'SHA384',
  '093e0fae-a6c4-4f50-9f1b-d41e2b89c19a': 'SHA512',
  '3c5766e8-269c-4e34-aa14-ed776e85b3b6': 'RSA2048',
  'e2b36190-879b-4a3d-ad8d-f2e7bba32784': 'RSA2048_SHA256',
  '67f8444f-8743-48f1-a328-1eaab8736080': 'RSA2048_SHA1',
  '3bd2a492-96c0-4079-b420-fcf98ef103ed': 'X509_SHA256',
  '7076876e-80c2-4ee6-aad2-28b349a6865b': 'X509_SHA384',
  '446dbf63-2502-4cda-bcfa-2465d2b0fe9d': 'X509_SHA512',
};

/** Friendly name of a variable vendor GUID, if known. */
export const vendorName = (guid: string): string | undefined => VENDORS[guid.toLowerCase()];

/** Short name of an EFI_SIGNATURE_LIST type GUID, if known. */
export const signatureTypeName = (guid: string): string | undefined => SIGNATURE_TYPES[guid.toLowerCase()];
