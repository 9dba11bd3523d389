/**
 * parseXml's own scanner against the fast-xml-parser path it falls back to (parseXmlReference):
 * for every input, both accept with the same tree and bytes, or both refuse with the same
 * message. So the scanner never accepts what fast-xml-parser would refuse. Inputs: the shared
 * corpus, the fixtures, hand-made edge cases, and thousands of seeded random mutations of them.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { serialize, type XmlElement } from '../../src/core/domain';
import { parseXml, parseXmlReference } from '../../src/core/xml';
import { rng } from '../support/rng';

const repoRoot = path.resolve(__dirname, '..', '..');
const CORPUS = path.resolve(repoRoot, '..', 'shared', 'corpus');
const FIXTURES = path.join(repoRoot, 'test', 'fixtures', 'domains');

type Outcome = { ok: true; tree: unknown; bytes: string } | { ok: false; error: string };

/** Everything the document remembers of an element: name, attributes as written, offsets, children. */
function shape(el: XmlElement): unknown {
  return {
    name: el.name,
    attrs: el.attrNames().map((n) => [n, el.attr(n)]),
    src: el.src,
    children: el.children.map((c) => (c.kind === 'raw' ? c.text : shape(c))),
  };
}

function outcome(parse: typeof parseXml, text: string): Outcome {
  try {
    const doc = parse(text, { rootName: 'domain' });
    return { ok: true, tree: { prolog: doc.prolog, epilog: doc.epilog, root: shape(doc.root) }, bytes: serialize(doc) };
  } catch (e) {
    return { ok: false, error: `${(e as Error).constructor.name}: ${(e as Error).message}` };
  }
}

const agree = (text: string) => expect(outcome(parseXml, text)).toEqual(outcome(parseXmlReference, text));

function seeds(): { id: string; text: string }[] {
  const out: { id: string; text: string }[] = [];
  for (const f of readdirSync(FIXTURES).filter((n) => n.endsWith('.xml')).sort()) out.push({ id: `fixtures/${f}`, text: readFileSync(path.join(FIXTURES, f), 'utf8') });
  if (existsSync(CORPUS)) {
    for (const sub of ['libvirt', 'virt-manager']) {
      for (const f of readdirSync(path.join(CORPUS, sub)).filter((n) => n.endsWith('.xml')).sort()) {
        out.push({ id: `${sub}/${f}`, text: readFileSync(path.join(CORPUS, sub, f), 'utf8') });
      }
    }
  }
  return out;
}

const EDGE: [string, string][] = [
  ['declaration', "<?xml version='1.0' encoding='UTF-8'?>\n<domain><name>a</name></domain>\n"],
  ['declaration, standalone', '<?xml version="1.0" standalone="yes"?><domain><name>a</name></domain>'],
  ['declaration without version', '<?xml encoding="UTF-8"?><domain><name>a</name></domain>'],
  ['declaration not first', ' <?xml version="1.0"?><domain><name>a</name></domain>'],
  ['declaration after a comment', '<!-- c --><?xml version="1.0"?><domain><name>a</name></domain>'],
  ['BOM', '\ufeff<domain><name>a</name></domain>'],
  ['comments and CDATA', '<!--a--><domain><!-- b --><name>x<![CDATA[<&>]]>y</name><!----></domain><!-- c -->'],
  ['CDATA outside the root', '<domain><name>a</name></domain><![CDATA[x]]>'],
  ['text outside the root', 'x<domain><name>a</name></domain>'],
  ['text after the root', '<domain><name>a</name></domain>x'],
  ['two roots', '<domain><name>a</name></domain><domain/>'],
  ['empty roots', '<domain/><domain/>'],
  ['other root', '<network><name>a</name></network>'],
  ['unclosed root', '<domain><name>a</name>'],
  ['unclosed child', '<domain><name>a</domain>'],
  ['mismatched end tag', '<domain><a><b>x</a></b></domain>'],
  ['end tag with attributes', "<domain><name>a</name x='1'></domain>"],
  ['stray end tag', '<domain></name></domain>'],
  ['duplicate attribute', "<domain type='kvm' type='qemu'><name>a</name></domain>"],
  ['duplicate attribute, other quotes', `<domain><x a='1' b="2" a="3"/><name>a</name></domain>`],
  ['= inside a value, no duplicate', "<domain><x a='b=c' d='e'/><name>a</name></domain>"],
  ['duplicate hidden in a value', "<domain><x a='x a=1' a='2'/><name>a</name></domain>"],
  ['attribute without value', '<domain><x a/><name>a</name></domain>'],
  ['attribute without quotes', '<domain><x a=1/><name>a</name></domain>'],
  ['attributes without space', "<domain><x a='1'b='2'/><name>a</name></domain>"],
  ['< in an attribute', "<domain><x a='<'/><name>a</name></domain>"],
  ['> in an attribute', "<domain><x a='>'/><name>a</name></domain>"],
  ['tab and newline separators', "<domain\ttype='kvm'\n\tid='1'\r\n><name\n>a</name\t></domain\n>"],
  ['space before />', "<domain><x a='1'  /><name>a</name></domain>"],
  ['space after </', '<domain><name>a</ name></domain>'],
  ['space after <', '<domain>< name>a</name></domain>'],
  ['__proto__ element', '<domain><__proto__/><name>a</name></domain>'],
  ['constructor attribute', "<domain><x constructor='1'/><name>a</name></domain>"],
  ['toString element', '<domain><toString/><name>a</name></domain>'],
  ['prototype attribute after others', "<domain><x a='1' prototype='2'/><name>a</name></domain>"],
  ['__defineGetter__ attribute', "<domain><x __defineGetter__='1'/><name>a</name></domain>"],
  ['non-ASCII name', '<domain><größe/><name>a</name></domain>'],
  ['name with dots, dashes, colons', "<domain xmlns:q='u'><q:a-b.c_d q:x-y='1'/><name>a</name></domain>"],
  ['name starting with a digit', '<domain><1a/><name>a</name></domain>'],
  ['<! that is no comment', '<domain><!foo><name>a</name></domain>'],
  ['unterminated comment', '<domain><name>a</name><!-- x</domain>'],
  ['unterminated CDATA', '<domain><name><![CDATA[a</name></domain>'],
  ['-- inside a comment', '<domain><!-- a -- b --><name>a</name></domain>'],
  ['deep nesting (70)', `<domain><name>a</name>${'<x>'.repeat(70)}${'</x>'.repeat(70)}</domain>`],
  ['deep nesting (120)', `<domain><name>a</name>${'<x>'.repeat(120)}${'</x>'.repeat(120)}</domain>`],
  ['entities', "<domain><name>a&amp;b&#10;&#x41;</name><x v='&lt;&quot;'/></domain>"],
  ['CRLF', "<domain type='kvm'>\r\n  <name>a</name>\r\n</domain>\r\n"],
  ['] ]> in text', '<domain><name>a]]>b</name></domain>'],
  ['lone <', '<domain><name>a < b</name></domain>'],
  ['many spaces in a tag', `<domain${' '.repeat(5000)}><name>a</name></domain>`],
  ['63 attributes', `<domain><x ${Array.from({ length: 63 }, (_, i) => `a${i}='${i}'`).join(' ')}/><name>a</name></domain>`],
  ['70 attributes', `<domain><x ${Array.from({ length: 70 }, (_, i) => `a${i}='${i}'`).join(' ')}/><name>a</name></domain>`],
  ['70 attributes, the last one repeated', `<domain><x ${Array.from({ length: 70 }, (_, i) => `a${i}='${i}'`).join(' ')} a3='x'/><name>a</name></domain>`],
  ['5,000 attributes (no quadratic check)', `<domain><x ${Array.from({ length: 5000 }, (_, i) => `a${i}='${i}'`).join(' ')}/><name>a</name></domain>`],
  ['a repeat that only looks like one, in a comment', "<domain><!-- <x a='1' a='2'> --><name>a</name></domain>"],
  ['unterminated tag with many spaces', `<domain${' '.repeat(5000)}`],
];


const PIECES = ['<', '>', '/', '=', "'", '"', '&', ';', '!', '?', '-', '[', ']', ' ', '\n', '\t', 'a', ':', '_', '<!--', '-->', '<![CDATA[', ']]>', '</', '/>', "='x'", ' a=', '<x>', '</x>', '<x/>', '&amp;', '__proto__', 'toString', 'ü', '<?xml version="1.0"?>'];

/** 1–3 random edits: insert a piece, delete a span, duplicate a span, or copy a tag elsewhere. */
function mutate(text: string, r: () => number): string {
  let t = text;
  const edits = 1 + Math.floor(r() * 3);
  for (let k = 0; k < edits; k++) {
    const at = Math.floor(r() * (t.length + 1));
    const op = r();
    if (op < 0.45) t = t.slice(0, at) + PIECES[Math.floor(r() * PIECES.length)] + t.slice(at);
    else if (op < 0.7) t = t.slice(0, at) + t.slice(at + 1 + Math.floor(r() * 6));
    else if (op < 0.85) {
      const len = 1 + Math.floor(r() * 20);
      t = t.slice(0, at + len) + t.slice(at, at + len) + t.slice(at + len);
    } else {
      const tags = [...t.matchAll(/<[^<>]*>/g)];
      if (tags.length === 0) continue;
      const tag = tags[Math.floor(r() * tags.length)]![0];
      t = t.slice(0, at) + tag + t.slice(at);
    }
  }
  return t;
}

describe('the scanner agrees with fast-xml-parser', () => {
  const docs = seeds();

  it.each(EDGE)('%s', (_label, text) => agree(text));

  it(`on ${docs.length} corpus and fixture files`, () => {
    for (const d of docs) agree(d.text);
  });

  it('on 4,000 seeded random mutations of them', () => {
    const r = rng(20251129);
    // small documents keep this fast; every kind of seed gets mutated
    const small = docs.filter((d) => d.text.length < 6000);
    for (let i = 0; i < 4000; i++) agree(mutate(small[Math.floor(r() * small.length)]!.text, r));
  });

  it('the mutations exercise both outcomes', () => {
    const r = rng(7);
    const small = docs.filter((d) => d.text.length < 6000);
    let accepted = 0;
    for (let i = 0; i < 500; i++) if (outcome(parseXml, mutate(small[Math.floor(r() * small.length)]!.text, r)).ok) accepted++;
    expect(accepted).toBeGreaterThan(50);
    expect(accepted).toBeLessThan(450);
  });
});
