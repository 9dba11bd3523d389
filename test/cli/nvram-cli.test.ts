/**
 * `ovmf-hook nvram` through the bundled CLI: a temp archive named by a temp config
 * (OVMF_HOOK_CONFIG) and a fake virsh on PATH that knows no domain (test/cli/fake-virsh-bin.ts),
 * so nothing reaches the host's libvirt or its files.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openArchive } from '../../src/io';
import { fakeVirshBin } from './fake-virsh-bin';
import { buildCli, runCli, scratchDir, writeConfig } from './support';

const UUID = '5a5a5a5a-0000-4000-8000-00000000c0de';

let cli: string;
let scratch: ReturnType<typeof scratchDir>;

beforeAll(async () => {
  scratch = scratchDir('cli-nvram');
  cli = await buildCli(scratch.dir);
}, 60_000);
afterAll(() => scratch?.cleanup());

/** A temp host whose archive holds two generations of UUID; `run` runs the built CLI there. */
async function host() {
  const { dir, cleanup } = scratchDir('cli-nvram-host');
  const archiveDir = path.join(dir, 'archive');
  const archive = await openArchive({ root: archiveDir, host: 'e2e', hostId: 'e2e-host' });
  for (const n of [1, 2]) await archive.add(UUID, Buffer.alloc(4096, n), { kind: 'archive', reason: 'release (shutdown)', vmName: 'ovmfhook-t-e2e' });
  const config = writeConfig(dir, 'config.json', { archiveDir, stateDir: path.join(dir, 'state'), nvramDir: path.join(dir, 'nvram'), hostId: 'e2e-host' });
  const virsh = fakeVirshBin(dir, {});
  const run = (...args: string[]) => runCli(cli, ['nvram', ...args], { env: { ...virsh.env, OVMF_HOOK_CONFIG: config } });
  return { dir: path.join(archiveDir, UUID), run, cleanup };
}

describe('ovmf-hook nvram repair (built CLI)', () => {
  it('says how many leftovers it kept because they are younger than 1 h, instead of "no leftovers"', async () => {
    const h = await host();
    try {
      const young = [path.join(h.dir, 'gen-000008.fd'), path.join(h.dir, '.gen.fd.ovmf-hook-tmp-abc')]; // a writer in progress, maybe on another host
      for (const f of young) await fs.writeFile(f, 'x');
      const old = path.join(h.dir, 'gen-000009.fd');
      await fs.writeFile(old, 'x');
      const past = new Date(Date.now() - 2 * 3600_000);
      await fs.utimes(old, past, past);

      const r = h.run('repair');
      expect(r).toMatchObject({ code: 0, stderr: '' });
      expect(r.stdout).toMatch(
        new RegExp(`^${UUID}\\s+removed 1 leftover file; kept 2 leftovers younger than 1 h \\(a writer may still be running\\); run nvram repair again later; all generations verify\\n$`),
      );
      for (const f of young) await fs.stat(f);

      const doc = JSON.parse(h.run('repair', '--json').stdout);
      expect(doc).toEqual({ vms: [{ uuid: UUID, removed: [], kept: [...young].sort(), corrupt: [] }] });
    } finally {
      h.cleanup();
    }
  });
});

describe('ovmf-hook nvram: a generation with one byte flipped (built CLI)', () => {
  it('list marks it corrupt and puts * on the newest valid one; repair moves it aside (exit 1, one line); list and show then report it moved aside', async () => {
    const h = await host();
    try {
      const data = path.join(h.dir, 'gen-000002.fd');
      const b = await fs.readFile(data);
      b[2048] ^= 0x01;
      await fs.writeFile(data, b);

      const before = h.run('list', UUID);
      expect(before).toMatchObject({ code: 0, stderr: '' });
      expect(before.stdout).toMatch(/^\*1\s+archive\s/m);
      expect(before.stdout).toMatch(/^2\s+archive CORRUPT\s/m);
      expect(before.stdout).toContain(`\ngeneration 2 is corrupt (sha256 mismatch): it is never restored; \`ovmf-hook nvram repair ${UUID}\` moves it aside\n`);
      const doc = JSON.parse(h.run('list', UUID, '--json').stdout);
      expect(doc).toMatchObject({ newestRestorable: 1, corrupt: [], generations: [{ generation: 1, data: 'ok' }, { generation: 2, data: 'corrupt', problem: 'sha256 mismatch' }] });

      const r = h.run('repair');
      expect(r.code).toBe(1);
      expect(r.stdout).toBe(`${UUID}  no leftovers; moved aside corrupt generation 2\n`);
      expect(r.stderr).toMatch(/^ovmf-hook: moved aside corrupt generation 2 of [^\n]*\n$/);

      const after = h.run('list', UUID).stdout;
      expect(after).toMatch(/^\*1\s+archive\s/m);
      expect(after).toMatch(/^2\s+archive, moved aside \(corrupt\)\s/m);
      expect(JSON.parse(h.run('list', UUID, '--json').stdout)).toMatchObject({ newestRestorable: 1, generations: [{ generation: 1 }], corrupt: [{ generation: 2, data: 'corrupt', movedAside: true }] });
      const show = h.run('show', UUID, '--generation', '2');
      expect(show).toMatchObject({ code: 0, stderr: '' });
      expect(show.stdout).toMatch(/^data\s+CORRUPT \(moved aside; kept as gen-000002\.corrupt\.fd for inspection\)$/m);
    } finally {
      h.cleanup();
    }
  });
});

describe('ovmf-hook nvram: a number option that is not a number (built CLI)', () => {
  it.each([
    [['show', UUID, '--generation', 'abc'], '--generation must be a whole number ≥ 1, got "abc"'],
    [['vars', UUID, '--generation', 'x1'], '--generation must be a whole number ≥ 1, got "x1"'],
    [['restore', UUID, '--generation', '1.5'], '--generation must be a whole number ≥ 1, got "1.5"'],
    [['prune', '--keep', 'all'], '--keep must be a whole number ≥ 1, got "all"'],
    [['diff', UUID, '--from', 'one'], '--from must be a whole number ≥ 1, got "one"'],
    [['diff', UUID, '--from', '1', '--to', 'two'], '--to must be a whole number ≥ 1, got "two"'],
    [['show', UUID, '--generation', '0'], '--generation must be a whole number ≥ 1, got "0"'],
  ])('%j → exit 2, one line naming what was given', async (args, message) => {
    const h = await host();
    try {
      expect(h.run(...args)).toEqual({ code: 2, stdout: '', stderr: `ovmf-hook: ${message}\n` });
    } finally {
      h.cleanup();
    }
  });
});
