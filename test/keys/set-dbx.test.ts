/**
 * `nvram enroll --set-dbx FILE`: a signed DBX update as Microsoft publishes them (an
 * EFI_VARIABLE_AUTHENTICATION_2 header — EFI_TIME + WIN_CERTIFICATE_UEFI_GUID with a PKCS#7 blob —
 * then EFI_SIGNATURE_LISTs) replaces dbx: its lists become dbx's content, its timestamp dbx's.
 * The updates here are synthetic: the header is built byte by byte, the PKCS#7 blob is a DER
 * stub that signs nothing (the signature is not verified: the firmware trusts its own store).
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { VarstoreError } from '../../src/core/errors';
import {
  EFI_CERT_TYPE_PKCS7,
  EFI_IMAGE_SECURITY_DATABASE,
  enrollSignatures,
  MICROSOFT_OWNER,
  parseSignedUpdate,
  parseVarstore,
  readSignatureLists,
  SECURE_BOOT_DB_ATTRIBUTES,
  sha256SignatureList,
} from '../../src/core/varstore';
import { writeGuid } from '../../src/core/varstore/certs';
import { buildCli, runCli, scratchDir } from '../cli/support';

const MS = '/usr/share/OVMF/OVMF_VARS_4M.ms.fd';
const haveOvmf = existsSync(MS);
const HASHES = ['11'.repeat(32), '22'.repeat(32), '33'.repeat(32)];
/** A DER SEQUENCE standing in for Microsoft's PKCS#7 SignedData. */
const PKCS7_STUB = Buffer.from([0x30, 0x0b, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02]);

interface UpdateSpec {
  time?: [number, number, number, number, number, number];
  /** Bytes 7..15 of EFI_TIME (Pad1, Nanosecond, TimeZone, Daylight, Pad2). */
  tail?: number[];
  revision?: number;
  certType?: number;
  guid?: string;
  pkcs7?: Buffer;
  /** Override dwLength. */
  length?: number;
  payload?: Uint8Array;
}

/** EFI_VARIABLE_AUTHENTICATION_2 + payload, as UEFI defines it. */
function signedUpdate(s: UpdateSpec = {}): Buffer {
  const [y, mo, d, h, mi, se] = s.time ?? [2024, 5, 14, 8, 30, 15];
  const time = Buffer.alloc(16);
  time.writeUInt16LE(y, 0);
  time.set([mo, d, h, mi, se], 2);
  if (s.tail) time.set(s.tail, 7);
  const pkcs7 = s.pkcs7 ?? PKCS7_STUB;
  const win = Buffer.alloc(24);
  win.writeUInt32LE(s.length ?? 24 + pkcs7.length, 0);
  win.writeUInt16LE(s.revision ?? 0x0200, 4);
  win.writeUInt16LE(s.certType ?? 0x0ef1, 6);
  writeGuid(win, 8, s.guid ?? EFI_CERT_TYPE_PKCS7);
  return Buffer.concat([time, win, pkcs7, s.payload ?? sha256SignatureList(HASHES, MICROSOFT_OWNER)]);
}

describe('parseSignedUpdate', () => {
  it('reads the timestamp and the signature lists after the signature', () => {
    const u = parseSignedUpdate(signedUpdate(), 'u.bin');
    expect(u).toMatchObject({ timestamp: '2024-05-14T08:30:15', lists: 1, entries: 3, signatureBytes: PKCS7_STUB.length });
    expect(Buffer.from(u.signatureLists).equals(Buffer.from(sha256SignatureList(HASHES, MICROSOFT_OWNER)))).toBe(true);
  });

  it.each<[string, Buffer, RegExp]>([
    ['too short', signedUpdate().subarray(0, 30), /30 bytes is too short for the header/],
    ['a WIN_CERTIFICATE revision that is not 2.0', signedUpdate({ revision: 0x0100 }), /revision 0x100 and type 0xef1, not 0x200 and 0xef1/],
    ['a certificate type that is not WIN_CERT_TYPE_EFI_GUID', signedUpdate({ certType: 0x0002 }), /type 0x2, not 0x200 and 0xef1/],
    ['a certificate GUID that is not PKCS7', signedUpdate({ guid: 'a7717414-c616-4977-9420-844712a735bf' }), /certificate type is a7717414-c616-4977-9420-844712a735bf, not EFI_CERT_TYPE_PKCS7_GUID/],
    ['a WIN_CERTIFICATE length beyond the file', signedUpdate({ length: 100000 }), /length 100000 does not fit the \d+-byte file/],
    ['a PKCS#7 blob that is no DER structure', signedUpdate({ pkcs7: Buffer.from('not der at all') }), /PKCS#7 signature is not a DER structure/],
    ['a timestamp with a time zone', signedUpdate({ tail: [0, 0, 0, 0, 0, 0x3c, 0, 0, 0] }), /non-zero nanosecond, time zone, daylight or pad field/],
    ['a timestamp with nanoseconds', signedUpdate({ tail: [0, 1, 0, 0, 0, 0, 0, 0, 0] }), /non-zero nanosecond/],
    ['month 13', signedUpdate({ time: [2024, 13, 1, 0, 0, 0] }), /timestamp 2024-13-1 0:0:0 is not a valid EFI_TIME/],
    ['no content', signedUpdate({ payload: new Uint8Array(0) }), /carries no signature lists/],
    ['content that is no signature list', signedUpdate({ payload: new Uint8Array(40).fill(7) }), /signature list at byte 0/],
    ['a PE binary, not an update', Buffer.concat([Buffer.from('MZ'), Buffer.alloc(200)]), /not a signed UEFI variable update/],
  ])('refuses %s in one line', (_label, bytes, message) => {
    let error: unknown;
    try {
      parseSignedUpdate(bytes, 'u.bin');
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(VarstoreError);
    const m = (error as Error).message;
    expect(m).toMatch(/^u\.bin is not a signed UEFI variable update \(EFI_VARIABLE_AUTHENTICATION_2 header \+ EFI_SIGNATURE_LISTs, as Microsoft publishes DBX updates\): /);
    expect(m).toMatch(message);
    expect(m).not.toContain('\n');
  });
});

describe.skipIf(!haveOvmf)('enrollSignatures with a dbx update', () => {
  const ms = readFileSync(MS);
  const dbxOf = (image: Uint8Array) => parseVarstore(image).variables.find((v) => v.name === 'dbx' && v.vendorGuid === EFI_IMAGE_SECURITY_DATABASE)!;

  it("replaces dbx (not appends): the update's lists are its whole content, the update's timestamp its timestamp (also an earlier one); nothing else changes", () => {
    const before = dbxOf(ms);
    expect(before.timestamp! > '2024-05-14T08:30:15').toBe(true); // the template's is later: it is still replaced
    const update = parseSignedUpdate(signedUpdate(), 'u.bin');
    const r = enrollSignatures(ms, [], { dbx: { update, source: 'u.bin' } });
    expect(r.changed).toBe(true);
    expect(r.dbx).toEqual({ source: 'u.bin', status: 'replaced', before: 1, entries: 3, timestamp: '2024-05-14T08:30:15' });
    expect(r.timestamps).toEqual({ dbx: '2024-05-14T08:30:15' });
    const after = dbxOf(r.data);
    expect(readSignatureLists(after.data).flatMap((l) => l.entries.map((e) => Buffer.from(e.data).toString('hex')))).toEqual(HASHES);
    expect([after.attributes.value, after.timestamp]).toEqual([SECURE_BOOT_DB_ATTRIBUTES, '2024-05-14T08:30:15']);
    const others = (img: Uint8Array) =>
      parseVarstore(img)
        .variables.filter((v) => v.name !== 'dbx')
        .map((v) => `${v.name}:${Buffer.from(v.data).toString('hex')}:${v.timestamp ?? ''}`);
    expect(others(r.data)).toEqual(others(ms));
    // the same update again: nothing to do
    const again = enrollSignatures(r.data, [], { dbx: { update, source: 'u.bin' } });
    expect([again.changed, again.dbx?.status, again.data.equals(r.data)]).toEqual([false, 'unchanged', true]);
  });
});

describe.skipIf(!haveOvmf)('nvram enroll FILE --set-dbx (built CLI)', () => {
  let cli = '';
  let scratch: ReturnType<typeof scratchDir>;
  beforeAll(async () => {
    scratch = scratchDir('set-dbx');
    cli = await buildCli(join(scratch.dir, 'dist'));
  }, 60_000);
  afterAll(() => scratch?.cleanup());

  it('writes the update into dbx of a copy; --dry-run and a file that is not an update write nothing', () => {
    const at = (f: string) => join(scratch.dir, f);
    writeFileSync(at('vars.fd'), readFileSync(MS));
    writeFileSync(at('DBXUpdate.bin'), signedUpdate());
    writeFileSync(at('notes.txt'), 'not an update\n');
    const env = { OVMF_HOOK_CONFIG: join(scratch.dir, 'absent.json') };
    const run = (...args: string[]) => runCli(cli, ['nvram', 'enroll', ...args], { env });

    const dry = run(at('vars.fd'), '--set-dbx', at('DBXUpdate.bin'), '--dry-run');
    expect(dry.stderr).toBe('');
    expect(dry.stdout).toBe(
      `dbx  would replace  3 entries (before: 1)  ${at('DBXUpdate.bin')}, timestamp 2024-05-14T08:30:15\n` +
        `dry run: would replace dbx (3 entries, timestamp 2024-05-14T08:30:15) in ${at('vars.fd')}; nothing written\n`,
    );
    expect(existsSync(at('out.fd'))).toBe(false);

    const bad = run(at('vars.fd'), '--set-dbx', at('notes.txt'), '--output', at('out.fd'));
    expect(bad).toMatchObject({ code: 2, stdout: '' });
    expect(bad.stderr).toMatch(/^ovmf-hook: \S+notes\.txt is not a signed UEFI variable update [^\n]*\n$/);
    expect(existsSync(at('out.fd'))).toBe(false);

    const r = run(at('vars.fd'), '--set-dbx', at('DBXUpdate.bin'), '--output', at('out.fd'), '--json');
    expect(r.stderr).toBe('');
    const doc = JSON.parse(r.stdout) as { changed: boolean; dbx: unknown; items: unknown[] };
    expect(doc.changed).toBe(true);
    expect(doc.items).toEqual([]);
    expect(doc.dbx).toEqual({ source: at('DBXUpdate.bin'), status: 'replaced', before: 1, entries: 3, timestamp: '2024-05-14T08:30:15' });
    const vars = JSON.parse(runCli(cli, ['nvram', 'vars', at('out.fd'), '--json'], { env }).stdout) as { secureBoot: { dbx: { sha256: number } } };
    expect(vars.secureBoot.dbx.sha256).toBe(3);
    expect(readFileSync(at('vars.fd')).equals(readFileSync(MS))).toBe(true);
  });
});
