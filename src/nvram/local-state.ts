/**
 * Per-host NVRAM sync state, one small JSON file per VM in a root-only directory
 * (default /var/lib/ovmf-hook/state/<uuid>.json): which archive generation the local NVRAM was
 * last restored from or archived as, and the claim token this host holds. A missing or
 * unreadable file reads as null ("no sync point known"), which makes the planner conservative.
 */
import path from 'node:path';
import { normalizeUuid } from './archive';
import { ioFor } from './io';
import { ensurePrivateDir, fsyncDir, readRegularFile, stageFileAtomic, type Faults, type StagedFile } from './safe-fs';
import type { LocalState } from './types';

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
