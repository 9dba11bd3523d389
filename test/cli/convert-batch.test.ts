/**
 * `ovmf-hook convert` with a batching libvirt (CliDeps.virshBatch, as the real one): what it asks
 * about a domain goes out in one batch, the answers are the ones used, and the outcome is the
 * same as with one virsh call per question (test/cli/convert.test.ts).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runConvert, type ConvertArgs } from '../../src/cli/commands/convert';
import type { VirshBatchRunner, VirshResult, VirshRunner } from '../../src/io/virsh';
import { DEFAULT_CONFIG, type Config } from '../../src/core/config';
import { capture } from './support';

const BIOS = readFileSync(join(__dirname, '..', 'fixtures', 'domains', 'bios-i440fx-linux.xml'), 'utf8').replace(/<name>[^<]*<\/name>/, '<name>vm</name>');
const config: Config = { ...DEFAULT_CONFIG, firmwareDirs: [join(__dirname, '..', 'firmware', 'fixtures', 'debian')] };

function libvirt(dom: { state?: string; snapshots?: string[]; missing?: boolean } = {}) {
  const batches: string[][][] = [];
  const single: string[][] = [];
  const answer = (args: readonly string[]): VirshResult => {
    if (dom.missing && args[0] !== 'list') return { code: 1, stdout: '', stderr: "error: failed to get domain 'vm'\n" };
    switch (args[0]) {
      case 'dominfo':
        return { code: 0, stdout: `Name:           vm\nState:          ${dom.state ?? 'shut off'}\nPersistent:     yes\nManaged save:   no\n\n`, stderr: '' };
      case 'dumpxml':
        return { code: 0, stdout: BIOS, stderr: '' };
      case 'snapshot-list':
        return { code: 0, stdout: `${(dom.snapshots ?? []).join('\n')}\n\n`, stderr: '' };
      case 'define':
        return { code: 0, stdout: 'defined\n', stderr: '' };
      default:
        return { code: 1, stdout: '', stderr: `error: unexpected ${args[0]}\n` };
    }
  };
  const virsh: VirshRunner = async (args) => (single.push([...args]), answer(args));
  const virshBatch: VirshBatchRunner = async (cmds) => (batches.push(cmds.map((c) => [...c])), cmds.map(answer));
  return { virsh, virshBatch, batches, single };
}

const convert = (lv: ReturnType<typeof libvirt>, args: ConvertArgs) => capture(() => runConvert(args, { virsh: lv.virsh, virshBatch: lv.virshBatch, config: () => config }));

describe('convert asks libvirt in one batch', () => {
  it('one batch (dominfo, dumpxml with secrets, snapshots), then only define', async () => {
    const lv = libvirt();
    const r = await convert(lv, { names: ['vm'] });
    expect(r.error).toBeUndefined();
    expect(r.stderr).toMatch(/^vm: converted \(\d+ changes\)\n$/);
    expect(lv.batches).toEqual([[
      ['dominfo', '--domain', 'vm'],
      ['dumpxml', '--inactive', '--security-info', '--domain', 'vm'],
      ['snapshot-list', '--active', '--name', '--domain', 'vm'],
    ]]);
    expect(lv.single.map((c) => c[0])).toEqual(['define']);
  });

  it('--dry-run: no secrets asked for, nothing defined; --force: no snapshot question', async () => {
    const dry = libvirt();
    expect((await convert(dry, { names: ['vm'], dryRun: true })).stdout).toMatch(/^--- vm\.xml\n\+\+\+ vm\.xml\n/);
    expect(dry.batches[0]![1]).toEqual(['dumpxml', '--inactive', '--domain', 'vm']);
    expect(dry.single).toEqual([]);
    const forced = libvirt({ snapshots: ['s1'] });
    expect((await convert(forced, { names: ['vm'], force: true })).error).toBeUndefined();
    expect(forced.batches[0]!.map((c) => c[0])).toEqual(['dominfo', 'dumpxml']);
  });

  it.each<[string, Parameters<typeof libvirt>[0], RegExp]>([
    ['a missing domain', { missing: true }, /^no domain named "vm" on this host/],
    ['a running domain', { state: 'running' }, /^vm: the domain is running/],
    ['memory snapshots', { snapshots: ['s1'] }, /^vm: the domain has 1 snapshot with memory state \(s1\)/],
  ])('refuses %s from the batched answers, as without batching', async (_label, dom, message) => {
    const lv = libvirt(dom);
    const r = await convert(lv, { names: ['vm'] });
    expect((r.error as Error).message).toMatch(message);
    expect(lv.batches).toHaveLength(1);
    expect(lv.single).toEqual([]);
  });

  it('--all: one batch per domain, after the list', async () => {
    const lv = libvirt();
    const list: VirshRunner = async (args) => (args[0] === 'list' ? { code: 0, stdout: 'vm\n\n', stderr: '' } : lv.virsh(args));
    const r = await capture(() => runConvert({ all: true, dryRun: true }, { virsh: list, virshBatch: lv.virshBatch, config: () => config }));
    expect(r.error).toBeUndefined();
    expect(lv.batches).toHaveLength(1);
  });
});
