/**
 * The strict scanner: one pass over the text that records each element's offsets in an
 * ElementTable. It recognises only plain well-formed markup (ASCII names, quoted attributes, no
 * duplicates, matching end tags, comments, CDATA, an XML declaration, a single root of the
 * expected name); on any other input, which includes every malformed one, it gives up and
 * fast-xml-parser (fxp.ts) decides and words the error. So the scanner only ever accepts what
 * fast-xml-parser accepts (test/domain/xml-scanner.test.ts checks it differentially), at a
 * fraction of its cost in the cold hook process that parses one domain.
 */
import { mayHoldReservedName } from './guard';
import { tableElement, type ElementTable, type XmlDocument, type XmlElement } from './tree';

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
const NOT_SPACE = /[^ \t\r\n]/;
/** Deeper nesting is left to fast-xml-parser (which refuses more than 100 levels). */
const MAX_SCAN_DEPTH = 64;

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
 * The document's root element (its children are built on first use), or undefined when the text
 * is anything but plain well-formed markup with a single `rootName` root (then fast-xml-parser
 * decides). Never throws.
 */
export function scan(text: string, rootName: string, doc: XmlDocument): XmlElement | undefined {
  let pos = 0;
  if (text.startsWith('<?')) {
    DECL_RE.lastIndex = 0;
    if (!DECL_RE.test(text)) return undefined;
    pos = DECL_RE.lastIndex;
  }
  // (written for V8's interpreter as much as for its compilers: a hook process parses its domain
  // once, cold; so locals instead of property loads, and no destructuring)
  const s: ElementTable = { text, doc, name: [], start: [], attrEnd: [], openEnd: [], closeStart: [], end: [], next: [] };
  const { name: names, start, attrEnd, openEnd, closeStart, end, next } = s;
  // names and attributes are checked over the whole text, each in one pass of a regular expression:
  // in a cold hook process that is several times faster than checking tag by tag
  if (mayHoldReservedName(text) || MANY_ATTRIBUTES.test(text) || REPEATED_ATTRIBUTE.test(text)) return undefined;
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
  return open.length === 0 && names.length > 0 ? tableElement(s, 0, null) : undefined;
}
