/**
 * The layers the source tree shows, enforced (README "Layout"):
 *   src/core   pure: imports only src/core and npm packages; no node:fs, node:child_process,
 *              node:net, no `process`
 *   src/io     the I/O shell: src/core and src/io
 *   src/hook   entry point of the libvirt hook: src/core, src/io, src/hook
 *   src/cli    entry point of the admin CLI: src/core, src/io, src/cli
 *   hooks/     the installed hook's loader: src/hook only
 * cli and hook never import each other. Each import of every source file is read (static
 * imports, `import()`, `require()`), resolved, and checked against the table.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = path.join(__dirname, '..');

type Layer = 'core' | 'io' | 'hook' | 'cli' | 'loader';
const MAY_IMPORT: Record<Layer, readonly Layer[]> = {
  core: ['core'],
  io: ['core', 'io'],
  hook: ['core', 'io', 'hook'],
  cli: ['core', 'io', 'cli'],
  loader: ['hook'],
};
/** Node built-ins the pure core must not touch. */
const IMPURE_BUILTINS = /^(node:)?(fs|fs\/promises|child_process|net|os|dgram|worker_threads|cluster)$/;

const layerOf = (file: string): Layer | null => {
  const m = /^(?:src\/(core|io|hook|cli)\/|(hooks)\/)/.exec(file);
  return m ? ((m[1] ?? 'loader') as Layer) : null;
};

function sourceFiles(dir: string): string[] {
  return readdirSync(path.join(ROOT, dir)).flatMap((name) => {
    const rel = `${dir}/${name}`;
    return statSync(path.join(ROOT, rel)).isDirectory() ? sourceFiles(rel) : rel.endsWith('.ts') ? [rel] : [];
  });
}

const SPECIFIERS = /(?:\bfrom\s*|\bimport\s*\(\s*|\brequire\s*\(\s*)['"]([^'"]+)['"]/g;

/** What is wrong with the imports of `files` (path → text); empty when the layers hold. */
function violations(files: ReadonlyMap<string, string>): string[] {
  const out: string[] = [];
  const resolve = (from: string, spec: string): string | null => {
    const base = path.posix.normalize(path.posix.join(path.posix.dirname(from), spec));
    return [`${base}.ts`, `${base}/index.ts`, base].find((c) => files.has(c)) ?? null;
  };
  for (const [file, text] of files) {
    const layer = layerOf(file);
    if (!layer) continue;
    const code = text.replace(/\/\*[\s\S]*?\*\/|\/\/[^\n]*/g, ''); // imports named in comments do not count
    for (const [, spec] of code.matchAll(SPECIFIERS)) {
      if (!spec.startsWith('.')) {
        if (layer === 'core' && IMPURE_BUILTINS.test(spec)) out.push(`${file}: the pure core imports ${spec}`);
        continue;
      }
      const target = resolve(file, spec);
      if (!target) {
        out.push(`${file}: cannot resolve ${spec}`);
        continue;
      }
      const to = layerOf(target);
      if (!to || !MAY_IMPORT[layer].includes(to)) out.push(`${file} (${layer}) imports ${target} (${to ?? 'outside src'})`);
    }
    if (layer === 'core' && /\bprocess\.(?!nextTick)/.test(code)) out.push(`${file}: the pure core uses process`);
  }
  return out;
}

const tree = (): Map<string, string> => new Map([...sourceFiles('src'), ...sourceFiles('hooks')].map((f) => [f, readFileSync(path.join(ROOT, f), 'utf8')]));

describe('layers', () => {
  it('every import in src/ and hooks/ goes the allowed way', () => {
    const files = tree();
    expect(files.size).toBeGreaterThan(50);
    expect(violations(files)).toEqual([]);
  });

  it.each([
    ['src/core/nvram/plan.ts', "import { openArchive } from '../../io/archive';", /\(core\) imports src\/io\/archive\.ts/],
    ['src/core/domain/domain.ts', "import { readFileSync } from 'node:fs';", /pure core imports node:fs/],
    ['src/core/rewrite/index.ts', 'const env = process.env.X;', /pure core uses process/],
    ['src/io/archive.ts', "import { runHook } from '../hook/main';", /\(io\) imports src\/hook\/main\.ts/],
    ['src/cli/main.ts', "import { runHook } from '../hook/main';", /\(cli\) imports src\/hook\/main\.ts/],
    ['src/hook/main.ts', "const m = require('../cli/main');", /\(hook\) imports src\/cli\/main\.ts/],
    ['hooks/qemu.ts', "import { loadConfig } from '../src/io/config';", /\(loader\) imports src\/io\/config\.ts/],
  ])('an import planted in %s is reported', (file, line, report) => {
    const files = tree();
    expect(files.has(file)).toBe(true);
    files.set(file, `${line}\n${files.get(file)}`);
    expect(violations(files).join('\n')).toMatch(report);
  });
});
