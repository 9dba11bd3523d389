/**
 * What the Secure Boot tests against the real firmware share (convert-secure-boot.libvirt.test.ts,
 * enroll.libvirt.test.ts): systemd-boot's EFI binary, unsigned or signed with a fresh openssl test
 * key (sbsign), on a FAT disk image (mkfs.vfat + mtools) as \EFI\BOOT\BOOTX64.EFI; boots of a TCG
 * domain watched on its serial console until OVMF runs or refuses the binary; the CLI built into a
 * scratch directory with a temp config (archive and state there; libvirt's nvram directory).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'vitest';
import { runCli, type CliRun } from '../cli/support';
import { destroyDomain, startDomain } from '../support/libvirt';
import { scratchCli } from '../support/libvirt-cli';

export const SYSTEMD_BOOT = '/usr/lib/systemd/boot/efi/systemd-bootx64.efi';
export const NVRAM_DIR = '/var/lib/libvirt/qemu/nvram';
/** systemd-boot's own menu entry (OVMF never prints it): systemd-boot's binary is running. */
export const SYSTEMD_BOOT_RAN = /Reboot Into Firmware Interface/;
/** OVMF refusing the disk's boot file: `Access Denied` (LoadImage of an image db does not allow), `Security Violation` on some builds. */
export const REFUSED = /BdsDxe: failed to (?:load|start) Boot[0-9A-F]{4} "[^"]*" from PciRoot[^\n]*: (?:Access Denied|Security Violation)/;

/** Throws naming the `tools` (commands) and `files` this host lacks, and the packages to install. */
export function requireHost(tools: readonly string[], files: readonly string[], packages: string): void {
  const missing = [...tools.filter((t) => spawnSync('sh', ['-c', `command -v ${t}`]).status !== 0), ...files.filter((f) => !existsSync(f))];
  if (missing.length) throw new Error(`missing ${missing.join(', ')}: apt-get install ${packages} (scripts/ci-setup.sh)`);
}

/** `r` exited 0; its stdout. */
export const ok = (r: CliRun): string => {
  expect(r.code, r.stderr).toBe(0);
  return r.stdout;
};

export interface FirmwareBench {
  /** The scratch directory: config, CLI build, disk images, keys. */
  dir: string;
  /** The built CLI with the bench's config. */
  run: (...args: string[]) => CliRun;
  /** A 64 MiB FAT image `<dir>/<name>.img` holding `efi` as \EFI\BOOT\BOOTX64.EFI. */
  efiDisk: (name: string, efi: string) => string;
  /** Overwrite the image's \EFI\BOOT\BOOTX64.EFI with `efi`. */
  replaceBootFile: (img: string, efi: string) => void;
  /**
   * A 64 MiB image `<dir>/<name>.img` with a FAT file system holding each host file of `files` at
   * its path (`/EFI/test/shell.efi`): the whole disk, or from sector `offset` on (the ESP of a
   * partition table the caller writes over the first sectors; it ends 34 sectors before the end).
   */
  fatImage: (name: string, files: Record<string, string>, offset?: number) => string;
  /** A fresh self-signed test key, CN=ovmf-hook-test (openssl), and `efi` signed with it (sbsign): the certificate (PEM) and the signed binary. */
  signWithTestKey: (efi: string) => { cert: string; signed: string };
}

/** The bench in `scratchPath(name)`: the CLI built into its `dist/`, a config with archive and state in it. For a beforeAll. */
export async function firmwareBench(name: string): Promise<FirmwareBench> {
  const { dir, cli, env } = await scratchCli(name, { outDir: 'dist', config: (d) => ({ archiveDir: join(d, 'archive'), stateDir: join(d, 'state'), templateDir: join(d, 'templates') }) });
  /** `cmd args…` in `dir`; its stdout (throws on a non-zero exit). */
  const sh = (cmd: string, args: string[]) => {
    const r = spawnSync(cmd, args, { encoding: 'utf8', cwd: dir, env: { ...process.env, MTOOLS_SKIP_CHECK: '1' }, timeout: 60_000 });
    if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.error ?? r.stderr.trim()}`);
    return r.stdout;
  };
  return {
    dir,
    run: (...args) => runCli(cli, args, { env }),
    efiDisk(name, efi) {
      const img = join(dir, `${name}.img`);
      sh('mkfs.vfat', ['-C', img, '65536']);
      sh('mmd', ['-i', img, '::/EFI', '::/EFI/BOOT']);
      sh('mcopy', ['-i', img, efi, '::/EFI/BOOT/BOOTX64.EFI']);
      return img;
    },
    replaceBootFile: (img, efi) => void sh('mcopy', ['-o', '-i', img, efi, '::/EFI/BOOT/BOOTX64.EFI']),
    fatImage(name, files, offset) {
      const img = join(dir, `${name}.img`);
      const size = 64 * 1024 * 1024;
      if (offset === undefined) sh('mkfs.vfat', ['-C', img, String(size / 1024)]);
      else {
        writeFileSync(img, '');
        truncateSync(img, size);
        sh('mkfs.vfat', ['--offset', String(offset), img, String(Math.floor((size - (offset + 34) * 512) / 1024))]);
      }
      const fs = offset === undefined ? img : `${img}@@${offset * 512}`;
      const dirs = [...new Set(Object.keys(files).flatMap((f) => f.split('/').slice(1, -1).map((_, i, parts) => `::/${parts.slice(0, i + 1).join('/')}`)))];
      if (dirs.length) sh('mmd', ['-i', fs, ...dirs]);
      for (const [at, file] of Object.entries(files)) sh('mcopy', ['-i', fs, file, `::${at}`]);
      return img;
    },
    signWithTestKey(efi) {
      sh('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=ovmf-hook-test/', '-days', '30', '-keyout', 'k.pem', '-out', 'c.pem']);
      sh('sbsign', ['--key', 'k.pem', '--cert', 'c.pem', '--output', 'signed.efi', efi]);
      return { cert: join(dir, 'c.pem'), signed: join(dir, 'signed.efi') };
    },
  };
}

/** The serial log without terminal escape sequences. */
export const serialText = (log: string): string => (existsSync(log) ? readFileSync(log, 'latin1').replace(/\x1b\[[0-9;=?]*[A-Za-z]/g, '') : '');

/**
 * Start `vm` with a fresh serial log, wait until the console matches `until`, destroy it; returns
 * the console text. `whileRunning` runs once the console matched, before the destroy (e.g. to read
 * the live definition).
 */
export async function boot(vm: string, log: string, until: RegExp, timeoutMs = 120_000, whileRunning?: () => void): Promise<string> {
  rmSync(log, { force: true });
  startDomain(vm);
  const deadline = Date.now() + timeoutMs;
  try {
    for (;;) {
      const text = serialText(log);
      if (until.test(text)) {
        whileRunning?.();
        return text;
      }
      if (Date.now() > deadline) throw new Error(`${until} not seen on ${vm}'s console within ${timeoutMs} ms; last output: ${JSON.stringify(text.slice(-600))}`);
      await new Promise((r) => setTimeout(r, 250));
    }
  } finally {
    destroyDomain(vm); // at most one TCG guest at a time
  }
}
