/**
 * Deterministic fuzzing: truncated, bit-flipped and field-smashed variants of real VARS images
 * must either parse or raise VarstoreError — never another exception, never a hang.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { describe, expect, it } from 'vitest';
import { VarstoreError } from '../../../src/core/errors';
import { rng } from '../../support/rng';
import {
  decodeLoadOption,
  decodeSignatureLists,
  decodeVariable,
  devicePathsToText,
  parseVarstore,
  renderVarsTable,
  secureBootSummary,
} from '../../../src/core/varstore';


const sources = [
  join(__dirname, 'fixtures/booted-4m.fd'),
  '/usr/share/OVMF/OVMF_VARS_4M.ms.fd',
  '/usr/share/OVMF/OVMF_VARS.ms.fd',
].filter((f) => existsSync(f));
if (sources.length < 3) console.warn('SKIPPED (partly): /usr/share/OVMF is absent — fuzzing only the booted fixture');

type Outcome = 'parsed' | 'rejected';

/** Parse (and, every `deep`-th time, decode + render) one variant; rethrow anything but VarstoreError. */
const exercise = (img: Uint8Array, deep: boolean): Outcome => {
  try {
    const p = parseVarstore(img);
    if (deep) {
      for (const v of p.variables) decodeVariable(v);
      secureBootSummary(p.variables);
      renderVarsTable(p);
    }
    return 'parsed';
  } catch (e) {
    if (e instanceof VarstoreError) return 'rejected';
    throw e;
  }
};

describe('fuzzing parseVarstore with damaged real images', () => {
  it('2400 truncated / bit-flipped / smashed variants only ever raise VarstoreError, each quickly', () => {
    const rand = rng(0x0f1f2f3f);
    const int = (n: number) => Math.floor(rand() * n);
    const images = sources.map((f) => {
      const bytes = new Uint8Array(readFileSync(f));
      const p = parseVarstore(bytes);
      return { bytes, hot: Math.min(bytes.length, 0x64 + p.used + 64) }; // headers + variable records
    });
    const counts: Record<Outcome, number> = { parsed: 0, rejected: 0 };
    let slowest = 0;
    const N = 2400;
    for (let i = 0; i < N; i++) {
      const { bytes, hot } = images[i % images.length];
      const mode = int(10);
      let variant: Uint8Array = bytes;
      const saved: Array<[number, number]> = [];
      if (mode < 3) {
        // truncate: mostly inside the interesting prefix, sometimes just short of the end
        variant = bytes.subarray(0, rand() < 0.8 ? int(hot) : bytes.length - 1 - int(4096));
      } else if (mode < 8) {
        // flip 1–8 bits inside the headers and records
        for (let k = 1 + int(8); k > 0; k--) {
          const at = int(hot);
          saved.push([at, bytes[at]]);
          bytes[at] ^= 1 << int(8);
        }
      } else {
        // smash a 32-bit field with a boundary value
        const at = int(hot - 4) & ~1;
        const value = [0, 0xffffffff, 0x7fffffff, 0x80000000, 4, int(2 ** 32)][int(6)];
        for (let k = 0; k < 4; k++) saved.push([at + k, bytes[at + k]]);
        new DataView(bytes.buffer, bytes.byteOffset).setUint32(at, value, true);
      }
      const t0 = performance.now();
      counts[exercise(variant, i % 4 === 0)] += 1;
      slowest = Math.max(slowest, performance.now() - t0);
      for (const [at, b] of saved.reverse()) bytes[at] = b;
    }
    expect(counts.parsed + counts.rejected).toBe(N);
    // both outcomes must occur, or the mutations are not reaching the parser
    expect(counts.parsed).toBeGreaterThan(N / 10);
    expect(counts.rejected).toBeGreaterThan(N / 10);
    expect(slowest).toBeLessThan(500);
  });
});

describe('fuzzing the decoders with random bytes', () => {
  it.each([
    { name: 'decodeLoadOption', fn: decodeLoadOption },
    { name: 'devicePathsToText', fn: devicePathsToText },
    { name: 'decodeSignatureLists', fn: decodeSignatureLists },
  ])('$name: 2000 random inputs raise nothing but VarstoreError', ({ fn }) => {
    const rand = rng(42);
    let ok = 0;
    for (let i = 0; i < 2000; i++) {
      // small lengths and small values make structurally plausible inputs likelier
      const data = Uint8Array.from({ length: Math.floor(rand() * 200) }, () => (rand() < 0.5 ? Math.floor(rand() * 8) : Math.floor(rand() * 256)));
      try {
        fn(data);
        ok += 1;
      } catch (e) {
        if (!(e instanceof VarstoreError)) throw e;
      }
    }
    expect(ok).toBeLessThan(2000);
  });
});
