/**
 * `ovmf-hook nvram enroll VM|FILE [--ms-2023] [--add-kek CERT]… [--add-db CERT]… [--add-db-hash SHA256]…
 *                         [--set-dbx FILE] [--owner GUID] [--output OUT | --in-place] [--dry-run] [--force] [--json]`
 *
 * Adds Secure Boot certificates and hashes to KEK and db of a variable store, offline, and with
 * `--set-dbx` replaces dbx by a signed DBX update (its content and timestamp; the signature is not
 * verified: see src/core/varstore/signed-update.ts):
 *   - VM (name or UUID): its local NVRAM, like `nvram restore`: the VM must be shut off (asked under
 *     the VM's lock), the current NVRAM is archived first and the result becomes the newest
 *     generation (undo: `nvram restore VM --generation <the copy>`). A VM with a TPM is refused
 *     unless --force: KEK/db are measured into PCR7, so BitLocker asks for its recovery key.
 *   - FILE (a path: contains "/" or names an existing file): written to `--output OUT` (a new file)
 *     or `--in-place`.
 * `--ms-2023`: Microsoft's 2023 certificates (src/core/varstore/microsoft-2023.ts), owner Microsoft.
 * Entries already present are reported and left out; `--dry-run` only reports. Refusals are one line,
 * and nothing is written then.
 */
import { statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Argv, CommandModule } from 'yargs';
import { isOvmfHookError, RefusedError, UsageError, VarstoreError } from '../../core/errors';
import {
  enrolledSummary,
  enrollSignatures,
  lostMicrosoft2023,
  microsoft2023Entries,
  MICROSOFT_2023_CERTIFICATES,
  MICROSOFT_OWNER,
  normalizeGuid,
  parseCertificates,
  parseSignedUpdate,
  type EnrollEntry,
  type EnrollItem,
  type EnrollOptions,
  type EnrollResult,
  SUSPEND_BITLOCKER,
} from '../../core/varstore';
import { enrollNvram, readNvramSafely } from '../../io';
import { checkFileTarget, writeFileTarget } from '../file-target';
import { changeLocalNvram } from '../local-nvram';
import { jsonOption, printJson } from '../output';
import { table } from '../table';
import { cliContext, managedNvram, requireShutOff, resolveVm, type CliDeps, type Vm } from '../vm';
import { isFileTarget, loadBytes } from './nvram-vars';

/** SignatureOwner of certificates and hashes given with --add-* (unless --owner): ovmf-hook's own GUID. */
export const OVMF_HOOK_OWNER = 'bc2a7257-8555-4a15-a5ed-9364623e3175';
/** Largest certificate or DBX update file read. */
const MAX_CERT_BYTES = 1024 * 1024;

type DbxRequest = NonNullable<EnrollOptions['dbx']>;

export interface EnrollArgs {
  target: string;
  ms2023: boolean;
  addKek: string[];
  addDb: string[];
  addDbHash: string[];
  /** A signed DBX update file whose content replaces dbx. */
  setDbx?: string;
  owner?: string;
  output?: string;
  inPlace: boolean;
  dryRun: boolean;
  force: boolean;
  json: boolean;
}

const print = (text: string): void => void process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
const plural = (n: number, one: string, many: string) => `${n} ${n === 1 ? one : many}`;

/** The refusal for a VM with a TPM (one line: why, and what to do first). */
export const tpmRefusal = (vm: string): string =>
  `${vm} has a TPM: changing KEK/db changes the Secure Boot measurement in PCR7, so BitLocker (or anything sealed to PCR7) asks for its recovery key at the next boot; ` +
  `suspend BitLocker in the guest first (${SUSPEND_BITLOCKER}), shut the VM down, then run this again with --force`;

/** Strings of a repeatable option (yargs gives a string, an array, or nothing). */
const many = (v: unknown): string[] => (v === undefined || v === null ? [] : (Array.isArray(v) ? v : [v]).map(String));

/** A small input file (certificate, DBX update); `what` says what it should be. */
async function readInputFile(file: string, what: string): Promise<Buffer> {
  try {
    const st = statSync(file);
    if (!st.isFile()) throw new UsageError(`${file}: not a regular file; give ${what}`);
    if (st.size > MAX_CERT_BYTES) throw new VarstoreError(`${file}: ${st.size} bytes is too big for ${what}`);
    return await readFile(file);
  } catch (e) {
    if (isOvmfHookError(e)) throw e;
    throw new UsageError(`${file}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message}`);
  }
}

async function readCertificateFile(file: string, variable: 'KEK' | 'db', owner: string): Promise<EnrollEntry[]> {
  if (file === '') throw new UsageError(`--add-${variable.toLowerCase()} needs a certificate file (PEM or DER)`);
  const bytes = await readInputFile(file, 'a PEM or DER certificate file');
  return parseCertificates(bytes, file).map((certificate) => ({ variable, owner, source: file, kind: 'x509' as const, certificate }));
}

/** `--set-dbx FILE`: the signed update, refused in one line (exit 2) when the file is not one. */
async function readDbxUpdate(file: string | undefined): Promise<DbxRequest | undefined> {
  if (file === undefined) return undefined;
  if (file === '') throw new UsageError('--set-dbx needs a signed DBX update file (e.g. Microsoft\'s DBXUpdate.bin)');
  return { update: parseSignedUpdate(await readInputFile(file, 'a signed DBX update file'), file), source: file };
}

/** Everything the options ask to enrol, in output order: --ms-2023, --add-kek, --add-db, --add-db-hash. */
async function requestedEntries(a: EnrollArgs): Promise<EnrollEntry[]> {
  const owner = a.owner === undefined ? OVMF_HOOK_OWNER : normalizeGuid(a.owner);
  const entries: EnrollEntry[] = [];
  if (a.ms2023) entries.push(...microsoft2023Entries('--ms-2023'));
  for (const f of a.addKek) entries.push(...(await readCertificateFile(f, 'KEK', owner)));
  for (const f of a.addDb) entries.push(...(await readCertificateFile(f, 'db', owner)));
  for (const h of a.addDbHash) {
    const hash = h.trim().toLowerCase();
    if (!/^[0-9a-f]{64}$/.test(hash)) throw new UsageError(`--add-db-hash ${JSON.stringify(h)} is not a SHA-256 hash (64 hex digits)`);
    entries.push({ variable: 'db', owner, source: '--add-db-hash', kind: 'sha256', hash });
  }
  return entries;
}

/** `KEK +1, db +3` (variables with additions only), and `dbx replaced (N entries)` when it was. */
const addedText = enrolledSummary;

const itemRows = (items: readonly EnrollItem[], dryRun: boolean, dbx?: EnrollResult['dbx']): string =>
  table([
    ...items.map((i) => [
      i.variable,
      i.status === 'present' ? 'present' : dryRun ? 'would add' : 'added',
      i.kind === 'x509' ? i.name : `sha256 ${i.name}`,
      i.status === 'present' ? `already in ${i.variable}` : `${i.source}${i.owner === MICROSOFT_OWNER ? ', owner Microsoft' : ''}`,
    ]),
    ...(dbx
      ? [
          [
            'dbx',
            dbx.status === 'unchanged' ? 'present' : dryRun ? 'would replace' : 'replaced',
            `${plural(dbx.entries, 'entry', 'entries')} (before: ${dbx.before})`,
            dbx.status === 'unchanged' ? `dbx holds this update already` : `${dbx.source}, timestamp ${dbx.timestamp}`,
          ],
        ]
      : []),
  ]);

/** Entries added and dbx replaced, counted for "would add … / would replace …". */
const wouldText = (r: EnrollResult): string => {
  const n = r.items.filter((i) => i.status === 'added').length;
  const kekDb = addedText(r.items);
  return [
    ...(n > 0 ? [`add ${plural(n, 'entry', 'entries')} (${kekDb})`] : []),
    ...(r.dbx?.status === 'replaced' ? [`replace dbx (${plural(r.dbx.entries, 'entry', 'entries')}, timestamp ${r.dbx.timestamp})`] : []),
  ].join(' and ');
};

/** Nothing would change: why, in words. */
const nothingText = (r: EnrollResult): string => (r.dbx && r.items.length === 0 ? 'dbx holds this update already' : r.dbx ? 'every entry is already present and dbx holds this update already' : 'every entry is already present');

/** The options that name the request, for the generation's reason. */
const requestText = (a: EnrollArgs): string =>
  [
    ...(a.ms2023 ? ['--ms-2023'] : []),
    ...a.addKek.map((f) => `--add-kek ${path.basename(f)}`),
    ...a.addDb.map((f) => `--add-db ${path.basename(f)}`),
    ...(a.addDbHash.length ? [`--add-db-hash ×${a.addDbHash.length}`] : []),
    ...(a.setDbx !== undefined ? [`--set-dbx ${path.basename(a.setDbx)}`] : []),
  ].join(' ');

/** Run the pure enrolment on `bytes`, naming `label` in its errors. */
function enroll(bytes: Uint8Array, entries: readonly EnrollEntry[], label: string, noKeysHint: string, dbx: DbxRequest | undefined): EnrollResult {
  try {
    return enrollSignatures(bytes, entries, { noKeysHint, ...(dbx ? { dbx } : {}) });
  } catch (e) {
    if (e instanceof VarstoreError) throw new VarstoreError(`${label}: ${e.message}`);
    if (e instanceof RefusedError) throw new RefusedError(`${label}: ${e.message}`);
    throw e;
  }
}

function check(a: EnrollArgs, file: boolean): void {
  if (!a.ms2023 && !a.addKek.length && !a.addDb.length && !a.addDbHash.length && a.setDbx === undefined)
    throw new UsageError('name what to enrol: --ms-2023, --add-kek CERT, --add-db CERT, --add-db-hash SHA256 or --set-dbx FILE');
  if (a.output !== undefined && a.inPlace) throw new UsageError('give either --output OUT or --in-place, not both');
  if (!file && (a.output !== undefined || a.inPlace))
    throw new UsageError(`${a.target} is a VM: its NVRAM is changed in place (archived first); --output and --in-place apply to a FILE (a path)`);
  if (file && !a.dryRun && a.output === undefined && !a.inPlace)
    throw new UsageError(`${a.target} is a file: write the result to --output OUT (a new file) or change it with --in-place (or look first with --dry-run)`);
}

// ─── FILE ───────────────────────────────────────────────────────────────────────────────────

const FILE_HINT = 'enrol into a copy of a Secure Boot template instead (e.g. /usr/share/OVMF/OVMF_VARS_4M.ms.fd)';

async function enrollFile(a: EnrollArgs, entries: readonly EnrollEntry[], dbx: DbxRequest | undefined, deps: CliDeps): Promise<void> {
  const file = a.target;
  checkFileTarget(file, a, deps, { verb: 'enrol', command: 'ovmf-hook nvram enroll VM' });
  const r = enroll(await loadBytes(file), entries, file, FILE_HINT, dbx);
  const written = await writeFileTarget(file, a, r);
  if (a.json)
    return printJson({ target: file, file, dryRun: a.dryRun, changed: r.changed, written: written ?? null, items: r.items, dbx: r.dbx ?? null, timestamps: r.timestamps, free: r.free });
  const added = addedText(r.items, r.dbx);
  print(
    itemRows(r.items, a.dryRun, r.dbx) +
      (a.dryRun
        ? r.changed
          ? `dry run: would ${wouldText(r)} ${r.items.some((i) => i.status === 'added') ? 'to' : 'in'} ${file}; nothing written`
          : r.dbx
            ? `dry run: ${nothingText(r)} (${file}); nothing to change`
            : `dry run: every entry is already in ${file}; nothing to add`
        : !r.changed
          ? `${file}: ${nothingText(r)}; ${written ? `${written} written unchanged` : 'nothing written'}`
          : `${file}: ${r.items.some((i) => i.status === 'added') ? 'added ' : ''}${added}; written to ${written}${written === file ? ' (in place)' : ''}`),
  );
}

// ─── VM ─────────────────────────────────────────────────────────────────────────────────────

async function enrollVm(a: EnrollArgs, entries: readonly EnrollEntry[], dbx: DbxRequest | undefined, deps: CliDeps): Promise<void> {
  const ctx = cliContext(deps);
  const vm: Vm = await resolveVm(a.target, ctx);
  const nvramPath = managedNvram(vm);
  const hint = `enrol into a Secure Boot template first: give the domain the Microsoft-keys template (<nvram template='…/OVMF_VARS_4M.ms.fd'>, as ovmf-hook convert ${vm.name} --secure-boot does), then run ovmf-hook nvram reset ${vm.name}`;
  if (vm.tpm && !a.force && !a.dryRun) throw new RefusedError(tpmRefusal(vm.name));
  // Refusals that need no lock come first, so that a refused enrolment touches nothing (not even
  // the archive or state directory); the lock-held step below asks "shut off?" again and redoes
  // the enrolment on what the file holds then.
  if (!a.dryRun) await requireShutOff(vm, ctx.virsh, 'enroll');
  const local = await readNvramSafely(nvramPath);
  if (!local) throw new UsageError(`${vm.name}: its NVRAM ${nvramPath} does not exist yet; start the VM once (libvirt creates it from the template), shut it down, then enrol`);
  const preview = enroll(local.data, entries, vm.name, hint, dbx);
  if (vm.tpm)
    process.stderr.write(
      `ovmf-hook: warning: ${a.force ? `${vm.name} has a TPM: PCR7 changes with KEK/db; BitLocker asks for its recovery key unless it was suspended (${SUSPEND_BITLOCKER})` : `${tpmRefusal(vm.name)} (dry run: nothing is written)`}\n`,
    );
  const who = { vm: { name: vm.name, uuid: vm.uuid }, nvram: nvramPath, tpm: vm.tpm === true };

  if (a.dryRun || !preview.changed) {
    const r = preview;
    if (a.json)
      return printJson({ target: a.target, ...who, dryRun: a.dryRun, changed: r.changed, items: r.items, dbx: r.dbx ?? null, timestamps: r.timestamps, free: r.free, generation: null, saved: null });
    return print(
      itemRows(r.items, a.dryRun, r.dbx) +
        (!r.changed
          ? a.dryRun
            ? r.dbx
              ? `dry run: ${nothingText(r)} (${vm.name}'s NVRAM); nothing to change`
              : `dry run: every entry is already in ${vm.name}'s NVRAM; nothing to add`
            : `${vm.name}: ${nothingText(r)}; nothing written`
          : `dry run: would ${wouldText(r)} ${r.items.some((i) => i.status === 'added') ? 'to' : 'in'} ${vm.name}'s NVRAM ${nvramPath}; nothing written`),
    );
  }

  const archive = await ctx.archive({ create: true });
  const request = requestText(a);
  const out = await changeLocalNvram(ctx, vm, nvramPath, archive, 'enroll', (o) =>
    enrollNvram({
      ...o,
      edit: (current) => {
        const r = enroll(current, entries, vm.name, hint, dbx);
        return { ...r, reason: `nvram enroll ${request}: ${addedText(r.items, r.dbx) || 'nothing added'}` };
      },
    }),
  );
  const r = out.result;
  if (a.json)
    return printJson({
      target: a.target,
      ...who,
      dryRun: false,
      changed: r.changed,
      items: r.items,
      dbx: r.dbx ?? null,
      timestamps: r.timestamps,
      free: r.free,
      generation: out.generation ?? null,
      saved: out.saved ?? null,
    });
  print(
    itemRows(r.items, false, r.dbx) +
      (r.changed
        ? `${vm.name}: enrolled ${addedText(r.items, r.dbx)} into ${nvramPath}, archived as generation ${out.generation} (the newest); the NVRAM before is generation ${out.saved} (undo: ovmf-hook nvram restore ${vm.name} --generation ${out.saved}${lostMicrosoft2023(r.data, local.data).length ? ' --force' : ''})`
        : `${vm.name}: ${nothingText(r)}; nothing written`),
  );
}

// ─── command ────────────────────────────────────────────────────────────────────────────────

async function run(a: EnrollArgs, deps: CliDeps): Promise<void> {
  const file = isFileTarget(a.target);
  check(a, file);
  const entries = await requestedEntries(a);
  const dbx = await readDbxUpdate(a.setDbx);
  return file ? enrollFile(a, entries, dbx, deps) : enrollVm(a, entries, dbx, deps);
}

export function makeNvramEnrollCommand(deps: CliDeps = {}): CommandModule<object, any> {
  return {
    command: 'enroll <target>',
    describe: "Add Secure Boot certificates or hashes to KEK/db of a shut-off VM's NVRAM (archived first) or of a VARS file",
    builder: (y: Argv) =>
      y
        .positional('target', { type: 'string', demandOption: true, describe: 'VM name or UUID, or the path of an OVMF VARS file' })
        .option('ms-2023', {
          type: 'boolean',
          default: false,
          describe: `Microsoft's 2023 certificates: ${MICROSOFT_2023_CERTIFICATES.map((c) => `${c.name} (${c.variable})`).join(', ')}`,
        })
        .option('add-kek', { type: 'string', describe: 'add the certificate(s) of this PEM or DER file to KEK (repeatable)' })
        .option('add-db', { type: 'string', describe: 'add the certificate(s) of this PEM or DER file to db (repeatable)' })
        .option('add-db-hash', { type: 'string', describe: 'add this SHA-256 image hash (64 hex digits) to db (repeatable)' })
        .option('set-dbx', {
          type: 'string',
          describe: "replace dbx by a signed DBX update (Microsoft's DBXUpdate.bin: authentication header + signature lists): its content and timestamp",
        })
        .option('owner', { type: 'string', describe: `SignatureOwner GUID of --add-* entries (default ${OVMF_HOOK_OWNER}, ovmf-hook's)` })
        .option('output', { type: 'string', describe: 'FILE form: write the result to this new file' })
        .option('in-place', { type: 'boolean', default: false, describe: 'FILE form: change FILE itself' })
        .option('dry-run', { type: 'boolean', default: false, describe: 'show what would be added; write nothing' })
        .option('force', { type: 'boolean', default: false, describe: 'also for a VM with a TPM (suspend BitLocker in the guest first)' })
        .option('json', jsonOption())
        .example('$0 nvram enroll win11 --ms-2023', "add Microsoft's 2023 KEK and db certificates to a shut-off VM")
        .example('$0 nvram enroll vm1 --add-db my-signing-cert.pem', 'trust binaries signed with your own key')
        .example('$0 nvram enroll win11 --set-dbx DBXUpdate.bin', "replace dbx by Microsoft's signed revocation list"),
    handler: (argv) => {
      const one = (name: string): string | undefined => {
        const v = argv[name];
        if (Array.isArray(v)) throw new UsageError(`--${name} given ${v.length} times; give it once`);
        return v === undefined ? undefined : String(v);
      };
      return run(
        {
          target: String(argv.target),
          ms2023: argv['ms-2023'] === true,
          addKek: many(argv['add-kek']),
          addDb: many(argv['add-db']),
          addDbHash: many(argv['add-db-hash']),
          setDbx: one('set-dbx'),
          owner: one('owner'),
          output: one('output'),
          inPlace: argv['in-place'] === true,
          dryRun: argv['dry-run'] === true,
          force: argv.force === true,
          json: argv.json === true,
        },
        deps,
      );
    },
  };
}
