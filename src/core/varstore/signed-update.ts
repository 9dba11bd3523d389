/**
 * A signed variable update as Microsoft publishes DBX updates (`DBXUpdate.bin`, and what UEFI's
 * SetVariable() takes for a time-based authenticated variable): an EFI_VARIABLE_AUTHENTICATION_2
 * header followed by the new content, EFI_SIGNATURE_LISTs. Pure.
 *
 * EFI_VARIABLE_AUTHENTICATION_2 (UEFI spec 8.2.2, MdePkg/Include/Uefi/UefiMultiPhase.h):
 *   TimeStamp  EFI_TIME (16 B): Year u16, Month, Day, Hour, Minute, Second u8, Pad1 u8,
 *              Nanosecond u32, TimeZone i16, Daylight u8, Pad2 u8 — for an authenticated variable
 *              Pad1, Nanosecond, TimeZone, Daylight and Pad2 must be 0 (edk2's
 *              VerifyTimeBasedPayload refuses anything else)
 *   AuthInfo   WIN_CERTIFICATE_UEFI_GUID: Hdr { dwLength u32 (the whole AuthInfo), wRevision u16
 *              0x0200, wCertificateType u16 0x0EF1 (WIN_CERT_TYPE_EFI_GUID) }, CertType GUID
 *              EFI_CERT_TYPE_PKCS7_GUID, CertData (a DER PKCS#7 SignedData over name, vendor,
 *              attributes, timestamp and content)
 *   then the content, here the EFI_SIGNATURE_LISTs that become the variable's data.
 *
 * The PKCS#7 signature is not verified: it is checked only for being a DER structure. Offline, the
 * store is written as the firmware's own (the firmware trusts its own store, as for every variable
 * the varstore writer writes); the signature matters to a firmware that applies the update itself
 * through SetVariable(). What is taken from the file is its content and its timestamp.
 */
import { VarstoreError } from '../errors';
import { readSignatureLists } from './certs';
import { readGuid } from './parse';
import { formatEfiTime } from './write';

export const EFI_CERT_TYPE_PKCS7 = '4aafd29d-68df-49ee-8aa9-347d375665a7';
const WIN_CERT_TYPE_EFI_GUID = 0x0ef1;
const WIN_CERT_REVISION = 0x0200;
const EFI_TIME_SIZE = 16;
/** WIN_CERTIFICATE header (8) + CertType GUID (16). */
const AUTH_INFO_HEADER = 24;

export interface SignedUpdate {
  /** The header's TimeStamp (UTC, `YYYY-MM-DDTHH:MM:SS`). */
  timestamp: string;
  /** The content: EFI_SIGNATURE_LISTs. */
  signatureLists: Uint8Array;
  /** Signature lists and entries in the content. */
  lists: number;
  entries: number;
  /** Bytes of the PKCS#7 signature (not verified). */
  signatureBytes: number;
}

/**
 * Read a signed update (see the file comment). `what` names the input in the one-line
 * VarstoreError raised for anything that is not such an update.
 */
export function parseSignedUpdate(bytes: Uint8Array, what = 'signed update'): SignedUpdate {
  const not = (why: string): never => {
    throw new VarstoreError(`${what} is not a signed UEFI variable update (EFI_VARIABLE_AUTHENTICATION_2 header + EFI_SIGNATURE_LISTs, as Microsoft publishes DBX updates): ${why}`);
  };
  if (bytes.length < EFI_TIME_SIZE + AUTH_INFO_HEADER) not(`${bytes.length} bytes is too short for the header`);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const length = dv.getUint32(EFI_TIME_SIZE, true);
  const revision = dv.getUint16(EFI_TIME_SIZE + 4, true);
  const type = dv.getUint16(EFI_TIME_SIZE + 6, true);
  if (revision !== WIN_CERT_REVISION || type !== WIN_CERT_TYPE_EFI_GUID)
    not(`its WIN_CERTIFICATE has revision 0x${revision.toString(16)} and type 0x${type.toString(16)}, not 0x200 and 0xef1 (WIN_CERT_TYPE_EFI_GUID)`);
  const certType = readGuid(bytes, EFI_TIME_SIZE + 8);
  if (certType !== EFI_CERT_TYPE_PKCS7) not(`its certificate type is ${certType}, not EFI_CERT_TYPE_PKCS7_GUID`);
  if (length <= AUTH_INFO_HEADER || EFI_TIME_SIZE + length > bytes.length)
    not(`its WIN_CERTIFICATE length ${length} does not fit the ${bytes.length}-byte file`);
  if (bytes[EFI_TIME_SIZE + AUTH_INFO_HEADER] !== 0x30) not('its PKCS#7 signature is not a DER structure');

  const t = bytes.subarray(0, EFI_TIME_SIZE);
  const [year, month, day, hour, minute, second] = [dv.getUint16(0, true), t[2], t[3], t[4], t[5], t[6]];
  if (t[7] !== 0 || dv.getUint32(8, true) !== 0 || dv.getInt16(12, true) !== 0 || t[14] !== 0 || t[15] !== 0)
    not('its timestamp has a non-zero nanosecond, time zone, daylight or pad field (the firmware refuses such an update)');
  if (year < 1900 || year > 9999 || month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || second > 59)
    not(`its timestamp ${year}-${month}-${day} ${hour}:${minute}:${second} is not a valid EFI_TIME`);

  const signatureLists = bytes.slice(EFI_TIME_SIZE + length);
  if (signatureLists.length === 0) not('it carries no signature lists after the signature');
  let lists;
  try {
    lists = readSignatureLists(signatureLists, 'content');
  } catch (e) {
    return not((e as Error).message);
  }
  const entries = lists.reduce((n, l) => n + l.entries.length, 0);
  if (entries === 0) not('its signature lists hold no entries');
  return { timestamp: formatEfiTime(t)!, signatureLists, lists: lists.length, entries, signatureBytes: length - AUTH_INFO_HEADER };
}
