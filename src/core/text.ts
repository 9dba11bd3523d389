/** Small text forms that messages of every layer share (pure). */

/** A file mode's permission bits as chmod takes them: `0644`, `1777`. */
export const octalMode = (mode: number): string => (mode & 0o7777).toString(8).padStart(4, '0');

/** `1 domain`, `2 domains`. */
export const plural = (n: number, word: string): string => `${n} ${word}${n === 1 ? '' : 's'}`;
