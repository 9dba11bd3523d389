/**
 * The CLI for tests against the real libvirtd (`*.libvirt.test.ts`): built from the current source
 * into the per-process scratch directory (./libvirt.ts, `scratchPath`) with a config file next to
 * it, and what the convert/rewrite ones share (the BIOS fixtures, the inactive definition).
 */
import { mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { buildCli, writeConfig } from '../cli/support';
import { DOMAIN_FIXTURES_DIR, scratchPath, virsh } from './libvirt';

export interface ScratchCli {
  /** The scratch directory holding the config (and the build, unless `outDir`). */
  dir: string;
  /** The built CLI (cli.cjs). */
  cli: string;
  /** OVMF_HOOK_CONFIG: the config written into `dir`. */
  env: Record<string, string>;
}

/**
 * Build the CLI into `scratchPath(name)` (or its subdirectory `outDir`) and write `config.json` there
 * from `config` (given the directory; default `{}`: the built-in defaults, the host's firmware
 * descriptors, libvirt's nvram dir). For a beforeAll.
 */
export async function scratchCli(name: string, opts: { outDir?: string; config?: (dir: string) => object } = {}): Promise<ScratchCli> {
  const dir = scratchPath(name);
  mkdirSync(dir, { recursive: true });
  const cli = await buildCli(opts.outDir ? join(dir, opts.outDir) : dir);
  const env = { OVMF_HOOK_CONFIG: writeConfig(dir, 'config.json', opts.config?.(dir) ?? {}) };
  return { dir, cli, env };
}

/** BIOS fixtures (libvirt-formatted i440fx and q35, and the hand-written edge case). */
export const BIOS_FIXTURES = readdirSync(DOMAIN_FIXTURES_DIR).filter((f) => /^(bios-|q35-bios|edge-).*\.xml$/.test(f));

/** `virsh dumpxml --inactive --security-info`: the definition as libvirt keeps it. */
export const inactiveXml = (name: string): string => virsh(['dumpxml', '--inactive', '--security-info', name]).stdout;
