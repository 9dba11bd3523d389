/** Small text forms that messages of every layer share (pure). */

/** A file mode's permission bits as chmod takes them: `0644`, `1777`. */
export const octalMode = (mode: number): string => (mode & 0o7777).toString(8).padStart(4, '0');

/** `1 domain`, `2 domains`. */
export const plural = (n: number, word: string): string => `${n} ${word}${n === 1 ? '' : 's'}`;

/** FNV-1a, 64 bit, of `s`'s UTF-8 bytes, as 16 hex digits: a short stable name for a long one (not a security property). */
export function fnv1a64(s: string): string {
  let h = 0xcbf29ce484222325n;
  for (const b of Buffer.from(s)) h = BigInt.asUintN(64, (h ^ BigInt(b)) * 0x100000001b3n);
  return h.toString(16).padStart(16, '0');
}

/** Byte order (C's strcmp): the order libvirt runs qemu.d hooks and tries firmware descriptors in. */
export const byteOrder = (a: string, b: string): number => Buffer.compare(Buffer.from(a), Buffer.from(b));
