/**
 * The varstore writer: byte identity for unchanged stores, parse(write(x)) = x, compaction that leaves
 * the FV header, store header and FTW areas alone, firmware size limits, a full 2 MB store refused
 * cleanly, and the pending fault-tolerant-write guard.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { VarstoreError } from '../../../src/core/errors';
import { editVarstore, encodeEfiTime, formatEfiTime, parseVarstore, writeVarstore, type Variable } from '../../../src/core/varstore';
import { rng } from '../../support/rng';
import { buildStore, GLOBAL } from './store-builder';

const BOOTED = join(__dirname, 'fixtures/booted-4m.fd');
const DEBIAN = ['OVMF_VARS_4M.fd', 'OVMF_VARS_4M.ms.fd', 'OVMF_VARS.fd', 'OVMF_VARS.ms.fd'].map((f) => `/usr/share/OVMF/${f}`);
for (const f of DEBIAN) if (!existsSync(f)) console.warn(`SKIPPED: ${f} is absent (Debian's "ovmf" package) — its writer round-trip tests do not run`);

const TEST_VENDOR = '0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0';
const DB_VENDOR = 'd719b2cb-3d3a-4596-a3bc-dad00e67656f';

/** A variable without its (layout-dependent) offset. */
const strip = (vs: readonly Variable[]) => vs.map(({ offset: _offset, ...v }) => v);
const same = (a: Uint8Array, b: Uint8Array) => Buffer.compare(Buffer.from(a), Buffer.from(b)) === 0;

/** Where the records live: [start, end) of the variable area. */
const area = (bytes: Uint8Array) => {
  const p = parseVarstore(bytes);
  const vs = p.fv.headerLength;
  return { p, vs, start: (vs + 28 + 3) & ~3, end: vs + p.storeSize };
};

/** The bytes a write may change are the variable area only; the records are compact, VAR_ADDED, then 0xFF. */
const expectCompactWrite = (before: Uint8Array, after: Uint8Array) => {
  const { p, vs, start, end } = area(after);
  expect(after.length).toBe(before.length);
  expect(same(after.subarray(0, vs + 28), before.subarray(0, vs + 28))).toBe(true); // FV header + store header
  expect(same(after.subarray(end), before.subarray(end))).toBe(true); // event log, FTW working block, spare
  expect(p.skipped).toEqual({ deleted: 0, inTransition: 0, headerOnly: 0 });
  for (const v of p.variables) {
    expect(v.offset % 4).toBe(0);
    expect(after[v.offset + 2]).toBe(0x3f);
  }
  expect(after.subarray(start + p.used, end).every((b) => b === 0xff)).toBe(true);
  // records follow each other with no gap but the alignment padding
  let off = start;
  for (const v of p.variables) {
    expect(v.offset).toBe(off);
    const hdr = p.authenticated ? 60 : 32;
    const nameSize = new DataView(after.buffer, after.byteOffset).getUint32(v.offset + hdr - 24, true);
    off = (v.offset + hdr + nameSize + v.data.length + 3) & ~3;
  }
};

const synthetic = {
  'a synthetic plain (non-authenticated) store': () =>
    buildStore({ authenticated: false, records: [{ name: 'A', data: [1, 2, 3] }, { name: 'Bee', data: [4], attrs: 3 }] }),
  'a synthetic authenticated store with deleted and in-transition records': () =>
    buildStore({
      records: [
        { name: 'Old', data: [9], state: 0x3c },
        { name: 'Kept', data: [1, 2], state: 0x3e },
        { name: 'X', data: [7, 7, 7, 7, 7] },
        { name: 'Half', data: [5], state: 0x7f },
      ],
    }),
};

const stores: Array<{ name: string; bytes?: () => Uint8Array }> = [
  { name: 'booted-4m.fd', bytes: () => new Uint8Array(readFileSync(BOOTED)) },
  ...DEBIAN.map((f) => ({ name: f, bytes: existsSync(f) ? () => new Uint8Array(readFileSync(f)) : undefined })),
  ...Object.entries(synthetic).map(([name, bytes]) => ({ name, bytes })),
];

describe('writing an unchanged store', () => {
  it.each(stores)('$name: write(parse(file)) is byte-identical', ({ bytes }) => {
    if (!bytes) return; // skipped, announced above
    const img = bytes();
    expect(same(editVarstore(img).toBuffer(), img)).toBe(true);
    expect(same(writeVarstore(img, []), img)).toBe(true);
    // setting every variable to what it is, and adding then deleting one, change nothing either
    const ed = editVarstore(img);
    for (const v of parseVarstore(img).variables)
      ed.set(v.name, v.vendorGuid, v.attributes.value, v.data, v.timestamp ? { timestamp: v.timestamp } : {});
    ed.set('OvmfHookProbe', TEST_VENDOR, 7, Uint8Array.of(1));
    expect(ed.delete('OvmfHookProbe', TEST_VENDOR)).toBe(true);
    expect(ed.changed).toBe(false);
    expect(same(ed.toBuffer(), img)).toBe(true);
  });
});

describe('parse(write(x)) = x', () => {
  it.each(stores)('$name: a compacting write keeps every live variable, attribute, data byte and timestamp', ({ bytes }) => {
    if (!bytes) return;
    const img = bytes();
    const x = parseVarstore(img);
    // force a compacting write, then undo the change in a second one
    const ed = editVarstore(img);
    ed.set('OvmfHookProbe', TEST_VENDOR, 7, Uint8Array.of(1, 2, 3));
    const once = ed.toBuffer();
    expectCompactWrite(img, once);
    const p1 = parseVarstore(once);
    expect(strip(p1.variables.slice(0, -1))).toEqual(strip(x.variables));
    expect(p1.variables.at(-1)).toMatchObject({ name: 'OvmfHookProbe', vendorGuid: TEST_VENDOR, data: Uint8Array.of(1, 2, 3) });

    const ed2 = editVarstore(once);
    ed2.delete('OvmfHookProbe', TEST_VENDOR);
    const twice = ed2.toBuffer();
    expectCompactWrite(img, twice);
    const p2 = parseVarstore(twice);
    expect(strip(p2.variables)).toEqual(strip(x.variables));
    expect({ layout: p2.layout, authenticated: p2.authenticated, storeSize: p2.storeSize, fv: p2.fv }).toEqual({
      layout: x.layout,
      authenticated: x.authenticated,
      storeSize: x.storeSize,
      fv: x.fv,
    });
    expect(p2.used + p2.free).toBe(x.used + x.free);
    expect(p2.used).toBeLessThanOrEqual(x.used);
    // and the compacted store itself round-trips byte for byte
    expect(same(editVarstore(twice).toBuffer(), twice)).toBe(true);
  });

  it.each(stores)('$name: rebuilt from scratch through set(), the store reads back as the same variables', ({ bytes }) => {
    if (!bytes) return;
    const img = bytes();
    const x = parseVarstore(img);
    const ed = editVarstore(img);
    for (const v of x.variables) ed.delete(v.name, v.vendorGuid);
    expect(ed.variables).toEqual([]);
    for (const v of x.variables)
      ed.set(v.name, v.vendorGuid, v.attributes.value, v.data, x.authenticated ? { timestamp: v.timestamp, monotonicCount: v.monotonicCount } : {});
    const out = ed.toBuffer();
    expectCompactWrite(img, out);
    expect(strip(parseVarstore(out).variables)).toEqual(strip(x.variables));
    expect(strip(ed.variables)).toEqual(strip(x.variables));
  });
});

describe('editing', () => {
  it('replaces in place, appends new variables last, deletes, appends bytes, and reports usage', () => {
    const img = buildStore({ records: [{ name: 'A', data: [1] }, { name: 'B', data: [2] }, { name: 'C', data: [3] }] });
    const ed = editVarstore(img);
    ed.set('B', GLOBAL, 7, Uint8Array.of(9, 9));
    ed.set('D', GLOBAL.toUpperCase(), 3, Uint8Array.of(4));
    expect(ed.delete('A', GLOBAL)).toBe(true);
    expect(ed.delete('A', GLOBAL)).toBe(false);
    ed.append('C', GLOBAL, Uint8Array.of(5, 6));
    ed.append('E', GLOBAL, Uint8Array.of(7), { attributes: 7 });
    const out = ed.toBuffer();
    const vars = parseVarstore(out).variables;
    expect(vars.map((v) => [v.name, [...v.data]])).toEqual([
      ['B', [9, 9]],
      ['C', [3, 5, 6]],
      ['D', [4]],
      ['E', [7]],
    ]);
    expect(vars.find((v) => v.name === 'D')?.vendorGuid).toBe(GLOBAL);
    const u = ed.usage();
    expect(u.needed).toBe(parseVarstore(out).used);
    expect(u.capacity - u.needed).toBe(u.free);
    expect(ed.get('C', GLOBAL)?.data).toEqual(Uint8Array.of(3, 5, 6));
    expect(ed.get('A', GLOBAL)).toBeUndefined();
  });

  it('keeps a replaced authenticated variable\'s timestamp and count unless given, and writes the ones given', () => {
    const ed = editVarstore(buildStore());
    ed.set('db', DB_VENDOR, 0x27, Uint8Array.of(1), { timestamp: '2021-02-03T04:05:06', monotonicCount: 5 });
    ed.set('db', DB_VENDOR, 0x27, Uint8Array.of(2));
    expect(ed.get('db', DB_VENDOR)).toMatchObject({ timestamp: '2021-02-03T04:05:06', monotonicCount: 5, data: Uint8Array.of(2) });
    ed.set('db', DB_VENDOR, 0x27, Uint8Array.of(2), { timestamp: new Date('2022-01-01T00:00:00.250Z') });
    const [v] = parseVarstore(ed.toBuffer()).variables;
    expect(v).toMatchObject({ timestamp: '2022-01-01T00:00:00.250000000', monotonicCount: 5 });
    expect(formatEfiTime(encodeEfiTime('2030-12-31T23:59:59.000000001'))).toBe('2030-12-31T23:59:59.000000001');
  });

  it.each([
    { what: 'an empty name', run: (e: ReturnType<typeof editVarstore>) => e.set('', GLOBAL, 7, Uint8Array.of(1)), msg: /must not be empty/ },
    { what: 'a bad GUID', run: (e: ReturnType<typeof editVarstore>) => e.set('A', 'nope', 7, Uint8Array.of(1)), msg: /not a GUID/ },
    { what: 'a volatile variable', run: (e: ReturnType<typeof editVarstore>) => e.set('A', GLOBAL, 6, Uint8Array.of(1)), msg: /NON_VOLATILE/ },
    { what: 'RT without BS', run: (e: ReturnType<typeof editVarstore>) => e.set('A', GLOBAL, 5, Uint8Array.of(1)), msg: /RUNTIME_ACCESS without/ },
    { what: 'APPEND_WRITE stored', run: (e: ReturnType<typeof editVarstore>) => e.set('A', GLOBAL, 0x47, Uint8Array.of(1)), msg: /APPEND_WRITE/ },
    { what: 'a bad timestamp', run: (e: ReturnType<typeof editVarstore>) => e.set('A', GLOBAL, 7, Uint8Array.of(1), { timestamp: '2023-13-01T00:00:00' }), msg: /out of the EFI_TIME range/ },
    { what: 'append to a missing variable without attributes', run: (e: ReturnType<typeof editVarstore>) => e.append('Z', GLOBAL, Uint8Array.of(1)), msg: /needs its attributes/ },
  ])('refuses $what with one line, changing nothing', ({ run, msg }) => {
    const img = buildStore({ records: [{ name: 'A', data: [1] }] });
    const ed = editVarstore(img);
    let err: unknown;
    try {
      run(ed);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(VarstoreError);
    expect((err as Error).message).toMatch(msg);
    expect((err as Error).message).not.toContain('\n');
    expect(ed.changed).toBe(false);
  });

  it('refuses timestamps in a plain store', () => {
    const ed = editVarstore(buildStore({ authenticated: false }));
    expect(() => ed.set('A', GLOBAL, 7, Uint8Array.of(1), { timestamp: '2020-01-01T00:00:00' })).toThrow(/not authenticated/);
  });

  it('never modifies the input buffer, and is not affected by later changes to it', () => {
    const img = buildStore({ records: [{ name: 'A', data: [1] }] });
    const copy = Uint8Array.from(img);
    const ed = editVarstore(img);
    ed.set('B', GLOBAL, 7, Uint8Array.of(2));
    const out = ed.toBuffer();
    expect(same(img, copy)).toBe(true);
    img.fill(0);
    expect(same(ed.toBuffer(), out)).toBe(true);
  });
});

describe('size limits', () => {
  const FV_2M = { fvLength: 0x20000, storeSize: 0xdfb8 };
  const FV_4M = { fvLength: 0x84000, storeSize: 0x3ffb8 };

  it('applies OVMF\'s per-variable limits: 10240 bytes for an authenticated variable in a 2 MB store, 33792 in 4 MB', () => {
    const data = new Uint8Array(10240 - 60 - 6 + 1); // header + "db\0" + data, one byte over
    expect(() => editVarstore(buildStore(FV_2M)).set('db', DB_VENDOR, 0x27, data)).toThrow(
      /^db would be 10241 bytes, over the firmware's 10240-byte limit for one authenticated variable in a 2 MB store$/,
    );
    editVarstore(buildStore(FV_2M)).set('db', DB_VENDOR, 0x27, data.subarray(1));
    expect(() => editVarstore(buildStore(FV_2M)).set('Big', GLOBAL, 7, new Uint8Array(0x2000))).toThrow(/8192-byte limit for one non-volatile/);
    editVarstore(buildStore(FV_4M)).set('db', DB_VENDOR, 0x27, data);
    expect(() => editVarstore(buildStore(FV_4M)).set('db', DB_VENDOR, 0x27, new Uint8Array(0x8400))).toThrow(/33792-byte limit/);
    editVarstore(buildStore(FV_4M), { limits: null }).set('db', DB_VENDOR, 0x27, new Uint8Array(0x8400));
  });

  it('fills a 2 MB store until it is refused cleanly: one line, input and editor untouched, the store still writes', () => {
    const real = '/usr/share/OVMF/OVMF_VARS.fd';
    const img = existsSync(real) ? new Uint8Array(readFileSync(real)) : buildStore(FV_2M);
    expect(parseVarstore(img).layout).toBe('2M');
    const copy = Uint8Array.from(img);
    const rand = rng(0x2f11);
    const ed = editVarstore(img);
    const intended = new Map<string, Uint8Array>();
    let refused: Error | undefined;
    for (let i = 0; i < 10_000 && !refused; i++) {
      const name = `Fill${i}`;
      const data = new Uint8Array(1 + Math.floor(rand() * 2000)).map(() => Math.floor(rand() * 256));
      const before = { vars: ed.variables.length, usage: ed.usage() };
      try {
        ed.set(name, TEST_VENDOR, 7, data);
        intended.set(name, data);
      } catch (e) {
        refused = e as Error;
        expect(ed.variables.length).toBe(before.vars);
        expect(ed.usage()).toEqual(before.usage);
        const size = (parseVarstore(img).authenticated ? 60 : 32) + Buffer.byteLength(`${name}\0`, 'utf16le') + data.length;
        expect(before.usage.free).toBeLessThan(size + 3); // + at most 3 bytes of padding after the previous record
      }
    }
    expect(refused).toBeInstanceOf(VarstoreError);
    expect(refused?.message).toMatch(/^the variable store is full: adding Fill\d+ needs \d+ bytes, has \d+ free$/);
    expect(intended.size).toBeGreaterThan(40);
    expect(same(img, copy)).toBe(true);
    const out = ed.toBuffer();
    expectCompactWrite(img, out);
    const p = parseVarstore(out);
    const fills = p.variables.filter((v) => v.vendorGuid === TEST_VENDOR);
    expect(fills.map((v) => v.name)).toEqual([...intended.keys()]);
    for (const v of fills) expect(same(v.data, intended.get(v.name) as Uint8Array)).toBe(true);
    expect(p.free).toBe(ed.usage().free);
    expect(p.free).toBeLessThan(2000 + 100);
    // growing an existing variable past the end is refused the same way
    const first = [...intended.keys()][0];
    expect(() => ed.append(first, TEST_VENDOR, new Uint8Array(p.free + 4))).toThrow(/^the variable store is full: appending to Fill0 needs \d+ bytes, has \d+ free$/);
  });
});

describe('a pending fault-tolerant write', () => {
  /** Put an FTW write header + one record into the working block of the booted 4 MB fixture (at 0x41000). */
  const withFtwRecord = (recordState: number): Uint8Array => {
    const img = new Uint8Array(readFileSync(BOOTED));
    const wb = 0x41000;
    expect(Buffer.from(img.subarray(wb, wb + 4)).toString('hex')).toBe('2b29589e');
    const dv = new DataView(img.buffer, img.byteOffset);
    const h = wb + 32;
    img[h] = 0xfc; // HeaderAllocated + WritesAllocated, not Complete
    dv.setBigUint64(h + 24, 1n, true); // NumberOfWrites
    dv.setBigUint64(h + 32, 0n, true); // PrivateDataSize
    img[h + 40] = recordState;
    return img;
  };

  it('refuses to write when the firmware would copy the spare block over the store, and allows it when the write finished', () => {
    const pending = withFtwRecord(0xfd); // SpareComplete, not DestinationComplete
    const ed = editVarstore(pending);
    expect(same(ed.toBuffer(), pending)).toBe(true); // unchanged: still fine
    ed.set('OvmfHookProbe', TEST_VENDOR, 7, Uint8Array.of(1));
    expect(() => ed.toBuffer()).toThrow(/^the variable store has an unfinished fault-tolerant write/);

    for (const state of [0xf9 /* destination complete too */, 0xff /* nothing done yet */]) {
      const e2 = editVarstore(withFtwRecord(state));
      e2.set('OvmfHookProbe', TEST_VENDOR, 7, Uint8Array.of(1));
      expect(parseVarstore(e2.toBuffer()).variables.at(-1)?.name).toBe('OvmfHookProbe');
    }
  });
});
