/**
 * A faithful, editable XML document for libvirt domain XML.
 *
 * A strict single-pass scanner of this module builds a light element tree whose nodes remember
 * where they came from (offsets into the original text). It recognises only plain well-formed
 * markup (ASCII names, quoted attributes, no duplicates, matching end tags, comments, CDATA, an XML
 * declaration); any other input, which includes every malformed one, goes to fast-xml-parser
 * (XMLValidator, then XMLParser with captureMetaData), which decides and words the error. So the
 * scanner only ever accepts what fast-xml-parser accepts (test/domain/xml-scanner.test.ts checks
 * it differentially), and a 183 KiB domain parses in a few ms instead of ~150 ms cold. An
 * unchanged element serializes to exactly its original bytes; an edited one rebuilds only its start
 * tag (unchanged attributes keep their original text and quotes) and splices new children in with
 * the indentation of their siblings. So an edited document differs from its input only where an edit
 * landed, and an unedited one serializes to the same bytes.
 *
 * Safety: DOCTYPE / ENTITY declarations, processing instructions, unknown entity references,
 * dangerous element names (`__proto__`, `constructor`, …), several roots and oversize input are
 * rejected with an XmlInputError. Entities are never expanded; inserted values are escaped.
 */
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
  private kids: XmlNode[] | undefined;
  /** this element's start tag or child list was edited */
  private edited = false;
  /** some descendant was edited */
  private descendantEdited = false;
  /** for path(), per child name: the 1-based index of each child element of that name, and their count */
  private siblingIndex: Map<string, { count: number; index: Map<XmlElement, number> }> | undefined;

  /**
   * @param attrSource the attributes, or (from the scanner) the attribute text of the start tag,
   *   split into Attr records on first use: most elements of a big domain are never asked
   * @param scan, scanIndex the scanner's record of this element (then `source` is unused): its
   *   children are built from it on first use (a filter that reads `<os>` never builds the
   *   thousand devices it passes through), and its offsets are read from it (no object per element)
   */
  constructor(
    readonly name: string,
    private attrSource: Attr[] | string,
    private readonly source: Source | undefined,
    private readonly doc: XmlDocument | undefined,
    private readonly scan?: Scan,
    private readonly scanIndex = -1,
  ) {}

  /** Where the element stands in the parsed text; undefined for a created element. */
  get src(): Source | undefined {
    const s = this.scan;
    if (!s) return this.source;
    const i = this.scanIndex;
    const openEnd = s.openEnd[i]!;
    const end = s.end[i]!;
    return { start: s.start[i]!, openEnd, closeStart: s.closeStart[i]!, end, selfClosing: end === openEnd };
  }

  /** The child nodes in document order: elements and the raw content between them. */
  get children(): XmlNode[] {
    return (this.kids ??= this.scan ? scannedChildren(this.scan, this.scanIndex, this) : []);
  }

  set children(nodes: XmlNode[]) {
    this.kids = nodes;
  }

  private get attrs(): Attr[] {
    const a = this.attrSource;
    return typeof a === 'string' ? (this.attrSource = splitAttrs(a)) : a;
  }

  // ---- queries ---------------------------------------------------------------------------

  /** Decoded value of an attribute, or undefined. */
  attr(name: string): string | undefined {
    const src = this.attrSource;
    const raw = typeof src === 'string' ? rawAttr(src, name) : src.find((x) => x.name === name)?.raw;
    return raw === undefined ? undefined : decodeEntities(raw);
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
      cur = cur.firstChild(part);
      if (!cur) return undefined;
    }
    return cur;
  }

  private firstChild(name: string): XmlElement | undefined {
    for (const c of this.children) if (c.kind === 'element' && c.name === name) return c;
    return undefined;
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
    const steps: string[] = [];
    let el: XmlElement = this;
    for (let p = el.parent; p; el = p, p = p.parent) {
      const i = p.childIndex(el);
      steps.push(i ? `${el.name}[${i}]` : el.name);
    }
    steps.push(el.name, '');
    return steps.reverse().join('/'); // one flat string (a change list keeps thousands of them)
  }

  /** 1-based index of `child` among the same-named child elements; 0 when it is the only one. */
  private childIndex(child: XmlElement): number {
    const children = this.children;
    if (children.length <= SMALL_PARENT) {
      // counting is cheaper than keeping an index
      let n = 0;
      let at = 0;
      for (const c of children) {
        if (c.kind !== 'element' || c.name !== child.name) continue;
        n++;
        if (c === child) at = n;
      }
      return n > 1 ? at : 0;
    }
    const byName = (this.siblingIndex ??= new Map());
    let same = byName.get(child.name);
    if (!same) {
      const index = new Map<XmlElement, number>();
      for (const c of this.children) if (c.kind === 'element' && c.name === child.name) index.set(c, index.size + 1);
      byName.set(child.name, (same = { count: index.size, index }));
    }
    const i = same.index.get(child);
    if (i === undefined) return 0; // not (or no longer) a child of this element
    return same.count > 1 ? i : 0;
  }

  /** A child element named `name` came or went: its siblings of that name are counted anew. */
  private forgetIndex(name: string): void {
    this.siblingIndex?.delete(name);
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
    this.siblingIndex = undefined;
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
    p.forgetIndex(this.name);
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
    this.forgetIndex(child.name);
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
        this.siblingIndex = undefined;
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

type FastXmlParser = typeof import('fast-xml-parser');
let fxpLibrary: FastXmlParser | undefined;
/**
 * fast-xml-parser, loaded on first use: only input the scanner does not recognise needs it, and
 * with its dependencies it is half of the hook's code (evaluating it cost every hook call ~1 ms).
 */
// eslint-disable-next-line @typescript-eslint/no-require-imports
const fastXmlParser = (): FastXmlParser => (fxpLibrary ??= require('fast-xml-parser') as FastXmlParser);

let fxp: { parser: InstanceType<FastXmlParser['XMLParser']>; meta: symbol } | undefined;
/** fast-xml-parser's parser, made on first use. */
function loadFxp(): NonNullable<typeof fxp> {
  if (fxp) return fxp;
  const { XMLParser } = fastXmlParser();
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
  return (fxp = { parser, meta: XMLParser.getMetaDataSymbol() as unknown as symbol });
}

type Parsed = Record<string, unknown> & { [k: symbol]: { startIndex: number; endIndex: number } | undefined };

const ATTR_RE = /(\s+)([^\s=/>]+)(\s*=\s*)(?:"([^"]*)"|'([^']*)')/g;

export interface ParseOptions {
  /** largest accepted input in bytes (default 16 MiB) */
  maxBytes?: number;
  /** the only accepted root element name (default `domain`) */
  rootName?: string;
}

/** Parse XML text into an editable document. Throws XmlInputError on anything unsafe or malformed. */
export const parseXml = (input: string, opts: ParseOptions = {}): XmlDocument => parseWith(input, opts, true);

/**
 * parseXml without the scanner: every input goes through fast-xml-parser. The reference the
 * scanner is tested against (test/domain/xml-scanner.test.ts); parseXml is the one to use.
 */
export const parseXmlReference = (input: string, opts: ParseOptions = {}): XmlDocument => parseWith(input, opts, false);

function parseWith(input: string, opts: ParseOptions, useScanner: boolean): XmlDocument {
  const maxBytes = opts.maxBytes ?? DEFAULT_MAX_BYTES;
  const rootName = opts.rootName ?? 'domain';
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
  const nl = text.includes('\r\n') ? '\r\n' : '\n';
  const indentStep = /\n( +|\t)</.exec(text)?.[1] ?? '  ';
  const doc = { text, newline: nl, indentStep } as { -readonly [K in keyof XmlDocument]: XmlDocument[K] };
  const root = (useScanner ? scan(text, rootName, doc as XmlDocument) : undefined) ?? parseWithFxp(text, rootName, doc as XmlDocument);
  doc.root = root;
  doc.prolog = bom + text.slice(0, root.src!.start);
  doc.epilog = text.slice(root.src!.end);
  return doc as XmlDocument;
}

/** The fast-xml-parser path: validate, parse, check the root, build the tree from the parser's offsets. */
function parseWithFxp(text: string, rootName: string, doc: XmlDocument): XmlElement {
  const valid = fastXmlParser().XMLValidator.validate(text, { allowBooleanAttributes: false });
  if (valid !== true) {
    throw new XmlInputError(`malformed XML at line ${valid.err.line}, column ${valid.err.col}: ${valid.err.msg}`);
  }
  const { parser, meta } = loadFxp();
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
  return build(rootNode, text, doc, meta);
}

// ---- the scanner ----------------------------------------------------------------------------

/**
 * One item of markup at a '<': an element's start or empty tag (1 name, 2 attributes, 3 '/'), its
 * end tag (4 name), a comment or a CDATA section (neither captures). Names are ASCII XML names;
 * attribute values hold no '<' or '>'. Anything else does not match, and the scanner gives up.
 */
const ITEM_RE =
  /<(?:([A-Za-z_][\w.:-]*)((?:[ \t\r\n]+[A-Za-z_][\w.:-]*[ \t\r\n]*=[ \t\r\n]*(?:'[^'<>]*'|"[^"<>]*"))*)[ \t\r\n]*(\/?)>|\/([A-Za-z_][\w.:-]*)[ \t\r\n]*>|!--[\s\S]*?-->|!\[CDATA\[[\s\S]*?\]\]>)/y;
/** An XML declaration at the very start: version, then optionally encoding and standalone. */
const DECL_RE =
  /<\?xml[ \t\r\n]+version[ \t\r\n]*=[ \t\r\n]*(?:'[^'<>]*'|"[^"<>]*")(?:[ \t\r\n]+encoding[ \t\r\n]*=[ \t\r\n]*(?:'[^'<>]*'|"[^"<>]*"))?(?:[ \t\r\n]+standalone[ \t\r\n]*=[ \t\r\n]*(?:'[^'<>]*'|"[^"<>]*"))?[ \t\r\n]*\?>/y;
const SCAN_ATTR_RE = /[ \t\r\n]+([^ \t\r\n=]+)[ \t\r\n]*=[ \t\r\n]*(?:'([^']*)'|"([^"]*)")/g;
const NOT_SPACE = /[^ \t\r\n]/;
/** Names fast-xml-parser refuses or renames (prototype pollution guard): left to it. */
const RESERVED = new Set(['__proto__', 'constructor', 'prototype', 'hasOwnProperty', 'toString', 'valueOf', '__defineGetter__', '__defineSetter__', '__lookupGetter__', '__lookupSetter__']);
/** Deeper nesting is left to fast-xml-parser (which refuses more than 100 levels). */
const MAX_SCAN_DEPTH = 64;

/**
 * Where a RESERVED name may stand as an element or attribute name (also matches in text or
 * values: then fast-xml-parser decides, which is only slower). One pass over the document.
 */
const MAY_BE_RESERVED = new RegExp(`[\\s<\\/](?:${[...RESERVED].join('|')})(?=[\\s=\\/>])`);

/** One attribute of a start tag, for the two checks below. */
const ATTRIBUTE = `[ \\t\\r\\n]+[^\\s=]+[ \\t\\r\\n]*=[ \\t\\r\\n]*(?:'[^']*'|"[^"]*")`;
/**
 * A start tag with more attributes than this is left to fast-xml-parser (it finds a repeated one
 * in linear time; REPEATED_ATTRIBUTE takes time quadratic in the attributes of a tag).
 */
const MAX_SCAN_ATTRIBUTES = 64;
const MANY_ATTRIBUTES = new RegExp(`<[A-Za-z_][\\w.:-]*(?:${ATTRIBUTE}){${MAX_SCAN_ATTRIBUTES}}`);
/**
 * A start tag in which an attribute name comes twice. (Also matches such text in a comment or
 * CDATA: then fast-xml-parser decides, which is only slower.)
 */
const REPEATED_ATTRIBUTE = new RegExp(`<[A-Za-z_][\\w.:-]*(?:${ATTRIBUTE})*?[ \\t\\r\\n]+([^\\s=]+)[ \\t\\r\\n]*=[ \\t\\r\\n]*(?:'[^']*'|"[^"]*")(?:${ATTRIBUTE})*?[ \\t\\r\\n]+\\1[ \\t\\r\\n]*=`);

/**
 * What the scanner found, per element in document order (preorder): the name, offsets into the
 * text, the end of the attribute text (which starts right after the name) and the index after
 * the element's subtree. Plain arrays of small integers: no object per element.
 */
interface Scan {
  readonly text: string;
  readonly doc: XmlDocument;
  readonly name: string[];
  readonly start: number[];
  readonly attrEnd: number[];
  readonly openEnd: number[];
  readonly closeStart: number[];
  readonly end: number[];
  readonly next: number[];
}

/**
 * The document's root element (its children are built on first use), or undefined when the text
 * is anything but plain well-formed markup with a single `rootName` root (then fast-xml-parser
 * decides). Never throws.
 */
function scan(text: string, rootName: string, doc: XmlDocument): XmlElement | undefined {
  let pos = 0;
  if (text.startsWith('<?')) {
    DECL_RE.lastIndex = 0;
    if (!DECL_RE.test(text)) return undefined;
    pos = DECL_RE.lastIndex;
  }
  // (written for V8's interpreter as much as for its compilers: a hook process parses its domain
  // once, cold; so locals instead of property loads, and no destructuring)
  const s: Scan = { text, doc, name: [], start: [], attrEnd: [], openEnd: [], closeStart: [], end: [], next: [] };
  const { name: names, start, attrEnd, openEnd, closeStart, end, next } = s;
  // names and attributes are checked over the whole text, each in one pass of a regular expression:
  // in a cold hook process that is several times faster than checking tag by tag
  if (MAY_BE_RESERVED.test(text) || MANY_ATTRIBUTES.test(text) || REPEATED_ATTRIBUTE.test(text)) return undefined;
  const known = new Map<string, string>(); // one string per distinct name
  const open: number[] = []; // indices of the open elements
  for (;;) {
    const lt = text.indexOf('<', pos);
    // outside the root only whitespace (besides comments)
    if (open.length === 0 && NOT_SPACE.test(lt < 0 ? text.slice(pos) : text.slice(pos, lt))) return undefined;
    if (lt < 0) break;
    ITEM_RE.lastIndex = lt;
    const m = ITEM_RE.exec(text);
    if (m === null) return undefined;
    pos = ITEM_RE.lastIndex;
    let name = m[1];
    if (name !== undefined) {
      const attrText = m[2]!;
      name = known.get(name) ?? (known.set(name, name), name);
      const i = names.length;
      if (open.length === 0 && (i > 0 || name !== rootName)) return undefined; // a second root, or another root
      if (open.length >= MAX_SCAN_DEPTH) return undefined;
      names.push(name);
      start.push(lt);
      attrEnd.push(lt + 1 + name.length + attrText.length);
      openEnd.push(pos);
      if (m[3] === '/') {
        closeStart.push(pos);
        end.push(pos);
        next.push(i + 1);
      } else {
        closeStart.push(-1);
        end.push(-1);
        next.push(-1);
        open.push(i);
      }
    } else if (m[4] !== undefined) {
      const i = open.pop();
      if (i === undefined || names[i] !== m[4]) return undefined;
      closeStart[i] = lt;
      end[i] = pos;
      next[i] = names.length;
    } else if (open.length === 0 && text.charCodeAt(lt + 2) === 0x5b /* [ */) {
      return undefined; // CDATA outside the root
    }
  }
  return open.length === 0 && names.length > 0 ? scannedElement(s, 0, null) : undefined;
}

/** Parents with more children than this keep an index of them for path(). */
const SMALL_PARENT = 32;

/** Element `i` of a scan (its children are built on first use). */
function scannedElement(s: Scan, i: number, parent: XmlElement | null): XmlElement {
  const name = s.name[i]!;
  const attrStart = s.start[i]! + 1 + name.length;
  const attrEnd = s.attrEnd[i]!;
  const el = new XmlElement(name, attrEnd > attrStart ? s.text.slice(attrStart, attrEnd) : [], undefined, s.doc, s, i);
  el.parent = parent;
  return el;
}

/** The child nodes of scanned element `i`: its child elements and the raw content between them. */
function scannedChildren(s: Scan, i: number, el: XmlElement): XmlNode[] {
  const kids: XmlNode[] = [];
  const { text, start, end, next } = s;
  let pos = s.openEnd[i]!;
  for (let j = i + 1; j < next[i]!; j = next[j]!) {
    if (start[j]! > pos) kids.push({ kind: 'raw', text: text.slice(pos, start[j]) });
    kids.push(scannedElement(s, j, el));
    pos = end[j]!;
  }
  const closeStart = s.closeStart[i]!;
  if (end[i] !== s.openEnd[i] && closeStart > pos) kids.push({ kind: 'raw', text: text.slice(pos, closeStart) });
  return kids;
}

/** The raw value of attribute `name` in scanned attribute text, without making records of all of them. */
function rawAttr(attrText: string, name: string): string | undefined {
  SCAN_ATTR_RE.lastIndex = 0;
  for (let m = SCAN_ATTR_RE.exec(attrText); m; m = SCAN_ATTR_RE.exec(attrText)) if (m[1] === name) return m[2] ?? m[3] ?? '';
  return undefined;
}

/** Attribute records of the scanner's attribute text (as the scanner matched it: well-formed, no name twice). */
function splitAttrs(attrText: string): Attr[] {
  const attrs: Attr[] = [];
  SCAN_ATTR_RE.lastIndex = 0;
  for (let m = SCAN_ATTR_RE.exec(attrText); m; m = SCAN_ATTR_RE.exec(attrText)) attrs.push({ name: m[1]!, raw: m[2] ?? m[3] ?? '', text: m[0] });
  return attrs;
}

/** `16 MiB`, `50.2 MiB`, `1024 bytes` */
const size = (n: number): string =>
  n % 1048576 === 0 ? `${n / 1048576} MiB` : n >= 1048576 ? `${(n / 1048576).toFixed(1)} MiB` : `${n} bytes`;

function tagName(n: Parsed): string {
  for (const k of Object.keys(n)) if (k !== ':@') return k;
  throw new XmlInputError('XML rejected: empty node');
}

function build(node: Parsed, text: string, doc: XmlDocument, metaKey: symbol): XmlElement {
  const name = tagName(node);
  const meta = node[metaKey];
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
    const child = build(k, text, doc, metaKey);
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
