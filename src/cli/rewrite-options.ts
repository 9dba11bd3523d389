/**
 * What `rewrite` and `convert` share: the rewrite flags, the firmware picker over this host's
 * catalog, and the layering of options (defaults < config < domain metadata policy < flags).
 */
import type { Argv } from 'yargs';
import { DEFAULT_CONFIG, resolvePolicy, type Config } from '../core/config';
import type { Domain } from '../core/domain';
import { FirmwareNotFoundError, UsageError } from '../core/errors';
import { loadCatalog, type FirmwareCatalog } from '../io';
import { matchFirmware, type FirmwareRequest } from '../core/firmware';
import { DEFAULT_REWRITE_OPTIONS, rewriteDomain, type FirmwarePick, type RewriteResult } from '../core/rewrite';

/** The flags; undefined = not given (the config / the domain's metadata decide). */
export interface RewriteFlags {
  secureBoot?: boolean;
  tpm?: boolean;
  uefi?: boolean;
  rootPorts?: number;
  firmware?: 'manual' | 'auto';
}

/** Add the rewrite flags to a command. */
export const withRewriteFlags = <T>(y: Argv<T>): Argv<T & RewriteFlags> =>
  y
    .option('secure-boot', {
      type: 'boolean',
      describe: 'Secure Boot: SMM on, a Secure Boot OVMF build with Microsoft keys (--no-secure-boot overrides the domain metadata)',
    })
    .option('tpm', { type: 'boolean', describe: 'add an emulated TPM 2.0 (tpm-crb, needs swtpm) when the domain has none' })
    .option('uefi', { type: 'boolean', describe: 'convert BIOS to UEFI (default yes; --no-uefi converts the chipset only)' })
    .option('root-ports', { type: 'number', describe: `pcie-root-port controllers added by the Q35 conversion (default: config rootPorts, ${DEFAULT_CONFIG.rootPorts})` })
    .option('firmware', {
      choices: ['manual', 'auto'] as const,
      describe: "manual: explicit <loader>/<nvram> from this host's firmware catalog (default); auto: <os firmware='efi'>",
    }) as unknown as Argv<T & RewriteFlags>;

/**
 * `pickFirmware` over the host catalog (`config.firmwareDirs`, read once on first use): the first
 * descriptor that matches, like libvirt; FirmwareNotFoundError when none does.
 */
export function catalogPicker(config: Config, load: () => FirmwareCatalog = () => loadCatalog({ roots: config.firmwareDirs })): (req: FirmwareRequest) => FirmwarePick {
  let catalog: FirmwareCatalog | undefined;
  return (req) => {
    catalog ??= load();
    const { descriptor: d } = matchFirmware(catalog.descriptors, req);
    if (!d.nvramTemplate) throw new FirmwareNotFoundError(`firmware descriptor ${d.dir}/${d.file} has no NVRAM template; fix it or mask it in /etc/qemu/firmware`);
    return {
      executable: d.executable.filename,
      template: d.nvramTemplate.filename,
      requiresSmm: d.features.includes('requires-smm'),
      secureBoot: d.features.includes('secure-boot'),
      enrolledKeys: d.features.includes('enrolled-keys'),
      descriptor: `${d.dir}/${d.file}`,
    };
  };
}

/** Rewrite a domain with the options its policy layers and the flags resolve to. */
export function rewriteWithPolicy(domain: Domain, config: Config, flags: RewriteFlags, pickFirmware: (req: FirmwareRequest) => FirmwarePick): RewriteResult {
  const policy = resolvePolicy(config, domain, { secureBoot: flags.secureBoot, tpm: flags.tpm, uefi: flags.uefi });
  if (flags.uefi === false && policy.secureBoot) {
    throw new UsageError(`${domain.name}: --no-uefi conflicts with Secure Boot (${flags.secureBoot ? '--secure-boot' : 'from the domain metadata or the config'}); add --no-secure-boot or drop --no-uefi`);
  }
  if (flags.rootPorts !== undefined && !Number.isInteger(flags.rootPorts)) throw new UsageError('--root-ports must be an integer from 0 to 64');
  try {
    return rewriteDomain(domain, {
      uefi: policy.uefi,
      secureBoot: policy.secureBoot,
      tpm: policy.tpm,
      rootPorts: flags.rootPorts ?? config.rootPorts,
      firmware: flags.firmware ?? DEFAULT_REWRITE_OPTIONS.firmware,
      nvramDir: config.nvramDir,
      pickFirmware,
    });
  } catch (e) {
    if (e instanceof FirmwareNotFoundError && !e.message.startsWith(`${domain.name}: `)) throw new FirmwareNotFoundError(`${domain.name}: ${e.message}`);
    throw e;
  }
}
