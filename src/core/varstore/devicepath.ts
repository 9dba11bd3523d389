/**
 * UEFI device path → text, following edk2's DevicePathToText (non display-only form) for the node
 * types seen in VMs; anything else is rendered as `Path(type,subtype,hexdata)`. Pure.
 */
import { VarstoreError } from '../errors';
import { readGuid, readUtf16z } from './parse';

const MSG_VENDOR_NAMES: Readonly<Record<string, string>> = {
  'e0c14753-f9be-11d2-9a0c-0090273fc14d': 'VenPcAnsi',
  'dfa66065-b419-11d3-9a2d-0090273fc14d': 'VenVt100',
  '7baec70b-57e0-4c76-8e87-2f9e28088343': 'VenVt100Plus',
  'ad15a0d6-8bec-4acf-a073-d01de77e2e88': 'VenUtf8',
};

const X = (n: number | bigint): string => `0x${n.toString(16).toUpperCase()}`;
const hexBytes = (b: Uint8Array): string => Buffer.from(b).toString('hex').toUpperCase();
const ascii = (b: Uint8Array): string => {
  let s = '';
  for (const c of b) {
    if (c === 0) break;
    s += String.fromCharCode(c);
  }
  return s;
};
const ipv4 = (b: Uint8Array, o: number): string => `${b[o]}.${b[o + 1]}.${b[o + 2]}.${b[o + 3]}`;
const ipv6 = (b: Uint8Array, o: number): string => {
  const parts: string[] = [];
  for (let i = 0; i < 16; i += 2) parts.push(((b[o + i] << 8) | b[o + i + 1]).toString(16).toUpperCase());
  return parts.join(':');
};
const protocol = (p: number): string => (p === 6 ? 'TCP' : p === 17 ? 'UDP' : X(p));

/** One node: `n` is the whole node (header included), already bounds-checked. */
const nodeText = (n: Uint8Array): string => {
  const type = n[0];
  const sub = n[1];
  const len = n.length;
  const dv = new DataView(n.buffer, n.byteOffset, n.byteLength);
  const u16 = (o: number) => dv.getUint16(o, true);
  const u32 = (o: number) => dv.getUint32(o, true);
  const u64 = (o: number) => dv.getBigUint64(o, true);
  const guid = (o: number) => readGuid(n, o);
  const vendor = (prefix: string) => {
    const extra = n.subarray(20);
    return `${prefix}(${guid(4)}${extra.length ? `,${hexBytes(extra)}` : ''})`;
  };
  const at = (min: number): boolean => len >= min;

  switch (`${type}/${sub}`) {
    // Hardware
    case '1/1':
      if (at(6)) return `Pci(${X(n[5])},${X(n[4])})`;
      break;
    case '1/3':
      if (at(24)) return `MemoryMapped(${X(u32(4))},${X(u64(8))},${X(u64(16))})`;
      break;
    case '1/4':
      if (at(20)) return vendor('VenHw');
      break;
    case '1/5':
      if (at(8)) return `Ctrl(${X(u32(4))})`;
      break;
    // ACPI
    case '2/1':
      if (at(12)) {
        const hid = u32(4);
        const uid = u32(8);
        if ((hid & 0xffff) !== 0x41d0) return `Acpi(${X(hid)},${X(uid)})`;
        const pnp = hid >>> 16;
        const named: Record<number, string> = {
          0x0a03: 'PciRoot',
          0x0a08: 'PcieRoot',
          0x0604: 'Floppy',
          0x0301: 'Keyboard',
          0x0501: 'Serial',
          0x0401: 'ParallelPort',
        };
        const name = named[pnp];
        return name ? `${name}(${X(uid)})` : `Acpi(PNP${pnp.toString(16).toUpperCase().padStart(4, '0')},${X(uid)})`;
      }
      break;
    case '2/3':
      if (at(8)) {
        const adrs: string[] = [];
        for (let o = 4; o + 4 <= len; o += 4) adrs.push(X(u32(o)));
        return `AcpiAdr(${adrs.join(',')})`;
      }
      break;
    // Messaging
    case '3/1':
      if (at(8)) return `Ata(${n[4] ? 'Secondary' : 'Primary'},${n[5] ? 'Slave' : 'Master'},${X(u16(6))})`;
      break;
    case '3/2':
      if (at(8)) return `Scsi(${X(u16(4))},${X(u16(6))})`;
      break;
    case '3/5':
      if (at(6)) return `USB(${X(n[4])},${X(n[5])})`;
      break;
    case '3/10':
      if (at(20)) {
        const name = MSG_VENDOR_NAMES[guid(4)];
        return name ? `${name}()` : vendor('VenMsg');
      }
      break;
    case '3/11':
      if (at(37)) {
        const ifType = n[36];
        const size = ifType === 0 || ifType === 1 ? 6 : 32;
        return `MAC(${hexBytes(n.subarray(4, 4 + size))},${X(ifType)})`;
      }
      break;
    case '3/12':
      if (at(19)) {
        const tail = at(27) ? `,${ipv4(n, 19)},${ipv4(n, 23)}` : '';
        return `IPv4(${ipv4(n, 8)},${protocol(u16(16))},${n[18] ? 'Static' : 'DHCP'},${ipv4(n, 4)}${tail})`;
      }
      break;
    case '3/13':
      if (at(43)) {
        const origin = ['Static', 'StatelessAutoConfigure'][n[42]] ?? 'StatefulAutoConfigure';
        const tail = at(60) ? `,${X(n[43])},${ipv6(n, 44)}` : '';
        return `IPv6(${ipv6(n, 20)},${protocol(u16(40))},${origin},${ipv6(n, 4)}${tail})`;
      }
      break;
    case '3/14':
      if (at(19)) {
        const parity = ['D', 'N', 'E', 'O', 'M', 'S'][n[17]] ?? X(n[17]);
        const stop = ['D', '1', '1.5', '2'][n[18]] ?? X(n[18]);
        return `Uart(${u64(8) === 0n ? 'DEFAULT' : u64(8)},${n[16] || 'DEFAULT'},${parity},${stop})`;
      }
      break;
    case '3/15':
      if (at(11)) return `UsbClass(${X(u16(4))},${X(u16(6))},${X(n[8])},${X(n[9])},${X(n[10])})`;
      break;
    case '3/17':
      if (at(5)) return `Unit(${X(n[4])})`;
      break;
    case '3/18':
      if (at(10)) return `Sata(${X(u16(4))},${X(u16(6))},${X(u16(8))})`;
      break;
    case '3/20':
      if (at(6)) return `Vlan(${u16(4)})`;
      break;
    case '3/23':
      if (at(16)) {
        const eui: string[] = [];
        for (let i = 15; i >= 8; i--) eui.push(n[i].toString(16).toUpperCase().padStart(2, '0'));
        return `NVMe(${X(u32(4))},${eui.join('-')})`;
      }
      break;
    case '3/24':
      return `Uri(${ascii(n.subarray(4))})`;
    case '3/26':
      if (at(5)) return `SD(${X(n[4])})`;
      break;
    case '3/29':
      if (at(5)) return `eMMC(${X(n[4])})`;
      break;
    // Media
    case '4/1':
      if (at(42)) {
        const part = u32(4);
        const range = `${X(u64(8))},${X(u64(16))}`;
        const sigType = n[41];
        if (sigType === 1) return `HD(${part},MBR,0x${u32(24).toString(16).toUpperCase().padStart(8, '0')},${range})`;
        if (sigType === 2) return `HD(${part},GPT,${guid(24)},${range})`;
        return `HD(${part},${sigType},0,${range})`;
      }
      break;
    case '4/2':
      if (at(24)) return `CDROM(${X(u32(4))},${X(u64(8))},${X(u64(16))})`;
      break;
    case '4/3':
      if (at(20)) return vendor('VenMedia');
      break;
    case '4/4':
      return readUtf16z(n, 4, len);
    case '4/5':
      if (at(20)) return `Media(${guid(4)})`;
      break;
    case '4/6':
      if (at(20)) return `FvFile(${guid(4)})`;
      break;
    case '4/7':
      if (at(20)) return `Fv(${guid(4)})`;
      break;
    case '4/8':
      if (at(24)) return `Offset(${X(u64(8))},${X(u64(16))})`;
      break;
    // BIOS boot specification
    case '5/1':
      if (at(8)) {
        const types: Record<number, string> = { 1: 'Floppy', 2: 'HD', 3: 'CDROM', 4: 'PCMCIA', 5: 'USB', 6: 'Network' };
        return `BBS(${types[u16(4)] ?? X(u16(4))},${ascii(n.subarray(8))},${X(u16(6))})`;
      }
      break;
  }
  return `Path(${type},${sub},${hexBytes(n.subarray(4))})`;
};

/**
 * Render every device path in `bytes` (a FilePathList may hold several, each ending with End Entire).
 * Instances within one path are separated by ','. Throws VarstoreError on a malformed node.
 */
export const devicePathsToText = (bytes: Uint8Array): string[] => {
  const paths: string[] = [];
  let current = '';
  let open = false;
  let o = 0;
  while (o < bytes.length) {
    if (o + 4 > bytes.length) throw new VarstoreError(`device path node at byte ${o} is truncated`);
    const len = bytes[o + 2] | (bytes[o + 3] << 8);
    if (len < 4 || o + len > bytes.length)
      throw new VarstoreError(`device path node at byte ${o} has invalid length ${len}`);
    const type = bytes[o];
    const sub = bytes[o + 1];
    if (type === 0x7f && sub === 0xff) {
      paths.push(current);
      current = '';
      open = false;
    } else if (type === 0x7f && sub === 0x01) {
      current += ',';
      open = true;
    } else {
      const text = nodeText(bytes.subarray(o, o + len));
      current += open && current !== '' && !current.endsWith(',') ? `/${text}` : text;
      open = true;
    }
    o += len;
  }
  if (open) paths.push(current); // tolerate a missing End node
  return paths;
};
