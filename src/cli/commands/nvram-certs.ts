/**
 * `ovmf-hook nvram certs [VM...|--all [--match GLOB]] [--json]`: fleet readiness for Microsoft's 2026 Secure Boot
 * certificate rollover, one line per VM: its state (src/core/varstore/readiness.ts: `current`,
 * `update-available`, `not-secure-boot`, `no-nvram`), Secure Boot on, the PK's owner, which of the
 * 2011 and 2023 Microsoft certificates it trusts, and whether it has a TPM (from its definition).
 *
 * libvirt is asked once for the names (`virsh list --all --name`, for --all) and once for every
 * definition (`dumpxml --inactive` of all of them in one virsh batch, split only where the
 * argument would grow too long); each NVRAM file is then read directly, never through libvirt,
 * one after the other into one reused buffer (a fleet's files are mostly in the page cache: the
 * cost is allocation and system calls, not the disk). Read only: nothing is locked, claimed or
 * written, and no symlink is followed to an NVRAM. A VM whose NVRAM cannot be read gets state
 * `error` with the reason, the others are still reported, and the exit code is 1.
 */
import { closeSync, constants, fstatSync, openSync, readSync } from 'node:fs';
import type { Argv, CommandModule } from 'yargs';
import { parseDomain } from '../../core/domain';
import { uefiFiles, type UefiFiles } from '../../core/domain/uefi-files';
import { errorMessage, isOvmfHookError, RefusedError, UsageError, VarstoreError } from '../../core/errors';
import { globMatch, type FirmwareDescriptor } from '../../core/firmware';
import {
  certificateReadiness,
  MICROSOFT_SECURE_BOOT_CERTIFICATES,
  type CertificateReadiness,
  type CertificateState,
  type MicrosoftCertificateId,
} from '../../core/varstore';
import { loadCatalog, MAX_NVRAM_BYTES, normalizeUuid } from '../../io';
import { runInBatches, runVirshBatch, virshError, type VirshBatchRunner, type VirshRunner } from '../../io/virsh';
import { jsonOption, printJson } from '../output';
import { table } from '../table';
import { cliContext, type CliDeps } from '../vm';

export type VmCertificateState = CertificateState | 'error';

/** One VM's line (and its JSON object). */
export interface VmCertificates {
  name: string;
  uuid: string | null;
  state: VmCertificateState;
  /** Secure Boot enforced at the next boot; null when there is no NVRAM to tell. */
  secureBoot: boolean | null;
  /** Subject CN of the PK's certificate. */
  pkOwner: string | null;
  tpm: boolean;
  /** The local NVRAM file (null: the VM keeps none). */
  nvram: string | null;
  /** Each known Microsoft certificate present (null without a readable NVRAM). */
  microsoft: Record<MicrosoftCertificateId, boolean> | null;
  /** Names of the 2023 certificates missing (for a VM with Secure Boot). */
  missing2023: string[];
  /** state `no-nvram`: the template its first start copies, and that template's state. */
  template?: { path: string; state: VmCertificateState };
  /** Why (not-secure-boot, no-nvram, error), or what could not be decoded. */
  note?: string;
}

const STATES: readonly VmCertificateState[] = ['current', 'update-available', 'not-secure-boot', 'no-nvram', 'error'];

let scratch = Buffer.alloc(0);
/**
 * The bytes of the regular file `file` (null: it does not exist) in a buffer the next call reuses:
 * use them before reading another file. A symlink is refused unless `follow` (templates may be links).
 */
function readReused(file: string, follow = false): Uint8Array | null {
  let fd: number;
  try {
    fd = openSync(file, constants.O_RDONLY | constants.O_NONBLOCK | (follow ? 0 : constants.O_NOFOLLOW));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return null;
    if (code === 'ELOOP') throw new UsageError(`${file} is a symlink; not followed`);
    throw e;
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new UsageError(`${file} is not a regular file`);
    if (st.size > MAX_NVRAM_BYTES) throw new VarstoreError(`${file}: ${st.size} bytes is too big for a UEFI variable store`);
    if (scratch.length < st.size) scratch = Buffer.allocUnsafe(st.size);
    let n = 0;
    for (let r = 1; n < st.size && r > 0; n += r) r = readSync(fd, scratch, n, st.size - n, n);
    return scratch.subarray(0, n);
  } finally {
    closeSync(fd);
  }
}

/** What the certificate columns show for a store: the readiness fields, or an error. */
const fromReadiness = (r: CertificateReadiness) => ({
  state: r.state,
  secureBoot: r.secureBoot,
  pkOwner: r.pkOwner,
  microsoft: r.microsoft,
  missing2023: r.secureBoot ? r.missing2023 : [],
  ...(r.why || r.problems.length ? { note: [r.why, ...r.problems].filter(Boolean).join('; ') } : {}),
});

interface Reader {
  descriptors: () => readonly FirmwareDescriptor[];
  nvramDir: string;
  /** State of each template read so far (the same few templates serve every VM). */
  templates: Map<string, VmCertificateState>;
}

function templateState(path: string): VmCertificateState {
  try {
    const t = readReused(path, true);
    return t ? certificateReadiness(t).state : 'error';
  } catch {
    return 'error';
  }
}

/** One VM from its definition: the NVRAM file read and classified. */
function vmCertificates(xml: string, reader: Reader): VmCertificates {
  const domain = parseDomain(xml);
  const base = { name: domain.name, uuid: domain.uuid ? normalizeUuid(domain.uuid) : null, tpm: domain.devices('tpm').length > 0 };
  const none = { secureBoot: null, pkOwner: null, microsoft: null, missing2023: [] };
  let files: UefiFiles | undefined;
  try {
    files = uefiFiles(domain, reader.descriptors, reader.nvramDir);
  } catch (e) {
    if (!isOvmfHookError(e)) throw e;
    return { ...base, ...none, state: 'error', nvram: null, note: e.message };
  }
  if (!files) return { ...base, ...none, secureBoot: false, state: 'not-secure-boot', nvram: null, note: 'boots BIOS' };
  if (!files.nvram) return { ...base, ...none, state: 'no-nvram', nvram: null, note: files.unmanaged };
  const nvram = files.nvram;
  let data: Uint8Array | null;
  try {
    data = readReused(nvram);
  } catch (e) {
    return { ...base, ...none, state: 'error', nvram, note: errorMessage(e) };
  }
  if (!data) {
    const tpl = files.template;
    if (!tpl) return { ...base, ...none, state: 'no-nvram', nvram, note: `${nvram} does not exist yet (no template known)` };
    let state = reader.templates.get(tpl);
    if (state === undefined) reader.templates.set(tpl, (state = templateState(tpl)));
    return { ...base, ...none, state: 'no-nvram', nvram, template: { path: tpl, state }, note: `first start copies ${tpl} (${state === 'error' ? 'unreadable' : state})` };
  }
  try {
    return { ...base, nvram, ...fromReadiness(certificateReadiness(data)) };
  } catch (e) {
    if (!isOvmfHookError(e)) throw e;
    return { ...base, ...none, state: 'error', nvram, note: e.message };
  }
}

/** The names of every domain libvirt knows (those matching the glob `match`, when given), sorted. */
async function allNames(virsh: VirshRunner, match: string | undefined): Promise<string[]> {
  const r = await virsh(['list', '--all', '--name']);
  if (r.code !== 0) throw new RefusedError(`cannot list the domains: ${virshError(r)}; is libvirtd running?`);
  return [...new Set(r.stdout.split('\n').map((s) => s.trim()).filter((s) => s && (match === undefined || globMatch(match, s))))].sort();
}

const NOT_FOUND = /failed to get domain|domain not found|no domain with matching/i;

export interface CertsArgs {
  vms: string[];
  all: boolean;
  /** with --all: only domains whose name matches this glob (`*`, `?`), as `convert --all --match` */
  match?: string;
  json: boolean;
}

export async function runCerts(args: CertsArgs, deps: CliDeps = {}): Promise<VmCertificates[]> {
  if (args.all && args.vms.length) throw new UsageError('give VM names or --all, not both');
  if (!args.all && !args.vms.length) throw new UsageError('name the VMs to look at, or use --all (every VM libvirt knows)');
  if (args.match !== undefined && !args.all) throw new UsageError('--match selects domains for --all; use it with --all');
  const ctx = cliContext(deps);
  const batch: VirshBatchRunner = deps.virshBatch ?? (deps.virsh ? (cmds) => Promise.all(cmds.map((c) => ctx.virsh(c))) : runVirshBatch);
  const names = args.all ? await allNames(ctx.virsh, args.match) : [...new Set(args.vms)];
  const dumps = await runInBatches(
    batch,
    names.map((n) => ['dumpxml', '--inactive', n]),
  );
  const xmls: { name: string; xml: string }[] = [];
  dumps.forEach((r, i) => {
    const name = names[i]!;
    if (r.code === 0) xmls.push({ name, xml: r.stdout });
    else if (!NOT_FOUND.test(r.stderr)) throw new RefusedError(`cannot ask libvirt about ${JSON.stringify(name)}: ${virshError(r)}; is libvirtd running?`);
    else if (!args.all) throw new UsageError(`no VM named ${JSON.stringify(name)} on this host; check: virsh list --all`);
    // --all: undefined since it was listed; left out
  });
  let catalog: readonly FirmwareDescriptor[] | undefined;
  const reader: Reader = {
    descriptors: () => (catalog ??= loadCatalog({ roots: ctx.config.firmwareDirs }).descriptors),
    nvramDir: ctx.config.nvramDir,
    templates: new Map(),
  };
  const vms = xmls.map(({ name, xml }): VmCertificates => {
    try {
      return vmCertificates(xml, reader);
    } catch (e) {
      if (!isOvmfHookError(e)) throw e;
      return { name, uuid: null, state: 'error', secureBoot: null, pkOwner: null, tpm: false, nvram: null, microsoft: null, missing2023: [], note: e.message };
    }
  });
  const counts = Object.fromEntries(STATES.map((s) => [s, vms.filter((v) => v.state === s).length]));
  if (args.json) printJson({ vms, counts });
  else process.stdout.write(render(vms, counts));
  const failed = vms.filter((v) => v.state === 'error');
  if (failed.length)
    throw new RefusedError(`${failed.length} of ${vms.length} VMs could not be read (${failed[0]!.name}: ${failed[0]!.note}); see their lines above`);
  return vms;
}

const shortNames = (vm: VmCertificates, year: 2011 | 2023): string => {
  if (!vm.microsoft) return '-';
  const present = MICROSOFT_SECURE_BOOT_CERTIFICATES.filter((c) => c.year === year && vm.microsoft![c.id]).map((c) => c.short);
  return present.length ? present.join(' ') : 'none';
};

function render(vms: readonly VmCertificates[], counts: Record<string, number>): string {
  if (!vms.length) return 'no VMs\n';
  const rows = vms.map((v) => [
    v.name,
    v.state,
    v.secureBoot === null ? '-' : v.secureBoot ? 'on' : 'off',
    v.pkOwner ?? '-',
    v.tpm ? 'yes' : 'no',
    shortNames(v, 2011),
    shortNames(v, 2023),
    v.note ?? '',
  ]);
  const summary = STATES.filter((s) => counts[s]).map((s) => `${counts[s]} ${s}`).join(', ');
  return (
    table([['VM', 'STATE', 'SECURE BOOT', 'PK OWNER', 'TPM', 'MICROSOFT 2011', 'MICROSOFT 2023', 'NOTE'], ...rows]) +
    `${vms.length} VM${vms.length === 1 ? '' : 's'}: ${summary}\n` +
    (counts['update-available']
      ? 'update-available: add the 2023 certificates offline, VM shut off: ovmf-hook nvram enroll VM --ms-2023 (a VM with a TPM: suspend BitLocker first, see the README)\n'
      : '') +
    'KEK = KEK CA 2011 / KEK 2K CA 2023 (KEK); PCA = Windows Production PCA 2011, Windows = Windows UEFI CA 2023, UEFI = UEFI CA 2011 / 2023, OptionROM = Option ROM UEFI CA 2023 (db)\n'
  );
}

export function makeNvramCertsCommand(deps: CliDeps = {}): CommandModule<object, any> {
  return {
    command: 'certs [vms..]',
    describe: "Microsoft Secure Boot certificate readiness (2011 → 2023) of VMs' NVRAM: one line per VM",
    builder: (y: Argv) =>
      y
        .positional('vms', { type: 'string', array: true, describe: 'VM names or UUIDs' })
        .option('all', { type: 'boolean', default: false, describe: 'every VM libvirt knows on this host' })
        .option('match', { type: 'string', describe: "with --all: only domains whose name matches this glob ('*', '?'), e.g. 'win-*'" })
        .option('json', jsonOption())
        .example('$0 nvram certs --all', 'which VMs still lack the 2023 certificates'),
    handler: async (a) => {
      await runCerts({ vms: ((a.vms as unknown[] | undefined) ?? []).map(String), all: a.all === true, match: a.match === undefined ? undefined : String(a.match), json: a.json === true }, deps);
    },
  };
}
