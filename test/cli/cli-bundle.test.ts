/**
 * The real bundle: `npm run build` (when dist/ is stale: ensureBuilt), then `node dist/cli.cjs …` as an admin would
 * run it (the loader, the bundle from its payload, its code cache). The archive is a temp dir named
 * by a temp config through OVMF_HOOK_CONFIG; the UUID is unknown to libvirt (or virsh is absent),
 * so `nvram list` serves it from the archive alone.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { closeSync, promises as fs, openSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { openArchive } from '../../src/io';
// @ts-expect-error: a plain .mjs helper of the bench, without types
import { i440fxDomain } from '../../scripts/bench/domains.mjs';
import { ensureBuilt, TEST_NODE } from '../hook/harness';
import { tempDir } from './nvram-support';

const ROOT = path.join(__dirname, '..', '..');
const CLI = path.join(ROOT, 'dist', 'cli.cjs');
const UUID = '5a5a5a5a-0000-4000-8000-00000000cafe';

const cli = (args: string[], env: Record<string, string> = {}) => {
  const r = spawnSync(TEST_NODE, [CLI, ...args], { cwd: ROOT, encoding: 'utf8', env: { ...process.env, ...env }, timeout: 60_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
};

beforeAll(() => ensureBuilt(), 180_000);

describe('dist/cli.cjs (npm run build)', () => {
  it('--help lists the commands', () => {
    const r = cli(['--help']);
    expect(r.code).toBe(0);
    for (const c of ['firmware', 'nvram', 'doctor']) expect(r.stdout).toMatch(new RegExp(`ovmf-hook ${c}\\b`));
  });

  it('firmware list --json prints one JSON document', () => {
    const r = cli(['firmware', 'list', '--json', '--root', path.join(ROOT, 'test', 'firmware', 'fixtures', 'debian')]);
    expect(r.code).toBe(0);
    const doc = JSON.parse(r.stdout);
    expect(doc.source).toBe('descriptors');
    expect(doc.descriptors.map((d: { file: string }) => d.file)).toContain('50-edk2-x86_64-secure.json');
  });

  // the quick path (rewrite, convert) exits as soon as stdout and stderr have taken everything
  it('rewrite output larger than a pipe buffer arrives whole at a reader that pauses', async () => {
    const base = await tempDir();
    const file = path.join(base, 'big.xml');
    await fs.writeFile(file, i440fxDomain({ name: 'ovmfhook-t-big', uuid: '5a5a5a5a-0000-4000-8000-0000000b1900', n: 2400 }));
    const out = path.join(base, 'out.xml');
    const fd = openSync(out, 'w');
    execFileSync(TEST_NODE, [CLI, 'rewrite', file], { stdio: ['ignore', fd, 'pipe'] });
    closeSync(fd);
    const expected = readFileSync(out, 'utf8');
    expect(expected.length).toBeGreaterThan(4 * 65536);
    expect(expected).toMatch(/machine='(pc-)?q35/);

    const child = spawn(TEST_NODE, [CLI, 'rewrite', file], { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout.pause();
    const chunks: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => chunks.push(c));
    await new Promise((r) => setTimeout(r, 700)); // the CLI is done and waits for the pipe
    child.stdout.resume();
    const code = await new Promise((r) => child.on('close', r));
    expect(code).toBe(0);
    expect(Buffer.concat(chunks).toString('utf8')).toBe(expected);
  });

  it('nvram list <uuid> reads a temp archive named by OVMF_HOOK_CONFIG; errors are one line with exit 2', async () => {
    const base = await tempDir();
    const archiveDir = path.join(base, 'archive');
    const archive = await openArchive({ root: archiveDir, host: 'e2e', hostId: 'e2e-host' });
    await archive.add(UUID, Buffer.alloc(4096, 1), { kind: 'archive', reason: 'release (shutdown)', vmName: 'ovmfhook-t-e2e' });
    await archive.add(UUID, Buffer.alloc(4096, 2), { kind: 'archive', reason: 'release (shutdown)', vmName: 'ovmfhook-t-e2e' });
    const config = path.join(base, 'config.json');
    await fs.writeFile(config, JSON.stringify({ archiveDir, stateDir: path.join(base, 'state'), hostId: 'e2e-host' }));
    const env = { OVMF_HOOK_CONFIG: config };

    const r = cli(['nvram', 'list', UUID, '--json'], env);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const doc = JSON.parse(r.stdout);
    expect(doc).toMatchObject({ vm: { name: 'ovmfhook-t-e2e', uuid: UUID, defined: false }, archive: archiveDir, newestRestorable: 2 });
    expect(doc.generations.map((g: { generation: number }) => g.generation)).toEqual([1, 2]);

    const table = cli(['nvram', 'list', UUID], env);
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(/^\*2\s+archive\s+[0-9a-f]{12}\s+4096\s/m);

    const unknown = cli(['nvram', 'list', '5a5a5a5a-0000-4000-8000-00000000beef'], env);
    expect(unknown.code).toBe(2);
    expect(unknown.stdout).toBe('');
    expect(unknown.stderr).toMatch(/^ovmf-hook: no VM with UUID 5a5a5a5a-0000-4000-8000-00000000beef on this host or in the archive [^\n]+\n$/);

    const usage = cli(['nvram'], env);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toMatch(/^ovmf-hook: name an nvram subcommand: list, show, restore, reset, prune, unlock, repair, vars, diff, enroll, boot, certs \(see ovmf-hook --help\)\n$/);
  });
});
