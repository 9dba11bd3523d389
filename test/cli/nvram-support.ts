/** Test helpers for the nvram/doctor CLI tests: a temp host tree, a fake libvirt (virsh runner), a command runner like main's. */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, vi } from 'vitest';
import yargs from 'yargs';
import type { CommandModule } from 'yargs';
import type { VirshRunner } from '../../src/io/virsh';
import { DEFAULT_CONFIG, type Config } from '../../src/core/config';
import { isOvmfHookError, UsageError } from '../../src/core/errors';

const made: string[] = [];
afterEach(async () => {
  vi.restoreAllMocks();
  for (const d of made.splice(0)) await fs.rm(d, { recursive: true, force: true });
});

/** A fresh temp dir (0700), removed after the test. */
export async function tempDir(prefix = 'ovmfhook-cli-'): Promise<string> {
  const d = await fs.mkdtemp(path.join(os.tmpdir(), prefix));
  made.push(d);
  return d;
}

/** Config of a temp host: archive, state, nvram and firmware dirs under `base`. */
export const tempConfig = (base: string, extra: Partial<Config> = {}): Config => ({
  ...DEFAULT_CONFIG,
  policy: { ...DEFAULT_CONFIG.policy },
  archiveDir: path.join(base, 'archive'),
  stateDir: path.join(base, 'state'),
  nvramDir: path.join(base, 'nvram'),
  firmwareDirs: [path.join(base, 'firmware')],
  templateDir: path.join(base, 'templates'),
  hostId: 'host-here',
  qemuUser: 'root',
  qemuGroup: 'root',
  ...extra,
});

/** A UEFI domain with explicit loader, template and NVRAM path (no firmware catalog lookup needed). */
export const uefiDomainXml = (o: { name: string; uuid: string; nvram: string; template: string; loader?: string }) => `<domain type='qemu'>
  <name>${o.name}</name>
  <uuid>${o.uuid}</uuid>
  <memory unit='KiB'>262144</memory>
  <os>
    <type arch='x86_64' machine='pc-q35-7.2'>hvm</type>
    <loader readonly='yes' type='pflash'>${o.loader ?? '/usr/share/OVMF/OVMF_CODE_4M.fd'}</loader>
    <nvram template='${o.template}'>${o.nvram}</nvram>
  </os>
</domain>
`;

export const biosDomainXml = (o: { name: string; uuid: string }) =>
  `<domain type='qemu'><name>${o.name}</name><uuid>${o.uuid}</uuid><os><type arch='x86_64' machine='pc-i440fx-7.2'>hvm</type></os></domain>\n`;

export interface FakeDomain {
  name: string;
  uuid: string;
  xml: string;
  state: string;
}

/** A libvirt that knows `domains` (by name or UUID) and records every call. */
export function fakeVirsh(domains: FakeDomain[], opts: { down?: boolean } = {}): VirshRunner & { calls: string[][] } {
  const calls: string[][] = [];
  const run = async (args: readonly string[]) => {
    calls.push([...args]);
    if (opts.down) return { code: 1, stdout: '', stderr: 'error: failed to connect to the hypervisor\nerror: Failed to connect socket\n' };
    const target = args.at(-1)!;
    const d = domains.find((x) => x.name === target || x.uuid === target.toLowerCase());
    if (!d) return { code: 1, stdout: '', stderr: `error: failed to get domain '${target}'\n` };
    if (args[0] === 'dumpxml') return { code: 0, stdout: d.xml, stderr: '' };
    if (args[0] === 'domstate') return { code: 0, stdout: `${d.state}\n\n`, stderr: '' };
    return { code: 1, stdout: '', stderr: `error: unexpected virsh call ${args.join(' ')}\n` };
  };
  return Object.assign(run, { calls });
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Run one command module like src/cli/main.ts does: typed errors → `ovmf-hook: <msg>` + exit code; yargs usage errors → 2. */
export async function runCommand(cmd: CommandModule<object, any>, args: string[]): Promise<RunResult> {
  let stdout = '';
  let stderr = '';
  vi.spyOn(process.stdout, 'write').mockImplementation((s) => ((stdout += String(s)), true));
  vi.spyOn(process.stderr, 'write').mockImplementation((s) => ((stderr += String(s)), true));
  try {
    await yargs(args)
      .command(cmd)
      .strict()
      .fail((msg, err) => {
        throw err ?? new UsageError(msg);
      })
      .parseAsync();
    return { code: 0, stdout, stderr };
  } catch (e) {
    if (!isOvmfHookError(e)) throw e;
    stderr += `ovmf-hook: ${e.message}\n`;
    return { code: e.exitCode, stdout, stderr };
  } finally {
    vi.restoreAllMocks();
  }
}
