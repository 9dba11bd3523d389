/** What every command prints on stdout in its `--json` form: the option, and the one JSON document. */

/** The `--json` flag; `describe` says what the document holds. */
export const jsonOption = (describe = 'one JSON document on stdout') => ({ type: 'boolean', default: false, describe }) as const;

/** Print `doc` as one JSON document (two-space indent, newline-terminated). */
export const printJson = (doc: unknown): void => void process.stdout.write(`${JSON.stringify(doc, null, 2)}\n`);
