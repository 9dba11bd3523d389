/**
 * The FILE form of the commands that change a variable store offline (`nvram enroll`, `nvram boot`):
 * `--output OUT` writes a new file, `--in-place` replaces the file itself, `--dry-run` writes nothing.
 * A file in libvirt's nvram directory is refused: its VM form checks that the VM is shut off and
 * archives the NVRAM first.
 */
import { lstatSync, realpathSync, statSync } from 'node:fs';
import path from 'node:path';
import { DEFAULT_CONFIG } from '../core/config';
import { RefusedError, UsageError } from '../core/errors';
import { writeFileAtomic } from '../io';
import { asyncIo } from '../io/fs-api';
import { fsyncDir, linkExclusive, unlinkQuiet, writeTemp } from '../io/safe-fs';
import { cliContext, type CliDeps } from './vm';

export interface FileTargetArgs {
  output?: string;
  inPlace: boolean;
  dryRun: boolean;
}

/** libvirt's nvram directory from the config (its default when the config cannot be read: this is only a guard). */
function nvramDirOf(deps: CliDeps): string {
  try {
    return cliContext(deps).config.nvramDir;
  } catch {
    return DEFAULT_CONFIG.nvramDir;
  }
}

const realDir = (p: string): string => {
  try {
    return realpathSync(p);
  } catch {
    return path.resolve(p);
  }
};

/**
 * The refusals before `file` is read: an --in-place symlink or file of libvirt's nvram directory
 * (`instead`: what to do to its VM, and the command), an --output that exists.
 */
export function checkFileTarget(file: string, a: FileTargetArgs, deps: CliDeps, instead: { verb: string; command: string }): void {
  if (a.inPlace && !a.dryRun) {
    if (lstatSync(file, { throwIfNoEntry: false })?.isSymbolicLink()) throw new UsageError(`${file} is a symbolic link; give the file itself for --in-place`);
    if (realDir(path.dirname(file)) === realDir(nvramDirOf(deps)))
      throw new RefusedError(`${file} is in libvirt's nvram directory: ${instead.verb} its VM instead (${instead.command}: it checks that the VM is shut off and archives the NVRAM first)`);
  }
  if (a.output !== undefined && !a.dryRun && lstatSync(a.output, { throwIfNoEntry: false }))
    throw new UsageError(`${a.output} exists; --output writes a new file (use --in-place to change ${file} itself)`);
}

/** Write the changed store as the options say (same mode as `file`); the path written, if any. */
export async function writeFileTarget(file: string, a: FileTargetArgs, r: { data: Uint8Array; changed: boolean }): Promise<string | undefined> {
  if (a.dryRun) return undefined;
  const st = statSync(file);
  const mode = st.mode & 0o777;
  if (a.output !== undefined) {
    await writeNewFile(a.output, r.data, mode);
    return a.output;
  }
  if (a.inPlace && r.changed) {
    await writeFileAtomic(file, r.data, { mode, uid: st.uid, gid: st.gid });
    return file;
  }
  return undefined;
}

/** Create `out` (which must not exist) with `data`: a fsynced temp file linked into place. */
async function writeNewFile(out: string, data: Uint8Array, mode: number): Promise<void> {
  const { tmp } = await writeTemp(out, data, { mode });
  try {
    if (!(await linkExclusive(tmp, out, asyncIo))) throw new UsageError(`${out} exists; --output writes a new file`);
  } finally {
    await unlinkQuiet(tmp, asyncIo);
  }
  await fsyncDir(path.dirname(path.resolve(out)));
}
