/**
 * `ovmf-hook config check` / `config show` through the bundled CLI, against config files in a temp
 * dir (`--file`, or OVMF_HOOK_CONFIG). Every unusable file: exit 2, nothing on stdout, exactly one
 * stderr line naming the file (and the key where there is one); an unsafe logFile: exit 1.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_CONFIG, parseConfig } from '../../src/core/config';
import { loadConfig } from '../../src/io';
import { buildCli, runCli, scratchDir, type CliRun } from './support';

let cli: string;
let scratch: ReturnType<typeof scratchDir>;
let n = 0;

beforeAll(async () => {
  scratch = scratchDir('cli-config');
  cli = await buildCli(scratch.dir);
}, 60_000);
afterAll(() => scratch?.cleanup());

/** A fresh directory for one case. */
const caseDir = (): string => {
  const d = path.join(scratch.dir, `case-${++n}`);
  mkdirSync(d, { mode: 0o700 });
  return d;
};
/** A FIFO or a /dev/zero symlink must be refused, never read: 10 s is far more than a check takes. */
const check = (file: string, ...more: string[]): CliRun => runCli(cli, ['config', 'check', '--file', file, ...more], { timeoutMs: 10_000 });
const write = (file: string, text: string | Buffer): string => (writeFileSync(file, text), file);

/** An error: code, no stdout, exactly one stderr line, starting with the file. */
function expectOneLine(r: CliRun, code: number, file: string, rest: RegExp): void {
  expect(r.stdout).toBe('');
  expect(r.code).toBe(code);
  const lines = r.stderr.split('\n');
  expect(lines).toHaveLength(2);
  expect(lines[1]).toBe('');
  expect(lines[0].startsWith(`ovmf-hook: ${file}`)).toBe(true);
  expect(lines[0]).toMatch(rest);
}

describe('ovmf-hook config check (built CLI)', () => {
  it('a valid file → "<file>: valid", exit 0', () => {
    const f = write(path.join(caseDir(), 'config.json'), '{"mode": "enforce", "keepGenerations": 5}');
    expect(check(f)).toEqual({ code: 0, stdout: `${f}: valid\n`, stderr: '' });
  });

  it('an absent file → built-in defaults, exit 0; the default path is $OVMF_HOOK_CONFIG', () => {
    const f = path.join(caseDir(), 'config.json');
    expect(check(f)).toEqual({ code: 0, stdout: `${f} absent: built-in defaults\n`, stderr: '' });
    expect(runCli(cli, ['config', 'check'], { env: { OVMF_HOOK_CONFIG: f } })).toEqual({ code: 0, stdout: `${f} absent: built-in defaults\n`, stderr: '' });
  });

  it('a BOM-prefixed valid file is valid', () => {
    const f = write(path.join(caseDir(), 'config.json'), Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('{"mode": "warn"}\n')]));
    expect(check(f)).toEqual({ code: 0, stdout: `${f}: valid\n`, stderr: '' });
  });

  it('an empty file → exit 2, one line', () => {
    const f = write(path.join(caseDir(), 'config.json'), '');
    expectOneLine(check(f), 2, f, /^ovmf-hook: \S+ is empty; make it a regular JSON file \(check it with: ovmf-hook config check\), or remove it to use the defaults$/);
  });

  it('an unknown key with a near miss → did you mean, exit 2', () => {
    const f = write(path.join(caseDir(), 'config.json'), '{"archivedir": "/srv/archive"}');
    expectOneLine(check(f), 2, f, /: unknown key "archivedir" \(did you mean "archiveDir"\?\); fix it and check with: ovmf-hook config check$/);
  });

  it('an unknown key in policy names policy and the key', () => {
    const f = write(path.join(caseDir(), 'config.json'), '{"policy": {"secureboot": "yes"}}');
    expectOneLine(check(f), 2, f, /: policy: unknown key "secureboot" \(did you mean "secure-boot"\?\)/);
  });

  it('a wrong type → names the key, what it must be and what it got, exit 2', () => {
    const f = write(path.join(caseDir(), 'config.json'), '{"keepGenerations": "ten"}');
    expectOneLine(check(f), 2, f, /: "keepGenerations" must be an integer from 1 to 1000, got "ten"; fix it and check with: ovmf-hook config check$/);
  });

  it('invalid JSON → exit 2', () => {
    const f = write(path.join(caseDir(), 'config.json'), '{ "mode": ');
    expectOneLine(check(f), 2, f, /: invalid JSON \(.*\); fix it and check with: ovmf-hook config check, or remove it to use the defaults$/);
  });

  it('a directory → exit 2', () => {
    const f = path.join(caseDir(), 'config.json');
    mkdirSync(f);
    expectOneLine(check(f), 2, f, / is a directory; make it a regular JSON file/);
  });

  it('a FIFO → exit 2 at once (never opened for a blocking read)', () => {
    const f = path.join(caseDir(), 'config.json');
    expect(spawnSync('mkfifo', [f]).status).toBe(0);
    expectOneLine(check(f), 2, f, / is a FIFO; make it a regular JSON file/);
  });

  it('a symlink to /dev/zero → exit 2 at once (never read)', () => {
    const f = path.join(caseDir(), 'config.json');
    symlinkSync('/dev/zero', f);
    expectOneLine(check(f), 2, f, / is a device; make it a regular JSON file/);
  });

  it('a file over 64 KiB → exit 2', () => {
    const f = write(path.join(caseDir(), 'config.json'), `{"mode": "warn"${' '.repeat(64 * 1024)}}`);
    expectOneLine(check(f), 2, f, / is larger than 64 KiB; make it a regular JSON file/);
  });

  it('an unsafe logFile (a symlink) → exit 1, one line naming the key: the hook will not write it', () => {
    const d = caseDir();
    const log = path.join(d, 'hook.log');
    symlinkSync('/etc/passwd', log);
    const f = write(path.join(d, 'config.json'), JSON.stringify({ logFile: log }));
    expect(check(f)).toEqual({
      code: 1,
      stdout: '',
      stderr: `ovmf-hook: ${f}: "logFile": the hook will not write ${log}: ${log} is a symlink; remove it (rm ${log}), the hook creates the log file itself\n`,
    });
  });

  it('a safe logFile (not there yet, in a private directory) is valid', () => {
    const d = caseDir();
    const f = write(path.join(d, 'config.json'), JSON.stringify({ logFile: path.join(d, 'hook.log') }));
    expect(check(f)).toEqual({ code: 0, stdout: `${f}: valid\n`, stderr: '' });
  });

  it('--json: {file, valid, absent, problems}; the same exit code and stderr line on failure', () => {
    const d = caseDir();
    const good = write(path.join(d, 'good.json'), '{}');
    expect(JSON.parse(check(good, '--json').stdout)).toEqual({ file: good, valid: true, absent: false, problems: [] });
    const absent = path.join(d, 'absent.json');
    expect(JSON.parse(check(absent, '--json').stdout)).toEqual({ file: absent, valid: true, absent: true, problems: [] });

    const bad = write(path.join(d, 'bad.json'), '{"archivedir": "/x"}');
    const r = check(bad, '--json');
    expect(r.code).toBe(2);
    const doc = JSON.parse(r.stdout);
    expect(doc).toEqual({ file: bad, valid: false, absent: false, problems: [expect.stringContaining('unknown key "archivedir"')] });
    expect(r.stderr).toBe(`ovmf-hook: ${doc.problems[0]}\n`);

    const log = path.join(d, 'hook.log');
    symlinkSync('/etc/passwd', log);
    const unsafe = write(path.join(d, 'unsafe.json'), JSON.stringify({ logFile: log }));
    const u = check(unsafe, '--json');
    expect(u.code).toBe(1);
    expect(JSON.parse(u.stdout)).toEqual({ file: unsafe, valid: true, absent: false, problems: [expect.stringMatching(/"logFile": the hook will not write .* is a symlink/)] });
  });
});

describe('ovmf-hook config show (built CLI)', () => {
  const show = (file: string, ...more: string[]): CliRun => runCli(cli, ['config', 'show', '--file', file, ...more], { timeoutMs: 10_000 });

  it('prints the effective config (defaults merged) as a config file would say it', () => {
    const d = caseDir();
    const f = write(path.join(d, 'config.json'), JSON.stringify({ mode: 'enforce', policy: { 'secure-boot': 'yes' }, archiveDir: '/srv/archive', hostId: 'host-a' }));
    const r = show(f);
    expect(r).toMatchObject({ code: 0, stderr: '' });
    const doc = JSON.parse(r.stdout);
    expect(doc).toEqual({
      mode: 'enforce',
      policy: { uefi: 'yes', 'secure-boot': 'yes', tpm: 'no', archive: 'yes' },
      archiveDir: '/srv/archive',
      stateDir: DEFAULT_CONFIG.stateDir,
      nvramDir: DEFAULT_CONFIG.nvramDir,
      keepGenerations: 10,
      archiveUnavailable: 'allow',
      claimLeaseSeconds: 0,
      hookTimeoutSeconds: 30,
      firmwareDirs: DEFAULT_CONFIG.firmwareDirs,
      templateDir: DEFAULT_CONFIG.templateDir,
      rootPorts: 14,
      requireArchiveMarker: false,
      hostId: 'host-a',
    });
    // it is itself a valid config file that means what the hook loads
    expect(parseConfig(r.stdout)).toEqual(loadConfig(f));
  });

  it('absent: the built-in defaults; --json says where from', () => {
    const f = path.join(caseDir(), 'config.json');
    const r = show(f, '--json');
    expect(r.code).toBe(0);
    const doc = JSON.parse(r.stdout);
    expect(doc.file).toBe(f);
    expect(doc.absent).toBe(true);
    expect(parseConfig(JSON.stringify(doc.config))).toEqual({ ...DEFAULT_CONFIG, policy: { ...DEFAULT_CONFIG.policy } });
  });

  it('an unusable file → exit 2, one line, nothing on stdout', () => {
    const f = write(path.join(caseDir(), 'config.json'), '{"keepGenerations": 0}');
    expectOneLine(show(f), 2, f, /"keepGenerations" must be an integer from 1 to 1000, got 0/);
  });
});
