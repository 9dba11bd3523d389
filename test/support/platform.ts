/**
 * What the libvirt tests (`*.libvirt.test.ts`) expect depends on the libvirt, QEMU and OVMF they run
 * against (Debian 12: libvirt 9.0, QEMU 7.2, OVMF 2022.11; Debian 13: libvirt 11.3, QEMU 10.0, OVMF
 * 2025.02). This module learns those facts from the running daemon and the installed firmware —
 * `virsh version --daemon`, `virsh domcapabilities`, `dpkg-query -W ovmf`, the files in
 * /usr/share/OVMF — never from the distribution's name, and turns each into what a test expects.
 * Learned once per process, on first use (so a file whose libvirt is unavailable never asks).
 * The OVMF facts (`ovmf()`, `varsTemplates()`) need no libvirt: unit tests may use them too.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { virsh } from './libvirt';

export const OVMF_DIR = '/usr/share/OVMF';

/** [major, minor, micro] */
export type Version = readonly [number, number, number];

export interface Platform {
  /** libvirt of the daemon (`virsh version --daemon`: "Running against daemon"). */
  libvirt: Version;
  /** QEMU the daemon runs ("Running hypervisor: QEMU x.y.z"). */
  qemu: Version;
  /** OVMF: its upstream release ("2025.02", from the Debian package's version; undefined when unknown) and the images in /usr/share/OVMF. */
  ovmf: { release: string | undefined; images: readonly string[] };
  /** QEMU can show spice graphics (`virsh domcapabilities` lists type spice; Debian 13 needs qemu-system-modules-spice for it). */
  spice: boolean;
}

const parseVersion = (text: string, label: RegExp): Version | undefined => {
  const m = new RegExp(`${label.source}\\s*(\\d+)\\.(\\d+)(?:\\.(\\d+))?`).exec(text);
  return m ? [Number(m[1]), Number(m[2]), Number(m[3] ?? 0)] : undefined;
};

/** a ≥ b */
export const atLeast = (a: Version, b: Version): boolean => {
  for (let i = 0; i < 3; i++) if (a[i] !== b[i]) return a[i] > b[i];
  return true;
};

/** OVMF as installed: the upstream release of Debian's package (undefined when unknown) and the images in /usr/share/OVMF. */
export function ovmf(): Platform['ovmf'] {
  const dpkg = spawnSync('dpkg-query', ['-W', '-f=${Version}', 'ovmf'], { encoding: 'utf8' });
  // Debian's version is <upstream>-<revision>, e.g. 2022.11-6+deb12u2, 2025.02-8+deb13u1
  const release = dpkg.status === 0 ? /^(?:\d+:)?(\d{4}\.\d{2})/.exec(dpkg.stdout.trim())?.[1] : undefined;
  const images = existsSync(OVMF_DIR) ? readdirSync(OVMF_DIR).filter((f) => f.endsWith('.fd')).sort() : [];
  return { release, images };
}

export interface VarsTemplate {
  file: string;
  layout: '2M' | '4M';
  storeSize: number;
  /** live variables */
  count: number;
  /** deleted copies in the store */
  deleted: number;
}

/**
 * What Debian's VARS templates in /usr/share/OVMF hold, by OVMF release (measured with
 * parseVarstore on each; the Microsoft-keys template of 2025.02 has no iSCSI "Attempt N" variables
 * and no Boot0002), and the layout of the combined /usr/share/ovmf/OVMF.fd. Undefined for a
 * release not measured yet. For tests that check a template's contents.
 */
export function varsTemplates(release = ovmf().release): { templates: VarsTemplate[]; combinedLayout: '2M' | '4M' } | undefined {
  const empty = (file: string, layout: '2M' | '4M'): VarsTemplate => ({ file, layout, storeSize: layout === '2M' ? 0xdfb8 : 0x3ffb8, count: 0, deleted: 0 });
  const ms = (file: string, layout: '2M' | '4M', count: number, deleted: number): VarsTemplate => ({ ...empty(file, layout), count, deleted });
  switch (release) {
    case '2022.11': // Debian 12
      return { templates: [empty('OVMF_VARS.fd', '2M'), empty('OVMF_VARS_4M.fd', '4M'), ms('OVMF_VARS.ms.fd', '2M', 31, 26), ms('OVMF_VARS_4M.ms.fd', '4M', 31, 26)], combinedLayout: '2M' };
    case '2025.02': // Debian 13: 4 MB images only
      return { templates: [empty('OVMF_VARS_4M.fd', '4M'), ms('OVMF_VARS_4M.ms.fd', '4M', 21, 18)], combinedLayout: '4M' };
    default:
      return undefined;
  }
}

function learn(): Platform {
  const version = virsh(['version', '--daemon'], { timeoutSec: 20 }).stdout;
  const libvirt = parseVersion(version, /Running against daemon:/) ?? parseVersion(version, /Using library: libvirt/);
  const qemu = parseVersion(version, /Running hypervisor: QEMU/);
  if (!libvirt || !qemu) throw new Error(`cannot read the libvirt and QEMU versions from 'virsh version --daemon': ${version}`);
  const caps = virsh(['domcapabilities', '--virttype', 'qemu', '--arch', 'x86_64'], { timeoutSec: 60 }).stdout;
  const graphics = /<graphics supported='yes'>([\s\S]*?)<\/graphics>/.exec(caps)?.[1] ?? '';
  return { libvirt, qemu, ovmf: ovmf(), spice: /<value>spice<\/value>/.test(graphics) };
}

let learned: Platform | undefined;
/** The facts of the libvirt/QEMU/OVMF this process tests against (learned on first call). */
export function platform(): Platform {
  learned ??= learn();
  return learned;
}

/** One line for a test log: what this run tested against. */
export const describePlatform = (p: Platform = platform()): string =>
  `libvirt ${p.libvirt.join('.')}, QEMU ${p.qemu.join('.')}, OVMF ${p.ovmf.release ?? 'unknown'} (${p.ovmf.images.join(' ')}), spice ${p.spice ? 'yes' : 'no'}`;

// ---------------------------------------------------------------------------------------------
// libvirt

/**
 * The last argument libvirt passes to `release end` (and shows in a hook's argv): the reason
 * (`destroyed`, `shutdown`, `saved`, `failed`, `migrated`) since libvirt 10.5, `-` before
 * (docs/HOOK.md). `stopped end` still gets `-`.
 */
export function releaseArg(reason: 'destroyed' | 'shutdown' | 'saved' | 'failed' | 'migrated', p: Platform = platform()): string {
  return atLeast(p.libvirt, [10, 5, 0]) ? reason : '-';
}

/**
 * libvirt ≥ 9.2 selects the firmware at define time (docs/rules.md): `<os firmware='efi'>` gets its
 * `<loader>`/`<nvram>` filled in when defined (and a manual loader/nvram pair that a descriptor
 * matches is recorded with `firmware='efi'` and the descriptor's features); 9.0 picks at every start.
 */
export const firmwareAtDefine = (p: Platform = platform()): boolean => atLeast(p.libvirt, [9, 2, 0]);

/**
 * What libvirt appends to the attributes of `<loader>` it writes: ` format='raw'` (from the
 * firmware descriptor) where it selects firmware at define time, nothing on 9.0.
 */
export const loaderFormatAttr = (p: Platform = platform()): string => (firmwareAtDefine(p) ? " format='raw'" : '');

// ---------------------------------------------------------------------------------------------
// OVMF

/** `<dir>/<file>` of an OVMF image, failing with the list of what exists when it is not there. */
export function ovmfImage(file: string, p: Platform = platform()): string {
  if (!p.ovmf.images.includes(file)) throw new Error(`${OVMF_DIR}/${file} does not exist here; OVMF ${p.ovmf.release ?? '?'} has: ${p.ovmf.images.join(' ') || 'nothing'}`);
  return `${OVMF_DIR}/${file}`;
}

export interface SecureBootRefusal {
  /** What the Secure Boot firmware prints on the serial console when it refuses an unsigned image. */
  text: RegExp;
  /**
   * The firmware has no built-in shell to refuse (Debian's OVMF ≥ 2023 Secure Boot builds), so the
   * domain needs a disk with an unsigned EFI binary (`unsignedEfiDisk`) for the refusal to happen.
   */
  needsUnsignedDisk: boolean;
}

/**
 * How OVMF with Secure Boot + Microsoft keys shows that it refuses an unsigned image. OVMF 2022.11
 * (Debian 12) boots its built-in EFI shell, which is unsigned: `Security Violation`. OVMF 2025.02
 * (Debian 13) has no shell in its Secure Boot images ("No bootable option or device was found"):
 * an unsigned \EFI\BOOT\BOOTX64.EFI on a disk is refused with `Access Denied`.
 * Unknown OVMF: either text, with the disk.
 */
export function secureBootRefusal(p: Platform = platform()): SecureBootRefusal {
  const year = p.ovmf.release ? Number(p.ovmf.release.slice(0, 4)) : undefined;
  if (year !== undefined && year < 2023) return { text: /Security Violation/, needsUnsignedDisk: false };
  if (year !== undefined) return { text: /Access Denied/, needsUnsignedDisk: true };
  return { text: /Security Violation|Access Denied/, needsUnsignedDisk: true };
}

/**
 * The smallest x86-64 UEFI application: a PE32+ image (EFI application subsystem, one .text
 * section, no relocations needed) whose entry point returns EFI_SUCCESS — and no signature.
 */
export function unsignedEfiApp(): Buffer {
  const b = Buffer.alloc(0x400);
  b.write('MZ', 0, 'latin1');
  b.writeUInt32LE(0x40, 0x3c); // e_lfanew
  b.write('PE\0\0', 0x40, 'latin1');
  const coff = 0x44;
  b.writeUInt16LE(0x8664, coff); // x86-64
  b.writeUInt16LE(1, coff + 2); // sections
  b.writeUInt16LE(0xf0, coff + 16); // size of optional header
  b.writeUInt16LE(0x0022, coff + 18); // executable, large address aware
  const opt = coff + 20;
  b.writeUInt16LE(0x20b, opt); // PE32+
  b.writeUInt32LE(0x200, opt + 4); // size of code
  b.writeUInt32LE(0x1000, opt + 16); // entry point
  b.writeUInt32LE(0x1000, opt + 20); // base of code
  b.writeBigUInt64LE(0x10000000n, opt + 24); // image base
  b.writeUInt32LE(0x1000, opt + 32); // section alignment
  b.writeUInt32LE(0x200, opt + 36); // file alignment
  b.writeUInt32LE(0x2000, opt + 56); // size of image
  b.writeUInt32LE(0x200, opt + 60); // size of headers
  b.writeUInt16LE(10, opt + 68); // subsystem: EFI application
  b.writeBigUInt64LE(0x10000n, opt + 72); // stack reserve
  b.writeBigUInt64LE(0x1000n, opt + 80); // stack commit
  b.writeBigUInt64LE(0x10000n, opt + 88); // heap reserve
  b.writeBigUInt64LE(0x1000n, opt + 96); // heap commit
  b.writeUInt32LE(16, opt + 108); // data directories (all empty: no relocations, no certificate)
  const sec = opt + 0xf0;
  b.write('.text', sec, 'latin1');
  b.writeUInt32LE(0x200, sec + 8); // virtual size
  b.writeUInt32LE(0x1000, sec + 12); // virtual address
  b.writeUInt32LE(0x200, sec + 16); // raw size
  b.writeUInt32LE(0x200, sec + 20); // raw pointer
  b.writeUInt32LE(0x60000020, sec + 36); // code, execute, read
  Buffer.from([0x31, 0xc0, 0xc3]).copy(b, 0x200); // xor eax, eax; ret
  return b;
}

/**
 * Write a raw FAT disk image at `path` holding the unsigned application as the removable-media
 * boot file \EFI\BOOT\BOOTX64.EFI (mkfs.vfat from dosfstools, mmd/mcopy from mtools).
 */
export function unsignedEfiDisk(path: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'ovmfhook-efi-'));
  try {
    const app = join(dir, 'BOOTX64.EFI');
    writeFileSync(app, unsignedEfiApp());
    const env = { ...process.env, MTOOLS_SKIP_CHECK: '1' };
    for (const [cmd, ...args] of [
      ['mkfs.vfat', '-C', path, '2048'],
      ['mmd', '-i', path, '::/EFI', '::/EFI/BOOT'],
      ['mcopy', '-i', path, app, '::/EFI/BOOT/BOOTX64.EFI'],
    ]) {
      const r = spawnSync(cmd, args, { encoding: 'utf8', env });
      if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.error ? `${r.error} (install dosfstools and mtools)` : r.stderr.trim()}`);
    }
    return path;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------
// QEMU

/** A domain XML that shows spice graphics or uses a spice channel/redirection/audio backend. */
export const usesSpice = (xml: string): boolean => /type=['"](spice|spicevmc)['"]/.test(xml);

/**
 * The domain without spice, for a QEMU that has no spice module: spice graphics become VNC,
 * spicevmc channels and USB redirections go, a spice audio backend becomes `none`.
 */
export function withoutSpice(xml: string): string {
  const element = (name: string, type: string) =>
    new RegExp(`[ \\t]*<${name}\\b(?=[^>]*\\stype=(['"])${type}\\1)[^>]*?(?:/>|>[\\s\\S]*?</${name}>)\\r?\\n?`, 'g');
  return xml
    .replace(element('graphics', 'spice'), "    <graphics type='vnc' port='-1' autoport='yes'/>\n")
    .replace(element('channel', 'spicevmc'), '')
    .replace(element('redirdev', 'spicevmc'), '')
    .replace(/<audio id=(['"])(\d+)\1 type=(['"])spice\3\/>/g, "<audio id='$2' type='none'/>");
}
