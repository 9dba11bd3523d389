// Small statistics and formatting helpers for scripts/bench.mjs.

/** Nearest-rank quantile (q in 0..1) of a list of numbers. */
export function quantile(xs, q) {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const i = Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1));
  return s[i];
}

/** Median (mean of the two middle values for an even count). */
export function median(xs) {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Render rows (arrays of cells) as an aligned plain-text table: first column left-aligned, the rest right-aligned. */
export function table(header, rows) {
  const all = [header, ...rows].map((r) => r.map((c) => (c === undefined || c === null ? '' : String(c))));
  const width = header.map((_, i) => Math.max(...all.map((r) => r[i].length)));
  const right = header.map((_, i) => i > 0); // the first column names the row; the others hold numbers
  const line = (r) => r.map((c, i) => (right[i] ? c.padStart(width[i]) : c.padEnd(width[i]))).join('  ').trimEnd();
  return [line(all[0]), width.map((w) => '-'.repeat(w)).join('  '), ...all.slice(1).map(line)].join('\n');
}
