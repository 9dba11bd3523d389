/**
 * Harness for tests that need the real libvirtd (`*.libvirt.test.ts`): probing, virsh, throw-away
 * test VMs with guaranteed cleanup, serial-log polling, minimal TCG domain XML, schema validation.
 *
 * Rules it enforces: every virsh call is wrapped in `timeout`; this module only defines, destroys
 * or undefines domains whose names start with `ovmfhook-t-`; every domain defined through it is
 * destroyed and undefined (`--nvram`) when its `describeLibvirt` block ends, pass or fail.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, it } from 'vitest';

export const LIBVIRT_URI = 'qemu:///system';
/** Prefix of every VM a test may create, and the only names this module will touch. */
export const TEST_VM_PREFIX = 'ovmfhook-t-';
/** Directory of the libvirt-formatted domain fixtures (see its make-fixtures.sh). */
export const DOMAIN_FIXTURES_DIR = join(__dirname, '..', 'fixtures', 'domains');

export const OVMF = {
  code: '/usr/share/OVMF/OVMF_CODE_4M.fd',
  vars: '/usr/share/OVMF/OVMF_VARS_4M.fd',
  secureCode: '/usr/share/OVMF/OVMF_CODE_4M.ms.fd',
  msVars: '/usr/share/OVMF/OVMF_VARS_4M.ms.fd',
} as const;

export interface VirshResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface VirshOptions {
  /** Written to virsh's stdin. */
  input?: string;
  /** Passed to `timeout(1)`; default 60. Exit code 124 means it expired. */
  timeoutSec?: number;
  /** Return a non-zero result instead of throwing. Default false. */
  allowFail?: boolean;
}

/** Run `timeout <t> virsh -c qemu:///system <args…>`. Throws with virsh's stderr on failure unless `allowFail`. */
export function virsh(args: string[], { input, timeoutSec = 60, allowFail = false }: VirshOptions = {}): VirshResult {
  const r = spawnSync('timeout', [String(timeoutSec), 'virsh', '-c', LIBVIRT_URI, ...args], {
    input,
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
  });
  const result: VirshResult = {
    code: r.status ?? (r.error ? 127 : 128),
    stdout: r.stdout ?? '',
    stderr: r.stderr ?? (r.error ? String(r.error) : ''),
  };
  if (result.code !== 0 && !allowFail) {
    const why = result.code === 124 ? `timed out after ${timeoutSec}s` : `exit ${result.code}`;
    throw new Error(`virsh ${args.join(' ')} failed (${why}): ${result.stderr.trim() || result.stdout.trim()}`);
  }
  return result;
}

// ---------------------------------------------------------------------------------------------
// Availability

let probed: { ok: boolean; reason: string } | undefined;

function probe(): { ok: boolean; reason: string } {
  const which = spawnSync('sh', ['-c', 'command -v virsh'], { encoding: 'utf8' });
  if (which.status !== 0) return { ok: false, reason: 'virsh is not installed' };
  const r = virsh(['version'], { timeoutSec: 10, allowFail: true });
  if (r.code !== 0) {
    const why = r.code === 124 ? 'did not answer within 10 s' : r.stderr.trim().split('\n')[0];
    return { ok: false, reason: `virsh -c ${LIBVIRT_URI} version: ${why}` };
  }
  return { ok: true, reason: '' };
}

/** True when virsh exists and the system daemon answers `virsh version` within 10 s. Probed once per process. */
export function libvirtAvailable(): boolean {
  probed ??= probe();
  return probed.ok;
}

/**
 * `describe` for tests that need the real libvirtd. Unavailable libvirt: skipped with a
 * console.warn locally, but a failing test under CI (`process.env.CI`), never a silent skip.
 * Registers `afterAll(cleanupDomains)` so every domain defined through this module goes away.
 */
export function describeLibvirt(name: string, fn: () => void): void {
  if (libvirtAvailable()) {
    describe(name, () => {
      afterAll(cleanupDomains);
      fn();
    });
    return;
  }
  const reason = probed?.reason ?? 'unknown';
  const fix = 'run scripts/ci-setup.sh as root';
  const ci = process.env.CI;
  if (ci && ci !== 'false' && ci !== '0') {
    describe(name, () => {
      it('needs a reachable libvirtd (CI must not skip libvirt tests)', () => {
        throw new Error(`libvirt is not available: ${reason}; ${fix}`);
      });
    });
    return;
  }
  console.warn(`[libvirt tests skipped] ${name}: ${reason}; ${fix}`);
  describe.skip(name, fn);
}

// ---------------------------------------------------------------------------------------------
// Test domains and their cleanup

const tracked = new Set<string>();
let scratch: string | undefined;

function assertTestName(name: string): void {
  if (!name.startsWith(TEST_VM_PREFIX)) {
    throw new Error(`refusing to touch domain '${name}': test domains must be named ${TEST_VM_PREFIX}*`);
  }
}

/** `ovmfhook-t-<prefix>-<8 random hex>`; unique enough for parallel sessions sharing one daemon. */
export function uniqueVmName(prefix: string): string {
  const rnd = Math.random().toString(16).slice(2, 10).padEnd(8, '0');
  return `${TEST_VM_PREFIX}${prefix}-${rnd}`;
}

/** Text of the first `<name>` element of a domain XML. */
export function domainNameOf(xml: string): string {
  const m = /<name>\s*([^<]*?)\s*<\/name>/.exec(xml);
  if (!m) throw new Error('domain XML has no <name>');
  return m[1];
}

/**
 * Give a (fixture) domain XML a test name: replaces the domain's `<name>` and drops its `<uuid>`
 * so libvirt assigns a fresh one. The result may be defined with `defineDomain`.
 */
export function renameDomainXml(xml: string, name: string): string {
  return xml
    .replace(/<name>[^<]*<\/name>/, `<name>${escapeXml(name)}</name>`)
    .replace(/[ \t]*<uuid>[^<]*<\/uuid>\r?\n?/, '');
}

/** Run `fn` with the path of a temporary file holding `text` (virsh cannot read a piped /dev/stdin). */
function withTempFile<T>(text: string, fn: (file: string) => T): T {
  const dir = mkdtempSync(join(tmpdir(), 'ovmfhook-xml-'));
  try {
    const file = join(dir, 'domain.xml');
    writeFileSync(file, text);
    return fn(file);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * `virsh define` the XML and track the domain for cleanup. The name must start with
 * `ovmfhook-t-`. Returns the domain name.
 */
export function defineDomain(xml: string): string {
  const name = domainNameOf(xml);
  assertTestName(name);
  tracked.add(name);
  withTempFile(xml, (file) => virsh(['define', file]));
  return name;
}

/** `virsh start` a test domain. */
export function startDomain(name: string): void {
  assertTestName(name);
  virsh(['start', name]);
}

/** `virsh destroy` a test domain; a domain that is not running is not an error. */
export function destroyDomain(name: string): void {
  assertTestName(name);
  const r = virsh(['destroy', name], { allowFail: true });
  if (r.code !== 0 && !/not running/i.test(r.stderr)) {
    throw new Error(`virsh destroy ${name} failed: ${r.stderr.trim()}`);
  }
}

/** `virsh undefine [--nvram]` a test domain (default `{ nvram: true }`: the VARS file goes too). */
export function undefineDomain(name: string, { nvram = true }: { nvram?: boolean } = {}): void {
  assertTestName(name);
  virsh(['undefine', ...(nvram ? ['--nvram'] : []), name]);
  tracked.delete(name);
}

/** `virsh domstate`, e.g. 'running', 'shut off', 'paused'. */
export function domainState(name: string): string {
  return virsh(['domstate', name], { timeoutSec: 20 }).stdout.trim();
}

/** Names of all defined or running domains starting with `ovmfhook-t-` (any session's). */
export function listTestDomains(): string[] {
  return virsh(['list', '--all', '--name'], { timeoutSec: 20 })
    .stdout.split('\n')
    .map((s) => s.trim())
    .filter((s) => s.startsWith(TEST_VM_PREFIX));
}

/** Names defined through this module in this process and not yet undefined. */
export function trackedDomains(): string[] {
  return [...tracked];
}

function removeQuietly(name: string): string | undefined {
  virsh(['destroy', name], { allowFail: true });
  const r = virsh(['undefine', '--nvram', name], { allowFail: true });
  if (r.code === 0 || /failed to get domain|not found/i.test(r.stderr)) {
    tracked.delete(name);
    return undefined;
  }
  return `${name}: ${r.stderr.trim()}`;
}

/**
 * Destroy and undefine (`--nvram`) every domain this module defined and that still exists, and
 * remove the scratch directory. Throws (after trying them all) if one could not be removed.
 */
export function cleanupDomains(): void {
  const errors = [...tracked].map(removeQuietly).filter((e): e is string => e !== undefined);
  if (scratch) {
    rmSync(scratch, { recursive: true, force: true });
    scratch = undefined;
  }
  if (errors.length) throw new Error(`could not remove test domains: ${errors.join('; ')}`);
}

/** Define `xml`, run `fn(name)`, then destroy + undefine `--nvram` the domain whatever happens. */
export async function withTempDomain<T>(xml: string, fn: (name: string) => T | Promise<T>): Promise<T> {
  const name = defineDomain(xml);
  try {
    return await fn(name);
  } finally {
    const err = removeQuietly(name);
    if (err) throw new Error(`could not remove test domain ${err}`);
  }
}

/**
 * A path for a file QEMU or a test writes (e.g. a serial log), in a per-process scratch directory
 * (mode 0755) removed by `cleanupDomains`.
 */
export function scratchPath(file: string): string {
  if (!scratch) {
    scratch = mkdtempSync(join(tmpdir(), TEST_VM_PREFIX));
    chmodSync(scratch, 0o755);
  }
  return join(scratch, file);
}

// ---------------------------------------------------------------------------------------------
// Observation

/**
 * Poll `path` (every 200 ms) until its content matches `pattern`; resolves with the content.
 * Rejects after `timeoutMs` with the last 400 characters seen (escape codes stripped).
 */
export async function waitForFile(path: string, pattern: RegExp, timeoutMs: number): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  let text = '';
  for (;;) {
    try {
      text = readFileSync(path, 'latin1');
    } catch {
      text = '';
    }
    if (pattern.test(text)) return text;
    if (Date.now() >= deadline) {
      const tail = text.replace(/\x1b\[[0-9;=?]*[A-Za-z]/g, '').slice(-400);
      throw new Error(`${pattern} not seen in ${path} within ${timeoutMs} ms; last output: ${JSON.stringify(tail)}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** `virt-xml-validate FILE domain` on the XML; `message` is the tool's combined output. */
export function virtXmlValidate(xml: string): { ok: boolean; message: string } {
  return withTempFile(xml, (file) => {
    const r = spawnSync('timeout', ['30', 'virt-xml-validate', file, 'domain'], { encoding: 'utf8' });
    const message = `${r.stdout ?? ''}${r.stderr ?? ''}`.trim() || String(r.error ?? '');
    return { ok: r.status === 0, message };
  });
}

/** Content of `test/fixtures/domains/<file>`. */
export function domainFixture(file: string): string {
  return readFileSync(join(DOMAIN_FIXTURES_DIR, file), 'utf8');
}

// ---------------------------------------------------------------------------------------------
// Minimal domain XML

export type Machine = 'pc' | 'q35';
/**
 * - bios: no loader (SeaBIOS).
 * - ovmf: explicit pflash loader OVMF_CODE_4M.fd + nvram from OVMF_VARS_4M.fd.
 * - ovmf-secure: OVMF_CODE_4M.ms.fd secure='yes' + MS-keys VARS template + `<smm state='on'/>` (q35 only).
 * - efi-auto: `<os firmware='efi'>`, libvirt picks the firmware.
 * - efi-auto-insecure: `<os firmware='efi'>` with the secure-boot feature off (what virt-install
 *   gives a guest without Secure Boot): libvirt picks a firmware without it.
 */
export type Firmware = 'bios' | 'ovmf' | 'ovmf-secure' | 'efi-auto' | 'efi-auto-insecure';

export interface DiskSpec {
  /** Source file; omit for an empty cdrom drive. */
  path?: string;
  /** Default 'disk'. */
  device?: 'disk' | 'cdrom';
  /** Default 'virtio' for disks, 'ide' (pc) / 'sata' (q35) for cdroms. */
  bus?: 'virtio' | 'ide' | 'sata' | 'scsi';
  /** Driver type; default 'qcow2' for disks, 'raw' for cdroms. */
  format?: string;
}

export interface DomainSpec {
  name: string;
  machine: Machine;
  firmware: Firmware;
  /** Host path of the serial console log (`<serial type='file'>`); see `scratchPath`. */
  serialLog: string;
  /** Default: none. */
  disks?: DiskSpec[];
  /** `<nvram>` path for 'ovmf'/'ovmf-secure'; default: libvirt's `/var/lib/libvirt/qemu/nvram/<name>_VARS.fd`. */
  nvramPath?: string;
  uuid?: string;
  /** Directory of the OVMF files (their Debian names) for 'ovmf'/'ovmf-secure'; default /usr/share/OVMF. */
  ovmfDir?: string;
  /** Markup inside `<metadata>` (e.g. an `<ovmf:policy>`); default: no `<metadata>`. */
  metadata?: string;
  /** Append to the serial log instead of truncating it (several runs, or hosts, share one log). */
  serialAppend?: boolean;
}

/** Escape text for an XML attribute value or element text. */
export function escapeXml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function osXml({ machine, firmware, nvramPath, ovmfDir }: DomainSpec): string {
  const type = `    <type arch='x86_64' machine='${machine}'>hvm</type>`;
  const fw = (file: string) => (ovmfDir ? `${ovmfDir}/${file.split('/').pop()}` : file);
  const nvram = (template: string) =>
    nvramPath
      ? `    <nvram template='${escapeXml(template)}'>${escapeXml(nvramPath)}</nvram>`
      : `    <nvram template='${escapeXml(template)}'/>`;
  const lines: Record<Firmware, string[]> = {
    bios: ['  <os>', type],
    ovmf: ['  <os>', type, `    <loader readonly='yes' type='pflash'>${escapeXml(fw(OVMF.code))}</loader>`, nvram(fw(OVMF.vars))],
    'ovmf-secure': [
      '  <os>',
      type,
      `    <loader readonly='yes' secure='yes' type='pflash'>${escapeXml(fw(OVMF.secureCode))}</loader>`,
      nvram(fw(OVMF.msVars)),
    ],
    'efi-auto': ["  <os firmware='efi'>", type],
    'efi-auto-insecure': ["  <os firmware='efi'>", type, "    <firmware><feature enabled='no' name='secure-boot'/></firmware>"],
  };
  return [...lines[firmware], "    <boot dev='hd'/>", '  </os>'].join('\n');
}

function diskXml(disk: DiskSpec, machine: Machine, counters: Map<string, number>): string {
  const device = disk.device ?? 'disk';
  const bus = disk.bus ?? (device === 'cdrom' ? (machine === 'q35' ? 'sata' : 'ide') : 'virtio');
  const letterPrefix = { virtio: 'vd', ide: 'hd', sata: 'sd', scsi: 'sd' }[bus];
  const n = counters.get(letterPrefix) ?? 0;
  counters.set(letterPrefix, n + 1);
  const dev = letterPrefix + String.fromCharCode(97 + n);
  const format = disk.format ?? (device === 'cdrom' ? 'raw' : 'qcow2');
  return [
    `    <disk type='file' device='${device}'>`,
    `      <driver name='qemu' type='${escapeXml(format)}'/>`,
    ...(disk.path ? [`      <source file='${escapeXml(disk.path)}'/>`] : []),
    `      <target dev='${dev}' bus='${bus}'/>`,
    ...(device === 'cdrom' ? ['      <readonly/>'] : []),
    '    </disk>',
  ].join('\n');
}

/**
 * A minimal TCG domain (`type='qemu'`, 256 MiB, 1 vCPU, x86_64, `<boot dev='hd'/>`, serial to a
 * file, no graphics, no NIC, no disks unless given) for quick boot tests.
 */
export function makeDomainXml(spec: DomainSpec): string {
  const counters = new Map<string, number>();
  const features = spec.firmware === 'ovmf-secure' ? "<acpi/><apic/><smm state='on'/>" : '<acpi/><apic/>';
  return [
    "<domain type='qemu'>",
    `  <name>${escapeXml(spec.name)}</name>`,
    ...(spec.uuid ? [`  <uuid>${escapeXml(spec.uuid)}</uuid>`] : []),
    ...(spec.metadata ? [`  <metadata>${spec.metadata}</metadata>`] : []),
    "  <memory unit='MiB'>256</memory>",
    '  <vcpu>1</vcpu>',
    osXml(spec),
    `  <features>${features}</features>`,
    '  <on_poweroff>destroy</on_poweroff>',
    '  <on_reboot>restart</on_reboot>',
    '  <on_crash>destroy</on_crash>',
    '  <devices>',
    ...(spec.disks ?? []).map((d) => diskXml(d, spec.machine, counters)),
    "    <serial type='file'>",
    `      <source path='${escapeXml(spec.serialLog)}'${spec.serialAppend ? " append='on'" : ''}/>`,
    "      <target port='0'/>",
    '    </serial>',
    "    <memballoon model='none'/>",
    '  </devices>',
    '</domain>',
    '',
  ].join('\n');
}
