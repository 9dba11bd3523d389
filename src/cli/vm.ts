/**
 * What the admin CLI needs around a VM: the config, libvirt (through an injectable virsh runner),
 * the archive, and VM resolution — a name or UUID known to libvirt on this host
 * (`virsh dumpxml --inactive` → uuid, name, NVRAM path and template as the hook computes them),
 * or the UUID of a VM that only the archive still knows.
 */
import { existsSync } from 'node:fs';
import { hostIdentity, loadConfig, loadCatalog, normalizeUuid, openArchive, type Archive } from '../io';
import { type Config } from '../core/config';
import { parseDomain } from '../core/domain';
import { errorMessage, isOvmfHookError, RefusedError, UsageError } from '../core/errors';
import { UUID_RE } from '../core/nvram';
import { uefiFiles } from '../core/domain/uefi-files';
import { domainState, runVirsh, virshError, type VirshBatchRunner, type VirshRunner } from '../io/virsh';

/** Injection points of the CLI commands (unit tests replace libvirt and the config file). */
export interface CliDeps {
  /** Default: `virsh -c qemu:///system …`, killed after VIRSH_TIMEOUT_SECONDS (src/io/virsh.ts). */
  virsh?: VirshRunner;
  /** Several commands in one virsh process (convert); default: runVirshBatch, unless `virsh` is given. */
  virshBatch?: VirshBatchRunner;
  /** Default: loadConfig() (`$OVMF_HOOK_CONFIG` or /etc/ovmf-hook/config.json). */
  config?: () => Config;
}

export interface CliContext {
  readonly config: Config;
  readonly virsh: VirshRunner;
  /**
   * The NVRAM archive of `config.archiveDir`, opened on first use. Only writers pass
   * `create: true`; readers get a RefusedError when the directory does not exist (nothing
   * archived yet, or the shared storage is not mounted) instead of creating it.
   */
  archive(opts?: { create?: boolean }): Promise<Archive>;
}

export interface Vm {
  /** libvirt UUID, lower case: the archive key */
  uuid: string;
  name: string;
  /** defined in libvirt on this host */
  defined: boolean;
  /** the local NVRAM file, when the VM is defined here and boots UEFI with a file NVRAM */
  nvram?: string;
  /** its OVMF VARS template */
  template?: string;
  /** why ovmf-hook does not manage a local NVRAM of this VM here */
  unmanaged?: string;
  /** the definition has a `<tpm>` device (enrolling keys changes what it measures into PCR7) */
  tpm?: boolean;
}

export function cliContext(deps: CliDeps = {}): CliContext {
  const config = (deps.config ?? loadConfig)();
  let opened: Promise<Archive> | undefined;
  return {
    config,
    virsh: deps.virsh ?? runVirsh,
    archive: async ({ create = false } = {}) => {
      if (!create && !opened && !existsSync(config.archiveDir))
        throw new RefusedError(`the NVRAM archive ${config.archiveDir} does not exist: nothing was archived on this host yet, or its storage is not mounted`);
      return (opened ??= openCliArchive(config));
    },
  };
}

async function openCliArchive(config: Config): Promise<Archive> {
  const { host, hostId } = hostIdentity(config);
  try {
    return await openArchive({ root: config.archiveDir, host, hostId });
  } catch (e) {
    if (isOvmfHookError(e)) throw e;
    throw new RefusedError(`cannot open the NVRAM archive ${config.archiveDir}: ${errorMessage(e)}; run as root and check the archive mount`);
  }
}

/** Name recorded in the archive for a VM (newest generation, else its claim). */
async function archivedName(archive: Archive, uuid: string): Promise<string | undefined> {
  const metas = await archive.list(uuid);
  return metas.at(-1)?.vmName ?? (await archive.claimInfo(uuid))?.vmName;
}

/**
 * Resolve a VM name or UUID. Known to libvirt → its definition decides; a UUID libvirt does not
 * know is looked up in the archive (list/show/vars work from the archive alone).
 * Unknown VM → UsageError (exit 2); libvirt unreachable → RefusedError (exit 1).
 */
export async function resolveVm(target: string, ctx: CliContext): Promise<Vm> {
  const r = await ctx.virsh(['dumpxml', '--inactive', target]);
  if (r.code === 0) {
    const domain = parseDomain(r.stdout);
    if (!domain.uuid) throw new UsageError(`${domain.name}: the domain has no <uuid>`);
    const files = uefiFiles(domain, loadCatalog({ roots: ctx.config.firmwareDirs }).descriptors, ctx.config.nvramDir);
    return {
      uuid: normalizeUuid(domain.uuid),
      name: domain.name,
      defined: true,
      nvram: files?.nvram,
      template: files?.template,
      unmanaged: files ? files.unmanaged : 'the domain boots BIOS (no UEFI NVRAM)',
      tpm: domain.devices('tpm').length > 0,
    };
  }
  const notFound = /failed to get domain|domain not found/i.test(r.stderr);
  if (UUID_RE.test(target)) {
    const uuid = normalizeUuid(target);
    const name = await archivedName(await ctx.archive(), uuid);
    if (name === undefined)
      throw new UsageError(`no VM with UUID ${uuid} on this host or in the archive ${ctx.config.archiveDir}; archived VMs: ovmf-hook nvram list`);
    return { uuid, name, defined: false, unmanaged: `${name} is not defined on this host` };
  }
  if (notFound)
    throw new UsageError(`no VM named ${JSON.stringify(target)} on this host; check: virsh list --all (a VM known only to the archive is named by its UUID: ovmf-hook nvram list)`);
  throw new RefusedError(`cannot ask libvirt about ${JSON.stringify(target)}: ${virshError(r)}; is libvirtd running? (a VM in the archive can also be named by its UUID)`);
}

/** The local NVRAM file ovmf-hook manages for this VM, or a UsageError saying why there is none. */
export function managedNvram(vm: Vm): string {
  if (!vm.nvram || vm.unmanaged) throw new UsageError(`${vm.name}: ${vm.unmanaged ?? 'no local NVRAM file'}; nothing to do here`);
  return vm.nvram;
}

/** Refuse (exit 1) unless libvirt reports the VM `shut off`; the refusal names `command` (default `nvram <verb>`). */
export async function requireShutOff(vm: Vm, virsh: VirshRunner, verb: string, command = `nvram ${verb}`): Promise<void> {
  if (!vm.defined) throw new UsageError(`${vm.name}: not defined on this host; run ovmf-hook ${command} on the host that has it`);
  const state = await domainState(virsh, vm.uuid);
  if (state !== 'shut off')
    throw new RefusedError(`${vm.name} is ${state || 'not shut off'}; ${command} works only on a shut-off VM: shut it down first (virsh shutdown ${vm.name})`);
}
