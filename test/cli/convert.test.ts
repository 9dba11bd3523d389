/**
 * `ovmf-hook convert` against a fake libvirt (an injected virsh runner): the guards, --force,
 * --dry-run, --all/--match progress and summary, and what reaches `virsh define`. The real
 * libvirt round trip is test/cli/convert.libvirt.test.ts.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runConvert, type ConvertArgs } from '../../src/cli/commands/convert';
import type { VirshRunner } from '../../src/io/virsh';
import { DEFAULT_CONFIG, type Config } from '../../src/core/config';
import { OvmfHookError, RefusedError, UsageError } from '../../src/core/errors';
import { applyUnified, capture } from './support';

const DOMAINS = join(__dirname, '..', 'fixtures', 'domains');
const DEBIAN_FIRMWARE = join(__dirname, '..', 'firmware', 'fixtures', 'debian');
const BIOS = readFileSync(join(DOMAINS, 'bios-i440fx-linux.xml'), 'utf8');
const UEFI = readFileSync(join(DOMAINS, 'q35-ovmf-manual.xml'), 'utf8');
const named = (xml: string, name: string) => xml.replace(/<name>[^<]*<\/name>/, `<name>${name}</name>`);

interface FakeDomain {
  xml: string;
  state?: string;
  persistent?: boolean;
  managedSave?: boolean;
  memorySnapshots?: string[];
}

/** A libvirt that knows `domains`; records every call and each define (with the temp file's mode). */
function fakeLibvirt(domains: Record<string, FakeDomain>, opts: { defineError?: string } = {}) {
  const calls: string[][] = [];
  const defines: { name: string; xml: string; mode: number; file: string }[] = [];
  const ok = (stdout = '') => ({ code: 0, stdout, stderr: '' });
  const virsh: VirshRunner = async (args) => {
    calls.push([...args]);
    const [cmd, ...rest] = args;
    const name = rest[rest.indexOf('--domain') + 1] ?? rest[0];
    const d = domains[name];
    const missing = { code: 1, stdout: '', stderr: `error: failed to get domain '${name}'\n` };
    switch (cmd) {
      case 'list':
        return ok(`${Object.keys(domains).filter((n) => domains[n].persistent !== false).join('\n')}\n\n`);
      case 'dominfo':
        return d
          ? ok(`Id:             -\nName:           ${name}\nState:          ${d.state ?? 'shut off'}\nPersistent:     ${d.persistent === false ? 'no' : 'yes'}\nAutostart:      disable\nManaged save:   ${d.managedSave ? 'yes' : 'no'}\n\n`)
          : missing;
      case 'dumpxml':
        return d ? ok(d.xml) : missing;
      case 'snapshot-list':
        return d ? ok(`${(d.memorySnapshots ?? []).join('\n')}\n\n`) : missing;
      case 'define': {
        const xml = readFileSync(name, 'utf8');
        const domName = /<name>([^<]*)<\/name>/.exec(xml)![1];
        defines.push({ name: domName, xml, mode: statSync(name).mode & 0o777, file: name });
        if (opts.defineError) return { code: 1, stdout: '', stderr: `error: Failed to define domain from ${name}\nerror: ${opts.defineError}\n` };
        domains[domName] = { ...domains[domName], xml };
        return ok(`Domain '${domName}' defined from ${name}\n`);
      }
      default:
        return { code: 1, stdout: '', stderr: `error: unexpected command ${cmd}` };
    }
  };
  return { virsh, calls, defines, domains };
}

const config: Config = { ...DEFAULT_CONFIG, firmwareDirs: [DEBIAN_FIRMWARE] };
const convert = (lv: ReturnType<typeof fakeLibvirt>, args: ConvertArgs) => capture(() => runConvert(args, { virsh: lv.virsh, config: () => config }));

describe('ovmf-hook convert (fake libvirt)', () => {
  it('defines the rewritten inactive XML from a 0600 temp file that is gone afterwards; a second run is unchanged', async () => {
    const lv = fakeLibvirt({ vm1: { xml: named(BIOS, 'vm1') } });
    const r = await convert(lv, { names: ['vm1'] });
    expect(r.error).toBeUndefined();
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/^vm1: converted \(\d+ changes\)\n$/);
    expect(lv.calls).toContainEqual(['dumpxml', '--inactive', '--security-info', '--domain', 'vm1']);
    expect(lv.defines).toHaveLength(1);
    expect(lv.defines[0].mode).toBe(0o600);
    expect(existsSync(lv.defines[0].file)).toBe(false);
    expect(lv.defines[0].xml).toContain("<loader readonly='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE_4M.fd</loader>");

    const again = await convert(lv, { names: ['vm1'] });
    expect(again).toEqual({ stdout: '', stderr: 'vm1: unchanged\n' });
    expect(lv.defines).toHaveLength(1);
  });

  it('passes the flags and honours the metadata policy', async () => {
    const lv = fakeLibvirt({
      sb: { xml: named(BIOS, 'sb') },
      meta: { xml: named(BIOS, 'meta').replace('  <metadata>\n', '  <metadata>\n    <ovmf:policy xmlns:ovmf="urn:ovmf-hook:policy:1" secure-boot="yes" tpm="yes"/>\n') },
    });
    await convert(lv, { names: ['sb'], secureBoot: true, tpm: true, rootPorts: 2 });
    await convert(lv, { names: ['meta'] });
    for (const d of lv.defines) {
      expect(d.xml).toContain("secure='yes'>/usr/share/OVMF/OVMF_CODE_4M.ms.fd</loader>");
      expect(d.xml).toContain("<tpm model='tpm-crb'>");
    }
    expect(lv.defines[0].xml.split("model='pcie-root-port'")).toHaveLength(3);
  });

  const REFUSALS: [string, FakeDomain, RegExp][] = [
    ['running', { xml: BIOS, state: 'running' }, /^vm: the domain is running; shut it down first \(virsh shutdown vm\), then run the convert again$/],
    ['paused', { xml: BIOS, state: 'paused' }, /the domain is paused; shut it down first/],
    ['transient', { xml: BIOS, state: 'running', persistent: false }, /^vm: the domain is transient: it has no persistent definition to convert, and shutting it down would delete it; convert its source definition instead: virsh dumpxml --security-info vm > vm\.xml; ovmf-hook rewrite vm\.xml > vm-uefi\.xml; then virsh define vm-uefi\.xml \(.*\)$/],
    ['managed save', { xml: BIOS, managedSave: true }, /has a managed-save image, which cannot be restored after the conversion; .*virsh managedsave-remove vm.*--force$/],
    ['memory snapshots', { xml: BIOS, memorySnapshots: ['before-upgrade', 's2'] }, /has 2 snapshots with memory state \(before-upgrade, s2\), which cannot be reverted .*virsh snapshot-delete vm SNAPSHOT\) or pass --force$/],
  ];
  it.each(REFUSALS)('refuses a %s domain: exit 1, one line, nothing defined', async (_, dom, message) => {
    const lv = fakeLibvirt({ vm: { ...dom, xml: named(dom.xml, 'vm') } });
    const r = await convert(lv, { names: ['vm'] });
    expect(r.error).toBeInstanceOf(RefusedError);
    expect((r.error as RefusedError).exitCode).toBe(1);
    expect((r.error as Error).message).toMatch(message);
    expect((r.error as Error).message).not.toContain('\n');
    expect(r.stdout).toBe('');
    expect(lv.defines).toEqual([]);
  });

  it('--force converts despite a managed-save image and memory snapshots, not a running domain', async () => {
    const lv = fakeLibvirt({
      saved: { xml: named(BIOS, 'saved'), managedSave: true, memorySnapshots: ['s1'] },
      up: { xml: named(BIOS, 'up'), state: 'running' },
    });
    expect((await convert(lv, { names: ['saved'], force: true })).error).toBeUndefined();
    expect(lv.calls.some((c) => c[0] === 'snapshot-list')).toBe(false);
    expect((await convert(lv, { names: ['up'], force: true })).error).toBeInstanceOf(RefusedError);
    expect(lv.defines.map((d) => d.name)).toEqual(['saved']);
  });

  it('a running domain that needs no change is "unchanged", not refused', async () => {
    const lv = fakeLibvirt({ vm: { xml: named(UEFI, 'vm'), state: 'running' } });
    expect(await convert(lv, { names: ['vm'] })).toEqual({ stdout: '', stderr: 'vm: unchanged\n' });
  });

  it('--dry-run prints the diff on stdout and defines nothing, noting what would refuse', async () => {
    const lv = fakeLibvirt({ vm: { xml: named(BIOS, 'vm'), state: 'running' } });
    const r = await convert(lv, { names: ['vm'], dryRun: true });
    expect(r.error).toBeUndefined();
    expect(r.stdout.startsWith('--- vm.xml\n+++ vm.xml\n@@ ')).toBe(true);
    expect(applyUnified(named(BIOS, 'vm'), r.stdout)).toContain("machine='q35'");
    expect(r.stderr).toMatch(/^vm: would convert \(\d+ changes; refused if run now: the domain is running\)\n$/);
    expect(lv.defines).toEqual([]);
    expect(lv.calls).toContainEqual(['dumpxml', '--inactive', '--domain', 'vm']); // no secrets in a diff on stdout
  });

  it('skips a domain the rewrite does not touch (non-x86)', async () => {
    const lv = fakeLibvirt({ arm: { xml: named(BIOS, 'arm').replace("arch='x86_64' machine='pc-i440fx-7.2'", "arch='aarch64' machine='virt'") } });
    expect(await convert(lv, { names: ['arm'] })).toEqual({ stdout: '', stderr: "arm: skipped: architecture 'aarch64' is not x86_64; left untouched\n" });
  });

  it('--all --match GLOB: only matching persistent domains, progress and summary on stderr, exit 1 on a refusal', async () => {
    const lv = fakeLibvirt({
      'web-1': { xml: named(BIOS, 'web-1') },
      'web-2': { xml: named(UEFI, 'web-2') },
      'web-3': { xml: named(BIOS, 'web-3'), state: 'running' },
      'web-4': { xml: named(BIOS, 'web-4'), managedSave: true },
      'db-1': { xml: named(BIOS, 'db-1') },
    });
    const r = await convert(lv, { all: true, match: 'web-*' });
    expect(r.stdout).toBe('');
    const lines = r.stderr.trimEnd().split('\n');
    expect(lines.slice(0, 4)).toEqual([
      expect.stringMatching(/^\[1\/4\] web-1: converted \(\d+ changes\)$/),
      '[2/4] web-2: unchanged',
      '[3/4] web-3: skipped: running; shut it down to convert it',
      expect.stringMatching(/^\[4\/4\] web-4: refused: the domain has a managed-save image/),
    ]);
    expect(lines[4]).toBe('4 domains: 1 converted, 1 unchanged, 1 skipped, 1 refused');
    expect(r.error).toBeInstanceOf(RefusedError);
    expect((r.error as Error).message).toBe('1 of 4 domains not converted (refused or failed); see the lines above');
    expect(lv.defines.map((d) => d.name)).toEqual(['web-1']);
    expect(lv.calls.some((c) => c.includes('db-1'))).toBe(false);
  });

  it('--all --dry-run prints only diffs on stdout and defines nothing', async () => {
    const lv = fakeLibvirt({ 'web-1': { xml: named(BIOS, 'web-1') }, 'web-2': { xml: named(BIOS, 'web-2'), state: 'running' } });
    const r = await convert(lv, { all: true, dryRun: true });
    expect(r.error).toBeUndefined();
    expect(r.stdout.match(/^--- web-\d\.xml$/gm)).toEqual(['--- web-1.xml', '--- web-2.xml']);
    expect(r.stderr).toMatch(/^\[1\/2\] web-1: would convert \(\d+ changes\)\n\[2\/2\] web-2: would convert \(\d+ changes; refused if run now: the domain is running\)\n2 domains: 2 would convert\n$/);
    expect(lv.defines).toEqual([]);
  });

  it('several names: an unknown one fails, the others go on', async () => {
    const lv = fakeLibvirt({ a: { xml: named(BIOS, 'a') } });
    const r = await convert(lv, { names: ['nope', 'a'] });
    expect(r.stderr).toMatch(/^\[1\/2\] nope: failed: no domain named "nope" on this host; check: virsh list --all\n\[2\/2\] a: converted/);
    expect(r.error).toBeInstanceOf(RefusedError);
  });

  it('reports a define that libvirt rejects (exit 1), and an unknown single domain (exit 2)', async () => {
    const lv = fakeLibvirt({ vm: { xml: named(BIOS, 'vm') } }, { defineError: 'XML error: unsupported configuration' });
    const r = await convert(lv, { names: ['vm'] });
    expect(r.error).toBeInstanceOf(OvmfHookError);
    expect((r.error as OvmfHookError).exitCode).toBe(1);
    expect((r.error as Error).message).toBe('vm: libvirt refused the converted definition (XML error: unsupported configuration); the domain is unchanged; see the changes with: ovmf-hook convert vm --dry-run');
    const tpm = await convert(fakeLibvirt({ vm: { xml: named(BIOS, 'vm') } }, { defineError: "unsupported configuration: TPM version '2.0' is not supported" }), { names: ['vm'], tpm: true });
    expect((tpm.error as Error).message).toBe("vm: libvirt refused the converted definition (unsupported configuration: TPM version '2.0' is not supported); the domain is unchanged; install swtpm (Debian: apt install swtpm swtpm-tools) or drop --tpm");
    const unknown = await convert(lv, { names: ['ghost'] });
    expect(unknown.error).toBeInstanceOf(UsageError);
  });

  it.each<[string, ConvertArgs, RegExp]>([
    ['no domain', {}, /name the domains to convert, or use --all/],
    ['names and --all', { names: ['a'], all: true }, /not both/],
    ['--match without --all', { names: ['a'], match: 'a*' }, /--match selects domains for --all/],
  ])('usage error: %s', async (_, args, message) => {
    const lv = fakeLibvirt({});
    const r = await convert(lv, args);
    expect(r.error).toBeInstanceOf(UsageError);
    expect((r.error as Error).message).toMatch(message);
    expect(lv.calls).toEqual([]);
  });
});
