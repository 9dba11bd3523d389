/**
 * Per-host NVRAM sync state, one small JSON file per VM in a root-only directory
 * (`<config stateDir>/<uuid>.json`): which archive generation the local NVRAM was
 * last restored from or archived as, and the claim token this host holds. A missing or
 * unreadable file reads as null ("no sync point known"), which makes the planner conservative.
 */
import path from 'node:path';
import { normalizeUuid } from './archive';
import { asyncIo, type Io } from './fs-api';
import { RefusedError } from '../core/errors';
import { ensurePrivateDir, fsyncDir, readRegularFile, sha256, stageFileAtomic, writeFileAtomic, type Faults, type StagedFile } from './safe-fs';
import { stateAfter, type StateFacts, type StateMark, type StateUpdate } from '../core/nvram/state-update';
import type { LocalState } from '../core/nvram/types';

/** How the state directory is reached: its file API (fs-api.ts; default fs.promises) and, for tests, faults of its writes. */
export interface StateAccess {
  io?: Io;
  faults?: Faults;
}

const stateFile = (stateDir: string, uuid: string): string => path.join(stateDir, `${normalizeUuid(uuid)}.json`);

export async function getLocalState(stateDir: string, uuid: string, { io = asyncIo }: StateAccess = {}): Promise<LocalState | null> {
  const file = stateFile(stateDir, uuid);
  const r = await readRegularFile(file, { maxBytes: 64 * 1024, io });
  if (!r) return null;
  try {
    const s = JSON.parse(r.data.toString('utf8')) as LocalState;
    const genOk = s.generation === null || Number.isSafeInteger(s.generation);
    return genOk && (s.sha256 === null || typeof s.sha256 === 'string') ? s : null;
  } catch {
    return null;
  }
}

/**
 * Replace the state as given. The lifecycle writes what its plan says (writeStateUpdate) and the
 * hook the named operations below; this is their common last step.
 */
export async function setLocalState(stateDir: string, uuid: string, state: LocalState, access: StateAccess = {}): Promise<void> {
  await (await stageLocalState(stateDir, uuid, state, access)).commit();
}

/** setLocalState up to the replacement: the state is written to a temp; `commit()` makes it the state. */
async function stageLocalState(stateDir: string, uuid: string, state: LocalState, { io = asyncIo, faults }: StateAccess): Promise<StagedFile> {
  const file = stateFile(stateDir, uuid);
  await ensurePrivateDir(stateDir, { create: true, io });
  return stageFileAtomic(file, Buffer.from(`${JSON.stringify(state, null, 2)}\n`), { mode: 0o600, faults, io });
}

export async function clearLocalState(stateDir: string, uuid: string, { io = asyncIo }: StateAccess = {}): Promise<void> {
  const file = stateFile(stateDir, uuid);
  try {
    await io.unlink(file);
    await fsyncDir(stateDir, io);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
}

/** A state change prepared up to its last step: `commit()` makes it the state, `discard()` drops it. */
export interface StagedState {
  commit(): Promise<void>;
  discard(): Promise<void>;
}

/**
 * What a plan says the state becomes (a StateUpdate, core/nvram/state-update.ts), written up to the
 * replacement: a new state waits in a temp; a removal, or no change, waits for `commit()`.
 */
export async function stageStateUpdate(stateDir: string, uuid: string, update: StateUpdate, facts: StateFacts, access: StateAccess = {}): Promise<StagedState> {
  const next = stateAfter(update, facts);
  if (next === undefined) return { commit: async () => {}, discard: async () => {} };
  if (next === null) return { commit: () => clearLocalState(stateDir, uuid, access), discard: async () => {} };
  const staged = await stageLocalState(stateDir, uuid, next, access);
  return { commit: async () => void (await staged.commit()), discard: staged.discard };
}

/** Write what a plan says the state becomes. */
export async function writeStateUpdate(stateDir: string, uuid: string, update: StateUpdate, facts: StateFacts, access: StateAccess = {}): Promise<void> {
  await (await stageStateUpdate(stateDir, uuid, update, facts, access)).commit();
}

/** Remove `marks` from the state as it is now; nothing is written when it has none of them. */
async function forgetMarks(stateDir: string, uuid: string, marks: readonly StateMark[], access: StateAccess): Promise<void> {
  const previous = await getLocalState(stateDir, uuid, access);
  await writeStateUpdate(stateDir, uuid, { do: 'forget', marks }, { now: new Date(), previous }, access);
}

/**
 * `migrate begin` on the destination: the `prepare` that follows finds the NVRAM content in QEMU's
 * migration stream (the sync point known so far is kept).
 */
export async function markIncomingMigration(stateDir: string, uuid: string, now = new Date(), access: StateAccess = {}): Promise<void> {
  const prev = await getLocalState(stateDir, uuid, access).catch(() => null);
  await setLocalState(stateDir, uuid, { generation: null, sha256: null, ...prev, time: now.toISOString(), incomingMigration: true }, access);
}

/**
 * `restore begin` of a VM whose policy changes the NVRAM at a cold start (`secure-boot-certs`): the
 * `prepare` that follows resumes a saved RAM image and must leave the NVRAM as the image's firmware
 * left it (LocalState.restoringImage; the sync point known so far is kept).
 */
export async function markRestoringImage(stateDir: string, uuid: string, now = new Date(), access: StateAccess = {}): Promise<void> {
  const prev = await getLocalState(stateDir, uuid, access).catch(() => null);
  await setLocalState(stateDir, uuid, { generation: null, sha256: null, time: now.toISOString(), ...prev, restoringImage: now.toISOString() }, access);
}

/** The incoming migration is prepared: a later start on this host is an ordinary one again. */
export const clearIncomingMigration = (stateDir: string, uuid: string, access: StateAccess = {}): Promise<void> =>
  forgetMarks(stateDir, uuid, ['incomingMigration'], access);

/**
 * `prepare` refused to start the VM: note it in the per-host state so the `release` libvirt runs
 * next skips archiving (the VM did not run here; the local NVRAM may be an old copy that must not
 * become the newest generation). Best effort for the caller: it is about to fail anyway.
 */
export async function markStartRefused(stateDir: string, uuid: string, now = new Date(), access: StateAccess = {}): Promise<void> {
  const state = await getLocalState(stateDir, uuid, access);
  await setLocalState(stateDir, uuid, { ...(state ?? { generation: null, sha256: null, time: now.toISOString() }), startRefused: now.toISOString() }, access);
}

/** This start goes ahead: a refusal mark left by an earlier attempt must not stop its archive. */
export const clearStartRefused = (stateDir: string, uuid: string, access: StateAccess = {}): Promise<void> =>
  forgetMarks(stateDir, uuid, ['startRefused'], access);

/** The claim a failed prepare took is given back: the state no longer names its token. */
export const forgetClaimToken = (stateDir: string, uuid: string, access: StateAccess = {}): Promise<void> =>
  forgetMarks(stateDir, uuid, ['claimToken'], access);

/** The CLI wrote generation `generation` (content `sha256`) to the local file: the new sync point. */
export async function recordSync(stateDir: string, uuid: string, sync: { generation: number; sha256: string }, now = new Date(), access: StateAccess = {}): Promise<void> {
  await setLocalState(stateDir, uuid, { generation: sync.generation, sha256: sync.sha256, time: now.toISOString() }, access);
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

export async function getFileOwner(stateDir: string, nvramPath: string, { io = asyncIo }: StateAccess = {}): Promise<FileOwner | null> {
  const r = await readRegularFile(ownerFile(stateDir, nvramPath), { maxBytes: 64 * 1024, io });
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
export async function claimFile(
  stateDir: string,
  nvramPath: string,
  owner: { uuid: string; vmName: string },
  { io = asyncIo }: StateAccess = {},
): Promise<{ adopted?: FileOwner }> {
  const uuid = normalizeUuid(owner.uuid);
  const prev = await getFileOwner(stateDir, nvramPath, { io });
  if (prev && prev.uuid === uuid && prev.vmName === owner.vmName) return {};
  if (prev && prev.uuid !== uuid && prev.vmName !== owner.vmName) throw foreignFile(nvramPath, owner.vmName, prev);
  const file = ownerFile(stateDir, nvramPath);
  await ensurePrivateDir(stateDir, { create: true, io });
  await ensurePrivateDir(path.dirname(file), { create: true, io });
  await writeFileAtomic(file, Buffer.from(`${JSON.stringify({ path: nvramPath, uuid, vmName: owner.vmName }, null, 2)}\n`), { mode: 0o600, io });
  return prev && prev.uuid !== uuid ? { adopted: prev } : {};
}

/** Refuse a file recorded for another domain (read only: for release, which records nothing). */
export async function checkFileOwner(stateDir: string, nvramPath: string, owner: { uuid: string; vmName: string }, access: StateAccess = {}): Promise<void> {
  const prev = await getFileOwner(stateDir, nvramPath, access);
  if (prev && prev.uuid !== normalizeUuid(owner.uuid) && prev.vmName !== owner.vmName) throw foreignFile(nvramPath, owner.vmName, prev);
}

const foreignFile = (nvramPath: string, vmName: string, prev: FileOwner): RefusedError =>
  new RefusedError(
    `${vmName}: its <nvram> ${nvramPath} is the NVRAM of domain ${prev.vmName} (${prev.uuid}); one domain's NVRAM is never restored over, archived from or reset through another's: point ${vmName}'s <nvram> at its own file (virsh edit ${vmName})`,
  );
