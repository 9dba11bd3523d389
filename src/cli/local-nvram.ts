/**
 * Writing a shut-off VM's local NVRAM from the CLI (`nvram restore`, `reset`, `enroll`): who owns the
 * file, and the options every lifecycle writer (src/io/lifecycle.ts) gets — a held handle on libvirt's
 * nvram directory, and the "is it shut off?" question asked only under the VM's lock.
 */
import { qemuOwnerNames, resolveIds, type Archive, type NvramOwner, type ResetOptions } from '../io';
import { withNvramDir } from '../io/nvram-dir';
import { type Config } from '../core/config';
import { requireShutOff, type CliContext, type Vm } from './vm';

/** Who owns NVRAM files written by the CLI; a qemu account missing here is said on stderr (the file is then root's). */
export function owner(config: Config): NvramOwner {
  const { uid, gid, unresolved } = resolveIds(qemuOwnerNames(config));
  if (unresolved.length) process.stderr.write(`ovmf-hook: warning: ${unresolved.join(' and ')} not found on this host: the NVRAM file is written owned by root; set "qemuUser"/"qemuGroup" in the config or fix /etc/libvirt/qemu.conf\n`);
  return { uid, gid, mode: 0o600 };
}

/** What `restore`, `reset` and `enroll` hand the lifecycle executor alike. */
export type LocalNvramChange = Pick<ResetOptions, 'archive' | 'stateDir' | 'uuid' | 'vmName' | 'nvramPath' | 'nvramIo' | 'owner' | 'claimLeaseSeconds' | 'whileLocked' | 'command'>;

/**
 * Replace a shut-off VM's local NVRAM (`run` does it) through a held handle on libvirt's nvram
 * directory; `verb` names the command in refusals (`nvram <verb>`, or `command` when given).
 */
export async function changeLocalNvram<R>(
  ctx: CliContext,
  vm: Vm,
  nvramPath: string,
  archive: Archive,
  verb: string,
  run: (o: LocalNvramChange) => Promise<R>,
  command?: string,
): Promise<R> {
  const who = owner(ctx.config);
  return withNvramDir(ctx.config.nvramDir, [0, who.uid ?? 0], (dir) =>
    run({
      archive,
      stateDir: ctx.config.stateDir,
      uuid: vm.uuid,
      vmName: vm.name,
      nvramPath,
      nvramIo: dir.file(nvramPath),
      owner: who,
      claimLeaseSeconds: ctx.config.claimLeaseSeconds,
      // asked with the VM's lock held: no start can begin between this answer and the write
      whileLocked: () => requireShutOff(vm, ctx.virsh, verb, command),
      ...(command ? { command } : {}),
    }),
  );
}
