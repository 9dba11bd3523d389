/**
 * `ovmf-hook doctor [--json]`: is this host ready to run the hook? One line per check with a
 * verdict (ok / warn / FAIL) and, when not ok, the fix. Exit 0 without FAIL, 1 otherwise.
 * Every path is an option (defaults: the real host) so tests run it against a temp tree.
 */
import { execFileSync } from 'node:child_process';
import { accessSync, closeSync, constants, existsSync, lstatSync, openSync, readFileSync, readSync, realpathSync, statSync } from 'node:fs';
import { posix } from 'node:path';
import type { Argv, CommandModule } from 'yargs';
import { configPath, hostIdentity, lookupId, qemuOwnerNames, loadCatalog, statSizes, openArchive, type Archive } from '../../io';
import { type Config } from '../../core/config';
import { leasePolicy, parseLockManager } from '../../core/config/lock-manager';
import { errorMessage, isOvmfHookError, RefusedError } from '../../core/errors';
import { octalMode, plural } from '../../core/text';
import { secureBootTemplateStatus } from '../../io/firmware-template';
import { ensurePrivateDir, namesInByteOrder } from '../../io/safe-fs';
import { TEMPLATE_COMMAND } from '../../core/firmware/template';
import { jsonOption, printJson } from '../output';
import { table } from '../table';
import { checkConfig } from './config';
import { flashOf } from './firmware';

export type Verdict = 'ok' | 'warn' | 'FAIL';

export interface DoctorCheck {
  check: string;
  verdict: Verdict;
  detail: string;
  /** what to do, when the verdict is not ok */
  fix?: string;
}

export interface DoctorOptions {
  /** Default `$OVMF_HOOK_CONFIG`, else /etc/ovmf-hook/config.json. */
  configPath?: string;
  /** Default /etc/libvirt/hooks. */
  hooksDir?: string;
  /** Pid files of the daemons that run QEMU hooks. Default /run/libvirtd.pid, /run/virtqemud.pid. */
  pidFiles?: readonly string[];
  /** Default /proc. */
  procDir?: string;
  /** Where install.sh notes the daemon reloads it did (default /run/ovmf-hook). */
  runDir?: string;
  /** Default /etc/libvirt/qemu.conf. */
  qemuConf?: string;
  /** Default /etc/passwd and /etc/group. */
  passwdFile?: string;
  groupFile?: string;
  /** The node running this CLI: default process.execPath and process.versions.node. */
  execPath?: string;
  nodeVersion?: string;
  /** Existence test for the built-in firmware table (no descriptors on the host); default fs.existsSync. */
  firmwareExists?: (path: string) => boolean;
}

/** The marker install.sh and the build put into the hook (see scripts/build.mjs). */
export const HOOK_MARKER = 'ovmf-hook: libvirt QEMU hook';
const MIN_NODE_MAJOR = 18;
const APPARMOR_EXEC_DIRS = ['/usr/bin', '/bin'];
/** Linux USER_HZ: /proc/<pid>/stat start times are in these ticks on every mainstream architecture. */
const CLOCK_TICKS = 100;
/** How to (re)install the hook: the Debian package's postinst when that package is installed (it runs install.sh), else install.sh from a checkout. */
const installHint = (): string => (existsSync('/var/lib/dpkg/info/ovmf-hook.list') ? 'run: sudo dpkg-reconfigure ovmf-hook' : 'run: sudo ./install.sh from the ovmf-hook checkout');

const ok = (check: string, detail: string): DoctorCheck => ({ check, verdict: 'ok', detail });
const warn = (check: string, detail: string, fix: string): DoctorCheck => ({ check, verdict: 'warn', detail, fix });
const fail = (check: string, detail: string, fix: string): DoctorCheck => ({ check, verdict: 'FAIL', detail, fix });
const iso = (ms: number) => new Date(ms).toISOString().replace(/\.\d+Z$/, 'Z');

function head(file: string, bytes = 4096): string {
  const fd = openSync(file, constants.O_RDONLY | constants.O_NONBLOCK);
  try {
    const buf = Buffer.alloc(bytes);
    return buf.subarray(0, readSync(fd, buf, 0, bytes, 0)).toString('utf8');
  } finally {
    closeSync(fd);
  }
}

const realpath = (p: string): string => {
  try {
    return realpathSync(p);
  } catch {
    return p;
  }
};

// ─── config and log file ────────────────────────────────────────────────────────────────────

/** The `config` line and, when `logFile` is set, the `log file` line: both from checkConfig (`ovmf-hook config check`). */
function configChecks(path: string): { checks: DoctorCheck[]; config: Config } {
  const c = checkConfig(path);
  const checks = [
    c.valid
      ? ok('config', c.absent ? `${path} absent: built-in defaults` : `${path} is valid`)
      : fail('config', `${c.error} (until it is fixed the hook refuses UEFI starts, BIOS ones go ahead; the checks below use the defaults)`, `fix ${path} or remove it to use the defaults`),
  ];
  if (c.logFile) {
    const { file, problem } = c.logFile;
    if (!problem) checks.push(ok('log file', `${file}: the hook can write it`));
    else {
      // logFileProblem's texts end with their fix: "<problem>; <fix>"
      const cut = problem.lastIndexOf('; ');
      const detail = `${file}: the hook will not write it: ${cut < 0 ? problem : problem.slice(0, cut)}`;
      checks.push(fail('log file', detail, cut < 0 ? `point "logFile" in ${path} at a file in a root-owned directory, or remove the key` : problem.slice(cut + 2)));
    }
  }
  return { checks, config: c.config };
}

// ─── hook, its interpreter, qemu.d ──────────────────────────────────────────────────────────

interface Interpreter {
  path: string;
  /** `#!/usr/bin/env node`: libvirt's PATH decides */
  viaEnv: boolean;
}

function shebang(text: string): Interpreter | undefined {
  const m = /^#!\s*(\S+)(?:[ \t]+(\S+))?/.exec(text);
  if (!m) return undefined;
  const viaEnv = posix.basename(m[1]) === 'env' && m[2] !== undefined;
  return { path: viaEnv ? m[2] : m[1], viaEnv };
}

function hookCheck(hook: string): { check: DoctorCheck; interpreter?: Interpreter } {
  let st;
  try {
    st = statSync(hook);
  } catch {
    return { check: fail('hook', `${hook} is missing`, `${installHint()}, then: systemctl reload libvirtd`) };
  }
  if (!st.isFile()) return { check: fail('hook', `${hook} is not a regular file`, `move it away, then ${installHint()}`) };
  let text: string;
  try {
    text = head(hook);
  } catch (e) {
    return { check: fail('hook', `cannot read ${hook}: ${errorMessage(e)}`, 'run doctor as root') };
  }
  if (!text.includes(HOOK_MARKER))
    return { check: fail('hook', `${hook} is not ovmf-hook's (a foreign hook)`, `${installHint()}: it moves the foreign hook to qemu.d/, where it keeps running`) };
  if ((st.mode & 0o111) === 0) return { check: fail('hook', `${hook} is not executable (mode ${octalMode(st.mode)}): libvirt skips it`, `run: chmod 755 ${hook}`) };
  if (st.mode & 0o022) return { check: fail('hook', `${hook} is writable by group/other (mode ${octalMode(st.mode)}): anyone could run code as root`, `run: chmod go-w ${hook}`) };
  const interpreter = shebang(text);
  if (!interpreter) return { check: fail('hook', `${hook} has no #! interpreter line`, installHint()) };
  if (interpreter.viaEnv) return { check: ok('hook', `${hook} is ovmf-hook's, runs ${interpreter.path} from libvirt's PATH`), interpreter };
  try {
    accessSync(interpreter.path, constants.X_OK);
  } catch {
    return { check: fail('hook', `${hook} runs ${interpreter.path}, which does not exist or is not executable`, `install Node.js ${MIN_NODE_MAJOR}+ as /usr/bin/node, then ${installHint()}`), interpreter };
  }
  return { check: ok('hook', `${hook} is ovmf-hook's, runs ${interpreter.path}`), interpreter };
}

function nodeCheck(interpreter: Interpreter | undefined, execPath: string, nodeVersion: string): DoctorCheck {
  const fromHook = interpreter !== undefined && !interpreter.viaEnv;
  const node = fromHook ? interpreter.path : execPath;
  const who = fromHook ? "the hook's node" : 'node';
  if (fromHook && !existsSync(node)) return fail('node', `${who} ${node} does not exist`, `install Node.js ${MIN_NODE_MAJOR}+ as /usr/bin/node, then ${installHint()}`);
  let version = nodeVersion;
  if (realpath(node) !== realpath(execPath)) {
    try {
      version = execFileSync(node, ['-p', 'process.versions.node'], { encoding: 'utf8', timeout: 10_000, stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    } catch (e) {
      return fail('node', `cannot run ${who} ${node}: ${errorMessage(e).split('\n')[0]}`, `install Node.js ${MIN_NODE_MAJOR}+ as /usr/bin/node, then ${installHint()}`);
    }
  }
  const major = Number(/^v?(\d+)\./.exec(version)?.[1]);
  if (!(major >= MIN_NODE_MAJOR))
    return fail('node', `${who} ${node} is version ${version || 'unknown'}; ovmf-hook needs ${MIN_NODE_MAJOR} or newer`, `install Node.js ${MIN_NODE_MAJOR}+ (distro or NodeSource package), then ${installHint()}`);
  const dir = posix.dirname(realpath(node));
  if (!APPARMOR_EXEC_DIRS.includes(dir))
    return warn('node', `${who} ${node} (v${version.replace(/^v/, '')}) lives in ${dir}: AppArmor's libvirtd profile only lets hooks run interpreters from /usr/bin or /bin`, `install Node.js as /usr/bin/node (distro or NodeSource package), then ${installHint()}`);
  if (interpreter?.viaEnv) return warn('node', `the hook runs "env ${interpreter.path}": libvirt's bare PATH decides which node runs`, `${installHint()} (it writes node's absolute path into the hook)`);
  return ok('node', `${who} ${node} v${version.replace(/^v/, '')}`);
}

const BACKUP_RE = /(^\.|~$|\.(bak|orig|old|dpkg-old|dpkg-dist|dpkg-new|rpmsave|rpmnew|swp)$)/;

/** Executable entries of qemu.d in libvirt's order (byte order), like virHookCall runs them. */
function hookDirEntries(dir: string): { name: string; path: string; mtimeMs: number }[] {
  return namesInByteOrder(dir).flatMap((name) => {
    const path = posix.join(dir, name);
    try {
      const st = statSync(path);
      return st.isFile() && st.mode & 0o111 ? [{ name, path, mtimeMs: lstatSync(path).mtimeMs }] : [];
    } catch {
      return [];
    }
  });
}

function hookDirCheck(dir: string): DoctorCheck {
  const entries = hookDirEntries(dir);
  if (!entries.length) return ok('qemu.d', existsSync(dir) ? `${dir} has no executable hooks` : `no ${dir}: no other QEMU hooks`);
  const ours = entries.filter((e) => {
    try {
      return head(e.path).includes(HOOK_MARKER);
    } catch {
      return false;
    }
  });
  if (ours.length) return warn('qemu.d', `${ours.map((e) => e.path).join(', ')} is a copy of ovmf-hook: the hook runs twice`, `remove it: rm ${ours[0].path}`);
  const backups = entries.filter((e) => BACKUP_RE.test(e.name));
  if (backups.length)
    return warn('qemu.d', `${backups.map((e) => e.name).join(', ')} in ${dir} look${backups.length > 1 ? '' : 's'} like a backup but is executable: libvirt runs it too`, `run: chmod -x ${backups[0].path} (or move it out of ${dir})`);
  return ok('qemu.d', `${entries.length} other hook${entries.length > 1 ? 's' : ''} run after ovmf-hook: ${entries.map((e) => e.name).join(', ')}`);
}

// ─── daemon reload ──────────────────────────────────────────────────────────────────────────

interface Daemon {
  name: string;
  pid: number;
  startMs: number;
}

/** Start time of a process from /proc/<pid>/stat (field 22, clock ticks since boot) and /proc/stat's btime. */
function procStart(procDir: string, pid: number): { comm: string; startMs: number } | undefined {
  try {
    const stat = readFileSync(posix.join(procDir, String(pid), 'stat'), 'utf8');
    const close = stat.lastIndexOf(')');
    const comm = stat.slice(stat.indexOf('(') + 1, close);
    const ticks = Number(stat.slice(close + 2).split(' ')[19]); // fields from 3 on; 22 is index 19
    const btime = Number(/^btime\s+(\d+)/m.exec(readFileSync(posix.join(procDir, 'stat'), 'utf8'))?.[1]);
    if (!Number.isFinite(ticks) || !Number.isFinite(btime)) return undefined;
    return { comm, startMs: (btime + ticks / CLOCK_TICKS) * 1000 };
  } catch {
    return undefined;
  }
}

function runningDaemons(pidFiles: readonly string[], procDir: string): Daemon[] {
  return pidFiles.flatMap((file) => {
    let pid: number;
    let pidFileMs: number;
    try {
      pid = Number(readFileSync(file, 'utf8').trim());
      pidFileMs = statSync(file).mtimeMs;
    } catch {
      return [];
    }
    if (!Number.isSafeInteger(pid) || pid <= 0 || !existsSync(posix.join(procDir, String(pid)))) return [];
    const p = procStart(procDir, pid);
    return [{ name: p?.comm || posix.basename(file, '.pid'), pid, startMs: p?.startMs ?? pidFileMs }];
  });
}

function reloadCheck(hook: string, hookDir: string, pidFiles: readonly string[], procDir: string, runDir: string): DoctorCheck {
  const files = [...(existsSync(hook) ? [{ path: hook, mtimeMs: lstatSync(hook).mtimeMs }] : []), ...hookDirEntries(hookDir)];
  if (!files.length) return ok('daemon', 'no hook installed: nothing for libvirt to pick up');
  const daemons = runningDaemons(pidFiles, procDir);
  if (!daemons.length) return ok('daemon', 'no libvirtd/virtqemud running: it finds the hook when it starts');
  const newest = files.reduce((a, b) => (b.mtimeMs > a.mtimeMs ? b : a));
  // the last moment the daemon picked hooks up: its start, or a reload install.sh did (and noted)
  const pickedUp = (d: Daemon): number => Math.max(d.startMs, reloadNoted(runDir, d) ?? 0);
  const stale = daemons.filter((d) => pickedUp(d) < newest.mtimeMs);
  if (stale.length) {
    const d = stale[0];
    return warn(
      'daemon',
      `${d.name} (pid ${d.pid}) started at ${iso(d.startMs)}, before ${newest.path} was installed or changed (${iso(newest.mtimeMs)}); libvirt only notices a new hook at start or reload (ignore this if you reloaded it since)`,
      `run: systemctl reload ${d.name}`,
    );
  }
  return ok('daemon', daemons.map((d) => `${d.name} (pid ${d.pid}) ${pickedUp(d) > d.startMs ? `was reloaded at ${iso(pickedUp(d))}` : 'started'} after the hook was installed`).join('; '));
}

/** When install.sh reloaded this very daemon process (`<runDir>/reload-<name>`: pid and time), if it did. */
function reloadNoted(runDir: string, d: Daemon): number | undefined {
  try {
    const text = readFileSync(posix.join(runDir, `reload-${d.name}`), 'utf8');
    const pid = Number(/^pid=(\d+)$/m.exec(text)?.[1]);
    const time = Number(/^time_ms=(\d+)$/m.exec(text)?.[1]);
    return pid === d.pid && Number.isFinite(time) ? time : undefined;
  } catch {
    return undefined;
  }
}

// ─── firmware ───────────────────────────────────────────────────────────────────────────────

function firmwareChecks(config: Config, exists?: (p: string) => boolean): DoctorCheck[] {
  const catalog = loadCatalog({ roots: config.firmwareDirs, ...(exists ? { exists } : {}) });
  const warnings = catalog.warnings.length
    ? warn('descriptors', `${catalog.warnings[0]}${catalog.warnings.length > 1 ? ` (+${catalog.warnings.length - 1} more)` : ''}`, 'see: ovmf-hook firmware list')
    : ok('descriptors', `no warnings in ${config.firmwareDirs.join(', ')}`);
  const install = 'install the OVMF package (Debian/Ubuntu: ovmf; Fedora/RHEL: edk2-ovmf)';
  if (!catalog.descriptors.length) return [fail('firmware', `no OVMF firmware on this host (no descriptors in ${config.firmwareDirs.join(', ')}, no known OVMF files)`, install), warnings];
  const sizes = statSizes(catalog.descriptors.flatMap((d) => [d.executable.filename, d.nvramTemplate?.filename]));
  const flashes = catalog.descriptors.map((d) => ({ d, flash: flashOf(d, sizes) }));
  const bad = flashes.filter((f) => f.flash === 'missing' || f.flash === 'mismatch');
  const total = catalog.descriptors.length;
  const what = `${total} firmware build${total > 1 ? 's' : ''} (${catalog.source === 'builtin' ? 'built-in paths' : 'descriptors'})`;
  const badList = bad.map((f) => `${f.d.file}: ${f.flash === 'missing' ? 'files missing' : 'CODE/VARS sizes do not pair'}`).join(', ');
  if (bad.length === total) return [fail('firmware', `${what}, none usable: ${badList}`, install), warnings];
  if (bad.length)
    return [warn('firmware', `${what}, ${bad.length} unusable: ${badList}`, 'reinstall the OVMF package or remove the stale descriptor (see: ovmf-hook firmware list)'), warnings];
  return [ok('firmware', `${what}, files present: ${[...new Set(flashes.map((f) => f.flash))].join(', ')}`), warnings];
}

/**
 * Which VARS template a new Secure Boot VM gets (the descriptor libvirt, convert and the hook pick
 * for secure-boot + enrolled-keys) and whether it holds Microsoft's 2023 certificates; when not, the
 * fix is `firmware template --ms-2023`, and a copy of ovmf-hook's whose distro template changed since
 * (an OVMF upgrade) is rebuilt by running that again.
 */
function secureBootTemplateCheck(config: Config): DoctorCheck {
  const check = 'secure boot template';
  const s = secureBootTemplateStatus(config.firmwareDirs);
  if (!s.descriptor) return ok(check, `no Secure Boot firmware with enrolled keys in ${config.firmwareDirs.join(', ')}: nothing to check`);
  if (!s.template) return ok(check, `new Secure Boot VMs get ${s.descriptor}, which has no separate VARS template`);
  const gets = `new Secure Boot VMs get ${s.template} (${s.descriptor})`;
  const rerun = `run: ${TEMPLATE_COMMAND} (it rebuilds the copy)`;
  const r = s.readiness;
  if (r === undefined || typeof r === 'string') return warn(check, `${gets}, which cannot be read: ${r ?? 'unknown'}`, s.own ? rerun : 'reinstall the OVMF package (see: ovmf-hook firmware list)');
  if (r.state === 'not-secure-boot') return warn(check, `${gets}, which has no Secure Boot keys (${r.why ?? 'unknown'})`, 'check the descriptor: ovmf-hook firmware list');
  if (r.state === 'update-available')
    return warn(check, `${gets}: Microsoft 2011 certificates only, without ${r.missing2023.join(', ')} (the 2011 CAs expire in 2026)`, `run: ${TEMPLATE_COMMAND}`);
  if (s.own?.sourceChanged)
    return warn(check, `${gets}: with the Microsoft 2023 certificates, but copied from ${s.own.record.sourceTemplate} before it changed (an OVMF upgrade)`, rerun);
  return ok(check, `${gets}: with the Microsoft 2023 certificates`);
}

// ─── archive and state directories ──────────────────────────────────────────────────────────

async function privateDirCheck(check: string, dir: string, opts: { ancestors: boolean; missing: () => DoctorCheck }): Promise<DoctorCheck> {
  if (!existsSync(dir)) return opts.missing();
  try {
    await ensurePrivateDir(dir, { create: false, checkAncestors: opts.ancestors });
  } catch (e) {
    if (isOvmfHookError(e)) {
      // the safe file layer's messages end with their fix: "<problem>; <fix>"
      const cut = e.message.lastIndexOf('; ');
      return cut < 0 ? fail(check, e.message, `fix the ownership and mode of ${dir} and its parents`) : fail(check, e.message.slice(0, cut), e.message.slice(cut + 2));
    }
    return fail(check, `${dir}: ${errorMessage(e)}`, 'run doctor as root');
  }
  try {
    accessSync(dir, constants.W_OK);
  } catch (e) {
    return fail(check, `${dir} is not writable (${(e as NodeJS.ErrnoException).code ?? errorMessage(e)}; a read-only mount?)`, 'mount it read-write (on NFS: rw,no_root_squash)');
  }
  const mode = statSync(dir).mode;
  if (mode & 0o077) return warn(check, `${dir} is readable by others (mode ${octalMode(mode)}); NVRAM holds Secure Boot keys and boot entries`, `run: chmod 700 ${dir}`);
  return ok(check, `${dir} is root-only (0700) and writable`);
}

/** VM archives looked at at once by the integrity line. */
const ARCHIVE_SCAN_CONCURRENCY = 16;

/**
 * Generations moved aside as corrupt (`gen-N.corrupt.*`, see archive.ts) across the archive. Only
 * directory listings are read: verifying every generation's data (size + sha256) reads the whole
 * archive — 10,000 VMs × 10 generations × 4 MiB on shared storage — far too slow for doctor;
 * `ovmf-hook nvram repair` does that.
 */
async function archiveIntegrityCheck(config: Config, archiveLine: DoctorCheck): Promise<DoctorCheck> {
  const check = 'archive integrity';
  const root = config.archiveDir;
  if (!existsSync(root)) return ok(check, `no archive yet at ${root}: nothing moved aside as corrupt`);
  if (archiveLine.verdict === 'FAIL') return warn(check, 'not checked: the archive is not usable (see the archive line)', 'fix the archive line first');
  let vms: string[];
  let archive: Archive;
  try {
    const { host, hostId } = hostIdentity(config);
    archive = await openArchive({ root, host, hostId });
    vms = await archive.listVms();
  } catch (e) {
    return warn(check, `cannot list ${root}: ${errorMessage(e)}`, 'run doctor as root; see the archive line');
  }
  const corrupt: { uuid: string; name?: string; generations: number[] }[] = [];
  const unreadable: string[] = [];
  let next = 0;
  const worker = async (): Promise<void> => {
    for (let i = next++; i < vms.length; i = next++) {
      const uuid = vms[i]!;
      try {
        const gens = await archive.listCorrupt(uuid);
        if (gens.length) corrupt.push({ uuid, name: gens.find((g) => g.meta)?.meta?.vmName, generations: gens.map((g) => g.generation) });
      } catch (e) {
        unreadable.push(`${uuid}: ${errorMessage(e)}`);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(ARCHIVE_SCAN_CONCURRENCY, vms.length) }, worker));
  corrupt.sort((a, b) => (a.uuid < b.uuid ? -1 : 1));
  const fix = `look at a VM's generations: ovmf-hook nvram list <VM> (the corrupt files stay in ${root}/<uuid>/ for inspection); ovmf-hook nvram repair verifies every generation`;
  if (corrupt.length) {
    const gens = corrupt.reduce((n, c) => n + c.generations.length, 0);
    const shown = corrupt.slice(0, 3).map((c) => `${c.uuid}${c.name ? ` (${c.name})` : ''}: ${c.generations.join(', ')}`);
    const more = corrupt.length > 3 ? `, +${corrupt.length - 3} more` : '';
    const also = unreadable.length ? `; ${plural(unreadable.length, 'VM archive')} could not be read (${unreadable[0]})` : '';
    return warn(check, `${plural(gens, 'generation')} moved aside as corrupt in ${plural(corrupt.length, 'VM')} (${shown.join('; ')}${more})${also}`, fix);
  }
  if (unreadable.length) return warn(check, `${plural(unreadable.length, 'VM archive')} of ${vms.length} could not be read (${unreadable[0]})`, 'run doctor as root; then: ovmf-hook nvram repair');
  return ok(check, `no generations moved aside as corrupt in ${plural(vms.length, 'VM archive')} (data not verified here: ovmf-hook nvram repair does that)`);
}

// ─── qemu user ──────────────────────────────────────────────────────────────────────────────

function qemuUserCheck(config: Config, qemuConf: string, passwdFile: string, groupFile: string): DoctorCheck {
  const { user, group } = qemuOwnerNames(config, qemuConf);
  const uid = lookupId(passwdFile, user);
  const gid = lookupId(groupFile, group);
  const missing = [uid === undefined && `user ${user} is not in ${passwdFile}`, gid === undefined && `group ${group} is not in ${groupFile}`].filter(Boolean);
  if (missing.length)
    return fail('qemu user', `${missing.join('; ')}: NVRAM files could not be given to QEMU`, 'install libvirt\'s QEMU driver (it creates the account), or set "qemuUser"/"qemuGroup" in the config');
  return ok('qemu user', `NVRAM files are owned by ${user}:${group} (${uid}:${gid})`);
}

// ─── claim lease ────────────────────────────────────────────────────────────────────────────

/** A configured claim lease is in effect only with libvirt's lock manager (lock-manager.ts); no row without a lease. */
function leaseCheck(config: Config, qemuConf: string): DoctorCheck[] {
  if (config.claimLeaseSeconds <= 0) return [];
  let text = '';
  try {
    text = readFileSync(qemuConf, 'utf8');
  } catch {
    /* no qemu.conf: no lock manager */
  }
  const manager = parseLockManager(text);
  const p = leasePolicy(config.claimLeaseSeconds, manager);
  if (p.ignored) return [fail('claim lease', p.ignored.replace(/; set .*$/, ''), `set lock_manager = "lockd" in ${qemuConf} on every host (docs/CLUSTER.md), or "claimLeaseSeconds": 0`)];
  return [ok('claim lease', `${config.claimLeaseSeconds} s, with libvirt's lock manager "${manager}" refusing a start of a VM that still runs elsewhere`)];
}

// ─── all together ───────────────────────────────────────────────────────────────────────────

export async function runDoctor(o: DoctorOptions = {}): Promise<DoctorCheck[]> {
  const hooksDir = o.hooksDir ?? '/etc/libvirt/hooks';
  const hook = posix.join(hooksDir, 'qemu');
  const hookDir = posix.join(hooksDir, 'qemu.d');
  const { checks: cfg, config } = configChecks(o.configPath ?? configPath());
  const h = hookCheck(hook);
  const archive = await privateDirCheck('archive', config.archiveDir, {
    ancestors: true,
    missing: () =>
      warn('archive', `${config.archiveDir} does not exist; the hook creates it at the first VM start`, `if it is shared storage, mount it first; else run: install -d -m 0700 ${config.archiveDir}`),
  });
  return [
    ...cfg,
    nodeCheck(h.interpreter, o.execPath ?? process.execPath, o.nodeVersion ?? process.versions.node),
    h.check,
    hookDirCheck(hookDir),
    reloadCheck(hook, hookDir, o.pidFiles ?? ['/run/libvirtd.pid', '/run/virtqemud.pid'], o.procDir ?? '/proc', o.runDir ?? '/run/ovmf-hook'),
    ...firmwareChecks(config, o.firmwareExists),
    secureBootTemplateCheck(config),
    archive,
    await archiveIntegrityCheck(config, archive),
    await privateDirCheck('state', config.stateDir, {
      ancestors: false,
      missing: () => ok('state', `${config.stateDir} does not exist yet; the hook creates it at the first VM start`),
    }),
    qemuUserCheck(config, o.qemuConf ?? '/etc/libvirt/qemu.conf', o.passwdFile ?? '/etc/passwd', o.groupFile ?? '/etc/group'),
    ...leaseCheck(config, o.qemuConf ?? '/etc/libvirt/qemu.conf'),
  ];
}

export function renderDoctor(checks: readonly DoctorCheck[]): string {
  return table(checks.map((c) => [c.verdict, c.check, c.fix ? `${c.detail}; fix: ${c.fix}` : c.detail]));
}

export function makeDoctorCommand(options: DoctorOptions = {}): CommandModule<object, any> {
  return {
    command: 'doctor',
    describe: 'Check that this host is ready for the hook (config, log file, node, hook install, libvirt, OVMF, archive, archive integrity)',
    builder: (y: Argv) => y.option('json', jsonOption()),
    handler: async (argv) => {
      const checks = await runDoctor(options);
      const failed = checks.filter((c) => c.verdict === 'FAIL');
      if (argv.json === true) printJson({ ok: failed.length === 0, checks });
      else process.stdout.write(renderDoctor(checks));
      if (failed.length) throw new RefusedError(`doctor: ${failed.length} check${failed.length > 1 ? 's' : ''} failed (${failed.map((c) => c.check).join(', ')}); see the fixes above`);
    },
  };
}

export const doctorCommand = makeDoctorCommand();
