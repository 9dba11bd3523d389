/**
 * What domain XML input is refused before (and besides) parsing, with the one-line message the
 * hook and the CLI report: oversize, empty or NUL-holding input, DOCTYPE / ENTITY declarations,
 * processing instructions, unknown entity references, and a root other than the one expected.
 * Entities are never expanded. Element and attribute names that could pollute a JavaScript
 * prototype (`__proto__`, `constructor`, …) are refused by fast-xml-parser; the scanner leaves
 * every document that may hold one to it.
 */
import { XmlInputError } from '../errors';

export const DEFAULT_MAX_BYTES = 16 * 1024 * 1024;

export interface ParseOptions {
  /** largest accepted input in bytes (default 16 MiB) */
  maxBytes?: number;
  /** the only accepted root element name (default `domain`) */
  rootName?: string;
}

/**
 * The checks every input passes before a parser sees it. Returns the text without its byte order
 * mark, and the mark (or '').
 */
export function guardInput(input: string, maxBytes: number): { bom: string; text: string } {
  if (input.length > maxBytes || Buffer.byteLength(input, 'utf8') > maxBytes) {
    throw new XmlInputError(`input is ${size(Buffer.byteLength(input, 'utf8'))}; the limit is ${size(maxBytes)}`);
  }
  if (input.trim() === '') throw new XmlInputError('input is empty; expected a libvirt domain XML document');
  if (input.includes('\0')) throw new XmlInputError('input contains NUL bytes; expected a libvirt domain XML document');
  const bom = input.charCodeAt(0) === 0xfeff ? '\ufeff' : '';
  const text = bom ? input.slice(1) : input;
  // (each test only where its markup can occur at all: a search for '<!', '<?' or '&' is cheap)
  const markup = text.includes('<!') ? text.replace(/<!--[\s\S]*?-->|<!\[CDATA\[[\s\S]*?\]\]>/g, '') : text;
  if (markup.includes('<!') && (/<!DOCTYPE/i.test(markup) || /<!ENTITY/i.test(markup))) {
    throw new XmlInputError('DOCTYPE and ENTITY declarations are not accepted in domain XML');
  }
  const pi = markup.includes('<?') ? /<\?(?!xml[\s?])([^\s?]*)/.exec(markup) : null;
  if (pi || (markup.includes('<?') && /<\?xml[\s?]/.test(markup.slice(1)))) {
    throw new XmlInputError(`processing instruction <?${pi?.[1] ?? 'xml'}…?> is not accepted in domain XML`);
  }
  const badRef = markup.includes('&') ? /&(?!(?:amp|lt|gt|quot|apos|#[0-9]+|#x[0-9a-fA-F]+);)([^;\s<]{0,20})/.exec(markup) : null;
  if (badRef) {
    throw new XmlInputError(badRef[1] ? `unknown entity reference &${badRef[1]}; (only the five XML entities are accepted)` : 'bare "&" in XML text; write &amp;');
  }
  return { bom, text };
}

/** The single root among `roots` (top-level elements), when there is one and it is named `rootName`. */
export function checkRoot<T>(roots: readonly T[], nameOf: (root: T) => string, rootName: string): T {
  if (roots.length !== 1) throw new XmlInputError(`expected exactly one root element <${rootName}>, found ${roots.length}`);
  const root = roots[0]!;
  const name = nameOf(root);
  if (name !== rootName) throw new XmlInputError(`root element is <${name}>; expected <${rootName}>`);
  return root;
}

/** Names fast-xml-parser refuses or renames (its prototype pollution guard). */
const RESERVED = ['__proto__', 'constructor', 'prototype', 'hasOwnProperty', 'toString', 'valueOf', '__defineGetter__', '__defineSetter__', '__lookupGetter__', '__lookupSetter__'];

/**
 * Where a RESERVED name may stand as an element or attribute name (also matches in text or
 * values: then fast-xml-parser decides, which is only slower). One pass over the document.
 */
const MAY_BE_RESERVED = new RegExp(`[\\s<\\/](?:${RESERVED.join('|')})(?=[\\s=\\/>])`);

/** Whether `text` may name an element or attribute RESERVED (then only fast-xml-parser may accept or refuse it). */
export const mayHoldReservedName = (text: string): boolean => MAY_BE_RESERVED.test(text);

/** `16 MiB`, `50.2 MiB`, `1024 bytes` */
const size = (n: number): string =>
  n % 1048576 === 0 ? `${n / 1048576} MiB` : n >= 1048576 ? `${(n / 1048576).toFixed(1)} MiB` : `${n} bytes`;
