/**
 * Deterministic add/replace/append/delete fuzzing of the varstore writer against a simple model:
 * every written store parses, holds exactly the intended variables (names, vendors, attributes, data,
 * timestamps, order), and writes back byte for byte when reopened unchanged.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { decodeAttributes, editVarstore, parseVarstore, type Variable, type VarstoreEditor } from '../../../src/core/varstore';
import { rng } from '../../support/rng';
import { buildStore } from './store-builder';

const MS_2M = '/usr/share/OVMF/OVMF_VARS.ms.fd';
if (!existsSync(MS_2M)) console.warn(`SKIPPED: ${MS_2M} is absent — the writer fuzz runs on the booted fixture and synthetic stores only`);

const sources: Array<{ name: string; bytes: () => Uint8Array; seed: number }> = [
  { name: 'booted-4m.fd', bytes: () => new Uint8Array(readFileSync(join(__dirname, 'fixtures/booted-4m.fd'))), seed: 0x5eed0001 },
  { name: 'a synthetic plain store', bytes: () => buildStore({ authenticated: false, fvLength: 0x20000, storeSize: 0xdfb8 }), seed: 0x5eed0002 },
  { name: 'a synthetic authenticated 4 MB store', bytes: () => buildStore({ fvLength: 0x84000, storeSize: 0x3ffb8 }), seed: 0x5eed0003 },
  ...(existsSync(MS_2M) ? [{ name: MS_2M, bytes: () => new Uint8Array(readFileSync(MS_2M)), seed: 0x5eed0004 }] : []),
];

type ModelVar = Omit<Variable, 'offset'>;

/** One comparable line per variable (vitest's deep equality is slow on large byte arrays). */
const canon = (vs: readonly ModelVar[]): string[] =>
  vs.map((v) =>
    [v.vendorGuid, v.name, v.attributes.value, v.attributes.flags.join(','), v.monotonicCount, v.timestamp, Buffer.from(v.data).toString('hex')].join(' '),
  );

const VENDORS = ['8be4df61-93ca-11d2-aa0d-00e098032b8c', '0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0', 'd719b2cb-3d3a-4596-a3bc-dad00e67656f'];
const NAMES = ['Boot0000', 'Boot0001', 'BootOrder', 'Fuzz', 'Ünïcødé', 'x', 'A much longer variable name for padding', 'db', 'Lang', 'Timeout'];
const ATTRS = [0x07, 0x03, 0x01, 0x27, 0x23];

describe('writer fuzz against a model', () => {
  it.each(sources)('$name: 400 random edits, written and checked every few steps', ({ bytes, seed }) => {
    const rand = rng(seed);
    const int = (n: number) => Math.floor(rand() * n);
    const pick = <T,>(xs: readonly T[]): T => xs[int(xs.length)];
    const randomBytes = (n: number) => Uint8Array.from({ length: n }, () => int(256));
    const pad = (n: number, w = 2) => String(n).padStart(w, '0');
    const randomTime = () =>
      `${2000 + int(60)}-${pad(1 + int(12))}-${pad(1 + int(28))}T${pad(int(24))}:${pad(int(60))}:${pad(int(60))}${rand() < 0.3 ? `.${pad(1 + int(999_999_999), 9)}` : ''}`;

    let img = bytes();
    const auth = parseVarstore(img).authenticated;
    const model: ModelVar[] = parseVarstore(img).variables.map(({ offset: _o, ...v }) => v);
    let ed: VarstoreEditor = editVarstore(img);
    const find = (name: string, vendorGuid: string) => model.findIndex((v) => v.name === name && v.vendorGuid === vendorGuid);
    let writes = 0;

    const check = () => {
      const changed = ed.changed;
      const out = ed.toBuffer();
      const p = parseVarstore(out);
      expect(canon(p.variables)).toEqual(canon(model));
      if (changed) expect(p.skipped).toEqual({ deleted: 0, inTransition: 0, headerOnly: 0 });
      else expect(Buffer.compare(out, Buffer.from(img))).toBe(0);
      // everything outside the variable area is the original's
      const vs = p.fv.headerLength;
      expect(Buffer.compare(out.subarray(0, vs + 28), Buffer.from(img.subarray(0, vs + 28)))).toBe(0);
      expect(Buffer.compare(out.subarray(vs + p.storeSize), Buffer.from(img.subarray(vs + p.storeSize)))).toBe(0);
      // reopened unchanged, it writes back byte for byte
      expect(Buffer.compare(editVarstore(out).toBuffer(), out)).toBe(0);
      writes += 1;
      img = out;
      ed = editVarstore(out); // carry on editing the written store
    };

    for (let step = 0; step < 400; step++) {
      const r = rand();
      const name = rand() < 0.15 && model.length > 0 ? pick(model).name : pick(NAMES);
      const vendorGuid = rand() < 0.15 && model.length > 0 ? pick(model).vendorGuid : pick(VENDORS);
      const i = find(name, vendorGuid);
      if (r < 0.45) {
        const attributes = auth ? pick(ATTRS) : pick(ATTRS.filter((a) => a < 0x20));
        const data = randomBytes(int(300));
        const timestamp = auth && rand() < 0.5 ? randomTime() : undefined;
        const monotonicCount = auth && rand() < 0.2 ? int(1000) : undefined;
        ed.set(name, vendorGuid, attributes, data, { timestamp, monotonicCount });
        const old = i < 0 ? undefined : model[i];
        const v: ModelVar = { name, vendorGuid, attributes: decodeAttributes(attributes), data };
        if (auth) {
          v.monotonicCount = monotonicCount ?? old?.monotonicCount ?? 0;
          const ts = timestamp ?? old?.timestamp;
          if (ts !== undefined) v.timestamp = ts;
        }
        if (i < 0) model.push(v);
        else model[i] = v;
      } else if (r < 0.7) {
        expect(ed.delete(name, vendorGuid)).toBe(i >= 0);
        if (i >= 0) model.splice(i, 1);
      } else if (r < 0.85) {
        const data = randomBytes(int(100));
        const attributes = i >= 0 ? model[i].attributes.value : 0x07;
        ed.append(name, vendorGuid, data, { attributes });
        if (i >= 0) {
          const joined = new Uint8Array(model[i].data.length + data.length);
          joined.set(model[i].data);
          joined.set(data, model[i].data.length);
          model[i] = { ...model[i], data: joined };
        } else if (data.length > 0) {
          const v: ModelVar = { name, vendorGuid, attributes: decodeAttributes(attributes), data };
          if (auth) v.monotonicCount = 0;
          model.push(v);
        }
      } else {
        check();
      }
      expect(canon(ed.variables)).toEqual(canon(model));
    }
    check();
    expect(writes).toBeGreaterThan(40);
  });
});
