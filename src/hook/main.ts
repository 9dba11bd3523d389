/**
 * The libvirt QEMU hook: `qemu <vm> <op> <subop> <extra>`, domain XML on stdin.
 *
 *   prepare begin  guard the policy, then restore / provision the NVRAM (before libvirt's own
 *                  template copy), then, at a cold start of a VM with `secure-boot-certs="2023"`,
 *                  enrol the Microsoft 2023 certificates it lacks (archived first); a non-zero exit
 *                  aborts the start and libvirt shows our stderr line
 *   release end    archive the NVRAM as a new generation; always exit 0
 *   migrate begin  filter: map firmware paths to this host's copies; mark the VM as incoming
 *   restore begin  filter: map firmware paths; mark a VM with the certificate policy as resuming a saved image
 *   anything else  exit 0 (handled in hooks/qemu.ts without loading this module)
 *
 * Never calls libvirt. stdout carries XML only (filters), stderr one line on failure, the
 * journal/syslog everything else.
 */
import { existsSync, readFileSync, statSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { allAsync, type Archive, clearIncomingMigration, clearStartRefused, configPath, getLocalState, hostIdentity, type IoFor, ioForLocalDirs, loadCatalog, loadConfigAsync, localDirs, lockVm, markIncomingMigration, markRestoringImage, markStartRefused, NAME_MAX, type NvramOwner, openArchive, type PrepareOptions, prepareNvram, qemuOwnerNames, releaseNvram, resolveIds, type StateAccess, statSizes } from '../io';
import { DEFAULT_CONFIG, domainPolicy, policyViolations, resolvePolicy, SECURE_BOOT_CERTS_POLICY, type Config, type Policy } from '../core/config';
import { leasePolicy, parseLockManager } from '../core/config/lock-manager';
import { parseDomain, type Domain } from '../core/domain';
import { ArchiveCorruptError, ConfigError, errorMessage, isOvmfHookError, OvmfHookError, RefusedError, UnsafePathError, UsageError } from '../core/errors';
import { checkFlashPair } from '../core/firmware';
import { withinStartWindow } from '../core/nvram';
import { checkVmName, handledOp, NEVER_FAIL, parseHookArgs, type HookArgs } from './args';
import { openNvramDir } from '../io/nvram-dir';
import { mapFirmwarePaths } from '../core/firmware/cross-host';
import { uefiFiles } from '../core/domain/uefi-files';
import { readStdin, writeAll, writeStdout } from './stdio';
import { flushLog, makeLogger, oneLine, type Logger } from '../io/log';

/** present in the root of a real archive (see requireArchiveMarker) */
export const ARCHIVE_MARKER = '.ovmf-hook-archive';

const MAX_XML_BYTES = 16 * 1024 * 1024;
/** libvirt's QEMU driver config: its `lock_manager` decides whether claim leases are honoured. */
const QEMU_CONF = '/etc/libvirt/qemu.conf';

interface Ctx {
  args: HookArgs;
  config: Config;
  domain: Domain;
  log: Logger;
  progress: Progress;
  /**
   * The file API of each directory the call uses: fs.promises until probeIo has shown which of them
   * are on a local disk, then decided once for the rest of the call and passed down.
   */
  io: IoFor;
}

/** How far the call got, for the watchdog: only a stuck archive may be "allowed" at prepare. */
interface Progress {
  stage: 'config' | 'input' | 'archive';
  /** paths of the held NVRAM directory handle written as the configured directory (see openNvram) */
  shown: (text: string) => string;
  /** set with stage 'archive': the archive directory and whether a stuck one may be skipped at prepare */
  archiveDir?: string;
  allowStuckArchive?: boolean;
}

/**
 * Run one hook call; resolves to the exit code once its output and log lines are handed over, so
 * the caller can end the process at once (process.exit skips tearing down the heap).
 */
export async function runHook(argv: readonly string[]): Promise<number> {
  const code = await runHookCall(argv);
  await flushLog();
  return code;
}

async function runHookCall(argv: readonly string[]): Promise<number> {
  let args: HookArgs | undefined;
  let log: Logger = makeLogger({});
  // from argv[1] before any check: a never-fail op must exit 0 even when called with bad arguments
  const neverFail = NEVER_FAIL.has(argv[1] ?? '');
  const progress: Progress = { stage: 'config', shown: (t) => t };
  // armed before the config is read (a config on a hung mount is the watchdog's too), with the
  // default timeout until the config names its own
  let watchdog: NodeJS.Timeout | undefined;
  const arm = (a: HookArgs, seconds: number, logTo: Logger): void => {
    clearTimeout(watchdog);
    watchdog = setTimeout(() => onTimeout(a, seconds, logTo, progress), seconds * 1000);
  };
  try {
    args = parseHookArgs(argv);
    checkVmName(args.vm);
    arm(args, DEFAULT_CONFIG.hookTimeoutSeconds, log);
    const { config, error: configError } = await loadConfigAsync().then(
      (c) => ({ config: c, error: undefined }),
      (e: unknown) => {
        if (!(e instanceof ConfigError)) throw e;
        return { config: { ...DEFAULT_CONFIG }, error: e };
      },
    );
    log = makeLogger({ file: configError ? undefined : config.logFile, vm: args.vm });
    arm(args, config.hookTimeoutSeconds, log);
    progress.stage = 'input';
    const xml = await readStdin(MAX_XML_BYTES);
    const domain = parseDomain(xml);
    if (domain.name !== args.vm) throw new UsageError(`hook called for "${args.vm}" but the XML on stdin is for "${domain.name}"`);
    const ctx: Ctx = { args, config, domain, log, progress, io: allAsync };
    if (configError) {
      withoutConfig(ctx, configError);
      return 0;
    }
    const op = handledOp(args);
    switch (op) {
      case undefined: // a pass-through call (hooks/qemu.ts answers those before loading this module)
        break;
      case 'prepare begin':
        await prepare(ctx).catch(async (e: unknown) => {
          // libvirt runs `release` right after a refused start: tell it that nothing ran here
          if (domain.uuid) await markStartRefused(config.stateDir, domain.uuid, new Date(), stateAccess(ctx)).catch(() => {});
          throw e;
        });
        // this start goes ahead: a refusal mark left by an earlier attempt must not stop its archive
        if (domain.uuid) await clearStartRefused(config.stateDir, domain.uuid, stateAccess(ctx)).catch(() => {});
        break;
      case 'release end':
        await release(ctx);
        break;
      case 'migrate begin':
      case 'restore begin':
        await filter(ctx); // OPS[op].filter: the one kind of call that prints XML
        break;
      default: {
        const missing: never = op; // a key added to OPS without a case here does not compile
        throw new Error(`no dispatch for ${String(missing)}`);
      }
    }
    return 0;
  } catch (e) {
    const msg = progress.shown(isOvmfHookError(e) ? e.message : `internal error: ${(e as Error)?.message ?? String(e)}`);
    const who = args && !msg.startsWith(`${args.vm}:`) ? `${shownName(args.vm)}: ` : '';
    const bare = args && msg.startsWith(`${args.vm}: `) ? msg.slice(args.vm.length + 2) : msg;
    log(neverFail ? 'warning' : 'err', `${args ? `${args.op} ${args.subop}: ` : ''}${bare}`);
    if (neverFail) return 0;
    // libvirt shows stderr as the error of the failed start: exactly one line (written at once,
    // never queued: the process may exit right after)
    try {
      writeAll(2, `${oneLine(`ovmf-hook: ${who}${msg}`)}\n`);
    } catch {
      /* stderr closed: the exit code still tells libvirt */
    }
    return isOvmfHookError(e) ? e.exitCode : 1;
  } finally {
    clearTimeout(watchdog);
  }
}

/**
 * The config file is unusable (docs/GUARANTEES.md, "When the config file is broken"): the mode and
 * the archive location are unknown. A domain the hook has nothing to do for (BIOS, or
 * `archive="no"` in its own metadata) goes ahead; a UEFI domain's start, migration or restore is
 * refused, since falling back to the default archive would miss a shared one; a release archives
 * nothing and keeps the local NVRAM (the next start after the fix archives it).
 */
function withoutConfig(ctx: Ctx, error: ConfigError): void {
  const { args, domain, log } = ctx;
  if (!domain.isUefi || domainPolicy(domain).archive === false) {
    log('err', `${error.message}; ${args.op} of this ${domain.isUefi ? 'archive="no" UEFI' : 'BIOS'} domain goes ahead without the policy guard`);
    return;
  }
  if (NEVER_FAIL.has(args.op)) {
    log('err', `ARCHIVE FAILED, the local NVRAM is kept and the next start after the fix archives it: ${error.message}`);
    return;
  }
  const what = args.op === 'prepare' ? 'start' : args.op;
  throw new ConfigError(error.file, `${args.vm}: ${what} refused, the NVRAM archive location is unknown: ${error.message}`);
}

/** The watchdog: a hung archive mount, config or a stdin that never closes must not hang libvirt. */
function onTimeout(args: HookArgs, seconds: number, log: Logger, progress: Progress): void {
  const stuck = progress.stage === 'archive' ? 'archive storage not answering' : progress.stage === 'config' ? 'the config file could not be read' : 'stdin was not closed';
  const what = `${args.op} ${args.subop} did not finish within ${seconds} s (${stuck})`;
  // the policy guard has not run while the input is incomplete: "allow" covers only the archive
  // (archiveUnavailable is read from the config, which got this far only at the archive stage)
  const allow = NEVER_FAIL.has(args.op) || (args.op === 'prepare' && progress.stage === 'archive' && progress.allowStuckArchive === true);
  log(allow ? 'warning' : 'err', `${what}; ${allow ? 'continuing' : 'refusing'}`);
  // synchronous: process.exit() right after would drop a pending asynchronous pipe write
  const fix = progress.stage === 'archive' ? `; check the archive mount (${progress.archiveDir})` : progress.stage === 'config' ? `; check ${configPath()}` : '';
  const kernelStuck = progress.stage !== 'input';
  if (!allow || kernelStuck) writeSync(2, `${oneLine(`ovmf-hook: ${args.vm}: ${what}${fix}`)}\n`);
  // A libuv worker stuck in the kernel on a hung mount makes process.exit() wait for it forever
  // (exit joins the thread pool). SIGKILL is the only way out; libvirt sees a failed call, which
  // for release/stopped is only logged, and for prepare aborts the start.
  if (kernelStuck) process.kill(process.pid, 'SIGKILL');
  process.exit(allow ? 0 : 1);
}

/** A VM name as shown in messages: quoted and escaped when it holds control characters. */
// eslint-disable-next-line no-control-regex
const shownName = (vm: string): string => (/[\u0000-\u001f\u007f]/.test(vm) ? JSON.stringify(vm) : vm);

/** The VM's name as one shell argument, for the commands messages name. */
const shellName = (vm: string): string => (/^[\w.+-]+$/.test(vm) ? vm : `'${vm.replace(/'/g, "'\\''")}'`);

function convertHint(ctx: Ctx, secureBoot: boolean, tpm: boolean): string {
  return `ovmf-hook convert ${shellName(ctx.args.vm)}${secureBoot ? ' --secure-boot' : ''}${tpm ? ' --tpm' : ''}`;
}

/** The varstore enrolment: loaded only for a start of a VM with the `secure-boot-certs` policy. */
const certPolicy = () => require('../core/varstore/cert-policy') as typeof import('../core/varstore/cert-policy');

/**
 * The `secure-boot-certs` policy's edit of a cold start's NVRAM (cert-policy.ts), committed by
 * prepareNvram archive first. A store that cannot be enrolled (or any failure of the pure step)
 * starts unchanged with a warning: a maintenance step the admin opted into must not stop the VM.
 */
function secureBootCertsEdit(ctx: Ctx, policy: Policy): PrepareOptions['edit'] {
  const { secureBootCertsStep } = certPolicy();
  return {
    name: SECURE_BOOT_CERTS_POLICY,
    apply: (current) => {
      try {
        const r = secureBootCertsStep(current, { vm: shellName(ctx.args.vm), tpm: ctx.domain.devices('tpm').length > 0, tpmReseal: policy.tpmReseal === 'accept' });
        if (r.do === 'enroll') return { data: r.data, changed: true, reason: r.reason };
        if (r.log) ctx.log(r.log.level, `prepare: ${r.log.message}`);
      } catch (e) {
        ctx.log('warning', `prepare: ${SECURE_BOOT_CERTS_POLICY}: could not enrol (internal error: ${errorMessage(e)}); the VM starts with its NVRAM unchanged`);
      }
      return null;
    },
  };
}

async function prepare(ctx: Ctx): Promise<void> {
  const { config, domain, log, args } = ctx;
  const policy = resolvePolicy(config, domain);
  if (config.mode !== 'off') {
    const violations = policyViolations(domain, policy);
    if (violations.length) {
      const line = `${violations.join('; ')}; run: ${convertHint(ctx, policy.secureBoot, policy.tpm)}`;
      if (config.mode === 'enforce') throw new RefusedError(`${args.vm}: ${line}`);
      log('warning', `${line} (mode "warn": starting anyway)`); // the logger names the VM
    }
  }
  if (!policy.archive) {
    if (policy.secureBootCerts && domain.isUefi) log('warning', `prepare: ${SECURE_BOOT_CERTS_POLICY} archives the NVRAM before it enrols, but this VM's policy says archive="no": not enrolling`);
    return;
  }
  const files = domainFiles(ctx);
  if (!files) return; // BIOS: nothing to provision
  if (files.unmanaged || !files.nvram) {
    log('info', `NVRAM not managed: ${files.unmanaged}`);
    return;
  }
  const nvramName = files.nvram.slice(files.nvram.lastIndexOf('/') + 1);
  if (Buffer.byteLength(nvramName) > NAME_MAX)
    throw new RefusedError(`${args.vm}: the name is too long for an NVRAM file name (${nvramName.length > 40 ? `${nvramName.slice(0, 40)}…` : nvramName} is ${Buffer.byteLength(nvramName)} bytes, at most ${NAME_MAX}); rename the domain (virsh domrename) or give it <nvram>/path/to/shorter_VARS.fd</nvram>`);
  const sizes = statSizes([files.loader, files.template]);
  if (files.loader && sizes[files.loader] === undefined) throw new RefusedError(`${args.vm}: firmware ${files.loader} does not exist; install the OVMF package or fix <loader> (ovmf-hook firmware list shows what this host has)`);
  if (files.template && sizes[files.template] === undefined) throw new RefusedError(`${args.vm}: NVRAM template ${files.template} does not exist; install the OVMF package or fix <nvram template=…>`);
  if (files.loader && files.template) checkFlashPair(sizes[files.loader]!, sizes[files.template]!, { loader: files.loader, template: files.template });
  const uuid = domain.uuid;
  if (!uuid) throw new UsageError(`${args.vm}: the domain has no <uuid>`);

  const { host, hostId } = hostIdentity(config);
  enterArchiveStage(ctx);
  const owner = nvramOwner(ctx);
  const nvramIo = await openNvram(ctx, files.nvram, owner.uid);
  let archive;
  try {
    archive = await openHostArchive(config, host, hostId, await probeIo(ctx, nvramIo, files.template));
  } catch (e) {
    return archiveUnavailable(ctx, e, nvramIo);
  }
  const state = await getLocalState(config.stateDir, uuid, stateAccess(ctx)).catch(() => null);
  // set by `migrate begin` moments ago; an old flag (a migration that never got here) is ignored
  const incoming = state?.incomingMigration === true && withinStartWindow(state.time);
  // set by `restore begin` moments ago (only for a VM with the certificate policy): a saved image resumes
  const restoring = withinStartWindow(state?.restoringImage);
  if (policy.secureBootCerts && (incoming || restoring)) ctx.log('info', `prepare: ${certPolicy().notAtThisStart(incoming ? 'incoming migration' : 'restore of a saved image')}`);
  // the CLI's nvram restore/reset must not replace the file while this start prepares it, nor the other way round
  await lockVm(config.stateDir, uuid, `the start of ${args.vm} (hook prepare, pid ${process.pid})`, (other) =>
    `${args.vm}: not started: its NVRAM is being changed by ${other}; start it again once that has finished`);
  try {
    const r = await prepareNvram({
      ...lifecycleOf(ctx, archive, uuid, files.nvram, nvramIo),
      templatePath: files.template,
      owner,
      expectedSize: files.template ? sizes[files.template] : undefined,
      incomingMigration: incoming,
      ...claimPolicy(ctx),
      onAdopted: (prev) => log('warning', `${files.nvram} was the NVRAM of a domain of the same name that is gone (${prev.uuid}): it is this domain's now`),
      onCorrupt: (n, problem) => log('err', `archive generation ${n} is corrupt, moved aside (never restored): ${problem}`),
      // a cold start only: an incoming migration or a saved image resumes a guest that has the NVRAM it left
      edit: policy.secureBootCerts && !incoming && !restoring ? secureBootCertsEdit(ctx, policy) : undefined,
    });
    if (incoming) await clearIncomingMigration(config.stateDir, uuid, stateAccess(ctx));
    log('info', `prepare: ${incoming ? 'incoming migration, ' : ''}${r.action}${r.generation ? ` generation ${r.generation}` : ''}${r.displaced ? ` (local copy kept as generation ${r.displaced})` : ''}: ${r.why}`);
    if (r.lostCertificates)
      log(
        'warning',
        `prepare: the ${r.action === 'restore' ? `restored generation ${r.generation}` : 'template'} trusts fewer Microsoft 2023 Secure Boot certificates than the local NVRAM it replaced; lost: ${r.lostCertificates.join(', ')} (a guest whose boot manager is signed by Windows UEFI CA 2023 may not boot); to add them again, shut the VM down and run: ovmf-hook nvram enroll ${args.vm} --ms-2023`,
      );
    if (r.edited)
      ctx.log(
        'info',
        `prepare: ${r.edited.reason} (Microsoft 2023 certificates enrolled before the start), archived as generation ${r.edited.generation} (the newest); the NVRAM before is generation ${r.edited.saved} (undo, VM shut off: ovmf-hook nvram restore ${shellName(args.vm)} --generation ${r.edited.saved} --force)`,
      );
  } catch (e) {
    if (e instanceof OvmfHookError && !inArchive(e, config.archiveDir)) throw e;
    return archiveUnavailable(ctx, e, nvramIo);
  }
}

/**
 * libvirt's nvram directory, opened and checked once (nvram-dir.ts); the NVRAM file is then read
 * and written only through that handle, and log lines and errors show the configured path again.
 */
async function openNvram(ctx: Ctx, nvramPath: string, qemuUid: number | undefined): Promise<string> {
  const dir = await openNvramDir(ctx.config.nvramDir, [0, ...(qemuUid === undefined ? [] : [qemuUid])]);
  const log = ctx.log;
  ctx.progress.shown = dir.shown;
  ctx.log = (level, message) => log(level, dir.shown(message));
  return dir.file(nvramPath);
}

/**
 * The lease this host's claims get and whether it takes expired claims over: only with libvirt's
 * lock manager on (core/config/lock-manager.ts; one small read of qemu.conf per start).
 */
function claimPolicy({ config, log }: Ctx): { claimLeaseSeconds: number; takeOverExpired: boolean } {
  let lockManager: string | null = null;
  try {
    lockManager = parseLockManager(readFileSync(QEMU_CONF, 'utf8'));
  } catch {
    /* no qemu.conf: libvirt's defaults, no lock manager */
  }
  const p = leasePolicy(config.claimLeaseSeconds, lockManager);
  if (p.ignored) log('warning', p.ignored);
  return { claimLeaseSeconds: p.leaseSeconds, takeOverExpired: p.takeOver };
}

/** Who owns the NVRAM files (qemu.conf's user), logged when that account does not exist here. */
function nvramOwner({ config, log }: Ctx): NvramOwner {
  const { uid, gid, unresolved } = resolveIds(qemuOwnerNames(config));
  if (unresolved.length) log('warning', `${unresolved.join(' and ')} not found on this host: the NVRAM file is written owned by root; set "qemuUser"/"qemuGroup" in the config or fix /etc/libvirt/qemu.conf`);
  return { uid, gid, mode: 0o600 };
}

/** From here on the call waits on the archive: a watchdog firing now blames the archive mount. */
function enterArchiveStage({ progress, config }: Ctx): void {
  progress.stage = 'archive';
  progress.archiveDir = config.archiveDir;
  progress.allowStuckArchive = config.archiveUnavailable === 'allow';
}

/** What prepare and release tell the lifecycle about this VM and where its files are. */
const lifecycleOf = (ctx: Ctx, archive: Archive, uuid: string, nvramPath: string, nvramIo: string) => ({
  archive,
  stateDir: ctx.config.stateDir,
  uuid,
  vmName: ctx.args.vm,
  nvramPath,
  nvramIo,
  io: ctx.io,
});

/** A refusal caused by the archive's own content (corrupt metadata, an unsafe file in it): the archive is unusable. */
const inArchive = (e: OvmfHookError, archiveDir: string): boolean =>
  e instanceof ArchiveCorruptError || (e instanceof UnsafePathError && (e.path + '/').startsWith(`${archiveDir.replace(/\/+$/, '')}/`));

/**
 * The archive cannot be used: "allow" starts from the local NVRAM — when there is one. Without
 * one, libvirt would start from a blank template copy that becomes the newest generation at the
 * next stop, above the archived NVRAM: refused either way.
 */
function archiveUnavailable(ctx: Ctx, e: unknown, nvramIo: string): void {
  const { config, args, log } = ctx;
  const nvramPath = ctx.progress.shown(nvramIo);
  const why = `NVRAM archive ${config.archiveDir} is unavailable (${(e as Error)?.message ?? e})`;
  if (config.archiveUnavailable === 'refuse') throw new RefusedError(`${args.vm}: ${why}; fix the archive mount or set "archiveUnavailable": "allow"`);
  if (!existsSync(nvramIo))
    throw new RefusedError(`${args.vm}: ${why} and there is no local NVRAM ${nvramPath} to start from (a blank template would later outrank the archived one); fix the archive, or start from the template on purpose with: ovmf-hook nvram reset ${args.vm}`);
  log('warning', `${why}; starting from the local NVRAM ("archiveUnavailable": "allow")`);
}

/**
 * Decide, once per call, the file API of the directories it uses: synchronous calls in those of
 * the archive, state and NVRAM directories (and the template's) that statfs shows on a local disk,
 * fs.promises in the others (fs-api.ts; docs/BENCH.md has what that saves). The probe itself is
 * asynchronous, so a hung mount is still the watchdog's.
 */
async function probeIo(ctx: Ctx, ...files: (string | undefined)[]): Promise<IoFor> {
  const { config } = ctx;
  ctx.io = ioForLocalDirs(await localDirs([config.archiveDir, config.stateDir, ...files.filter((f): f is string => !!f).map((f) => dirname(f))]));
  return ctx.io;
}

/** How this call reaches the per-host state directory. */
const stateAccess = ({ io, config }: Ctx): StateAccess => ({ io: io(config.stateDir) });

/** The archive, refused as unavailable when the config requires the marker of a mounted share and it is missing. */
async function openHostArchive(config: Config, host: string, hostId: string, io: IoFor) {
  if (config.requireArchiveMarker && !existsSync(`${config.archiveDir}/${ARCHIVE_MARKER}`)) {
    throw new Error(`${config.archiveDir}/${ARCHIVE_MARKER} is missing (is the shared archive mounted?)`);
  }
  return openArchive({ root: config.archiveDir, host, hostId, io: io(config.archiveDir) });
}

/** The domain's loader/template/NVRAM; the firmware catalog is read only if the XML lacks a path. */
const domainFiles = ({ domain, config }: Ctx) => uefiFiles(domain, () => loadCatalog({ roots: config.firmwareDirs }).descriptors, config.nvramDir);

async function release(ctx: Ctx): Promise<void> {
  const { config, domain, args } = ctx;
  const policy = resolvePolicy(config, domain);
  if (!policy.archive) return;
  const files = domainFiles(ctx);
  if (!files?.nvram || files.unmanaged) return;
  const uuid = domain.uuid;
  if (!uuid) throw new UsageError('the domain has no <uuid>');
  const { host, hostId } = hostIdentity(config);
  enterArchiveStage(ctx);
  let archive;
  let nvramIo: string;
  try {
    nvramIo = await openNvram(ctx, files.nvram, resolveIds(qemuOwnerNames(config)).uid);
    archive = await openHostArchive(config, host, hostId, await probeIo(ctx, nvramIo));
  } catch (e) {
    ctx.log('err', `ARCHIVE FAILED, the local NVRAM is kept and the next start retries: ${(e as Error)?.message ?? e}`);
    return;
  }
  const r = await releaseNvram({
    ...lifecycleOf(ctx, archive, uuid, files.nvram, nvramIo),
    reason: args.extra,
    keep: config.keepGenerations,
    onCorrupt: (n, problem) => ctx.log('err', `archive generation ${n} is corrupt, moved aside (never restored): ${problem}; archiving the local copy again`),
  });
  const log = ctx.log; // shows the NVRAM directory as configured
  if (r.action === 'failed') log('err', `ARCHIVE FAILED, the local NVRAM is kept and the next start retries: ${r.why}`);
  else log('info', `release: ${r.action === 'archived' ? `archived generation ${r.generation} (${r.kind})` : 'skipped'}: ${r.why}${r.handedOverTo ? `; claim handed over to host ${r.handedOverTo} (live migration)` : ''}${r.action === 'skip' && r.takeOverUndone ? `; the start did not happen: the expired claim taken over at prepare went back to host ${r.takeOverUndone}` : ''}`);
  if (r.action !== 'failed') for (const w of r.warnings) log('warning', `release: ${w}`);
}

async function filter(ctx: Ctx): Promise<void> {
  const { config, domain, log, args } = ctx;
  let r: ReturnType<typeof mapFirmwarePaths> = { mapped: [] };
  if (domain.isUefi) {
    const catalog = loadCatalog({ roots: config.firmwareDirs });
    const paths = [domain.loader?.path, domain.nvram?.template, ...catalog.descriptors.flatMap((d) => [d.executable.filename, d.nvramTemplate?.filename])];
    r = mapFirmwarePaths(domain, {
      descriptors: catalog.descriptors,
      sizes: statSizes(paths),
      dirExists: (d) => existsSync(d) && statSync(d).isDirectory(),
      nvramDir: config.nvramDir,
    });
  }
  if (args.op === 'migrate' && domain.uuid && resolvePolicy(config, domain).archive) {
    // tell the prepare that follows that QEMU's migration stream brings the NVRAM content; only
    // once the filter accepted the domain: a cancelled migration must not make the next ordinary
    // start on this host skip its archive restore and claim
    await probeIo(ctx);
    await markIncomingMigration(config.stateDir, domain.uuid, new Date(), stateAccess(ctx));
  }
  if (args.op === 'restore' && domain.uuid) {
    const policy = resolvePolicy(config, domain);
    // the prepare that follows resumes a saved RAM image: the certificate policy must not change its NVRAM
    if (policy.archive && policy.secureBootCerts) {
      await probeIo(ctx);
      await markRestoringImage(config.stateDir, domain.uuid, new Date(), stateAccess(ctx));
    }
  }
  if (!r.xml) return;
  for (const m of r.mapped) log('info', `${args.op}: ${m.what} ${m.from} -> ${m.to}`);
  writeStdout(r.xml);
}
