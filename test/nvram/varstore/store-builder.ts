/** Test helper: build small synthetic OVMF variable stores and device path nodes. */
export const GLOBAL = '8be4df61-93ca-11d2-aa0d-00e098032b8c';
const NV_FV = 'fff12b8d-7696-4c8b-a985-2747075b4f50';
const AUTH_SIG = 'aaf32c78-947b-439a-a180-2e144ec37792';
const PLAIN_SIG = 'ddcf3616-3275-4164-98b6-fe85707ffe7d';

export const guidBytes = (g: string): number[] => {
  const h = g.replace(/-/g, '');
  const byte = (i: number) => parseInt(h.slice(i * 2, i * 2 + 2), 16);
  return [3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15].map(byte);
};

export const utf16z = (s: string): number[] => [...Buffer.from(`${s}\0`, 'utf16le')];
export const u16 = (n: number): number[] => [n & 0xff, (n >>> 8) & 0xff];
export const u32 = (n: number): number[] => [...u16(n & 0xffff), ...u16(n >>> 16)];
export const u64 = (n: number): number[] => [...u32(n % 2 ** 32), ...u32(Math.floor(n / 2 ** 32))];

export interface RecordSpec {
  name: string;
  guid?: string;
  data?: number[];
  attrs?: number;
  state?: number;
  /** Override NameSize / DataSize (for corrupt records). */
  nameSize?: number;
  dataSize?: number;
}

export interface StoreSpec {
  authenticated?: boolean;
  records?: RecordSpec[];
  fvLength?: number;
  storeSize?: number;
  format?: number;
  state?: number;
  fsGuid?: string;
}

/** A full FV + variable store image; defaults give a tiny valid authenticated store. */
export const buildStore = (spec: StoreSpec = {}): Uint8Array => {
  const auth = spec.authenticated ?? true;
  const fvLength = spec.fvLength ?? 0x4000;
  const storeSize = spec.storeSize ?? 0x2000 - 0x48;
  const b = new Uint8Array(fvLength).fill(0xff);
  const put = (off: number, bytes: number[]) => b.set(bytes, off);
  // EFI_FIRMWARE_VOLUME_HEADER
  put(0, new Array(16).fill(0));
  put(0x10, guidBytes(spec.fsGuid ?? NV_FV));
  put(0x20, u64(fvLength));
  put(0x28, [...Buffer.from('_FVH')]);
  put(0x2c, u32(0x0004feff));
  put(0x30, u16(0x48));
  put(0x32, u16(0));
  put(0x34, [0, 0, 0, 2]);
  put(0x38, [...u32(fvLength / 0x1000), ...u32(0x1000), ...u32(0), ...u32(0)]);
  let sum = 0;
  for (let i = 0; i < 0x48; i += 2) sum = (sum + b[i] + (b[i + 1] << 8)) & 0xffff;
  put(0x32, u16((0x10000 - sum) & 0xffff));
  // VARIABLE_STORE_HEADER
  put(0x48, [...guidBytes(auth ? AUTH_SIG : PLAIN_SIG), ...u32(storeSize), spec.format ?? 0x5a, spec.state ?? 0xfe, 0, 0, 0, 0, 0, 0]);
  let off = 0x64;
  for (const r of spec.records ?? []) {
    const name = utf16z(r.name);
    const data = r.data ?? [];
    const head = [
      ...u16(0x55aa),
      r.state ?? 0x3f,
      0,
      ...u32(r.attrs ?? 7),
      ...(auth ? [...u64(0), ...new Array(16).fill(0), ...u32(0)] : []),
      ...u32(r.nameSize ?? name.length),
      ...u32(r.dataSize ?? data.length),
      ...guidBytes(r.guid ?? GLOBAL),
    ];
    put(off, [...head, ...name, ...data]);
    off = (off + head.length + name.length + data.length + 3) & ~3;
  }
  return b;
};

/** One device path node. */
export const node = (type: number, sub: number, body: number[] = []): number[] => [type, sub, ...u16(body.length + 4), ...body];
export const END = node(0x7f, 0xff);

/** An EFI_LOAD_OPTION. */
export const loadOption = (attrs: number, description: string, path: number[], optional: number[] = []): Uint8Array =>
  Uint8Array.from([...u32(attrs), ...u16(path.length), ...utf16z(description), ...path, ...optional]);
