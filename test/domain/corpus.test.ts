/**
 * Conformance over the shared corpus of real libvirt domain XML (/work/shared/corpus, see its
 * README): every document round-trips byte-identically; every x86_64 QEMU/KVM domain rewrites to
 * XML that rewrites to itself; where `virt-xml-validate` accepts the input, it accepts the output;
 * other domains come back untouched.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseDomain, parseXml, serialize } from '../../src/core/domain';
import { XmlInputError } from '../../src/core/errors';
import { rewriteXml, type RewriteInput } from '../../src/core/rewrite';
import { debianPicker } from '../rewrite/support';

const repoRoot = path.resolve(__dirname, '..', '..');
const CORPUS = path.resolve(repoRoot, '..', 'shared', 'corpus');
const HAVE_CORPUS = existsSync(CORPUS);
const HAVE_VALIDATOR = spawnSync('sh', ['-c', 'command -v virt-xml-validate'], { encoding: 'utf8' }).status === 0;
if (!HAVE_CORPUS) console.warn(`corpus.test: ${CORPUS} does not exist; corpus conformance skipped`);
if (HAVE_CORPUS && !HAVE_VALIDATOR) console.warn('corpus.test: virt-xml-validate not found; schema validation skipped');

/** virt-xml's compare outputs that are unified diffs, not XML */
const DIFFS = /virt-xml-edit-(simple-metadata|xpaths)\.xml/;

interface Doc {
  id: string; // dir/file#n
  text: string;
}

/** Every corpus file split into its documents (virt-install writes several `<domain>`s into one file). */
function corpusDocs(): Doc[] {
  const out: Doc[] = [];
  for (const sub of ['libvirt', 'virt-manager']) {
    for (const f of readdirSync(path.join(CORPUS, sub)).sort()) {
      if (!f.endsWith('.xml')) continue;
      const text = readFileSync(path.join(CORPUS, sub, f), 'utf8');
      text.split(/^(?=<domain[\s>])/m).forEach((part, i) => out.push({ id: `${sub}/${f}#${i}`, text: part }));
    }
  }
  return out;
}

const docs = HAVE_CORPUS ? corpusDocs() : [];
/** documents that are XML; the rest (cloud-config preambles, diffs) must be refused */
const xmlDocs = docs.filter((d) => d.text.trimStart().startsWith('<') && !DIFFS.test(d.id));
const notXml = docs.filter((d) => !xmlDocs.includes(d));

const OPTION_SETS: Record<string, Omit<RewriteInput, 'pickFirmware'>> = {
  defaults: {},
  'secure-boot+tpm': { secureBoot: true, tpm: true },
  'auto+secure-boot': { firmware: 'auto', secureBoot: true },
};

/** `virt-xml-validate - domain` on each text, `parallel` at a time; true where valid. */
async function validateAll(texts: string[], parallel = 4): Promise<boolean[]> {
  const out: boolean[] = new Array(texts.length);
  let next = 0;
  const one = (text: string) =>
    new Promise<boolean>((resolve) => {
      const p = spawn('virt-xml-validate', ['-', 'domain'], { stdio: ['pipe', 'ignore', 'ignore'] });
      p.on('close', (code) => resolve(code === 0));
      p.on('error', () => resolve(false));
      p.stdin.end(text);
    });
  await Promise.all(
    Array.from({ length: parallel }, async () => {
      while (next < texts.length) {
        const i = next++;
        out[i] = await one(texts[i]!);
      }
    }),
  );
  return out;
}

describe.skipIf(!HAVE_CORPUS)('corpus: round trip', () => {
  it('finds the corpus documents', () => {
    expect(xmlDocs.length).toBeGreaterThan(350);
  });

  it('serializes every XML document to its exact input bytes', () => {
    const failed: string[] = [];
    for (const d of xmlDocs) {
      try {
        if (serialize(parseXml(d.text)) !== d.text) failed.push(`${d.id}: bytes differ`);
      } catch (e) {
        failed.push(`${d.id}: ${(e as Error).message}`);
      }
    }
    expect(failed).toEqual([]);
  });

  it('refuses what is not XML (cloud-config preamble, diffs) with an XmlInputError', () => {
    expect(notXml.map((d) => d.id)).toEqual([
      'virt-manager/cli__compare__virt-install-cloud-init-options1.xml#0',
      'virt-manager/cli__compare__virt-xml-edit-simple-metadata.xml#0',
      'virt-manager/cli__compare__virt-xml-edit-xpaths.xml#0',
    ]);
    for (const d of notXml) expect(() => parseXml(d.text), d.id).toThrow(XmlInputError);
  });
});

describe.skipIf(!HAVE_CORPUS)('corpus: rewrite', () => {
  const domains = xmlDocs.flatMap((d) => {
    try {
      return [{ ...d, domain: parseDomain(d.text) }];
    } catch {
      return []; // <domain> without <name> (virt-manager's replace-child tests): not a domain we accept
    }
  });
  const x86 = domains.filter((d) => d.domain.isX86Qemu);
  const others = domains.filter((d) => !d.domain.isX86Qemu);

  it('has both kinds of domain', () => {
    expect(x86.length).toBeGreaterThan(200);
    expect(others.length).toBeGreaterThan(50);
  });

  it('leaves non-x86_64 / non-QEMU domains untouched, with a reason', () => {
    for (const d of others) {
      const r = rewriteXml(d.text, { pickFirmware: debianPicker(), secureBoot: true, tpm: true });
      expect(r.xml, d.id).toBe(d.text);
      expect(r.changed, d.id).toBe(false);
      expect(r.skipped, d.id).toMatch(/left untouched$/);
    }
  });

  for (const [label, opts] of Object.entries(OPTION_SETS)) {
    it(`rewrites every x86_64 QEMU/KVM domain to XML that rewrites to itself (${label})`, () => {
      for (const d of x86) {
        const once = rewriteXml(d.text, { pickFirmware: debianPicker(), ...opts });
        const twice = rewriteXml(once.xml, { pickFirmware: debianPicker(), ...opts });
        expect(twice.changes, d.id).toEqual([]);
        expect(twice.xml, d.id).toBe(once.xml);
        expect(once.changed, d.id).toBe(once.xml !== d.text);
      }
    });
  }

  it.skipIf(!HAVE_VALIDATOR)('keeps schema-valid input schema-valid (virt-xml-validate)', { timeout: 120_000 }, async () => {
    const inputValid = await validateAll(x86.map((d) => d.text));
    const valid = x86.filter((_, i) => inputValid[i]);
    expect(valid.length).toBeGreaterThan(100);
    // the check can fail: the validator rejects an unknown controller model
    const broken = valid[0]!.text.replace('</devices>', "<controller type='pci' model='no-such-model'/></devices>");
    expect(await validateAll([broken])).toEqual([false]);
    const outputs = valid.flatMap((d) =>
      Object.entries(OPTION_SETS).map(([label, opts]) => ({ id: `${d.id} (${label})`, xml: rewriteXml(d.text, { pickFirmware: debianPicker(), ...opts }).xml })),
    );
    const outputValid = await validateAll(outputs.map((o) => o.xml));
    expect(outputs.filter((_, i) => !outputValid[i]).map((o) => o.id)).toEqual([]);
  });
});
