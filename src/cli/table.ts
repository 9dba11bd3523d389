/** Plain-text tables for the CLI: columns padded to their widest cell, two spaces apart. */

/** Align `rows` (the first is usually a header) into columns; trailing blanks trimmed; ends with a newline. */
export function table(rows: readonly (readonly string[])[]): string {
  if (rows.length === 0) return '';
  const columns = Math.max(...rows.map((r) => r.length));
  const widths = Array.from({ length: columns }, (_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd()).join('\n') + '\n';
}
