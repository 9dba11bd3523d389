/**
 * A unified line diff (`diff -u` format) for `rewrite --print-diff` and `convert --dry-run`. Pure.
 * Myers' O((N+M)·D) algorithm after trimming the common head and tail; domain XMLs and their
 * rewrites differ in a few dozen lines. Past MAX_EDITS edits it gives up on finding a minimal
 * script and replaces the whole differing middle (still a correct diff, just not a minimal one).
 */

export interface DiffOptions {
  /** `---` label (default `a`) */
  from?: string;
  /** `+++` label (default `b`) */
  to?: string;
  /** lines of context around each change (default 3) */
  context?: number;
}

type Op = { kind: '=' | '-' | '+'; a: number; b: number };

const MAX_EDITS = 2000;
const NO_EOL = '\\ No newline at end of file';

interface Lines {
  lines: string[];
  /** the last line has no trailing newline */
  noEol: boolean;
}

function splitLines(text: string): Lines {
  if (text === '') return { lines: [], noEol: false };
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') {
    lines.pop();
    return { lines, noEol: false };
  }
  return { lines, noEol: true };
}

/** Comparison keys: a last line without newline differs from the same text with one. */
const keysOf = ({ lines, noEol }: Lines): string[] => (noEol ? [...lines.slice(0, -1), `${lines[lines.length - 1]}\0`] : lines);

/** Shortest edit script of a[lo..] vs b[lo..] (Myers), or undefined past MAX_EDITS edits. */
function myers(a: readonly string[], b: readonly string[]): Op[] | undefined {
  const n = a.length;
  const m = b.length;
  const max = Math.min(n + m, MAX_EDITS);
  const off = max + 1;
  const v = new Int32Array(2 * max + 3);
  const trace: Int32Array[] = [];
  let found = -1;
  outer: for (let d = 0; d <= max; d++) {
    trace.push(v.slice(off - d - 1, off + d + 2)); // v[k] for k in [-d-1, d+1], before step d
    for (let k = -d; k <= d; k += 2) {
      let x = k === -d || (k !== d && v[off + k - 1] < v[off + k + 1]) ? v[off + k + 1] : v[off + k - 1] + 1;
      let y = x - k;
      while (x < n && y < m && a[x] === b[y]) x++, y++;
      v[off + k] = x;
      if (x >= n && y >= m) {
        found = d;
        break outer;
      }
    }
  }
  if (found < 0) return undefined;
  const ops: Op[] = [];
  let x = n;
  let y = m;
  for (let d = found; d >= 0; d--) {
    const t = trace[d];
    const at = (k: number) => t[k + d + 1];
    const k = x - y;
    const prevK = k === -d || (k !== d && at(k - 1) < at(k + 1)) ? k + 1 : k - 1;
    const prevX = d === 0 ? 0 : at(prevK);
    const prevY = d === 0 ? 0 : prevX - prevK;
    while (x > prevX && y > prevY) ops.push({ kind: '=', a: --x, b: --y });
    if (d > 0) ops.push(x === prevX ? { kind: '+', a: x, b: --y } : { kind: '-', a: --x, b: y });
  }
  return ops.reverse();
}

/** Edit script for the whole texts: common head, middle (Myers or replace-all), common tail. */
function editScript(a: readonly string[], b: readonly string[]): Op[] {
  let head = 0;
  while (head < a.length && head < b.length && a[head] === b[head]) head++;
  let tail = 0;
  while (tail < a.length - head && tail < b.length - head && a[a.length - 1 - tail] === b[b.length - 1 - tail]) tail++;
  const am = a.slice(head, a.length - tail);
  const bm = b.slice(head, b.length - tail);
  const middle = myers(am, bm) ?? [
    ...am.map((_, i): Op => ({ kind: '-', a: i, b: 0 })),
    ...bm.map((_, i): Op => ({ kind: '+', a: am.length, b: i })),
  ];
  const ops: Op[] = [];
  for (let i = 0; i < head; i++) ops.push({ kind: '=', a: i, b: i });
  for (const o of middle) ops.push({ kind: o.kind, a: o.a + head, b: o.b + head });
  for (let i = tail; i > 0; i--) ops.push({ kind: '=', a: a.length - i, b: b.length - i });
  return ops;
}

const range = (start: number, count: number) => (count === 1 ? `${start + 1}` : `${count === 0 ? start : start + 1},${count}`);

/** Unified diff of two texts; the empty string when they are equal. */
export function unifiedDiff(before: string, after: string, opts: DiffOptions = {}): string {
  if (before === after) return '';
  const context = opts.context ?? 3;
  const A = splitLines(before);
  const B = splitLines(after);
  const ops = editScript(keysOf(A), keysOf(B));
  const line = (o: Op): string => {
    const src = o.kind === '+' ? B : A;
    const i = o.kind === '+' ? o.b : o.a;
    const text = `${o.kind === '=' ? ' ' : o.kind}${src.lines[i]}\n`;
    return src.noEol && i === src.lines.length - 1 ? `${text}${NO_EOL}\n` : text;
  };

  const out = [`--- ${opts.from ?? 'a'}\n`, `+++ ${opts.to ?? 'b'}\n`];
  const changed = ops.flatMap((o, i) => (o.kind === '=' ? [] : [i]));
  let i = 0;
  while (i < changed.length) {
    // grow a hunk while at most 2×context unchanged lines separate the next change from the last
    let j = i;
    while (j + 1 < changed.length && changed[j + 1] - changed[j] - 1 <= 2 * context) j++;
    const first = Math.max(0, changed[i] - context);
    const last = Math.min(ops.length - 1, changed[j] + context);
    const hunk = ops.slice(first, last + 1);
    const aCount = hunk.filter((o) => o.kind !== '+').length;
    const bCount = hunk.filter((o) => o.kind !== '-').length;
    out.push(`@@ -${range(ops[first].a, aCount)} +${range(ops[first].b, bCount)} @@\n`, ...hunk.map(line));
    i = j + 1;
  }
  return out.join('');
}
