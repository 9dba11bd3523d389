/**
 * Enrolling certificates and hashes with the writer: EFI_SIGNATURE_LIST building, de-duplication,
 * and the timestamp rule (newest added certificate's notBefore, never earlier than the current one).
 * Test certificates are made with the openssl CLI at test time (skipped visibly without it).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { VarstoreError } from '../../../src/core/errors';
import {
  buildSignatureList,
  decodeSignatureLists,
  EFI_CERT_X509,
  editVarstore,
  parseCertificate,
  parseCertificates,
  parseVarstore,
  readSignatureLists,
  sha256SignatureList,
  x509SignatureList,
  type Certificate,
} from '../../../src/core/varstore';
import { buildStore, GLOBAL } from './store-builder';

const DB = 'd719b2cb-3d3a-4596-a3bc-dad00e67656f';
const OWNER = '11111111-2222-3333-4444-555555555555';
const MS_4M = '/usr/share/OVMF/OVMF_VARS_4M.ms.fd';

const haveOpenssl = spawnSync('openssl', ['version'], { encoding: 'utf8' }).status === 0;
if (!haveOpenssl) console.warn('SKIPPED: the openssl CLI is absent — certificate enrolment tests do not run');
if (!existsSync(MS_4M)) console.warn(`SKIPPED: ${MS_4M} is absent — enrolment into Debian's Microsoft-keys template does not run`);

const efiTime = (d: Date) => d.toISOString().replace(/\.000Z$/, '');
const x509Count = (data: Uint8Array, sha256: string) =>
  decodeSignatureLists(data)
    .flatMap((l) => l.entries)
    .filter((e) => e.kind === 'x509' && e.certificate.sha256 === sha256).length;

describe.skipIf(!haveOpenssl)('certificates into signature databases', () => {
  let dir = '';
  const certs: Record<'y2020' | 'y2022' | 'now', { pem: string; der: Uint8Array; cert: Certificate }> = {} as never;

  const openssl = (...args: string[]) => {
    const r = spawnSync('openssl', args, { cwd: dir, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`openssl ${args.join(' ')}: ${r.stderr}`);
  };
  /** A self-signed certificate with a chosen notBefore (openssl ca -selfsign; OpenSSL 3.0's req has no -not_before). */
  const datedCert = (cn: string, start: string) => {
    openssl('req', '-new', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${cn}.key`, '-subj', `/CN=${cn}`, '-out', `${cn}.csr`);
    openssl('ca', '-batch', '-notext', '-config', 'ca.cnf', '-selfsign', '-keyfile', `${cn}.key`, '-in', `${cn}.csr`, '-startdate', start, '-enddate', '20400101000000Z', '-out', `${cn}.pem`);
    return readFileSync(join(dir, `${cn}.pem`), 'utf8');
  };

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'ovmf-hook-certs-'));
    writeFileSync(
      join(dir, 'ca.cnf'),
      '[ca]\ndefault_ca = d\n[d]\ndatabase = index.txt\nnew_certs_dir = .\nserial = serial\ndefault_md = sha256\npolicy = p\n[p]\ncommonName = supplied\n',
    );
    writeFileSync(join(dir, 'index.txt'), '');
    writeFileSync(join(dir, 'serial'), '01\n');
    const load = (pem: string) => {
      const cert = parseCertificate(pem, 'test.pem');
      return { pem, der: cert.der, cert };
    };
    certs.y2020 = load(datedCert('ovmf-hook-test-2020', '20200102030405Z'));
    certs.y2022 = load(datedCert('ovmf-hook-test-2022', '20220607080910Z'));
    openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'now.key', '-subj', '/CN=ovmf-hook-test-now', '-days', '30', '-out', 'now.pem');
    certs.now = load(readFileSync(join(dir, 'now.pem'), 'utf8'));
  });
  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('reads PEM and DER alike, several PEM blocks, and refuses junk with one line', () => {
    openssl('x509', '-in', 'now.pem', '-outform', 'DER', '-out', 'now.der');
    const der = parseCertificate(readFileSync(join(dir, 'now.der')), 'now.der');
    expect(Buffer.compare(Buffer.from(der.der), Buffer.from(certs.now.der))).toBe(0);
    expect(der.notBefore).toEqual(certs.now.cert.notBefore);
    expect(certs.y2020.cert.notBefore.toISOString()).toBe('2020-01-02T03:04:05.000Z');
    expect(certs.now.cert.subject).toBe('CN=ovmf-hook-test-now');
    expect(parseCertificates(certs.y2020.pem + certs.y2022.pem, 'both.pem')).toHaveLength(2);
    expect(() => parseCertificate(certs.y2020.pem + certs.y2022.pem, 'both.pem')).toThrow(/^both\.pem holds 2 certificates/);
    for (const junk of [Buffer.from('not a certificate'), Buffer.from('-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n'), new Uint8Array(0)]) {
      let err: unknown;
      try {
        parseCertificate(junk, 'junk.pem');
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(VarstoreError);
      expect((err as Error).message).toMatch(/^junk\.pem (is not a valid X\.509 certificate|has no PEM)/);
      expect((err as Error).message).not.toContain('\n');
    }
  });

  it('builds EFI_SIGNATURE_LISTs the decoder reads back', () => {
    const x = x509SignatureList(certs.y2020.pem, OWNER);
    const [list] = decodeSignatureLists(x);
    expect(list).toMatchObject({ typeName: 'X509', entries: [{ owner: OWNER, kind: 'x509', certificate: { sha256: certs.y2020.cert.sha256 } }] });
    const h = sha256SignatureList(['00'.repeat(32), 'ab'.repeat(32)], OWNER);
    expect(decodeSignatureLists(h)[0].entries).toEqual([
      { owner: OWNER, kind: 'sha256', hash: '00'.repeat(32) },
      { owner: OWNER, kind: 'sha256', hash: 'ab'.repeat(32) },
    ]);
    expect(() => sha256SignatureList(['abc'], OWNER)).toThrow(/not a SHA-256 hash/);
  });

  it('adds a certificate once, sets the timestamp to the newest added notBefore, never moves it back', () => {
    const ed = editVarstore(buildStore({ fvLength: 0x84000, storeSize: 0x3ffb8 }));
    // db does not exist yet: created NV|BS|RT|AT, timestamp = the certificate's notBefore
    let r = ed.appendSignatures('db', DB, x509SignatureList(certs.y2020.pem, OWNER));
    expect(r).toEqual({ added: 1, duplicates: 0, changed: true, timestamp: '2020-01-02T03:04:05' });
    expect(ed.get('db', DB)?.attributes.value).toBe(0x27);

    // the 2022 certificate and the 2020 one again, in one call: only 2022 is added, timestamp follows it
    const both = new Uint8Array([...x509SignatureList(certs.y2022.pem, OWNER), ...x509SignatureList(certs.y2020.pem, OWNER)]);
    r = ed.appendSignatures('db', DB, both);
    expect(r).toEqual({ added: 1, duplicates: 1, changed: true, timestamp: '2022-06-07T08:09:10' });

    // the same certificate under another owner, in the written store: a no-op
    const out1 = ed.toBuffer();
    const again = editVarstore(out1);
    r = again.appendSignatures('db', DB, x509SignatureList(certs.y2020.pem, '99999999-8888-7777-6666-555555555555'));
    expect(r).toEqual({ added: 0, duplicates: 1, changed: false, timestamp: '2022-06-07T08:09:10' });
    expect(again.changed).toBe(false);
    expect(Buffer.compare(again.toBuffer(), out1)).toBe(0); // a no-op, byte for byte

    const db = parseVarstore(out1).variables.find((v) => v.name === 'db');
    expect(db?.timestamp).toBe('2022-06-07T08:09:10');
    for (const c of [certs.y2020, certs.y2022]) expect(x509Count(db?.data as Uint8Array, c.cert.sha256)).toBe(1);

    // a timestamp in the future stays where it is when a certificate is added
    again.set('db', DB, 0x27, db?.data as Uint8Array, { timestamp: '2099-01-01T00:00:00' });
    r = again.appendSignatures('db', DB, x509SignatureList(certs.now.der, OWNER));
    expect(r).toMatchObject({ added: 1, timestamp: '2099-01-01T00:00:00' });
    // from 2022, a fresh certificate moves the timestamp to its notBefore
    const ed3 = editVarstore(out1);
    r = ed3.appendSignatures('db', DB, x509SignatureList(certs.now.pem, OWNER));
    expect(r.timestamp).toBe(efiTime(certs.now.cert.notBefore));
    const [after] = parseVarstore(ed3.toBuffer()).variables.filter((v) => v.name === 'db');
    expect(after.timestamp).toBe(efiTime(certs.now.cert.notBefore));
    expect(decodeSignatureLists(after.data).flatMap((l) => l.entries)).toHaveLength(3);
  });

  it('adds a hash once; hashes alone keep the timestamp unless one is given, and then only move it forward', () => {
    const ed = editVarstore(buildStore());
    ed.set('dbx', DB, 0x27, sha256SignatureList(['11'.repeat(32)], OWNER), { timestamp: '2021-01-01T00:00:00' });
    let r = ed.appendSignatures('dbx', DB, sha256SignatureList(['11'.repeat(32), '22'.repeat(32)], OWNER));
    expect(r).toEqual({ added: 1, duplicates: 1, changed: true, timestamp: '2021-01-01T00:00:00' });
    r = ed.appendSignatures('dbx', DB, sha256SignatureList(['22'.repeat(32)], OWNER));
    expect(r.changed).toBe(false);
    r = ed.appendSignatures('dbx', DB, sha256SignatureList(['33'.repeat(32)], OWNER), { timestamp: '2010-03-06T19:17:21' });
    expect(r.timestamp).toBe('2021-01-01T00:00:00');
    r = ed.appendSignatures('dbx', DB, sha256SignatureList(['44'.repeat(32)], OWNER), { timestamp: '2024-05-06T07:08:09' });
    expect(r.timestamp).toBe('2024-05-06T07:08:09');
    const dbx = parseVarstore(ed.toBuffer()).variables.find((v) => v.name === 'dbx');
    const hashes = decodeSignatureLists(dbx?.data as Uint8Array).flatMap((l) => l.entries.map((e) => (e.kind === 'sha256' ? e.hash : '')));
    expect(hashes).toEqual(['11', '22', '33', '44'].map((h) => h.repeat(32)));
  });

  it('refuses a malformed certificate inside a signature list, and a second PK, changing nothing', () => {
    const ed = editVarstore(buildStore());
    ed.appendSignatures('PK', GLOBAL, x509SignatureList(certs.y2020.pem, OWNER));
    expect(() => ed.appendSignatures('PK', GLOBAL, x509SignatureList(certs.y2022.pem, OWNER))).toThrow(/^PK holds exactly one certificate/);
    expect(ed.appendSignatures('PK', GLOBAL, x509SignatureList(certs.y2020.pem, OWNER)).changed).toBe(false);
    const pk = ed.toBuffer();
    expect(parseVarstore(pk).variables.map((v) => v.name)).toEqual(['PK']);
    ed.delete('PK', GLOBAL);
    const bad = buildSignatureList(EFI_CERT_X509, [{ owner: OWNER, data: new Uint8Array(40).fill(0x30) }]);
    expect(() => ed.appendSignatures('db', DB, bad)).toThrow(VarstoreError);
    expect(() => ed.appendSignatures('db', DB, Uint8Array.of(1, 2, 3))).toThrow(/signature list header at byte 0 is truncated/);
    expect(ed.changed).toBe(false);
  });

  it.skipIf(!existsSync(MS_4M))("enrols into Debian's Microsoft-keys template: new certificate once, 2011 ones not twice", () => {
    const img = new Uint8Array(readFileSync(MS_4M));
    const before = parseVarstore(img);
    const dbBefore = before.variables.find((v) => v.name === 'db') as (typeof before.variables)[number];
    const kek = before.variables.find((v) => v.name === 'KEK' && v.vendorGuid === GLOBAL) as (typeof before.variables)[number];
    const ed = editVarstore(img);
    // the KEK's certificates (Debian, Microsoft KEK CA 2011) are already there: a no-op
    expect(ed.appendSignatures('KEK', GLOBAL, kek.data)).toMatchObject({ added: 0, duplicates: 2, changed: false });
    // Windows Production PCA 2011 again, under a different owner: still a no-op
    const [pca] = readSignatureLists(dbBefore.data);
    expect(ed.appendSignatures('db', DB, buildSignatureList(pca.type, [{ owner: OWNER, data: pca.entries[0].data }]))).toMatchObject({ added: 0, changed: false });
    expect(Buffer.compare(ed.toBuffer(), Buffer.from(img))).toBe(0);

    // an older certificate: added, the template's timestamp kept
    expect(ed.appendSignatures('db', DB, x509SignatureList(certs.y2020.pem, OWNER))).toMatchObject({ added: 1, timestamp: dbBefore.timestamp });
    // a fresh one (notBefore after the template's build): timestamp = its notBefore
    expect(ed.appendSignatures('db', DB, x509SignatureList(certs.now.pem, OWNER)).timestamp).toBe(efiTime(certs.now.cert.notBefore));
    const out = ed.toBuffer();
    const after = parseVarstore(out);
    const db = after.variables.find((v) => v.name === 'db') as (typeof after.variables)[number];
    expect(db.data.subarray(0, dbBefore.data.length)).toEqual(dbBefore.data); // existing lists kept as they were
    for (const c of [certs.y2020, certs.now]) expect(x509Count(db.data, c.cert.sha256)).toBe(1);
    // everything else unchanged
    const others = (p: typeof after) => p.variables.filter((v) => v.name !== 'db').map(({ offset: _o, ...v }) => v);
    expect(others(after)).toEqual(others(before));
    expect(after.layout).toBe('4M');
  });
});
