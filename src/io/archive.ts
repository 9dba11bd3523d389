/**
 * NVRAM archive store (may live on NFS/CephFS/GlusterFS shared by several hosts).
 *
 * Layout (everything root-only: directories 0700, files 0600):
 *   <root>/                                  refused if a symlink, group/other-writable or not ours
 *   <root>/<uuid>/                           one directory per VM, by libvirt UUID (lower case)
 *   <root>/<uuid>/gen-000007.fd              data of generation 7
 *   <root>/<uuid>/gen-000007.json            its metadata (GenerationMeta) — the commit point
 *   <root>/<uuid>/gen-000005.corrupt.{fd,json}   a generation found corrupt, moved aside (never listed
 *                                            or restored; its number is never reused)
 *   <root>/<uuid>/claim.json                 the VM's claim (see claims.ts)
 *   <root>/<uuid>/claim.stale-<token>.json   claims taken over, handed over or unlocked (kept for diagnostics)
 *   <root>/<uuid>/incoming.json              a live migration's destination (see claims.ts)
 *   <root>/<uuid>/.gen.fd.ovmf-hook-tmp-<r>  temps of writers in progress (or leftovers of crashes)
 *
 * Commit protocol of add(), NFS-safe without locks:
 *   1. write the data to a temp, fsync, close;
 *   2. reserve number N by link(temp, gen-N.fd) — exclusive: EEXIST means another writer has N,
 *      so retry with a higher N (bounded); unlink the temp; fsync the directory;
 *   3. write the metadata to a temp, fsync, close, link(temp, gen-N.json) — the commit point;
 *      fsync the directory.
 * A generation exists iff gen-N.json exists; read() verifies the data's size and sha256 against
 * it (ArchiveCorruptError otherwise). A gen-N.fd without json and temps are leftovers of an
 * interrupted writer: never listed, removed by repair() once older than `staleAfterMs` (so a
 * writer on another host still in progress is not disturbed). prune() removes json before data.
 */
import path from 'node:path';
import { ArchiveCorruptError, UnsafePathError, UsageError } from '../core/errors';
import { breakClaim, dropIncoming, handOver, readClaim, readIncoming, releaseClaim, takeClaim, undoTakeOver, writeIncoming, type ClaimOptions, type ClaimResult } from './claims';
import type { IncomingRecord } from '../core/nvram/handover';
import { asyncIo, type Io } from './fs-api';
import {
  ensurePrivateDir,
  fsyncDir,
  linkExclusive,
  MAX_NVRAM_BYTES,
  prefixFaults,
  readRegularFile,
  sha256,
  step,
  sweepTemps,
  TEMP_STEPS,
  unlinkQuiet,
  writeTemp,
  type Faults,
} from './safe-fs';
import { GENERATION_KINDS, isAutoRestorable, newestRestorable, UUID_RE, type ClaimInfo, type GenerationKind, type GenerationMeta } from '../core/nvram/types';

/** Fault-injection points of add(), in order. */
export const ARCHIVE_ADD_STEPS = [
  ...TEMP_STEPS.map((s) => `data-${s}`),
  'data-link',
  'data-dir-fsync',
  ...TEMP_STEPS.map((s) => `meta-${s}`),
  'meta-link',
  'dir-fsync',
] as const;

const GEN_RE = /^gen-(\d{6,})\.(fd|json)$/;
const CORRUPT_RE = /^gen-(\d{6,})\.corrupt\.(fd|json)$/;
const MAX_RESERVE_ATTEMPTS = 64;

/** Validate a libvirt domain UUID (the archive directory name); returns it in lower case. */
export function normalizeUuid(uuid: string): string {
  if (!UUID_RE.test(uuid)) throw new UsageError(`invalid VM UUID ${JSON.stringify(uuid).slice(0, 60)}; expected the domain's <uuid> (8-4-4-4-12 hex digits)`);
  return uuid.toLowerCase();
}

/** File name of generation `n` without its extension: `gen-NNNNNN` (`.fd`, `.json`, `.corrupt.fd`, …). */
export const genBase = (n: number): string => `gen-${String(n).padStart(6, '0')}`;

export interface ArchiveOptions {
  /** The archive directory (config `archiveDir`). */
  root: string;
  /** Human-readable host name recorded in metadata and claims. */
  host: string;
  /** Stable host identity (e.g. /etc/machine-id): decides whether a claim is ours. */
  hostId: string;
  /**
   * The file API of the archive directory and everything in it (fs-api.ts): the hook passes the
   * synchronous one when statfs showed a local disk. Default fs.promises.
   */
  io?: Io;
  faults?: Faults;
  /** repair() leaves leftovers younger than this alone (another host may be writing). Default 1 h. */
  staleAfterMs?: number;
  maxBytes?: number;
}

export interface AddOptions {
  reason: string;
  kind: GenerationKind;
  vmName: string;
  basedOn?: number | null;
  now?: Date;
  /** sha256 of `data` when the caller has just computed it (a 4 MiB varstore is not hashed twice) */
  sha256?: string;
}

export type AddResult = GenerationMeta | { skipped: 'identical'; generation: number };

/** A generation moved aside as corrupt (its metadata as far as it was readable). */
export interface CorruptGeneration {
  generation: number;
  meta: GenerationMeta | null;
}

export interface RepairReport {
  /** Paths of leftovers removed. */
  removed: string[];
  /** Paths of leftovers left alone because they are younger than the threshold (a writer may still be running), sorted. */
  kept: string[];
  /** Committed generations whose data is missing or does not match the metadata (now moved aside). */
  corrupt: number[];
}

export interface Archive {
  readonly root: string;
  readonly host: string;
  readonly hostId: string;
  /** Committed generations, ascending. */
  list(uuid: string): Promise<GenerationMeta[]>;
  /** Highest generation of one of `kinds` (default: the auto-restorable ones). */
  newest(uuid: string, opts?: { kinds?: readonly GenerationKind[] }): Promise<GenerationMeta | null>;
  /** Verified data of a generation; missing → UsageError, mismatch → ArchiveCorruptError. */
  read(uuid: string, generation: number): Promise<Buffer>;
  /**
   * Read-only check of a listed generation's data: null when size and sha256 match, else the
   * problem ('sha256 mismatch', 'size 8 ≠ 4096', 'its data file is missing'). Moves nothing aside;
   * a generation that is not listed → UsageError, I/O errors are thrown.
   */
  verify(uuid: string, generation: number): Promise<string | null>;
  /**
   * Move a corrupt generation aside (`gen-N.corrupt.*`): it is no longer listed, restored or the
   * newest, its number is never reused, and its files stay for inspection. Idempotent.
   */
  quarantine(uuid: string, generation: number): Promise<void>;
  /** Generations moved aside as corrupt, ascending. */
  listCorrupt(uuid: string): Promise<CorruptGeneration[]>;
  /** Commit a new generation, or skip when the content is already there (see AddResult). */
  add(uuid: string, data: Uint8Array, opts: AddOptions): Promise<AddResult>;
  /** Keep the newest `keep` generations (and always the newest auto-restorable one); returns removed numbers. */
  prune(uuid: string, keep: number): Promise<number[]>;
  /**
   * Remove leftovers of interrupted writers older than `olderThanMs` (default `staleAfterMs`) and,
   * unless `verify: false` (a cheap sweep), report corrupt generations (reads every data file).
   */
  repair(uuid: string, opts?: { olderThanMs?: number; now?: Date; verify?: boolean }): Promise<RepairReport>;
  /** UUIDs that have an archive directory. */
  listVms(): Promise<string[]>;
  claim(uuid: string, opts: ClaimOptions): Promise<ClaimResult>;
  /** Remove the claim if it is still held by this token or hostId. */
  releaseClaim(uuid: string, tokenOrHostId: string): Promise<boolean>;
  claimInfo(uuid: string): Promise<ClaimInfo | null>;
  /** Admin unlock (`ovmf-hook nvram unlock`): move the claim aside; its holder becomes fenced. */
  breakClaim(uuid: string): Promise<ClaimInfo | null>;
  /** Live migration's destination (its incoming `prepare`): record that this host receives the VM. */
  markIncoming(uuid: string, opts: { vmName: string; leaseSeconds?: number; now?: Date }): Promise<IncomingRecord>;
  incomingInfo(uuid: string): Promise<IncomingRecord | null>;
  /** Remove the incoming record if it is still this token's or hostId's. */
  dropIncoming(uuid: string, tokenOrHostId: string): Promise<boolean>;
  /** The source's release: replace our claim `from` by one naming `to`'s host; null if `from` is not the claim any more. */
  handOver(uuid: string, from: ClaimInfo, to: IncomingRecord, now?: Date): Promise<ClaimInfo | null>;
  /** Give back the expired claim `mine` took over (its tombstone becomes the claim again); null if nothing changed. */
  undoTakeOver(uuid: string, mine: ClaimInfo): Promise<ClaimInfo | null>;
}

function parseMeta(text: string, n: number): GenerationMeta | null {
  try {
    const m = JSON.parse(text) as GenerationMeta;
    const ok =
      m.generation === n &&
      typeof m.sha256 === 'string' &&
      /^[0-9a-f]{64}$/.test(m.sha256) &&
      Number.isSafeInteger(m.size) &&
      GENERATION_KINDS.includes(m.kind);
    return ok ? m : null;
  } catch {
    return null;
  }
}

const readdirOrEmpty = (dir: string, io: Io): Promise<string[]> =>
  io.readdir(dir).catch((e) => {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  });

/** Generation numbers in use, moved-aside corrupt ones included (a number is never given twice). */
const numbersIn = (names: string[]): number[] =>
  names.flatMap((n) => {
    const m = GEN_RE.exec(n) ?? CORRUPT_RE.exec(n);
    return m ? [Number(m[1])] : [];
  });

const nextNumber = (names: string[]): number => Math.max(0, ...numbersIn(names)) + 1;

export async function openArchive(opts: ArchiveOptions): Promise<Archive> {
  const root = path.resolve(opts.root);
  const { host, hostId, faults, staleAfterMs = 3600_000, maxBytes = MAX_NVRAM_BYTES, io = asyncIo } = opts;
  if (!host || !hostId) throw new UsageError('archive: host and hostId must be non-empty');
  await ensurePrivateDir(root, { create: true, checkAncestors: true, io });

  const vmDir = (uuid: string): string => path.join(root, normalizeUuid(uuid));
  /** The VM directory, checked; created when `create`, else null when missing. */
  const openVmDir = async (uuid: string, create: boolean): Promise<string | null> => {
    const dir = vmDir(uuid);
    if (!create && !(await io.lstat(dir).then(() => true, () => false))) return null;
    await ensurePrivateDir(dir, { create, io });
    return dir;
  };

  async function listIn(dir: string): Promise<{ metas: GenerationMeta[]; bad: number[]; names: string[] }> {
    const names = await readdirOrEmpty(dir, io);
    const metas: GenerationMeta[] = [];
    const bad: number[] = [];
    await Promise.all(
      names.map(async (name) => {
        const m = GEN_RE.exec(name);
        if (!m || m[2] !== 'json') return;
        const n = Number(m[1]);
        const r = await readRegularFile(path.join(dir, name), { maxBytes: 64 * 1024, singleLink: false, io }).catch((e) => {
          if (e instanceof UnsafePathError) return { data: Buffer.alloc(0) }; // not a plain file: unreadable
          throw e; // I/O errors must not make an older generation look like the newest
        });
        if (!r) return; // pruned meanwhile
        const meta = parseMeta(r.data.toString('utf8'), n);
        if (meta) metas.push(meta);
        else bad.push(n);
      }),
    );
    metas.sort((a, b) => a.generation - b.generation);
    return { metas, bad, names };
  }

  /** Committed generations; an unreadable metadata file is an error, never silently skipped. */
  const list = async (uuid: string): Promise<GenerationMeta[]> => {
    const dir = await openVmDir(uuid, false);
    if (!dir) return [];
    const { metas, bad } = await listIn(dir);
    if (bad.length) {
      const file = path.join(dir, `${genBase(bad[0])}.json`);
      throw new ArchiveCorruptError(file, `archive metadata ${file} is unreadable; inspect it and move it out of the archive, then run: ovmf-hook nvram repair`);
    }
    return metas;
  };

  /** The generation's data, or what is wrong with it (missing, size, sha256). */
  async function checkData(dir: string, meta: GenerationMeta): Promise<{ file: string; data: Buffer; problem: null } | { file: string; data: null; problem: string }> {
    const file = path.join(dir, `${genBase(meta.generation)}.fd`);
    const r = await readRegularFile(file, { maxBytes, singleLink: false, io });
    const problem = !r ? 'its data file is missing' : r.data.length !== meta.size ? `size ${r.data.length} ≠ ${meta.size}` : sha256(r.data) !== meta.sha256 ? 'sha256 mismatch' : null;
    return problem || !r ? { file, data: null, problem: problem ?? 'its data file is missing' } : { file, data: r.data, problem: null };
  }

  async function verifiedData(dir: string, meta: GenerationMeta): Promise<Buffer> {
    const c = await checkData(dir, meta);
    if (c.problem !== null)
      throw new ArchiveCorruptError(c.file, `archive generation ${meta.generation} of ${meta.vmName} is corrupt (${c.problem}); restore an older one with: ovmf-hook nvram restore ${meta.vmName} --generation N`);
    return c.data;
  }

  /**
   * Data first, then the metadata (the commit point) — interrupted in between, the generation is
   * still listed, its data is missing, and the next reader moves it aside again.
   */
  async function quarantine(uuid: string, generation: number): Promise<void> {
    const dir = await openVmDir(uuid, false);
    if (!dir) return;
    const base = path.join(dir, genBase(generation));
    const move = (ext: string) =>
      io.rename(`${base}.${ext}`, `${base}.corrupt.${ext}`).catch((e) => {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e; // already moved (another host)
      });
    await move('fd');
    await move('json');
    await fsyncDir(dir, io);
  }

  async function listCorrupt(uuid: string): Promise<CorruptGeneration[]> {
    const dir = await openVmDir(uuid, false);
    if (!dir) return [];
    const names = await readdirOrEmpty(dir, io);
    const numbers = [...new Set(names.flatMap((n) => (CORRUPT_RE.test(n) ? [Number(CORRUPT_RE.exec(n)![1])] : [])))].sort((a, b) => a - b);
    const text = async (file: string): Promise<string | undefined> =>
      (await readRegularFile(path.join(dir, file), { maxBytes: 64 * 1024, singleLink: false, io }).catch(() => null))?.data.toString('utf8');
    return Promise.all(
      numbers.map(async (n) => {
        const json = await text(`${genBase(n)}.corrupt.json`);
        return { generation: n, meta: json === undefined ? null : parseMeta(json, n) };
      }),
    );
  }

  async function reserveNumber(dir: string, tmp: string): Promise<number> {
    let n = nextNumber(await readdirOrEmpty(dir, io));
    for (let attempt = 1; ; attempt++) {
      await step(faults, 'data-link');
      if (await linkExclusive(tmp, path.join(dir, `${genBase(n)}.fd`), io)) return n;
      if (attempt >= MAX_RESERVE_ATTEMPTS) throw new Error(`archive ${dir}: could not reserve a generation number after ${attempt} attempts`);
      n = Math.max(n + 1, nextNumber(await readdirOrEmpty(dir, io)));
    }
  }

  async function add(uuid: string, data: Uint8Array, o: AddOptions): Promise<AddResult> {
    if (!GENERATION_KINDS.includes(o.kind)) throw new UsageError(`unknown generation kind ${o.kind}`);
    const dir = (await openVmDir(uuid, true)) as string;
    const { metas } = await listIn(dir);
    const sha = o.sha256 ?? sha256(data);
    const same = isAutoRestorable(o.kind) ? newestRestorable(metas) : (metas.find((m) => m.sha256 === sha) ?? null);
    if (same && same.sha256 === sha) return { skipped: 'identical', generation: same.generation };

    const { tmp } = await writeTemp(path.join(dir, 'gen.fd'), data, { faults: prefixFaults(faults, 'data'), io });
    let n: number;
    try {
      n = await reserveNumber(dir, tmp);
    } finally {
      await unlinkQuiet(tmp, io);
    }
    const dataFile = path.join(dir, `${genBase(n)}.fd`);
    try {
      await step(faults, 'data-dir-fsync');
      await fsyncDir(dir, io);
      const meta: GenerationMeta = {
        generation: n,
        sha256: sha,
        size: data.length,
        host,
        hostId,
        time: (o.now ?? new Date()).toISOString(),
        reason: o.reason,
        kind: o.kind,
        vmName: o.vmName,
        basedOn: o.basedOn ?? null,
      };
      const metaFile = path.join(dir, `${genBase(n)}.json`);
      const { tmp: mtmp } = await writeTemp(path.join(dir, 'gen.json'), Buffer.from(`${JSON.stringify(meta, null, 2)}\n`), {
        faults: prefixFaults(faults, 'meta'),
        io,
      });
      try {
        await step(faults, 'meta-link');
        if (!(await linkExclusive(mtmp, metaFile, io))) throw new ArchiveCorruptError(metaFile, `${metaFile} exists without its data; run: ovmf-hook nvram repair`);
      } finally {
        await unlinkQuiet(mtmp, io);
      }
      await step(faults, 'dir-fsync');
      await fsyncDir(dir, io);
      return meta;
    } catch (e) {
      const committed = await io.lstat(path.join(dir, `${genBase(n)}.json`)).then(() => true, () => false);
      if (!committed) await unlinkQuiet(dataFile, io);
      throw e;
    }
  }

  async function prune(uuid: string, keep: number): Promise<number[]> {
    if (!Number.isSafeInteger(keep) || keep < 1) throw new UsageError(`keep must be a whole number ≥ 1, got ${keep}`);
    const dir = await openVmDir(uuid, false);
    if (!dir) return [];
    const metas = await list(uuid); // refuses when some metadata is unreadable
    const protect = new Set(metas.slice(-keep).map((m) => m.generation));
    const auto = newestRestorable(metas);
    if (auto) protect.add(auto.generation);
    const drop = metas.filter((m) => !protect.has(m.generation)).map((m) => m.generation);
    for (const n of drop) {
      await step(faults, 'prune-meta');
      await io.unlink(path.join(dir, `${genBase(n)}.json`)).catch(() => {}); // uncommit first
      await step(faults, 'prune-data');
      await unlinkQuiet(path.join(dir, `${genBase(n)}.fd`), io);
    }
    if (drop.length) await fsyncDir(dir, io);
    return drop;
  }

  async function repair(uuid: string, o: { olderThanMs?: number; now?: Date; verify?: boolean } = {}): Promise<RepairReport> {
    const { olderThanMs = staleAfterMs, now = new Date(), verify = true } = o;
    const dir = await openVmDir(uuid, false);
    if (!dir) return { removed: [], kept: [], corrupt: [] };
    const { removed, kept } = await sweepTemps(dir, undefined, { olderThanMs, now, io });
    const { metas, bad, names } = await listIn(dir);
    const committed = new Set(names.filter((n) => n.endsWith('.json')));
    for (const name of names) {
      const m = GEN_RE.exec(name);
      const leftover = (m && m[2] === 'fd' && !committed.has(`gen-${m[1]}.json`)) || name.startsWith('claim.released-');
      if (!leftover) continue;
      const p = path.join(dir, name);
      const st = await io.lstat(p).catch(() => null);
      if (!st) continue;
      if (olderThanMs > 0 && now.getTime() - st.mtimeMs < olderThanMs) {
        kept.push(p);
        continue;
      }
      await unlinkQuiet(p, io);
      removed.push(p);
    }
    const corrupt = [...bad];
    for (const meta of verify ? metas : []) {
      await verifiedData(dir, meta).catch((e) => {
        if (!(e instanceof ArchiveCorruptError)) throw e;
        corrupt.push(meta.generation);
      });
    }
    // a full check moves what it found aside: the archive lists and restores again
    if (verify) for (const n of corrupt) await quarantine(uuid, n);
    if (removed.length) await fsyncDir(dir, io);
    return { removed, kept: kept.sort(), corrupt: corrupt.sort((a, b) => a - b) };
  }

  return {
    root,
    host,
    hostId,
    list,
    newest: async (uuid, o = {}) => newestRestorable(await list(uuid), o.kinds),
    async read(uuid, generation) {
      const dir = await openVmDir(uuid, false);
      const meta = dir && (await listIn(dir)).metas.find((m) => m.generation === generation);
      if (!dir || !meta) throw new UsageError(`archive has no generation ${generation} for VM ${uuid}; list them with: ovmf-hook nvram list`);
      return verifiedData(dir, meta);
    },
    async verify(uuid, generation) {
      const dir = await openVmDir(uuid, false);
      const meta = dir && (await listIn(dir)).metas.find((m) => m.generation === generation);
      if (!dir || !meta) throw new UsageError(`archive has no generation ${generation} for VM ${uuid}; list them with: ovmf-hook nvram list`);
      return (await checkData(dir, meta)).problem;
    },
    add,
    quarantine,
    listCorrupt,
    prune,
    repair,
    async listVms() {
      const names = await readdirOrEmpty(root, io);
      const dirs = await Promise.all(
        names.filter((n) => UUID_RE.test(n)).map(async (n) => ((await io.lstat(path.join(root, n))).isDirectory() ? n : null)),
      );
      return dirs.filter((n): n is string => n !== null).sort();
    },
    claim: async (uuid, o) => takeClaim({ dir: (await openVmDir(uuid, true)) as string, io, host, hostId, faults: prefixFaults(faults, 'claim') }, o),
    async releaseClaim(uuid, who) {
      const dir = await openVmDir(uuid, false);
      return dir ? releaseClaim(dir, who, io, prefixFaults(faults, 'claim')) : false;
    },
    async claimInfo(uuid) {
      const dir = await openVmDir(uuid, false);
      return dir ? readClaim(dir, io) : null;
    },
    async breakClaim(uuid) {
      const dir = await openVmDir(uuid, false);
      return dir ? breakClaim(dir, io) : null;
    },
    markIncoming: async (uuid, o) => writeIncoming({ dir: (await openVmDir(uuid, true)) as string, io, host, hostId, faults: prefixFaults(faults, 'claim') }, o),
    async incomingInfo(uuid) {
      const dir = await openVmDir(uuid, false);
      return dir ? readIncoming(dir, io) : null;
    },
    async dropIncoming(uuid, who) {
      const dir = await openVmDir(uuid, false);
      return dir ? dropIncoming(dir, who, io, prefixFaults(faults, 'claim')) : false;
    },
    async undoTakeOver(uuid, mine) {
      const dir = await openVmDir(uuid, false);
      return dir ? undoTakeOver(dir, mine, io, prefixFaults(faults, 'claim')) : null;
    },
    handOver: async (uuid, from, to, now) => handOver({ dir: (await openVmDir(uuid, true)) as string, io, host, hostId, faults: prefixFaults(faults, 'claim') }, from, to, now),
  };
}
