/**
 * Per-host NVRAM sync state, one small JSON file per VM in a root-only directory
 * (default /var/lib/ovmf-hook/state/<uuid>.json): which archive generation the local NVRAM was
 * last restored from or archived as, and the claim token this host holds. A missing or
 * unreadable file reads as null ("no sync point known"), which makes the planner conservative.
 */
import path from 'node:path';
import { normalizeUuid } from './archive';
import { ioFor } from './fs-api';
import { RefusedError } from '../core/errors';
import { ensurePrivateDir, fsyncDir, readRegularFile, sha256, stageFileAtomic, writeFileAtomic, type Faults, type StagedFile } from './safe-fs';
import type { LocalState } from '../core/nvram/types';

export const DEFAULT_STATE_DIR = '/var/lib/ovmf-hook/state';

const stateFile = (stateDir: string, uuid: string): string => path.join(stateDir, `${normalizeUuid(uuid)}.json`);

export async function getLocalState(stateDir: string, uuid: string): Promise<LocalState | null> {
  const file = stateFile(stateDir, uuid);
  const r = await readRegularFile(file, { maxBytes: 64 * 1024 });
  if (!r) return null;
  try {
    const s = JSON.parse(r.data.toString('utf8')) as LocalState;
    const genOk = s.generation === null || Number.isSafeInteger(s.generation);
    return genOk && (s.sha256 === null || typeof s.sha256 === 'string') ? s : null;
  } catch {
    return null;
  }
}

export async function setLocalState(stateDir: string, uuid: string, state: LocalState, faults?: Faults): Promise<void> {
  await (await stageLocalState(stateDir, uuid, state, faults)).commit();
}

/** setLocalState up to the replacement: the state is written to a temp; `commit()` makes it the state. */
export async function stageLocalState(stateDir: string, uuid: string, state: LocalState, faults?: Faults): Promise<StagedFile> {
  const file = stateFile(stateDir, uuid);
  await ensurePrivateDir(stateDir, { create: true });
  return stageFileAtomic(file, Buffer.from(`${JSON.stringify(state, null, 2)}\n`), { mode: 0o600, faults });
}

export async function clearLocalState(stateDir: string, uuid: string): Promise<void> {
  const file = stateFile(stateDir, uuid);
  try {
    await ioFor(file).unlink(file);
    await fsyncDir(stateDir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
}

/**
 * Whose NVRAM file is this? One record per local NVRAM file (`<state>/files/<sha256 of path>.json`),
 * written when a domain first uses the file through the hook or the CLI. A domain must never
 * restore over, archive from or reset another domain's file (a temporary `<nvram>` mistake would
 * otherwise make one VM's NVRAM another's newest generation for good).
 */
export interface FileOwner {
  path: string;
  uuid: string;
  vmName: string;
}

const ownerFile = (stateDir: string, nvramPath: string): string => path.join(stateDir, 'files', `${sha256(Buffer.from(nvramPath))}.json`);

export async function getFileOwner(stateDir: string, nvramPath: string): Promise<FileOwner | null> {
  const r = await readRegularFile(ownerFile(stateDir, nvramPath), { maxBytes: 64 * 1024 });
  if (!r) return null;
  try {
    const o = JSON.parse(r.data.toString('utf8')) as FileOwner;
    return typeof o.uuid === 'string' && typeof o.vmName === 'string' && o.path === nvramPath ? o : null;
  } catch {
    return null;
  }
}

/**
 * Check that `nvramPath` may be used by this domain, and record it as the domain's. Another
 * domain's file → RefusedError naming both. A file recorded for a domain of the same name but
 * another UUID is adopted (names are unique on a host: that domain was undefined with
 * --keep-nvram and defined again); `adopted` then names it. Unchanged records are not rewritten.
 */
export async function claimFile(stateDir: string, nvramPath: string, owner: { uuid: string; vmName: string }): Promise<{ adopted?: FileOwner }> {
  const uuid = normalizeUuid(owner.uuid);
  const prev = await getFileOwner(stateDir, nvramPath);
  if (prev && prev.uuid === uuid && prev.vmName === owner.vmName) return {};
  if (prev && prev.uuid !== uuid && prev.vmName !== owner.vmName) throw foreignFile(nvramPath, owner.vmName, prev);
  const file = ownerFile(stateDir, nvramPath);
  await ensurePrivateDir(stateDir, { create: true });
  await ensurePrivateDir(path.dirname(file), { create: true });
  await writeFileAtomic(file, Buffer.from(`${JSON.stringify({ path: nvramPath, uuid, vmName: owner.vmName }, null, 2)}\n`), { mode: 0o600 });
  return prev && prev.uuid !== uuid ? { adopted: prev } : {};
}

/** Refuse a file recorded for another domain (read only: for release, which records nothing). */
export async function checkFileOwner(stateDir: string, nvramPath: string, owner: { uuid: string; vmName: string }): Promise<void> {
  const prev = await getFileOwner(stateDir, nvramPath);
  if (prev && prev.uuid !== normalizeUuid(owner.uuid) && prev.vmName !== owner.vmName) throw foreignFile(nvramPath, owner.vmName, prev);
}

const foreignFile = (nvramPath: string, vmName: string, prev: FileOwner): RefusedError =>
  new RefusedError(
    `${vmName}: its <nvram> ${nvramPath} is the NVRAM of domain ${prev.vmName} (${prev.uuid}); one domain's NVRAM is never restored over, archived from or reset through another's: point ${vmName}'s <nvram> at its own file (virsh edit ${vmName})`,
  );
