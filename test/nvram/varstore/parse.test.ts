import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { VarstoreError } from '../../../src/core/errors';
import { parseVarstore } from '../../../src/core/varstore';
import { ovmf, varsTemplates } from '../../support/platform';
import { buildStore, GLOBAL } from './store-builder';

const OVMF = '/usr/share/OVMF';
const haveOvmf = existsSync(OVMF);
if (!haveOvmf) console.warn(`SKIPPED: ${OVMF} is absent (install Debian's "ovmf" package) — real VARS template tests do not run`);

const BOOTED = join(__dirname, 'fixtures/booted-4m.fd');

// what this host's OVMF release ships (Debian 12: 2 MB and 4 MB images, Debian 13: 4 MB only)
const known = varsTemplates();
if (haveOvmf && !known) console.warn(`SKIPPED: OVMF release ${ovmf().release ?? '?'} is not in test/support/platform.ts varsTemplates() — the template contents are not checked`);

describe.skipIf(!haveOvmf || !known)('parseVarstore on the Debian OVMF templates', () => {
  it.each(known?.templates ?? [])('$file: $layout, $count live variables, $deleted deleted', ({ file, layout, storeSize, count, deleted }) => {
    const p = parseVarstore(readFileSync(join(OVMF, file)));
    expect(p).toMatchObject({ layout, authenticated: true, storeSize, fv: { checksumOk: true } });
    expect(p.variables).toHaveLength(count);
    expect(p.skipped).toEqual({ deleted, inTransition: 0, headerOnly: 0 });
    expect(p.used + p.free).toBe(storeSize - 28);
  });

  it('finds the enrolled Secure Boot databases with their vendors, attributes and timestamps in the ms template', () => {
    const p = parseVarstore(readFileSync(join(OVMF, 'OVMF_VARS_4M.ms.fd')));
    const pick = (name: string) => p.variables.find((v) => v.name === name);
    expect(pick('PK')).toMatchObject({ vendorGuid: GLOBAL, attributes: { value: 0x27, flags: ['NV', 'BS', 'RT', 'AT'] } });
    expect(pick('KEK')?.vendorGuid).toBe(GLOBAL);
    expect(pick('db')?.vendorGuid).toBe('d719b2cb-3d3a-4596-a3bc-dad00e67656f');
    expect(pick('dbx')?.vendorGuid).toBe('d719b2cb-3d3a-4596-a3bc-dad00e67656f');
    expect(pick('PK')?.timestamp).toMatch(/^20\d\d-\d\d-\d\dT\d\d:\d\d:\d\d$/);
    expect(pick('SecureBootEnable')).toMatchObject({ vendorGuid: 'f0a30bc7-af08-4556-99c4-001009c93a44', data: Uint8Array.of(1) });
  });

  it.skipIf(!existsSync('/usr/share/ovmf/OVMF.fd'))('reads the NV store at the start of a combined OVMF.fd image', () => {
    const p = parseVarstore(readFileSync('/usr/share/ovmf/OVMF.fd'));
    const layout = known!.combinedLayout;
    expect(p).toMatchObject({ layout, authenticated: true, storeSize: layout === '2M' ? 0xdfb8 : 0x3ffb8 });
  });

  it('refuses a CODE image with a message that says so', () => {
    expect(() => parseVarstore(readFileSync(join(OVMF, 'OVMF_CODE_4M.fd')))).toThrow(/not an NV data volume.*CODE image/);
  });
});

describe('parseVarstore on the booted-VM fixture', () => {
  it('lists the variables the boot manager wrote, in store order, with deleted copies skipped', () => {
    const p = parseVarstore(readFileSync(BOOTED));
    expect(p.layout).toBe('4M');
    expect(p.skipped.deleted).toBeGreaterThan(0);
    const names = p.variables.filter((v) => v.vendorGuid === GLOBAL).map((v) => v.name);
    expect(names).toEqual(expect.arrayContaining(['BootOrder', 'Boot0000', 'Boot0001', 'Boot0006', 'Timeout', 'ConOut']));
    // one live copy per (vendor, name)
    const keys = p.variables.map((v) => `${v.vendorGuid}/${v.name}`);
    expect(new Set(keys).size).toBe(keys.length);
  });
});

describe('parseVarstore results', () => {
  it('copies variable data out of the input buffer (also for Node Buffers)', () => {
    const img = Buffer.from(buildStore({ records: [{ name: 'A', data: [1, 2] }] }));
    const [v] = parseVarstore(img).variables;
    img.fill(0);
    expect(v.data).toEqual(Uint8Array.of(1, 2));
    expect(Buffer.isBuffer(v.data)).toBe(false);
  });
});

describe('parseVarstore record states', () => {
  const rec = (name: string, state: number, data = [1]) => ({ name, state, data });
  it.each([
    { what: 'VAR_ADDED is live', records: [rec('A', 0x3f)], live: ['A'], skipped: {} },
    { what: 'in-deleted-transition alone is live (edk2 keeps it)', records: [rec('A', 0x3e)], live: ['A'], skipped: {} },
    {
      what: 'in-deleted-transition loses to a VAR_ADDED copy',
      records: [rec('A', 0x3e, [1]), rec('A', 0x3f, [2])],
      live: ['A'],
      skipped: { inTransition: 1 },
    },
    { what: 'VAR_DELETED (0x3c, 0x3d) is skipped', records: [rec('A', 0x3c), rec('B', 0x3d), rec('C', 0x3f)], live: ['C'], skipped: { deleted: 2 } },
    { what: 'VAR_HEADER_VALID_ONLY is skipped', records: [rec('A', 0x7f), rec('B', 0x3f)], live: ['B'], skipped: { headerOnly: 1 } },
  ])('$what', ({ records, live, skipped }) => {
    const p = parseVarstore(buildStore({ records }));
    expect(p.variables.map((v) => v.name)).toEqual(live);
    expect(p.skipped).toEqual({ deleted: 0, inTransition: 0, headerOnly: 0, ...skipped });
  });

  it('keeps the VAR_ADDED data when an in-transition copy exists', () => {
    const p = parseVarstore(buildStore({ records: [rec('A', 0x3e, [1]), rec('A', 0x3f, [2])] }));
    expect([...p.variables[0].data]).toEqual([2]);
  });

  it.each([true, false])('walks 4-byte aligned records of odd sizes (authenticated=%s)', (authenticated) => {
    const records = [1, 2, 3, 4, 5].map((n) => ({ name: `V${n}`, data: Array.from({ length: n }, (_, i) => i + n) }));
    const p = parseVarstore(buildStore({ authenticated, records }));
    expect(p.authenticated).toBe(authenticated);
    expect(p.variables.map((v) => [v.name, [...v.data]])).toEqual(records.map((r) => [r.name, r.data]));
    expect(p.variables[0].monotonicCount).toBe(authenticated ? 0 : undefined);
  });

  it('stops at the first record whose StartId is not 0x55AA', () => {
    const img = buildStore({ records: [{ name: 'A' }, { name: 'B' }] });
    const p1 = parseVarstore(img);
    img[p1.variables[1].offset] = 0xff; // StartId 0x55FF
    expect(parseVarstore(img).variables.map((v) => v.name)).toEqual(['A']);
  });

  it('reports a bad FV header checksum without refusing the store', () => {
    const img = buildStore({ records: [{ name: 'A' }] });
    img[0x2c] ^= 1;
    expect(parseVarstore(img).fv.checksumOk).toBe(false);
  });
});

describe('parseVarstore rejects corrupt images with VarstoreError', () => {
  const valid = () => buildStore({ records: [{ name: 'A', data: [1, 2, 3] }] });
  const patched = (at: number, bytes: number[]) => {
    const b = valid();
    b.set(bytes, at);
    return b;
  };
  it.each([
    { what: 'an empty file', img: new Uint8Array(0), msg: /too small/ },
    { what: 'a qcow2 image', img: Uint8Array.from([0x51, 0x46, 0x49, 0xfb, 0, 0, 0, 3, ...new Array(120).fill(0)]), msg: /qcow2.*qemu-img convert/ },
    { what: 'a file of zeros', img: new Uint8Array(4096), msg: /_FVH/ },
    { what: 'another firmware volume type', img: buildStore({ fsGuid: '8c8ce578-8a3d-4f1c-9935-896185c32dd3' }), msg: /NV data volume/ },
    { what: 'a header length past the file', img: patched(0x30, [0xff, 0xff]), msg: /header length/ },
    { what: 'an FV longer than the file (truncated copy)', img: valid().subarray(0, 0x3000), msg: /truncated/ },
    { what: 'an unknown store signature', img: patched(0x48, [0]), msg: /store signature/ },
    { what: 'an unformatted store', img: buildStore({ format: 0xff }), msg: /format/ },
    { what: 'an unhealthy store', img: buildStore({ state: 0xff }), msg: /state/ },
    { what: 'a store larger than the FV', img: buildStore({ storeSize: 0x10000 }), msg: /store size/ },
    { what: 'a NameSize past the store end', img: buildStore({ records: [{ name: 'A', nameSize: 0xfffffff0 }] }), msg: /runs past/ },
    { what: 'a DataSize past the store end', img: buildStore({ records: [{ name: 'A', dataSize: 0x2000 }] }), msg: /runs past/ },
    {
      what: 'a header straddling the store end',
      img: buildStore({ storeSize: 0x64 - 0x48 + 8, records: [{ name: 'A' }] }),
      msg: /header .* runs past/,
    },
  ])('$what', ({ img, msg }) => {
    expect(() => parseVarstore(img)).toThrow(VarstoreError);
    expect(() => parseVarstore(img)).toThrow(msg);
  });

  it('is an OvmfHookError with exit code 2 and a one-line message', () => {
    try {
      parseVarstore(new Uint8Array(10));
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(VarstoreError);
      expect((e as VarstoreError).exitCode).toBe(2);
      expect((e as Error).message).not.toContain('\n');
    }
  });

  it('does not read past a 32-bit size sum (NameSize + DataSize overflow)', () => {
    const img = buildStore({ records: [{ name: 'A', nameSize: 0xffffffff, dataSize: 0xffffffff }] });
    expect(() => parseVarstore(img)).toThrow(VarstoreError);
  });
});
