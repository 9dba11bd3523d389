/**
 * A faithful, editable XML document for libvirt domain XML (pure): input guards (guard.ts), the
 * strict scanner (scan.ts) with fast-xml-parser for everything else (fxp.ts), and the element
 * tree with its splice edits (tree.ts).
 */
import { DEFAULT_MAX_BYTES, guardInput, type ParseOptions } from './guard';
import { parseWithFxp } from './fxp';
import { scan } from './scan';
import { makeDocument, type XmlDocument } from './tree';

export { DEFAULT_MAX_BYTES, type ParseOptions } from './guard';
export { element, serialize, escapeAttr, escapeText, decodeEntities, XmlElement, type XmlDocument, type XmlNode } from './tree';

/** Parse XML text into an editable document. Throws XmlInputError on anything unsafe or malformed. */
export const parseXml = (input: string, opts: ParseOptions = {}): XmlDocument => parseWith(input, opts, true);

/**
 * parseXml without the scanner: every input goes through fast-xml-parser. The reference the
 * scanner is tested against (test/domain/xml-scanner.test.ts); parseXml is the one to use.
 */
export const parseXmlReference = (input: string, opts: ParseOptions = {}): XmlDocument => parseWith(input, opts, false);

function parseWith(input: string, opts: ParseOptions, useScanner: boolean): XmlDocument {
  const rootName = opts.rootName ?? 'domain';
  const { bom, text } = guardInput(input, opts.maxBytes ?? DEFAULT_MAX_BYTES);
  return makeDocument(bom, text, (doc) => (useScanner ? scan(text, rootName, doc) : undefined) ?? parseWithFxp(text, rootName, doc));
}
