import { describe, expect, it } from 'vitest';
import { unifiedDiff } from '../../src/cli/diff';
import { applyUnified } from './support';
import { rng } from '../support/rng';

const lines = (n: number, f: (i: number) => string) => Array.from({ length: n }, (_, i) => `${f(i)}\n`).join('');


/** Length of the longest common subsequence (plain DP): the minimal diff removes n - lcs lines. */
function lcs(a: string[], b: string[]): number {
  const row = new Array<number>(b.length + 1).fill(0);
  for (const x of a) {
    let diag = 0;
    for (let j = 1; j <= b.length; j++) {
      const up = row[j];
      row[j] = x === b[j - 1] ? diag + 1 : Math.max(row[j], row[j - 1]);
      diag = up;
    }
  }
  return row[b.length];
}

describe('unifiedDiff', () => {
  it('is empty for equal texts', () => {
    expect(unifiedDiff('a\nb\n', 'a\nb\n')).toBe('');
  });

  it.each([
    ['one changed line', 'a\nb\nc\n', 'a\nB\nc\n', '--- x\n+++ y\n@@ -1,3 +1,3 @@\n a\n-b\n+B\n c\n'],
    ['from empty', '', 'a\nb\n', '--- x\n+++ y\n@@ -0,0 +1,2 @@\n+a\n+b\n'],
    ['to empty', 'a\n', '', '--- x\n+++ y\n@@ -1 +0,0 @@\n-a\n'],
    ['newline added at the end', 'a\nb', 'a\nb\n', '--- x\n+++ y\n@@ -1,2 +1,2 @@\n a\n-b\n\\ No newline at end of file\n+b\n'],
    [
      'two far-apart changes are two hunks',
      lines(20, (i) => `l${i}`),
      lines(20, (i) => (i === 1 || i === 18 ? `L${i}` : `l${i}`)),
      '--- x\n+++ y\n@@ -1,5 +1,5 @@\n l0\n-l1\n+L1\n l2\n l3\n l4\n@@ -16,5 +16,5 @@\n l15\n l16\n l17\n-l18\n+L18\n l19\n',
    ],
  ])('%s: diff -u format', (_, a, b, expected) => {
    expect(unifiedDiff(a, b, { from: 'x', to: 'y' })).toBe(expected);
    expect(applyUnified(a, expected)).toBe(b);
  });

  it('merges changes 6 lines apart into one hunk (context 3)', () => {
    const a = lines(12, (i) => `l${i}`);
    const b = lines(12, (i) => (i === 2 || i === 9 ? `L${i}` : `l${i}`));
    const d = unifiedDiff(a, b);
    expect(d.match(/^@@/gm)).toHaveLength(1);
    expect(applyUnified(a, d)).toBe(b);
  });

  it('is minimal and applies, on 300 random line sequences', () => {
    const next = rng(42);
    const seq = () => Array.from({ length: Math.floor(next() * 25) }, () => 'abcde'[Math.floor(next() * 5)]);
    for (let c = 0; c < 300; c++) {
      const a = seq();
      const b = seq();
      const [ta, tb] = [a, b].map((s) => s.map((l) => `${l}\n`).join(''));
      const d = unifiedDiff(ta, tb);
      expect(applyUnified(ta, d)).toBe(tb);
      const removed = d.split('\n').filter((l) => l.startsWith('-') && !l.startsWith('--- ')).length;
      expect(removed).toBe(a.length - lcs(a, b));
    }
  });

  it('keeps CRLF line ends and handles a last line without newline', () => {
    const a = 'x\r\ny\r\nz';
    const b = 'x\r\nY\r\nz';
    const d = unifiedDiff(a, b);
    expect(d).toContain('-y\r\n+Y\r\n');
    expect(d.endsWith(' z\n\\ No newline at end of file\n')).toBe(true);
    expect(applyUnified(a, d)).toBe(b);
  });

  it('stays correct (and fast) past the edit limit: two unrelated 3000-line texts', () => {
    const a = lines(3000, (i) => `a${i}`);
    const b = lines(3000, (i) => `b${i}`);
    const t0 = performance.now();
    const d = unifiedDiff(a, b);
    expect(performance.now() - t0).toBeLessThan(5000);
    expect(applyUnified(a, d)).toBe(b);
  });
});
