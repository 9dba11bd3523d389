/**
 * The editable element tree of a parsed document, faithful to its text.
 *
 * Nodes remember where they came from (offsets into the original text). An unchanged element
 * serializes to exactly its original bytes; an edited one rebuilds only its start tag (unchanged
 * attributes keep their original text and quotes) and splices new children in with the
 * indentation of their siblings. So an edited document differs from its input only where an edit
 * landed, and an unedited one serializes to the same bytes. Inserted values are escaped; the text
 * keeps entity references as written (attr() and text() decode them).
 *
 * A parsed element is a row of an ElementTable, which both parsers fill (scan.ts, fxp.ts); a
 * created element (`element()`) has no row. There is no other backing form.
 */

interface Source {
  start: number; // '<' of the start tag
  openEnd: number; // just after '>' of the start tag
  closeStart: number; // '<' of the end tag (== openEnd for a self-closing element)
  end: number; // just after the element
  selfClosing: boolean;
}

export interface Attr {
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

export interface XmlDocument {
  readonly text: string;
  readonly root: XmlElement;
  readonly newline: string;
  readonly indentStep: string;
  /** the bytes before and after the root element (declaration, comments, BOM, trailing newline) */
  readonly prolog: string;
  readonly epilog: string;
}

/**
 * What a parser found, per element in document order (preorder): the name, offsets into the
 * text, the end of the attribute text (which starts right after the name) and the index after
 * the element's subtree. Plain arrays of small integers: no object per element. An element whose
 * `end` equals its `openEnd` is self-closing. The scanner leaves the attributes as text, split on
 * first use; fast-xml-parser's input may hold attributes the scanner's pattern would not split
 * alike, so the adapter splits them itself (`attrs`; then `attrEnd` is unused).
 */
export interface ElementTable {
  readonly text: string;
  readonly doc: XmlDocument;
  readonly name: string[];
  readonly start: number[];
  readonly attrEnd: number[];
  readonly openEnd: number[];
  readonly closeStart: number[];
  readonly end: number[];
  readonly next: number[];
  /** attribute records per element, when the parser split them itself */
  readonly attrs?: Attr[][];
}

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

/** Parents with more children than this keep an index of them for path(). */
const SMALL_PARENT = 32;

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
   * @param attrSource the attributes, or the attribute text of the start tag, split into Attr
   *   records on first use: most elements of a big domain are never asked
   * @param table, row the parser's record of this element (none for a created element): its
   *   children are built from it on first use (a filter that reads `<os>` never builds the
   *   thousand devices it passes through), and its offsets are read from it (no object per element)
   */
  constructor(
    readonly name: string,
    private attrSource: Attr[] | string,
    private readonly doc: XmlDocument | undefined,
    private readonly table?: ElementTable,
    private readonly row = -1,
  ) {}

  /** Where the element stands in the parsed text; undefined for a created element. */
  get src(): Source | undefined {
    const t = this.table;
    if (!t) return undefined;
    const i = this.row;
    const openEnd = t.openEnd[i]!;
    const end = t.end[i]!;
    return { start: t.start[i]!, openEnd, closeStart: t.closeStart[i]!, end, selfClosing: end === openEnd };
  }

  /** The child nodes in document order: elements and the raw content between them. */
  get children(): XmlNode[] {
    return (this.kids ??= this.table ? tableChildren(this.table, this.row, this) : []);
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

/**
 * The document of `text` (checked, BOM removed; `bom` is what was removed), whose root element
 * `parseRoot` finds. The root's elements refer to the document for its newline and indentation.
 */
export function makeDocument(bom: string, text: string, parseRoot: (doc: XmlDocument) => XmlElement): XmlDocument {
  const nl = text.includes('\r\n') ? '\r\n' : '\n';
  const indentStep = /\n( +|\t)</.exec(text)?.[1] ?? '  ';
  const doc = { text, newline: nl, indentStep } as { -readonly [K in keyof XmlDocument]: XmlDocument[K] };
  const root = parseRoot(doc as XmlDocument);
  doc.root = root;
  doc.prolog = bom + text.slice(0, root.src!.start);
  doc.epilog = text.slice(root.src!.end);
  return doc as XmlDocument;
}

/** Serialize: the original bytes when nothing changed, otherwise the spliced text. */
export const serialize = (doc: XmlDocument): string => doc.prolog + doc.root.toString() + doc.epilog;

// ---- elements of a table ----------------------------------------------------------------------

/** Row `i` of a table as an element (its children are built on first use). */
export function tableElement(t: ElementTable, i: number, parent: XmlElement | null): XmlElement {
  const name = t.name[i]!;
  let attrs: Attr[] | string;
  if (t.attrs) attrs = t.attrs[i]!;
  else {
    const attrStart = t.start[i]! + 1 + name.length;
    const attrEnd = t.attrEnd[i]!;
    attrs = attrEnd > attrStart ? t.text.slice(attrStart, attrEnd) : [];
  }
  const el = new XmlElement(name, attrs, t.doc, t, i);
  el.parent = parent;
  return el;
}

/** The child nodes of row `i`: its child elements and the raw content between them. */
function tableChildren(t: ElementTable, i: number, el: XmlElement): XmlNode[] {
  const kids: XmlNode[] = [];
  const { text, start, end, next } = t;
  let pos = t.openEnd[i]!;
  for (let j = i + 1; j < next[i]!; j = next[j]!) {
    if (start[j]! > pos) kids.push({ kind: 'raw', text: text.slice(pos, start[j]) });
    kids.push(tableElement(t, j, el));
    pos = end[j]!;
  }
  const closeStart = t.closeStart[i]!;
  if (end[i] !== t.openEnd[i] && closeStart > pos) kids.push({ kind: 'raw', text: text.slice(pos, closeStart) });
  return kids;
}

/** One attribute of attribute text as the scanner matched it (well-formed, quoted, no name twice). */
const ATTR_TEXT_RE = /[ \t\r\n]+([^ \t\r\n=]+)[ \t\r\n]*=[ \t\r\n]*(?:'([^']*)'|"([^"]*)")/g;

/** The raw value of attribute `name` in attribute text, without making records of all of them. */
function rawAttr(attrText: string, name: string): string | undefined {
  ATTR_TEXT_RE.lastIndex = 0;
  for (let m = ATTR_TEXT_RE.exec(attrText); m; m = ATTR_TEXT_RE.exec(attrText)) if (m[1] === name) return m[2] ?? m[3] ?? '';
  return undefined;
}

/** Attribute records of attribute text. */
function splitAttrs(attrText: string): Attr[] {
  const attrs: Attr[] = [];
  ATTR_TEXT_RE.lastIndex = 0;
  for (let m = ATTR_TEXT_RE.exec(attrText); m; m = ATTR_TEXT_RE.exec(attrText)) attrs.push({ name: m[1]!, raw: m[2] ?? m[3] ?? '', text: m[0] });
  return attrs;
}
