/**
 * Partition tables for the `nvram boot --disk` tests, built here byte by byte (UEFI §5.2/§5.3) so that
 * they do not come from the code under test: a GPT (protective MBR, header at LBA 1, 128 entries at
 * LBA 2, checksums by node:zlib's crc32) and an MBR with primary partitions. The unit tests read the
 * heads; the libvirt test writes them into a raw image and formats the ESP (mkfs.vfat --offset).
 */
import { closeSync, openSync, writeSync } from 'node:fs';
import * as zlib from 'node:zlib';
import { guidBytes, u32, u64, utf16z } from '../nvram/varstore/store-builder';

export const ESP_TYPE = 'c12a7328-f81f-11d2-ba4b-00a0c93ec93b';
export const LINUX_TYPE = '0fc63daf-8483-4772-8e79-3d69d8477de4';
/** node:zlib has crc32 from Node 20.15; the GPT builders need it. */
export const haveCrc32 = typeof (zlib as { crc32?: unknown }).crc32 === 'function';
const crc32 = (b: Uint8Array): number => (zlib as unknown as { crc32: (d: Uint8Array) => number }).crc32(b);

export interface GptPartition {
  type: string;
  /** unique partition GUID */
  guid: string;
  first: number;
  last: number;
  name?: string;
}

/**
 * The first MiB of a GPT disk of `diskSectors` sectors of `sector` bytes: protective MBR, header at
 * LBA 1 (its checksum spoiled when `corrupt`), the 128-entry array at LBA 2.
 */
export function gptHead(parts: readonly GptPartition[], o: { sector?: number; corrupt?: boolean; diskSectors?: number; diskGuid?: string } = {}): Uint8Array {
  const sector = o.sector ?? 512;
  const disk = o.diskSectors ?? 131072;
  const head = new Uint8Array(1024 * 1024);
  head.set([0, 0, 2, 0, 0xee, 0xff, 0xff, 0xff, ...u32(1), ...u32(Math.min(disk - 1, 0xffffffff))], 446);
  head.set([0x55, 0xaa], 510);
  const entries = new Uint8Array(128 * 128);
  parts.forEach((p, i) => entries.set([...guidBytes(p.type), ...guidBytes(p.guid), ...u64(p.first), ...u64(p.last), ...u64(0), ...utf16z(p.name ?? '')], i * 128));
  head.set(entries, 2 * sector);
  const header = Uint8Array.from([
    ...Buffer.from('EFI PART', 'latin1'),
    0, 0, 1, 0, // revision 1.0
    ...u32(92),
    ...u32(0), // HeaderCRC32, below
    ...u32(0),
    ...u64(1),
    ...u64(disk - 1),
    ...u64(34),
    ...u64(disk - 34),
    ...guidBytes(o.diskGuid ?? '0a0b0c0d-0e0f-4011-8213-141516171819'),
    ...u64(2),
    ...u32(128),
    ...u32(128),
    ...u32(crc32(entries)),
  ]);
  header.set(u32(crc32(header) ^ (o.corrupt ? 1 : 0)), 16);
  head.set(header, sector);
  return head;
}

/** The first 64 KiB of an MBR disk: primary partitions [type, first LBA, sectors] and the disk signature. */
export function mbrHead(parts: ReadonlyArray<readonly [type: number, first: number, count: number]>, id = 0x1234abcd): Uint8Array {
  const head = new Uint8Array(64 * 1024);
  head.set(u32(id), 440);
  parts.forEach(([type, first, count], i) => head.set([0, 0xfe, 0xff, 0xff, type, 0xfe, 0xff, 0xff, ...u32(first), ...u32(count)], 446 + i * 16));
  head.set([0x55, 0xaa], 510);
  return head;
}

/** Write `head` over the start of the existing file `file`. */
export function writeHead(file: string, head: Uint8Array): void {
  const fd = openSync(file, 'r+');
  try {
    writeSync(fd, head, 0, head.length, 0);
  } finally {
    closeSync(fd);
  }
}
