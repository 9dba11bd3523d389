/**
 * The fast-xml-parser adapter: every input the scanner does not recognise comes here
 * (XMLValidator, then XMLParser with captureMetaData), which accepts it or words the error. The
 * element offsets the parser reports fill an ElementTable, as the scanner's do.
 */
import { XmlInputError } from '../errors';
import { checkRoot } from './guard';
import { tableElement, type Attr, type ElementTable, type XmlDocument, type XmlElement } from './tree';

type FastXmlParser = typeof import('fast-xml-parser');
let fxpLibrary: FastXmlParser | undefined;
/**
 * fast-xml-parser, loaded on first use: only input the scanner does not recognise needs it, and
 * with its dependencies it is half of the hook's code, which every hook call would otherwise
 * evaluate. Keep it a lazy require(): esbuild then bundles the package as a module that runs only
 * when this is called, and the hook's code-cache training run (scripts/build.mjs) never calls it.
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

/** The fast-xml-parser path: validate, parse, check the root, build the tree from the parser's offsets. */
export function parseWithFxp(text: string, rootName: string, doc: XmlDocument): XmlElement {
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
  const rootNode = checkRoot(roots, tagName, rootName);
  const t: ElementTable = { text, doc, name: [], start: [], attrEnd: [], openEnd: [], closeStart: [], end: [], next: [], attrs: [] };
  addRow(t, rootNode, meta);
  return tableElement(t, 0, null);
}

function tagName(n: Parsed): string {
  for (const k of Object.keys(n)) if (k !== ':@') return k;
  throw new XmlInputError('XML rejected: empty node');
}

/** Add `node` and its subtree to the table, in document order. */
function addRow(t: ElementTable, node: Parsed, metaKey: symbol): void {
  const name = tagName(node);
  const meta = node[metaKey];
  if (!meta) throw new XmlInputError(`XML rejected: no position for <${name}>`);
  const { text } = t;
  const start = meta.startIndex;
  const end = meta.endIndex;
  const openEnd = startTagEnd(text, start);
  const selfClosing = text[openEnd - 2] === '/';
  const tag = text.slice(start, openEnd);
  const attrs: Attr[] = [];
  ATTR_RE.lastIndex = 0;
  for (let m = ATTR_RE.exec(tag); m; m = ATTR_RE.exec(tag)) {
    attrs.push({ name: m[2]!, raw: m[4] ?? m[5] ?? '', text: m[0] });
  }
  const i = t.name.length;
  t.name.push(name);
  t.start.push(start);
  t.attrEnd.push(openEnd);
  t.openEnd.push(openEnd);
  t.closeStart.push(selfClosing ? openEnd : text.lastIndexOf('</', end - 1));
  t.end.push(end);
  t.next.push(-1);
  t.attrs!.push(attrs);
  for (const k of (node[name] as Parsed[] | undefined) ?? []) {
    const kname = tagName(k);
    if (kname !== '#text' && kname !== '#comment' && kname !== '#cdata') addRow(t, k, metaKey);
  }
  t.next[i] = t.name.length;
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
