/**
 * Which loader / template / NVRAM files a UEFI domain will use on this host — read from the XML,
 * or, for `<os firmware='efi'>` on libvirt 9.0 (which picks after `prepare`), computed exactly as
 * libvirt will pick them from the firmware descriptors. Pure over (domain, catalog, config).
 */
import type { Domain } from './index';
import { matchFirmware, type FirmwareDescriptor } from '../firmware';
import { UsageError } from '../errors';

export interface UefiFiles {
  loader?: string;
  template?: string;
  /** the local NVRAM file; undefined when libvirt keeps none (stateless, combined, network/block) */
  nvram?: string;
  /** why the hook leaves the NVRAM alone, when it does */
  unmanaged?: string;
}

const isCleanAbsolute = (p: string): boolean => p.startsWith('/') && !p.split('/').some((c) => c === '..' || c === '.');

/**
 * Files of a UEFI domain, or undefined for a BIOS one. `descriptors` may be a getter: it is called
 * only when the XML lacks a path (so a domain with explicit paths costs no catalog read).
 */
export function uefiFiles(
  domain: Domain,
  descriptors: readonly FirmwareDescriptor[] | (() => readonly FirmwareDescriptor[]),
  nvramDir: string,
): UefiFiles | undefined {
  if (!domain.isUefi) return undefined;
  const loader = domain.loader;
  const nvram = domain.nvram;
  if (loader?.stateless === 'yes') return { loader: loader.path, unmanaged: 'stateless firmware has no NVRAM' };
  if (loader?.path && loader.readonly !== 'yes' && domain.firmwareAuto !== 'efi') {
    return { loader: loader.path, unmanaged: 'a read-write (combined) firmware image has no separate NVRAM' };
  }
  if (nvram && nvram.type !== 'file') return { loader: loader?.path, unmanaged: `NVRAM of type '${nvram.type}' is not a local file` };

  let loaderPath = loader?.path;
  let template = nvram?.template;
  if (!loaderPath || !template) {
    // libvirt 9.0 with <os firmware='efi'>: prepare's XML has no paths yet; libvirt will take the
    // first descriptor that matches, exactly like this.
    const feats = new Map(domain.root.findAll('os/firmware/feature').map((f) => [f.attr('name'), f.attr('enabled') === 'yes']));
    const smm = domain.feature('smm')?.attr('state') as 'on' | 'off' | undefined;
    try {
      const { descriptor } = matchFirmware(typeof descriptors === 'function' ? descriptors() : descriptors, {
        arch: domain.arch ?? 'x86_64',
        machine: domain.machine ?? 'pc',
        secureBoot: feats.get('secure-boot'),
        enrolledKeys: feats.get('enrolled-keys'),
        smm: smm ?? (loader?.secure === 'yes' ? 'on' : undefined),
        loaderSecure: loader?.secure === undefined ? undefined : loader.secure === 'yes',
        loaderPath: domain.firmwareAuto === 'efi' ? undefined : loaderPath,
      });
      loaderPath ??= descriptor.executable?.filename;
      template ??= descriptor.nvramTemplate?.filename;
    } catch {
      /* no descriptor: libvirt falls back to qemu.conf's nvram list; we go on without a template */
    }
  }
  const nvramPath = nvram?.path ?? `${nvramDir.replace(/\/+$/, '')}/${domain.name}_VARS.fd`;
  for (const [what, p] of [['loader', loaderPath], ['NVRAM template', template], ['NVRAM', nvramPath]] as const) {
    if (p !== undefined && !isCleanAbsolute(p)) throw new UsageError(`${domain.name}: ${what} path ${JSON.stringify(p)} must be absolute and must not contain "." or ".." components`);
  }
  const dir = nvramDir.replace(/\/+$/, '');
  if (nvramPath.slice(0, nvramPath.lastIndexOf('/')) !== dir) {
    return { loader: loaderPath, template, nvram: nvramPath, unmanaged: `NVRAM ${nvramPath} is outside ${dir}; ovmf-hook manages only NVRAM files directly in libvirt's nvram directory` };
  }
  return { loader: loaderPath, template, nvram: nvramPath };
}
