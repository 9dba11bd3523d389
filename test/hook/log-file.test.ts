/**
 * The built hook with a `logFile` someone turned into a symlink (issue 11 item 7): the hook, as
 * root, must neither create nor append to the file the link points at, and logging must not
 * change what the call does (exit code, stderr, the NVRAM it provisions and archives).
 * The refusal itself and the journal warning: log.test.ts.
 */
import { existsSync, lstatSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { domainXml, hostsFixture, makeHost, pattern, VARS_SIZE, type HookHost, type HookResult } from './harness';

const VM = 'vm1';
const hosts = hostsFixture();

const host = (config: Record<string, unknown> = {}): HookHost =>
  makeHost(hosts.root, { firmware: hosts.fw, config: { qemuUser: '+0', qemuGroup: '+0', ...config } });

const ok = (r: HookResult, what: string) => {
  expect(r.signal, `${what}: signal`).toBeNull();
  expect(r.stderr, `${what}: stderr`).toBe('');
  expect(r.code, `${what}: exit code`).toBe(0);
};

describe('logFile is a symlink (the hook runs as root)', () => {
  it.each([
    ['an existing file', true],
    ['a path that does not exist yet', false],
  ])('pointing at %s: prepare and release do their work, the target is untouched', async (_what, exists) => {
    const h = host();
    const victim = join(h.dir, 'victim');
    if (exists) writeFileSync(victim, 'precious\n', { mode: 0o644 });
    symlinkSync(victim, h.logFile);
    const xml = domainXml({ name: VM, firmware: 'ovmf', nvram: h.nvramPath(VM) }, hosts.fw);

    ok(await h.run([VM, 'prepare', 'begin', '-'], xml), 'prepare');
    expect(readFileSync(h.nvramPath(VM)).equals(readFileSync(hosts.fw.vars))).toBe(true);
    writeFileSync(h.nvramPath(VM), pattern(VARS_SIZE, 'guest wrote'));
    ok(await h.run([VM, 'release', 'end', '-'], xml), 'release');
    expect(existsSync(join(h.archiveDir))).toBe(true);

    if (exists) expect(readFileSync(victim, 'utf8')).toBe('precious\n');
    else expect(existsSync(victim)).toBe(false);
    expect(lstatSync(h.logFile).isSymbolicLink()).toBe(true);
  });

  it('a refused start keeps its exit code and its one stderr line; the target is untouched', async () => {
    const h = host({ mode: 'enforce' });
    const victim = join(h.dir, 'victim');
    writeFileSync(victim, 'precious\n');
    symlinkSync(victim, h.logFile);
    const r = await h.run([VM, 'prepare', 'begin', '-'], domainXml({ name: VM, firmware: 'bios' }, hosts.fw));
    expect(r.code).toBe(1);
    expect(r.stderr.split('\n').filter(Boolean)).toHaveLength(1);
    expect(r.stderr).toMatch(/^ovmf-hook: vm1: /);
    expect(readFileSync(victim, 'utf8')).toBe('precious\n');
  });
});
