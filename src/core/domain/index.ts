/** The domain XML document and its typed view (pure). */
export { Domain, parseDomain, POLICY_NS, type Loader, type Nvram } from './domain';
export { element, parseXml, serialize, escapeAttr, escapeText, decodeEntities, DEFAULT_MAX_BYTES, XmlElement, type XmlDocument, type XmlNode, type ParseOptions } from '../xml';
export { uefiFiles, type UefiFiles } from './uefi-files';
