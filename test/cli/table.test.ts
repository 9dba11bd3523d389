import { describe, expect, it } from 'vitest';
import { table } from '../../src/cli/table';

describe('table', () => {
  it.each([
    { what: 'no rows', rows: [], out: '' },
    { what: 'columns padded to the widest cell, two spaces apart, no trailing blanks', rows: [['A', 'BB', 'C'], ['xxx', 'y', '']], out: 'A    BB  C\nxxx  y\n' },
    { what: 'ragged rows', rows: [['key', 'value'], ['only']], out: 'key   value\nonly\n' },
  ])('$what', ({ rows, out }) => {
    expect(table(rows)).toBe(out);
  });
});
