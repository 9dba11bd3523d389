/**
 * A faithful, editable XML document for libvirt domain XML.
 *
 * fast-xml-parser validates and parses (with captureMetaData: start/end offsets into the original
 * text); this module keeps a light element tree whose nodes remember where they came from. An
 * unchanged element serializes to exactly its original bytes; an edited one rebuilds only its start
 * tag (unchanged attributes keep their original text and quotes) and splices new children in with
 * the indentation of their siblings. So an edited document differs from its input only where an edit
 * landed, and an unedited one serializes to the same bytes.
 *
 * Safety: DOCTYPE / ENTITY declarations, processing instructions, unknown entity references,
 * dangerous element names (`__proto__`, `constructor`, …), several roots and oversize input are
 * rejected with an XmlInputError. Entities are never expanded; inserted values are escaped.
 */
import { XMLParser, XMLValidator } from 'fast-xml-parser';
import { XmlInputError } from '../errors';

export const DEFAULT_MAX_BYTES = 16 * 1024 * 1024;

interface Source {
  start: number; // '<' of the start tag
  openEnd: number; // just after '>' of the start tag
  closeStart: number; // '<' of the end tag (== openEnd for a self-closing element)
  end: number; // just after the element
  selfClosing: boolean;
}

interface Attr {
  name: string;
  /** value as written in the source (entities not decoded) */
  raw: string;
  /** original text of the attribute including leading whitespace; undefined once edited */
  text?: string;
}

/** A run of non-element content (text, comments, CDATA) kept verbatim. */
export interface XmlRaw {
  readonly kind: 'raw';
  text: string;
}

export type XmlNode = XmlElement | XmlRaw;

const ESC_ATTR: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', "'": '&apos;', '"': '&quot;' };
export const escapeAttr = (v: string): string => v.replace(/[&<>'"]/g, (c) => ESC_ATTR[c]!);
export const escapeText = (v: string): string => v.replace(/[&<>]/g, (c) => ESC_ATTR[c]!);

const NAMED: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };
export function decodeEntities(s: string): string {
  if (!s.includes('&')) return s;
  return s.replace(/&(#x[0-9a-fA-F]+|#[0-9]+|[a-z]+);/g, (m, e: string) => {
    if (e[0] !== '#') return NAMED[e] ?? m;
    const cp = e[1] === 'x' ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10);
    return String.fromCodePoint(cp);
  });
}

/** The decoded character data of raw content: comments dropped, CDATA unwrapped, entities decoded. */
function rawToText(raw: string): string {
  let out = '';
  const re = /<!--[\s\S]*?-->|<!\[CDATA\[([\s\S]*?)\]\]>/g;
  let last = 0;
  for (let m = re.exec(raw); m; m = re.exec(raw)) {
    out += decodeEntities(raw.slice(last, m.index)) + (m[1] ?? '');
    last = re.lastIndex;
  }
  return out + decodeEntities(raw.slice(last));
}

export class XmlElement {
  readonly kind = 'element';
  parent: XmlElement | null = null;
  children: XmlNode[] = [];
  /** this element's start tag or child list was edited */
  private edited = false;
  /** some descendant was edited */
  private descendantEdited = false;

  constructor(
    readonly name: string,
    private attrs: Attr[],
    readonly src: Source | undefined,
    private readonly doc: XmlDocument | undefined,
  ) {}

  // ---- queries ---------------------------------------------------------------------------

  /** Decoded value of an attribute, or undefined. */
  attr(name: string): string | undefined {
    const a = this.attrs.find((x) => x.name === name);
    return a === undefined ? undefined : decodeEntities(a.raw);
  }

  attrNames(): string[] {
    return this.attrs.map((a) => a.name);
  }

  elements(name?: string): XmlElement[] {
    const out: XmlElement[] = [];
    for (const c of this.children) if (c.kind === 'element' && (name === undefined || c.name === name)) out.push(c);
    return out;
  }

  /** First child element at a slash-separated path (`os/loader`), or undefined. */
  find(path: string): XmlElement | undefined {
    let cur: XmlElement | undefined = this;
    for (const part of path.split('/')) {
      cur = cur.elements(part)[0];
      if (!cur) return undefined;
    }
    return cur;
  }

  /** All elements at a slash-separated path (`devices/disk`). */
  findAll(path: string): XmlElement[] {
    const parts = path.split('/');
    let level: XmlElement[] = [this];
    for (const part of parts) level = level.flatMap((e) => e.elements(part));
    return level;
  }

  /** Decoded character content (comments dropped). */
  text(): string {
    let s = '';
    for (const c of this.children) if (c.kind === 'raw') s += rawToText(c.text);
    return s;
  }

  /** Slash path from the root, for change reports (`/domain/devices/disk[2]`). */
  path(): string {
    if (!this.parent) return `/${this.name}`;
    const same = this.parent.elements(this.name);
    const idx = same.length > 1 ? `[${same.indexOf(this) + 1}]` : '';
    return `${this.parent.path()}/${this.name}${idx}`;
  }

  // ---- edits -----------------------------------------------------------------------------

  /** Set an attribute (value is escaped). Returns true when something changed. */
  setAttr(name: string, value: string): boolean {
    const a = this.attrs.find((x) => x.name === name);
    if (a && decodeEntities(a.raw) === value) return false;
    if (a) {
      a.raw = escapeAttr(value);
      a.text = undefined;
    } else this.attrs.push({ name, raw: escapeAttr(value) });
    this.markEdited();
    return true;
  }

  removeAttr(name: string): boolean {
    const i = this.attrs.findIndex((x) => x.name === name);
    if (i < 0) return false;
    this.attrs.splice(i, 1);
    this.markEdited();
    return true;
  }

  /** Replace the content with escaped text. */
  setText(value: string): boolean {
    if (this.elements().length === 0 && this.text() === value) return false;
    for (const c of this.elements()) c.parent = null;
    this.children = value === '' ? [] : [{ kind: 'raw', text: escapeText(value) }];
    this.markEdited();
    return true;
  }

  /** Remove this element (and the indentation in front of it) from its parent. */
  remove(): void {
    const p = this.parent;
    if (!p) throw new Error('cannot remove the root element');
    const i = p.children.indexOf(this);
    const prev = p.children[i - 1];
    if (prev?.kind === 'raw') {
      const m = /\r?\n[ \t]*$/.exec(prev.text);
      if (m) prev.text = prev.text.slice(0, m.index);
    }
    p.children.splice(i, 1);
    // the last child element gone and only whitespace left: the parent becomes `<x …/>`
    if (p.children.every((c) => c.kind === 'raw' && c.text.trim() === '')) p.children = [];
    this.parent = null;
    p.markEdited();
  }

  /** Append a new child element after the last child element, indented like its siblings. */
  append(child: XmlElement): XmlElement {
    const last = this.elements().at(-1);
    if (last) return this.insertAfter(last, child);
    const indent = this.indent();
    const nl = this.doc?.newline ?? '\n';
    const step = this.doc?.indentStep ?? '  ';
    this.children = [{ kind: 'raw', text: nl + indent + step }, child, { kind: 'raw', text: nl + indent }, ...this.children.filter((c) => c.kind === 'raw' && c.text.trim() !== '')];
    this.adopt(child);
    return child;
  }

  /** Insert a new child element right after `ref`, on its own line with ref's indentation. */
  insertAfter(ref: XmlElement, child: XmlElement): XmlElement {
    const i = this.children.indexOf(ref);
    if (i < 0) throw new Error('insertAfter: ref is not a child');
    this.children.splice(i + 1, 0, { kind: 'raw', text: this.separatorBefore(ref) }, child);
    this.adopt(child);
    return child;
  }

  /** Insert a new child element right before `ref`, on its own line with ref's indentation. */
  insertBefore(ref: XmlElement, child: XmlElement): XmlElement {
    const i = this.children.indexOf(ref);
    if (i < 0) throw new Error('insertBefore: ref is not a child');
    this.children.splice(i, 0, child, { kind: 'raw', text: this.separatorBefore(ref) });
    this.adopt(child);
    return child;
  }

  /** Insert as the first child element. */
  prepend(child: XmlElement): XmlElement {
    const first = this.elements()[0];
    return first ? this.insertBefore(first, child) : this.append(child);
  }

  /** The child at `name`, created (appended) when missing. */
  ensure(name: string, attrs: Record<string, string> = {}): XmlElement {
    return this.elements(name)[0] ?? this.append(element(name, attrs));
  }

  // ---- serialization -----------------------------------------------------------------------

  toString(): string {
    const src = this.src;
    const orig = this.doc?.text;
    if (src && orig !== undefined && !this.edited && !this.descendantEdited) return orig.slice(src.start, src.end);
    const tagOpen = this.startTag();
    if (this.children.length === 0) {
      if (src && orig !== undefined && !src.selfClosing && !this.edited) return tagOpen + orig.slice(src.closeStart, src.end);
      if (!src || src.selfClosing || this.edited) return tagOpen.replace(/>$/, '/>');
    }
    let body = '';
    for (const c of this.children) body += c.kind === 'raw' ? c.text : c.toString();
    const close = src && orig !== undefined && !src.selfClosing ? orig.slice(src.closeStart, src.end) : `</${this.name}>`;
    return tagOpen + body + close;
  }

  // ---- internals ---------------------------------------------------------------------------

  private startTag(): string {
    const src = this.src;
    const orig = this.doc?.text;
    if (src && orig !== undefined && !this.edited) {
      const t = orig.slice(src.start, src.openEnd);
      return src.selfClosing ? t.replace(/\s*\/>$/, '>') : t;
    }
    let s = `<${this.name}`;
    for (const a of this.attrs) s += a.text ?? ` ${a.name}='${a.raw.replace(/'/g, '&apos;')}'`;
    if (src && orig !== undefined) {
      // keep whatever whitespace stood before '>' in the original start tag
      const t = orig.slice(src.start, src.openEnd);
      const tail = /(\s*)\/?>$/.exec(t)?.[1] ?? '';
      s += tail;
    }
    return s + '>';
  }

  private markEdited(): void {
    this.edited = true;
    for (let p = this.parent; p; p = p.parent) p.descendantEdited = true;
  }

  private adopt(child: XmlElement): void {
    child.parent = this;
    child.rebind(this.doc, this.indent() + (this.doc?.indentStep ?? '  '));
    this.markEdited();
  }

  /** created elements learn their document (for newline style) and indentation */
  private rebind(doc: XmlDocument | undefined, indent: string): void {
    (this as unknown as { doc: XmlDocument | undefined }).doc = doc;
    if (!this.src) {
      const nl = doc?.newline ?? '\n';
      const step = doc?.indentStep ?? '  ';
      const kids = this.elements();
      for (const k of kids) k.rebind(doc, indent + step);
      if (kids.length > 0 && !this.children.some((c) => c.kind === 'raw' && c.text.trim() !== '')) {
        this.children = kids.flatMap((k) => [{ kind: 'raw', text: nl + indent + step } as XmlRaw, k]);
        this.children.push({ kind: 'raw', text: nl + indent });
      }
    }
  }

  /** Indentation of this element's own line. */
  indent(): string {
    const p = this.parent;
    if (!p) return '';
    const i = p.children.indexOf(this);
    const prev = p.children[i - 1];
    if (prev?.kind === 'raw') {
      const m = /\n([ \t]*)$/.exec(prev.text);
      if (m) return m[1]!;
    }
    return p.indent() + (this.doc?.indentStep ?? '  ');
  }

  private separatorBefore(ref: XmlElement): string {
    const i = this.children.indexOf(ref);
    const prev = this.children[i - 1];
    if (prev?.kind === 'raw') {
      const m = /\r?\n[ \t]*$/.exec(prev.text);
      if (m) return m[0];
    }
    return (this.doc?.newline ?? '\n') + ref.indent();
  }
}

/** Build a new element (`element('controller', {type:'pci', model:'pcie-root'})`). */
export function element(name: string, attrs: Record<string, string> = {}, ...children: (XmlElement | string)[]): XmlElement {
  const e = new XmlElement(
    name,
    Object.entries(attrs).map(([n, v]) => ({ name: n, raw: escapeAttr(v) })),
    undefined,
    undefined,
  );
  for (const c of children) {
    if (typeof c === 'string') e.children.push({ kind: 'raw', text: escapeText(c) });
    else {
      c.parent = e;
      e.children.push(c);
    }
  }
  return e;
}

export interface XmlDocument {
  readonly text: string;
  readonly root: XmlElement;
  readonly newline: string;
  readonly indentStep: string;
  /** the bytes before and after the root element (declaration, comments, BOM, trailing newline) */
  readonly prolog: string;
  readonly epilog: string;
}

/** Serialize: the original bytes when nothing changed, otherwise the spliced text. */
export const serialize = (doc: XmlDocument): string => doc.prolog + doc.root.toString() + doc.epilog;

const parser = new XMLParser({
  preserveOrder: true,
  ignoreAttributes: false,
  attributeNamePrefix: '',
  allowBooleanAttributes: false,
  parseTagValue: false,
  parseAttributeValue: false,
  trimValues: false,
  processEntities: false,
  htmlEntities: false,
  commentPropName: '#comment',
  cdataPropName: '#cdata',
  ignoreDeclaration: false,
  ignorePiTags: false,
  removeNSPrefix: false,
  captureMetaData: true,
});
const META = XMLParser.getMetaDataSymbol() as unknown as symbol;

type Parsed = Record<string, unknown> & { [k: symbol]: { startIndex: number; endIndex: number } | undefined };

const ATTR_RE = /(\s+)([^\s=/>]+)(\s*=\s*)(?:"([^"]*)"|'([^']*)')/g;

export interface ParseOptions {
  /** largest accepted input in bytes (default 16 MiB) */
  maxBytes?: number;
  /** the only accepted root element name (default `domain`) */
  rootName?: string;
}

/** Parse XML text into an editable document. Throws XmlInputError on anything unsafe or malformed. */
export function parseXml(input: string, opts: ParseOptions = {}): XmlDocument {
  const maxBytes = opts.maxBytes ?? DEFAULT_MAX_BYTES;
  const rootName = opts.rootName ?? 'domain';
  if (input.length > maxBytes || Buffer.byteLength(input, 'utf8') > maxBytes) {
    throw new XmlInputError(`input is ${size(Buffer.byteLength(input, 'utf8'))}; the limit is ${size(maxBytes)}`);
  }
  if (input.trim() === '') throw new XmlInputError('input is empty; expected a libvirt domain XML document');
  if (input.includes('\0')) throw new XmlInputError('input contains NUL bytes; expected a libvirt domain XML document');
  const bom = input.charCodeAt(0) === 0xfeff ? '\ufeff' : '';
  const text = bom ? input.slice(1) : input;
  const markup = text.replace(/<!--[\s\S]*?-->|<!\[CDATA\[[\s\S]*?\]\]>/g, '');
  if (/<!DOCTYPE/i.test(markup) || /<!ENTITY/i.test(markup)) {
    throw new XmlInputError('DOCTYPE and ENTITY declarations are not accepted in domain XML');
  }
  const pi = /<\?(?!xml[\s?])([^\s?]*)/.exec(markup);
  if (pi || /<\?xml[\s?]/.test(markup.slice(1))) {
    throw new XmlInputError(`processing instruction <?${pi?.[1] ?? 'xml'}…?> is not accepted in domain XML`);
  }
  const badRef = /&(?!(?:amp|lt|gt|quot|apos|#[0-9]+|#x[0-9a-fA-F]+);)([^;\s<]{0,20})/.exec(markup);
  if (badRef) {
    throw new XmlInputError(badRef[1] ? `unknown entity reference &${badRef[1]}; (only the five XML entities are accepted)` : 'bare "&" in XML text; write &amp;');
  }
  const valid = XMLValidator.validate(text, { allowBooleanAttributes: false });
  if (valid !== true) {
    throw new XmlInputError(`malformed XML at line ${valid.err.line}, column ${valid.err.col}: ${valid.err.msg}`);
  }
  let tree: Parsed[];
  try {
    tree = parser.parse(text) as Parsed[];
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    throw new XmlInputError(`XML rejected: ${msg.split('\n')[0]!.replace(/^\[SECURITY\]\s*/, '')}`);
  }
  const roots = tree.filter((n) => !('#text' in n) && !('#comment' in n) && !('?xml' in n));
  if (roots.length !== 1) throw new XmlInputError(`expected exactly one root element <${rootName}>, found ${roots.length}`);
  const rootNode = roots[0]!;
  const name = tagName(rootNode);
  if (name !== rootName) throw new XmlInputError(`root element is <${name}>; expected <${rootName}>`);

  const nl = text.includes('\r\n') ? '\r\n' : '\n';
  const indentStep = /\n( +|\t)</.exec(text)?.[1] ?? '  ';
  const doc = { text, newline: nl, indentStep } as { -readonly [K in keyof XmlDocument]: XmlDocument[K] };
  const root = build(rootNode, text, doc as XmlDocument);
  doc.root = root;
  doc.prolog = bom + text.slice(0, root.src!.start);
  doc.epilog = text.slice(root.src!.end);
  return doc as XmlDocument;
}

/** `16 MiB`, `50.2 MiB`, `1024 bytes` */
const size = (n: number): string =>
  n % 1048576 === 0 ? `${n / 1048576} MiB` : n >= 1048576 ? `${(n / 1048576).toFixed(1)} MiB` : `${n} bytes`;

function tagName(n: Parsed): string {
  for (const k of Object.keys(n)) if (k !== ':@') return k;
  throw new XmlInputError('XML rejected: empty node');
}

function build(node: Parsed, text: string, doc: XmlDocument): XmlElement {
  const name = tagName(node);
  const meta = node[META];
  if (!meta) throw new XmlInputError(`XML rejected: no position for <${name}>`);
  const start = meta.startIndex;
  const end = meta.endIndex;
  const openEnd = startTagEnd(text, start);
  const selfClosing = text[openEnd - 2] === '/';
  const closeStart = selfClosing ? openEnd : text.lastIndexOf('</', end - 1);
  const tag = text.slice(start, openEnd);
  const attrs: Attr[] = [];
  ATTR_RE.lastIndex = 0;
  for (let m = ATTR_RE.exec(tag); m; m = ATTR_RE.exec(tag)) {
    attrs.push({ name: m[2]!, raw: m[4] ?? m[5] ?? '', text: m[0] });
  }
  const el = new XmlElement(name, attrs, { start, openEnd, closeStart, end, selfClosing }, doc);
  const kids = (node[name] as Parsed[] | undefined) ?? [];
  let pos = openEnd;
  for (const k of kids) {
    const kname = tagName(k);
    if (kname === '#text' || kname === '#comment' || kname === '#cdata') continue;
    const child = build(k, text, doc);
    if (child.src!.start > pos) el.children.push({ kind: 'raw', text: text.slice(pos, child.src!.start) });
    child.parent = el;
    el.children.push(child);
    pos = child.src!.end;
  }
  if (!selfClosing && closeStart > pos) el.children.push({ kind: 'raw', text: text.slice(pos, closeStart) });
  return el;
}

/** Index just after the '>' that closes the start tag beginning at `start` (quotes respected). */
function startTagEnd(text: string, start: number): number {
  let q = '';
  for (let i = start + 1; i < text.length; i++) {
    const c = text[i];
    if (q) {
      if (c === q) q = '';
    } else if (c === '"' || c === "'") q = c;
    else if (c === '>') return i + 1;
  }
  throw new XmlInputError('malformed XML: unterminated start tag');
}
