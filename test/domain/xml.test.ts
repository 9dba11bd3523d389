/**
 * The faithful XML document: byte-identical round trips, edits that touch only what they edit,
 * and every rejection with its one-line message.
 */
import { describe, expect, it } from 'vitest';
import { element, parseXml, serialize, type XmlElement } from '../../src/core/domain';
import { XmlInputError } from '../../src/core/errors';

const roundTrip = (xml: string) => serialize(parseXml(xml));
/** the error parseXml throws (fails the test when it does not throw) */
const rejection = (xml: string, opts?: Parameters<typeof parseXml>[1]): Error => {
  try {
    parseXml(xml, opts);
  } catch (e) {
    return e as Error;
  }
  throw new Error('parseXml accepted the input');
};
/** parse, edit, serialize */
const edit = (xml: string, f: (root: XmlElement) => void) => {
  const doc = parseXml(xml);
  f(doc.root);
  return serialize(doc);
};

describe('round trip: an unedited document is its input bytes', () => {
  it.each([
    ['LF, trailing newline', "<domain type='kvm'>\n  <name>a</name>\n</domain>\n"],
    ['CRLF', "<domain type='kvm'>\r\n  <name>a</name>\r\n  <devices/>\r\n</domain>\r\n"],
    ['BOM', "\ufeff<domain type='kvm'>\n  <name>a</name>\n</domain>\n"],
    ['XML declaration', "<?xml version='1.0' encoding='UTF-8'?>\n<domain>\n  <name>a</name>\n</domain>\n"],
    ['comments everywhere', "<!-- before -->\n<domain><!-- first -->\n  <name>a<!-- in text -->b</name>\n  <!-- between -->\n  <os><type>hvm</type><!-- last --></os>\n</domain>\n<!-- after -->\n"],
    ['CDATA', '<domain>\n  <name>a</name>\n  <description><![CDATA[<b>&not markup</b>]]></description>\n</domain>\n'],
    ['character references in attributes', "<domain>\n  <name>a</name>\n  <title t='line1&#10;line2&#x9;&amp;&lt;&quot;&apos;'/>\n</domain>\n"],
    ['both quote styles', `<domain type="kvm" id='1'>\n  <name>a</name>\n  <x a="it's" b='say "hi"'/>\n</domain>\n`],
    ['no trailing newline', '<domain>\n  <name>a</name>\n</domain>'],
    ['odd whitespace in tags', "<domain  type = 'kvm' >\n  <name >a</name >\n  <acpi />\n</domain>\n"],
    ['tabs', '<domain>\n\t<name>a</name>\n\t<devices>\n\t\t<disk/>\n\t</devices>\n</domain>\n'],
    [
      'namespaces and metadata',
      '<domain xmlns:qemu="http://libvirt.org/schemas/domain/qemu/1.0">\n  <name>a</name>\n  <metadata>\n    <app1:foo xmlns:app1="http://app1.org/app1/">fooish</app1:foo>\n    <ovmf:policy xmlns:ovmf="urn:ovmf-hook:policy:1" secure-boot="yes"/>\n  </metadata>\n  <qemu:commandline>\n    <qemu:arg value="-newarg"/>\n  </qemu:commandline>\n</domain>\n',
    ],
    ['non-ASCII text', '<domain>\n  <name>größe-ü</name>\n  <description>日本語 ✓</description>\n</domain>\n'],
  ])('%s', (_label, xml) => {
    expect(roundTrip(xml)).toBe(xml);
  });
});

describe('queries', () => {
  const doc = parseXml("<domain>\n  <name>a&amp;b</name>\n  <t v='x&#10;y'/>\n  <d><![CDATA[<raw>]]><!-- c --> &lt;z&gt;</d>\n  <devices>\n    <disk/>\n    <disk/>\n  </devices>\n</domain>\n");
  it('decodes entities in text and attributes', () => {
    expect(doc.root.find('name')!.text()).toBe('a&b');
    expect(doc.root.find('t')!.attr('v')).toBe('x\ny');
  });
  it('unwraps CDATA and drops comments in text()', () => {
    expect(doc.root.find('d')!.text()).toBe('<raw> <z>');
  });
  it('paths carry indices among same-named siblings', () => {
    expect(doc.root.findAll('devices/disk').map((d) => d.path())).toEqual(['/domain/devices/disk[1]', '/domain/devices/disk[2]']);
    expect(doc.root.find('name')!.path()).toBe('/domain/name');
  });
});

const DOC = "<domain type='kvm'>\n  <name>a</name>\n  <os>\n    <type arch=\"x86_64\" machine='pc'>hvm</type>\n  </os>\n  <devices/>\n</domain>\n";

describe('edits change only what they touch', () => {
  it.each<[string, (r: XmlElement) => void, string]>([
    ['setAttr existing (other attributes keep their quotes)', (r) => r.find('os/type')!.setAttr('machine', 'q35'), DOC.replace("machine='pc'", "machine='q35'")],
    ['setAttr new', (r) => r.find('os/type')!.setAttr('x', '1'), DOC.replace("machine='pc'>", "machine='pc' x='1'>")],
    ['setAttr escapes', (r) => r.setAttr('t', `<&'">`), DOC.replace("type='kvm'>", "type='kvm' t='&lt;&amp;&apos;&quot;&gt;'>")],
    ['setAttr to the same value is no edit', (r) => r.setAttr('type', 'kvm'), DOC],
    ['removeAttr', (r) => r.find('os/type')!.removeAttr('machine'), DOC.replace(" machine='pc'", '')],
    ['remove element with its line', (r) => r.find('name')!.remove(), DOC.replace('  <name>a</name>\n', '')],
    ['remove the last child: parent becomes self-closing', (r) => r.find('os/type')!.remove(), DOC.replace('<os>\n    <type arch="x86_64" machine=\'pc\'>hvm</type>\n  </os>', '<os/>')],
    ['append into a self-closing parent', (r) => r.find('devices')!.append(element('disk', { type: 'file' })), DOC.replace('<devices/>', "<devices>\n    <disk type='file'/>\n  </devices>")],
    ['append after the last child', (r) => r.find('os')!.append(element('boot', { dev: 'hd' })), DOC.replace('</type>\n', "</type>\n    <boot dev='hd'/>\n")],
    ['insertAfter', (r) => r.insertAfter(r.find('name')!, element('uuid', {}, 'u-1')), DOC.replace('<name>a</name>\n', '<name>a</name>\n  <uuid>u-1</uuid>\n')],
    ['insertBefore / prepend', (r) => r.prepend(element('title', {}, 't & t')), DOC.replace('  <name>', '  <title>t &amp; t</title>\n  <name>')],
    [
      'new nested elements are indented',
      (r) => r.find('devices')!.append(element('tpm', { model: 'tpm-crb' }, element('backend', { type: 'emulator' }, element('x')))),
      DOC.replace('<devices/>', "<devices>\n    <tpm model='tpm-crb'>\n      <backend type='emulator'>\n        <x/>\n      </backend>\n    </tpm>\n  </devices>"),
    ],
    ['setText', (r) => r.find('name')!.setText('b<c'), DOC.replace('<name>a</name>', '<name>b&lt;c</name>')],
  ])('%s', (_label, f, expected) => {
    expect(edit(DOC, f)).toBe(expected);
  });

  it('keeps CRLF and tabs in inserted lines', () => {
    const crlf = '<domain>\r\n\t<name>a</name>\r\n</domain>\r\n';
    expect(edit(crlf, (r) => r.append(element('uuid')))).toBe('<domain>\r\n\t<name>a</name>\r\n\t<uuid/>\r\n</domain>\r\n');
  });

  it('keeps comments and the prolog around an edit', () => {
    const xml = "<!-- head -->\n<domain>\n  <!-- keep -->\n  <name>a</name>\n  <os><type machine='pc'>hvm</type></os>\n</domain>\n";
    expect(edit(xml, (r) => r.find('os/type')!.setAttr('machine', 'q35'))).toBe(xml.replace("'pc'", "'q35'"));
  });

  it('removing an element keeps a comment before it', () => {
    const xml = '<domain>\n  <name>a</name>\n  <!-- note -->\n  <x/>\n</domain>\n';
    expect(edit(xml, (r) => r.find('x')!.remove())).toBe('<domain>\n  <name>a</name>\n  <!-- note -->\n</domain>\n');
  });
});

describe('rejections: one line each, XmlInputError', () => {
  it.each([
    ['DOCTYPE', '<!DOCTYPE domain><domain/>', 'DOCTYPE and ENTITY declarations are not accepted in domain XML'],
    ['internal entity', '<!DOCTYPE d [<!ENTITY x "y">]><domain>&x;</domain>', 'DOCTYPE and ENTITY declarations are not accepted in domain XML'],
    ['external entity', '<!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]><domain>&x;</domain>', 'DOCTYPE and ENTITY declarations are not accepted in domain XML'],
    ['billion laughs', '<?xml version="1.0"?>\n<!DOCTYPE lolz [\n <!ENTITY lol "lol">\n <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;">\n <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;">\n]>\n<domain>&lol3;</domain>', 'DOCTYPE and ENTITY declarations are not accepted in domain XML'],
    ['unknown entity', '<domain>&foo;</domain>', 'unknown entity reference &foo; (only the five XML entities are accepted)'],
    ['unknown entity in an attribute', "<domain a='&nbsp;'/>", 'unknown entity reference &nbsp; (only the five XML entities are accepted)'],
    ['bare &', '<domain>a & b</domain>', 'bare "&" in XML text; write &amp;'],
    ['processing instruction', '<domain><?foo bar?></domain>', 'processing instruction <?foo…?> is not accepted in domain XML'],
    ['stylesheet PI', '<?xml-stylesheet href="x"?><domain/>', 'processing instruction <?xml-stylesheet…?> is not accepted in domain XML'],
    ['two roots', '<domain/><domain/>', 'expected exactly one root element <domain>, found 2'],
    ['wrong root', '<network/>', 'root element is <network>; expected <domain>'],
    ['__proto__ element', '<domain><__proto__/></domain>', 'XML rejected: Invalid name: "__proto__" is a reserved JavaScript keyword that could cause prototype pollution'],
    ['constructor element', '<domain><constructor/></domain>', 'XML rejected: Invalid name: "constructor" is a reserved JavaScript keyword that could cause prototype pollution'],
    ['unclosed tag', '<domain><name>x</name>', "malformed XML at line 1, column 1: Unclosed tag 'domain'."],
    ['mismatched tags', '<domain><a></b></domain>', "malformed XML at line 1, column 12: Expected closing tag 'a' (opened in line 1, col 9) instead of closing tag 'b'."],
    ['not XML', '#cloud-config\nusers: []\n', "malformed XML at line 1, column 1: char '#' is not expected."],
    ['empty input', '', 'input is empty; expected a libvirt domain XML document'],
    ['whitespace only', ' \n\t', 'input is empty; expected a libvirt domain XML document'],
    ['NUL byte', '<domain>\0</domain>', 'input contains NUL bytes; expected a libvirt domain XML document'],
  ])('%s', (_label, xml, message) => {
    const e = rejection(xml);
    expect(e).toBeInstanceOf(XmlInputError);
    expect(e.message).toBe(message);
  });

  it('refuses input over maxBytes', () => {
    const xml = `<domain>${'x'.repeat(2000)}</domain>`;
    const e = rejection(xml, { maxBytes: 1024 });
    expect(e).toBeInstanceOf(XmlInputError);
    expect(e.message).toBe('input is 2017 bytes; the limit is 1024 bytes');
    expect(parseXml(xml, { maxBytes: 4096 }).root.name).toBe('domain');
  });

  it('counts bytes, not characters', () => {
    const xml = `<domain>${'ü'.repeat(600)}</domain>`; // 617 characters, 1217 bytes
    expect(() => parseXml(xml, { maxBytes: 1024 })).toThrow(/input is 1217 bytes/);
  });

  it('refuses a real 50 MiB input quickly (default limit 16 MiB)', () => {
    const big = `<domain>${'x'.repeat(50 * 1048576 - 17)}</domain>`;
    const t0 = Date.now();
    const e = rejection(big);
    expect(e).toBeInstanceOf(XmlInputError);
    expect(e.message).toBe('input is 50 MiB; the limit is 16 MiB');
    expect(Date.now() - t0).toBeLessThan(2000);
  });

  it('accepts a custom root name', () => {
    expect(parseXml('<network/>', { rootName: 'network' }).root.name).toBe('network');
  });
});
