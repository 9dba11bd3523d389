/**
 * `ovmf-hook nvram <verb>`: the per-VM NVRAM archive from the admin's side.
 *
 *   list [VM]                 archived VMs, or one VM's generations, claim and local file
 *   show VM [--generation N]  one generation's metadata (default: the newest), data verified
 *   restore VM [--generation N]   write a generation back to the local NVRAM (VM shut off)
 *   reset VM                  back to the OVMF template, the old NVRAM kept as a generation (VM shut off)
 *   prune [VM] [--keep N]     drop old generations (default keep: config keepGenerations)
 *   unlock VM [--force]       remove a claim left behind (a crashed host, a lost release)
 *   repair [VM]               remove leftovers of interrupted writes, verify every generation, move corrupt ones aside
 *   vars, diff                see ./nvram-vars.ts
 *   enroll VM|FILE            add Secure Boot certificates/hashes to KEK/db, see ./nvram-enroll.ts
 *   boot VM|FILE              list or change boot entries (BootOrder, BootNext, Boot####), see ./nvram-boot.ts
 *   certs [VM...|--all [--match GLOB]]  Microsoft 2011/2023 Secure Boot certificate readiness per VM, see ./nvram-certs.ts
 *
 * VM = a name or UUID libvirt knows on this host, or the UUID of a VM only the archive knows.
 * Only this CLI asks libvirt (virsh) whether a VM is shut off; the hook never does.
 */
import { existsSync } from 'node:fs';
import type { Argv, CommandModule } from 'yargs';
import { getLocalState, readNvramSafely, resetNvram, restoreGeneration, sha256, type Archive, type CorruptGeneration } from '../../io';
import { type Config } from '../../core/config';
import { ArchiveCorruptError, isOvmfHookError, RefusedError, UsageError } from '../../core/errors';
import { isAutoRestorable, isExpired, newestRestorable, type ClaimInfo, type GenerationMeta, type LocalState } from '../../core/nvram';
import { genBase } from '../../io/archive';
import { readRegularFile } from '../../io/safe-fs';
import { lostMicrosoft2023 } from '../../core/varstore';
import { jsonOption, printJson } from '../output';
import { table } from '../table';
import { domainState } from '../../io/virsh';
import { changeLocalNvram } from '../local-nvram';
import { cliContext, managedNvram, resolveVm, type CliContext, type CliDeps, type Vm } from '../vm';
import { makeNvramBootCommand } from './nvram-boot';
import { makeNvramCertsCommand } from './nvram-certs';
import { makeNvramEnrollCommand } from './nvram-enroll';
import { generationArg, makeNvramDiffCommand, makeNvramVarsCommand, numberOption } from './nvram-vars';

// ─── output helpers ─────────────────────────────────────────────────────────────────────────

const print = (text: string): void => void process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
const short = (sha: string) => sha.slice(0, 12);
/** ISO time without milliseconds, easier to read in a table. */
const when = (iso: string | null | undefined) => (iso ? iso.replace('T', ' ').replace(/\.\d+Z$/, 'Z') : '-');
const vmRef = (vm: Vm) => ({ name: vm.name, uuid: vm.uuid, defined: vm.defined });
const plural = (n: number, one: string, many: string) => (n === 1 ? one : many);
const numbers = (ns: readonly number[]) => `${plural(ns.length, 'generation', 'generations')} ${ns.join(', ')}`;
/** How the admin names the VM on the command line: its name here, its UUID when only the archive knows it. */
const cliName = (vm: Vm) => (vm.defined ? vm.name : vm.uuid);

/** A listed generation with its data verified (size and sha256 against the metadata). */
type CheckedGeneration = GenerationMeta & { data: 'ok' | 'corrupt'; problem?: string };

/** Verify each generation's data, one at a time (≤ keepGenerations × a few MiB); one pruned meanwhile is left out. */
async function checkGenerations(archive: Archive, uuid: string, metas: readonly GenerationMeta[]): Promise<CheckedGeneration[]> {
  const checked: CheckedGeneration[] = [];
  for (const m of metas) {
    let problem: string | null;
    try {
      problem = await archive.verify(uuid, m.generation);
    } catch (e) {
      if (e instanceof UsageError) continue; // pruned since it was listed
      throw e;
    }
    checked.push(problem === null ? { ...m, data: 'ok' } : { ...m, data: 'corrupt', problem });
  }
  return checked;
}

/** The newest auto-restorable generation whose data verifies: what a start restores (corrupt ones are skipped). */
async function newestValid(archive: Archive, uuid: string, metas: readonly GenerationMeta[]): Promise<GenerationMeta | null> {
  for (const m of metas.filter((g) => isAutoRestorable(g.kind)).reverse()) {
    const problem = await archive.verify(uuid, m.generation).catch((e) => {
      if (e instanceof UsageError) return 'pruned';
      throw e;
    });
    if (problem === null) return m;
  }
  return null;
}
const claimText = (c: ClaimInfo | null) =>
  c ? `held by host ${c.host} (${c.hostId}) since ${when(c.since)}, expires ${c.expires ? when(c.expires) : 'never'}` : 'none';

// ─── list ───────────────────────────────────────────────────────────────────────────────────

interface LocalNvramInfo {
  path: string | null;
  /** why there is no local file to compare */
  note?: string;
  exists?: boolean;
  sha256?: string;
  size?: number;
  /** newest generation with the same content */
  sameAsGeneration?: number | null;
  /** equal to the newest auto-restorable generation (what a VM start restores) */
  equalsNewest?: boolean;
  /** per-host sync record */
  state?: LocalState | null;
}

async function localNvramInfo(vm: Vm, metas: readonly GenerationMeta[], config: Config): Promise<LocalNvramInfo> {
  if (!vm.nvram) return { path: null, note: vm.unmanaged };
  const state = await getLocalState(config.stateDir, vm.uuid).catch(() => null);
  let local;
  try {
    local = await readNvramSafely(vm.nvram);
  } catch (e) {
    if (!isOvmfHookError(e)) throw e;
    return { path: vm.nvram, note: e.message, state };
  }
  if (!local) return { path: vm.nvram, exists: false, state };
  const sha = sha256(local.data);
  const newest = newestRestorable(metas);
  return {
    path: vm.nvram,
    exists: true,
    sha256: sha,
    size: local.data.length,
    sameAsGeneration: metas.filter((m) => m.sha256 === sha).at(-1)?.generation ?? null,
    equalsNewest: newest !== null && newest.sha256 === sha,
    state,
  };
}

function localText(l: LocalNvramInfo, newest: GenerationMeta | null): string {
  if (!l.path) return `none (${l.note})`;
  if (l.note) return `${l.path}: ${l.note}`;
  if (!l.exists) return `${l.path} does not exist (provisioned at the next start)`;
  const same =
    l.equalsNewest && newest
      ? `equals generation ${newest.generation}, the newest`
      : `${newest ? `differs from generation ${newest.generation}, the newest` : 'nothing archived yet'}${
          l.sameAsGeneration ? ` (same as generation ${l.sameAsGeneration})` : newest ? ' (not archived yet)' : ''
        }`;
  return `${l.path}  sha256 ${short(l.sha256!)}  ${l.size} bytes: ${same}`;
}

async function listOne(ctx: CliContext, target: string, asJson: boolean): Promise<void> {
  const vm = await resolveVm(target, ctx);
  // a VM defined here before anything was archived: show its local NVRAM, do not create the archive
  const archive = existsSync(ctx.config.archiveDir) ? await ctx.archive() : null;
  const [metas, claim, moved] = archive
    ? await Promise.all([archive.list(vm.uuid), archive.claimInfo(vm.uuid), archive.listCorrupt(vm.uuid)])
    : [[], null, [] as CorruptGeneration[]];
  const generations = archive ? await checkGenerations(archive, vm.uuid, metas) : [];
  // what a start restores: corrupt generations are skipped for the newest valid one
  const valid = generations.filter((g) => g.data === 'ok');
  const local = await localNvramInfo(vm, valid, ctx.config);
  const newest = newestRestorable(valid);
  const root = archive?.root ?? ctx.config.archiveDir;
  if (asJson) {
    const corrupt = moved.map((c) => ({ ...(c.meta ?? { generation: c.generation }), data: 'corrupt', movedAside: true }));
    printJson({ vm: vmRef(vm), archive: root, generations, corrupt, newestRestorable: newest?.generation ?? null, claim, local });
    return;
  }
  const rows: { n: number; cells: string[] }[] = [
    ...generations.map((g) => ({
      n: g.generation,
      cells: [`${g.generation === newest?.generation ? '*' : ''}${g.generation}`, g.data === 'ok' ? g.kind : `${g.kind} CORRUPT`, short(g.sha256), String(g.size), when(g.time), g.host, g.reason],
    })),
    ...moved.map(({ generation: n, meta: m }) => ({
      n,
      cells: m
        ? [String(n), `${m.kind}, moved aside (corrupt)`, short(m.sha256), String(m.size), when(m.time), m.host, m.reason]
        : [String(n), 'moved aside (corrupt)', '-', '-', '-', '-', '-'],
    })),
  ].sort((a, b) => a.n - b.n);
  const broken = generations.filter((g) => g.data === 'corrupt');
  const notes = [
    newest
      ? '* = the newest auto-restorable generation whose data verifies (what the next start restores)'
      : generations.length
        ? `no ${broken.some((g) => isAutoRestorable(g.kind)) ? 'valid ' : ''}auto-restorable generation`
        : null,
    ...broken.map((g) => `generation ${g.generation} is corrupt (${g.problem}): it is never restored; \`ovmf-hook nvram repair ${cliName(vm)}\` moves it aside`),
    moved.length
      ? `${numbers(moved.map((c) => c.generation))} ${plural(moved.length, 'was', 'were')} moved aside as corrupt (never restored; gen-NNNNNN.corrupt.fd/.json kept for inspection)`
      : null,
  ].filter((l): l is string => l !== null);
  print(
    [
      `VM ${vm.name}  ${vm.uuid}${vm.defined ? '' : '  (not defined on this host)'}  archive ${root}`,
      rows.length
        ? [table([['GEN', 'KIND', 'SHA256', 'SIZE', 'TIME', 'HOST', 'REASON'], ...rows.map((r) => r.cells)]).trimEnd(), ...notes].join('\n')
        : 'no archived generations',
      table([
        ['claim', claimText(claim)],
        ['local', localText(local, newest)],
        ...(local.state ? [['synced', `generation ${local.state.generation ?? '-'} at ${when(local.state.time)}`]] : []),
      ]).trimEnd(),
    ].join('\n'),
  );
}

async function listAll(archive: Archive, asJson: boolean): Promise<void> {
  const vms = await Promise.all(
    (await archive.listVms()).map(async (uuid) => {
      const [metas, claim, moved] = await Promise.all([archive.list(uuid), archive.claimInfo(uuid), archive.listCorrupt(uuid)]);
      const last = metas.at(-1) ?? null;
      return {
        uuid,
        name: last?.vmName ?? claim?.vmName ?? [...moved].reverse().find((c) => c.meta)?.meta?.vmName ?? null,
        generations: metas.length,
        newest: last,
        newestRestorable: newestRestorable(metas)?.generation ?? null,
        claim,
        // generations moved aside as corrupt (data is not verified here: see nvram list VM, nvram repair)
        corrupt: moved.map((c) => c.generation),
      };
    }),
  );
  if (asJson) return printJson({ archive: archive.root, vms });
  if (!vms.length) return print(`no VMs in the archive ${archive.root}`);
  const moved = vms.filter((v) => v.corrupt.length);
  print(
    table([
      ['UUID', 'NAME', 'GENS', 'NEWEST', 'TIME', 'CLAIM', 'CORRUPT'],
      ...vms.map((v) => [
        v.uuid,
        v.name ?? '-',
        String(v.generations),
        v.newest ? `${v.newest.generation} ${v.newest.kind}` : '-',
        when(v.newest?.time),
        v.claim?.host ?? '-',
        v.corrupt.length ? `${v.corrupt.join(', ')} moved aside` : '-',
      ]),
    ]) + (moved.length ? 'CORRUPT = generations found corrupt and moved aside (never restored); details: ovmf-hook nvram list VM\n' : ''),
  );
}

async function list(argv: { vm?: string; json: boolean }, deps: CliDeps): Promise<void> {
  const ctx = cliContext(deps);
  if (argv.vm !== undefined) return listOne(ctx, argv.vm, argv.json);
  if (existsSync(ctx.config.archiveDir)) return listAll(await ctx.archive(), argv.json);
  if (argv.json) return printJson({ archive: ctx.config.archiveDir, vms: [] });
  print(`no VMs in the archive: ${ctx.config.archiveDir} does not exist yet`);
}

// ─── show ───────────────────────────────────────────────────────────────────────────────────

async function show(argv: { vm: string; generation?: number; json: boolean }, deps: CliDeps): Promise<void> {
  const ctx = cliContext(deps);
  const vm = await resolveVm(argv.vm, ctx);
  const archive = await ctx.archive();
  const metas = await archive.list(vm.uuid);
  const meta = argv.generation === undefined ? metas.at(-1) : metas.find((m) => m.generation === argv.generation);
  if (!meta) {
    const moved = argv.generation === undefined ? undefined : (await archive.listCorrupt(vm.uuid)).find((c) => c.generation === argv.generation);
    if (moved) return showMovedAside(vm, moved, argv.json);
    if (!metas.length) throw new UsageError(`${vm.name} has no archived generations (the archive gets one when the VM stops)`);
    throw new UsageError(`${vm.name} has no generation ${argv.generation}; see: ovmf-hook nvram list ${vm.name}`);
  }
  let data: { ok: boolean; problem?: string };
  try {
    await archive.read(vm.uuid, meta.generation);
    data = { ok: true };
  } catch (e) {
    if (!(e instanceof ArchiveCorruptError)) throw e;
    data = { ok: false, problem: e.message };
  }
  const autoRestorable = isAutoRestorable(meta.kind);
  // what a start restores: the newest auto-restorable generation whose data verifies
  const isNewest = data.ok && autoRestorable && (await newestValid(archive, vm.uuid, metas))?.generation === meta.generation;
  if (argv.json) {
    printJson({ vm: vmRef(vm), ...meta, autoRestorable, newestRestorable: isNewest, data });
    return;
  }
  print(
    table([
      ['vm', `${meta.vmName} (${vm.uuid})`],
      ['generation', `${meta.generation} of ${metas.at(-1)!.generation}${isNewest ? ' (the newest auto-restorable)' : ''}`],
      ...metaRows(meta, autoRestorable ? '' : ' (never restored automatically; use nvram restore --generation)'),
      ['data', data.ok ? 'ok (size and sha256 verified)' : `CORRUPT: ${data.problem}`],
    ]),
  );
}

/** The `nvram show` rows of a generation's metadata from its kind on (`kindNote` follows the kind). */
const metaRows = (meta: GenerationMeta, kindNote = ''): string[][] => [
  ['kind', `${meta.kind}${kindNote}`],
  ['sha256', meta.sha256],
  ['size', String(meta.size)],
  ['time', when(meta.time)],
  ['host', `${meta.host} (${meta.hostId})`],
  ['reason', meta.reason],
  ['based on', meta.basedOn ? `generation ${meta.basedOn}` : '-'],
];

/** A generation moved aside as corrupt: its metadata as far as it is readable, never restored. */
function showMovedAside(vm: Vm, { generation, meta }: CorruptGeneration, asJson: boolean): void {
  const file = `${genBase(generation)}.corrupt.fd`;
  const problem = `moved aside as corrupt (${file}): never restored`;
  if (asJson) {
    printJson({ vm: vmRef(vm), ...(meta ?? { generation }), autoRestorable: false, newestRestorable: false, data: { ok: false, movedAside: true, problem } });
    return;
  }
  print(
    table([
      ['vm', `${meta?.vmName ?? vm.name} (${vm.uuid})`],
      ['generation', `${generation} (moved aside: never restored; its number is not reused)`],
      ...(meta ? metaRows(meta) : [['metadata', 'unreadable']]),
      ['data', `CORRUPT (moved aside; kept as ${file} for inspection)`],
    ]),
  );
}

// ─── restore / reset ────────────────────────────────────────────────────────────────────────

/**
 * The guard of restore and reset: the NVRAM about to be written (`what`: "generation 3", "the
 * template …") trusts fewer Microsoft 2023 Secure Boot certificates than the local one. Without
 * --force a refusal naming them (exit 1); with it a warning, and the names are kept for the output.
 */
function certificateGuard(vm: Vm, verb: 'restore' | 'reset', what: string, force: boolean) {
  const guard = {
    lost: [] as string[],
    check: (lost: readonly string[]): void => {
      if (!lost.length) return;
      const again = `ovmf-hook nvram enroll ${cliName(vm)} --ms-2023`;
      if (!force)
        throw new RefusedError(
          `${vm.name}: ${what} trusts fewer Microsoft 2023 Secure Boot certificates than the current NVRAM; nvram ${verb} would drop ${lost.join(', ')} (a guest whose boot manager is signed by Windows UEFI CA 2023 may no longer boot): add --force to ${verb} anyway, then add them again with ${again}`,
        );
      guard.lost = [...lost];
      process.stderr.write(`ovmf-hook: warning: ${vm.name}: ${what} does not trust ${lost.join(', ')}, which the NVRAM it replaces did; add them again with: ${again}\n`);
    },
  };
  return guard;
}

/**
 * The guard's look before the VM lock, so that a refusal writes nothing (asked again under the
 * lock): `read` gives the local NVRAM and what would replace it. A read that fails is left to the
 * locked step, which reports it in its own order.
 */
async function lookFirst(guard: ReturnType<typeof certificateGuard>, nvramPath: string, next: () => Promise<Uint8Array | null>): Promise<void> {
  let pair: [Uint8Array | null, Uint8Array | null];
  try {
    const local = (await readNvramSafely(nvramPath))?.data ?? null;
    pair = [local, local && (await next())];
  } catch {
    return;
  }
  if (pair[0] && pair[1]) guard.check(lostMicrosoft2023(pair[0], pair[1]));
}

async function restore(argv: { vm: string; generation?: number; force: boolean; json: boolean }, deps: CliDeps): Promise<void> {
  const ctx = cliContext(deps);
  const vm = await resolveVm(argv.vm, ctx);
  const nvramPath = managedNvram(vm);
  const archive = await ctx.archive();
  const generation = argv.generation ?? (await archive.newest(vm.uuid))?.generation;
  if (generation === undefined) throw new UsageError(`${vm.name} has no auto-restorable generation; pick one with --generation N (see: ovmf-hook nvram list ${vm.name})`);
  const guard = certificateGuard(vm, 'restore', `generation ${generation}`, argv.force);
  if (!argv.force) await lookFirst(guard, nvramPath, () => archive.read(vm.uuid, generation));
  const r = await changeLocalNvram(ctx, vm, nvramPath, archive, 'restore', (o) => restoreGeneration({ ...o, generation, onCertificatesLost: guard.check }));
  if (argv.json) return printJson({ vm: vmRef(vm), nvram: nvramPath, ...r, lostCertificates: guard.lost });
  print(
    `${vm.name}: restored generation ${r.from} to ${nvramPath}; ${r.generation === r.from ? 'it is the newest generation' : `archived again as generation ${r.generation}, the newest`}` +
      (r.displaced ? `; the previous local NVRAM is kept as generation ${r.displaced}` : ''),
  );
}

async function reset(argv: { vm: string; force: boolean; json: boolean }, deps: CliDeps): Promise<void> {
  const ctx = cliContext(deps);
  const vm = await resolveVm(argv.vm, ctx);
  const nvramPath = managedNvram(vm);
  if (!vm.template) throw new UsageError(`${vm.name}: no OVMF VARS template known for its firmware; set <nvram template='…'> in the domain`);
  const template = vm.template;
  const guard = certificateGuard(vm, 'reset', `the template ${template}`, argv.force);
  if (!argv.force) await lookFirst(guard, nvramPath, async () => (await readRegularFile(template, { noFollow: false, singleLink: false }))?.data ?? null);
  const archive = await ctx.archive({ create: true });
  const r = await changeLocalNvram(ctx, vm, nvramPath, archive, 'reset', (o) => resetNvram({ ...o, templatePath: template, onCertificatesLost: guard.check }));
  if (argv.json) return printJson({ vm: vmRef(vm), nvram: nvramPath, template: vm.template, ...r, lostCertificates: guard.lost });
  print(
    `${vm.name}: reset ${nvramPath} to the template ${vm.template} (archived as generation ${r.generation})` +
      (r.saved ? `; the previous NVRAM is kept as generation ${r.saved}` : ''),
  );
}

// ─── prune ──────────────────────────────────────────────────────────────────────────────────

async function prune(argv: { vm?: string; keep?: number; json: boolean }, deps: CliDeps): Promise<void> {
  const ctx = cliContext(deps);
  const keep = argv.keep ?? ctx.config.keepGenerations;
  const vm = argv.vm === undefined ? undefined : await resolveVm(argv.vm, ctx);
  const archive = await ctx.archive();
  const targets = vm
    ? [vm]
    : await Promise.all((await archive.listVms()).map(async (uuid) => ({ uuid, name: (await archive.list(uuid).catch(() => [])).at(-1)?.vmName ?? uuid })));
  const results: { uuid: string; name: string; removed: number[]; error?: string }[] = [];
  for (const t of targets) {
    try {
      results.push({ uuid: t.uuid, name: t.name, removed: await archive.prune(t.uuid, keep) });
    } catch (e) {
      if (!isOvmfHookError(e)) throw e;
      results.push({ uuid: t.uuid, name: t.name, removed: [], error: e.message });
    }
  }
  if (argv.json) printJson({ keep, vms: results });
  else if (!results.length) print(`no VMs in the archive ${archive.root}`);
  else
    print(
      table(
        results.map((r) => [
          r.name,
          r.uuid,
          r.error ? `FAILED: ${r.error}` : r.removed.length ? `removed generation${r.removed.length > 1 ? 's' : ''} ${r.removed.join(', ')}` : `nothing to remove (keep ${keep})`,
        ]),
      ),
    );
  const failed = results.filter((r) => r.error);
  if (failed.length) throw new RefusedError(`prune failed for ${failed.map((r) => r.name).join(', ')}: ${failed[0].error}`);
}

// ─── repair ─────────────────────────────────────────────────────────────────────────────────

/**
 * Leftovers younger than this are kept: a writer (maybe on another host sharing the archive) may
 * still be at work on them. The same margin as the hook's own sweep (LEFTOVER_AGE_MS, lifecycle.ts).
 */
const REPAIR_AGE_MS = 3600_000;
const duration = (ms: number) => (ms % 3600_000 === 0 ? `${ms / 3600_000} h` : `${Math.round(ms / 60_000)} min`);

/** What repair did about leftovers: removed, kept (too young to tell from a writer in progress), or none. */
function leftoverText(r: { removed: string[]; kept: string[] }): string {
  const files = (n: number, what: string) => `${n} ${what}${n === 1 ? '' : 's'}`;
  const parts = [
    ...(r.removed.length ? [`removed ${files(r.removed.length, 'leftover file')}`] : []),
    ...(r.kept.length
      ? [`kept ${files(r.kept.length, 'leftover')} younger than ${duration(REPAIR_AGE_MS)} (a writer may still be running); run nvram repair again later`]
      : []),
  ];
  return parts.length ? parts.join('; ') : 'no leftovers';
}

async function repair(argv: { vm?: string; json: boolean }, deps: CliDeps): Promise<void> {
  const ctx = cliContext(deps);
  const vm = argv.vm === undefined ? undefined : await resolveVm(argv.vm, ctx);
  const archive = await ctx.archive();
  const uuids = vm ? [vm.uuid] : await archive.listVms();
  const results: { uuid: string; removed: string[]; kept: string[]; corrupt: number[]; error?: string }[] = [];
  for (const uuid of uuids) {
    try {
      results.push({ uuid, ...(await archive.repair(uuid, { olderThanMs: REPAIR_AGE_MS })) });
    } catch (e) {
      if (!isOvmfHookError(e)) throw e;
      results.push({ uuid, removed: [], kept: [], corrupt: [], error: e.message });
    }
  }
  if (argv.json) printJson({ vms: results });
  else if (!results.length) print(`no VMs in the archive ${archive.root}`);
  else
    print(
      table(
        results.map((r) => [
          r.uuid,
          r.error
            ? `FAILED: ${r.error}`
            : [leftoverText(r), r.corrupt.length ? `moved aside corrupt ${numbers(r.corrupt)}` : 'all generations verify'].join('; '),
        ]),
      ),
    );
  // exit 1 either way: corrupt data (now moved aside, never restored) is for the admin to look into
  const corrupt = results.filter((r) => !r.error && r.corrupt.length);
  const failed = results.filter((r) => r.error);
  const problems = [
    ...(corrupt.length
      ? [
          `moved aside corrupt ${corrupt.map((r) => `${numbers(r.corrupt)} of ${r.uuid}`).join('; ')} (never restored; the newest valid generation is restored instead); see: ovmf-hook nvram list ${corrupt.length === 1 ? corrupt[0]!.uuid : 'VM'}`,
        ]
      : []),
    ...(failed.length
      ? [
          `${failed.length} VM archive${failed.length > 1 ? 's' : ''} could not be repaired (${failed[0]!.error}); move the named files out of ${archive.root} and run nvram repair again`,
        ]
      : []),
  ];
  if (problems.length) throw new RefusedError(problems.join('; '));
}

// ─── unlock ─────────────────────────────────────────────────────────────────────────────────

async function unlock(argv: { vm: string; force: boolean; json: boolean }, deps: CliDeps, now: () => Date): Promise<void> {
  const ctx = cliContext(deps);
  const vm = await resolveVm(argv.vm, ctx);
  const archive = await ctx.archive();
  const claim = await archive.claimInfo(vm.uuid);
  if (!claim) {
    // a pending live-migration hand-over without a claim (docs/CLUSTER.md) refuses starts too
    const incoming = await archive.incomingInfo(vm.uuid);
    if (incoming) await archive.dropIncoming(vm.uuid, incoming.token);
    if (argv.json) return printJson({ vm: vmRef(vm), unlocked: null, ...(incoming ? { incoming } : {}) });
    return print(incoming ? `${vm.name}: no claim; removed the incoming-migration record of host ${incoming.host} (since ${when(incoming.time)})` : `${vm.name}: no claim to unlock`);
  }
  const ours = claim.hostId === archive.hostId;
  if (!argv.force) {
    if (ours && vm.defined) {
      const state = await domainState(ctx.virsh, vm.uuid);
      if (state !== 'shut off')
        throw new RefusedError(`${vm.name} is ${state} on this host, which holds its NVRAM claim; unlocking would fence its next archive: shut it down first (or add --force)`);
    }
    if (!ours && !isExpired(claim, now()))
      throw new RefusedError(
        `${vm.name}: the NVRAM claim is held by host ${claim.host} since ${when(claim.since)} (expires ${claim.expires ? when(claim.expires) : 'never'}); the VM may be running there: check on ${claim.host}, then run: ovmf-hook nvram unlock ${vm.name} --force`,
      );
  }
  const removed = await archive.breakClaim(vm.uuid);
  if (argv.json) return printJson({ vm: vmRef(vm), unlocked: removed });
  if (!removed) return print(`${vm.name}: the claim was released meanwhile; nothing to unlock`);
  print(
    `${vm.name}: unlocked: removed the claim of host ${removed.host} (since ${when(removed.since)})` +
      (removed.hostId === archive.hostId ? '' : `; if ${removed.host} still runs the VM, its next archive is kept as a fenced generation (never restored automatically)`),
  );
}

// ─── command tree ───────────────────────────────────────────────────────────────────────────

const vmPositional = { type: 'string', demandOption: true, describe: 'VM name or UUID (a UUID also works for VMs only the archive knows)' } as const;

export interface NvramCommandDeps extends CliDeps {
  /** Clock for claim expiry; default `new Date()`. */
  now?: () => Date;
}

/** The `nvram` command with its subcommands; `deps` replaces libvirt / the config in tests. */
export function makeNvramCommand(deps: NvramCommandDeps = {}): CommandModule<object, any> {
  const now = deps.now ?? (() => new Date());
  const sub: CommandModule<object, any>[] = [
    {
      command: 'list [vm]',
      describe: "List archived VMs, or one VM's generations, claim and local NVRAM",
      builder: (y: Argv) => y.positional('vm', { type: 'string', describe: 'VM name or UUID (default: every VM in the archive)' }).option('json', jsonOption()),
      handler: (a) => list({ vm: a.vm === undefined ? undefined : String(a.vm), json: a.json === true }, deps),
    },
    {
      command: 'show <vm>',
      describe: "Show one archived generation's metadata and verify its data",
      builder: (y: Argv) => y.positional('vm', vmPositional).option('generation', numberOption('generation number (default: the newest)')).option('json', jsonOption()),
      handler: (a) => show({ vm: String(a.vm), generation: generationArg(a.generation), json: a.json === true }, deps),
    },
    {
      command: 'restore <vm>',
      describe: 'Write an archived generation back to the local NVRAM of a shut-off VM',
      builder: (y: Argv) =>
        y
          .positional('vm', vmPositional)
          .option('generation', numberOption('generation number (default: the newest auto-restorable)'))
          .option('force', { type: 'boolean', default: false, describe: 'also when the generation trusts fewer Microsoft 2023 Secure Boot certificates than the current NVRAM' })
          .option('json', jsonOption()),
      handler: (a) => restore({ vm: String(a.vm), generation: generationArg(a.generation), force: a.force === true, json: a.json === true }, deps),
    },
    {
      command: 'reset <vm>',
      describe: "Reset a shut-off VM's NVRAM to the OVMF template (the old one is kept as a generation)",
      builder: (y: Argv) =>
        y
          .positional('vm', vmPositional)
          .option('force', { type: 'boolean', default: false, describe: 'also when the template trusts fewer Microsoft 2023 Secure Boot certificates than the current NVRAM' })
          .option('json', jsonOption()),
      handler: (a) => reset({ vm: String(a.vm), force: a.force === true, json: a.json === true }, deps),
    },
    {
      command: 'prune [vm]',
      describe: 'Remove old generations of one VM or of every VM in the archive',
      builder: (y: Argv) =>
        y
          .positional('vm', { type: 'string', describe: 'VM name or UUID (default: every VM in the archive)' })
          .option('keep', numberOption('generations to keep (default: keepGenerations of the config)'))
          .option('json', jsonOption()),
      handler: (a) => prune({ vm: a.vm === undefined ? undefined : String(a.vm), keep: generationArg(a.keep, '--keep'), json: a.json === true }, deps),
    },
    {
      command: 'unlock <vm>',
      describe: "Remove a VM's NVRAM claim left by a crashed host or a lost release",
      builder: (y: Argv) =>
        y
          .positional('vm', vmPositional)
          .option('force', { type: 'boolean', default: false, describe: 'also when another host holds a live claim, or the VM runs here' })
          .option('json', jsonOption()),
      handler: (a) => unlock({ vm: String(a.vm), force: a.force === true, json: a.json === true }, deps, now),
    },
    {
      command: 'repair [vm]',
      describe: 'Remove leftovers of interrupted writes (older than 1 h), verify every generation and move corrupt ones aside',
      builder: (y: Argv) => y.positional('vm', { type: 'string', describe: 'VM name or UUID (default: every VM in the archive)' }).option('json', jsonOption()),
      handler: (a) => repair({ vm: a.vm === undefined ? undefined : String(a.vm), json: a.json === true }, deps),
    },
    makeNvramVarsCommand(deps),
    makeNvramDiffCommand(deps),
    makeNvramEnrollCommand(deps),
    makeNvramBootCommand(deps),
    makeNvramCertsCommand(deps),
  ];
  return {
    command: 'nvram',
    describe: 'Inspect and manage VMs\' UEFI NVRAM and its archive',
    builder: (y: Argv) => {
      for (const c of sub) y.command(c);
      return y.demandCommand(1, 'name an nvram subcommand: list, show, restore, reset, prune, unlock, repair, vars, diff, enroll, boot, certs');
    },
    handler: () => {},
  };
}

export const nvramCommand = makeNvramCommand();
