/**
 * Shared bits of the rewrite/convert CLI tests: the CLI built by `npm run build`'s own function (into a
 * temp dir, so the tests run the current source and never race a concurrent build of dist/), a
 * runner for it, temp dirs and config files, an in-process runner that captures stdout/stderr,
 * and a strict unified-diff applier (the oracle of the diff tests).
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { vi } from 'vitest';
import { buildProduct } from '../../scripts/build.mjs';
import { TEST_NODE } from '../hook/harness';

const ROOT = join(__dirname, '..', '..');

export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** Build the product into `dir` as `npm run build` does (scripts/build.mjs), without code caches; returns the CLI (`dir/cli.cjs`). */
export async function buildCli(dir: string): Promise<string> {
  return (await buildProduct({ root: ROOT, outDir: dir, codeCache: false })).cli;
}

/** Run `node CLI args…` with TEST_NODE (test/hook/harness.ts); `input` goes to stdin (empty when not given). */
export function runCli(cli: string, args: string[], opts: { input?: string | Buffer; env?: Record<string, string>; cwd?: string; timeoutMs?: number } = {}): CliRun {
  const r = spawnSync(TEST_NODE, [cli, ...args], {
    input: opts.input ?? '',
    env: { ...process.env, ...opts.env },
    cwd: opts.cwd,
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
    timeout: opts.timeoutMs ?? 120_000,
  });
  if (r.error && (r.error as NodeJS.ErrnoException).code !== 'EPIPE') throw r.error;
  return { code: r.status ?? -1, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

/** A scratch directory removed by the returned `cleanup`. */
export function scratchDir(prefix: string): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), `ovmfhook-${prefix}-`));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Write a config file (JSON of `config`) into `dir`; returns its path (for OVMF_HOOK_CONFIG). */
export function writeConfig(dir: string, name: string, config: object): string {
  const path = join(dir, name);
  writeFileSync(path, JSON.stringify(config));
  return path;
}

/** Run `fn` with process.stdout/stderr captured (Buffers decoded as UTF-8); a throw comes back as `error`. */
export async function capture(fn: () => Promise<unknown>): Promise<{ stdout: string; stderr: string; error?: unknown }> {
  let stdout = '';
  let stderr = '';
  const text = (s: unknown) => (s instanceof Uint8Array ? Buffer.from(s).toString('utf8') : String(s));
  const out = vi.spyOn(process.stdout, 'write').mockImplementation((s) => ((stdout += text(s)), true));
  const err = vi.spyOn(process.stderr, 'write').mockImplementation((s) => ((stderr += text(s)), true));
  try {
    await fn();
    return { stdout, stderr };
  } catch (error) {
    return { stdout, stderr, error };
  } finally {
    out.mockRestore();
    err.mockRestore();
  }
}

/**
 * Apply a unified diff to `before` (strictly: every context and removed line must match, hunk
 * counts must add up). Applying our diff must give the new text.
 */
export function applyUnified(before: string, patch: string): string {
  const src = before.split(/(?<=\n)/).filter((l) => l !== '');
  const lines = patch.split('\n');
  if (lines.at(-1) === '') lines.pop();
  if (!lines[0]?.startsWith('--- ') || !lines[1]?.startsWith('+++ ')) throw new Error('patch has no ---/+++ header');
  const out: string[] = [];
  let pos = 0;
  let i = 2;
  while (i < lines.length) {
    const m = /^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@$/.exec(lines[i]);
    if (!m) throw new Error(`bad hunk header: ${lines[i]}`);
    const aCount = m[2] === undefined ? 1 : Number(m[2]);
    const bCount = m[4] === undefined ? 1 : Number(m[4]);
    const start = aCount === 0 ? Number(m[1]) : Number(m[1]) - 1;
    if (start < pos) throw new Error(`hunk ${lines[i]} overlaps the previous one`);
    out.push(...src.slice(pos, start));
    pos = start;
    let seenA = 0;
    let seenB = 0;
    for (i++; i < lines.length && !lines[i].startsWith('@@'); i++) {
      const tag = lines[i][0];
      const noEol = lines[i + 1] === '\\ No newline at end of file';
      const text = lines[i].slice(1) + (noEol ? '' : '\n');
      if (tag !== ' ' && tag !== '-' && tag !== '+') throw new Error(`bad patch line: ${lines[i]}`);
      if (tag !== '+') {
        if (src[pos] !== text) throw new Error(`context mismatch at line ${pos + 1}: ${JSON.stringify(src[pos])} vs ${JSON.stringify(text)}`);
        pos++;
        seenA++;
      }
      if (tag !== '-') {
        out.push(text);
        seenB++;
      }
      if (noEol) i++;
    }
    if (seenA !== aCount || seenB !== bCount) throw new Error(`hunk ${m[0]} has ${seenA}/${seenB} lines`);
  }
  out.push(...src.slice(pos));
  return out.join('');
}
