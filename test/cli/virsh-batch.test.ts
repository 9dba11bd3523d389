/**
 * Several virsh commands in one virsh process (src/io/virsh.ts): the command string, and the
 * split of its output back into one result per command, as if each had run alone. Checked on
 * virsh's own output through libvirt's built-in test driver (test:///default, no daemon) when
 * virsh is installed, and on fixed outputs in the shape virsh 9.0 prints.
 */
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { batchScript, splitBatch, virshWord, type VirshResult } from '../../src/io/virsh';

const HAVE_VIRSH = spawnSync('sh', ['-c', 'command -v virsh'], { encoding: 'utf8' }).status === 0;
const M = 'ovmf-hook-0123456789abcdef01234567';

/** Run a batch with the real virsh against the test driver. */
function realBatch(commands: string[][]): VirshResult[] {
  const r = spawnSync('timeout', ['30', 'virsh', '-c', 'test:///default', batchScript(commands, M)], { encoding: 'utf8', env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LC_ALL: 'C' } });
  return splitBatch(commands.length, M, { code: r.status ?? 1, stdout: r.stdout, stderr: r.stderr });
}
/** The same commands, one virsh process each. */
function alone(args: string[]): VirshResult {
  const r = spawnSync('timeout', ['30', 'virsh', '-c', 'test:///default', ...args], { encoding: 'utf8', env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LC_ALL: 'C' } });
  return { code: r.status ?? 1, stdout: r.stdout, stderr: r.stderr };
}

const cpuTimeless = (s: string): string => s.replace(/^CPU time:.*$/m, 'CPU time: -');

describe('virsh batches', () => {
  it('quotes words for virsh like sh does', () => {
    expect(virshWord("it's a vm; echo x")).toBe(`'it'\\''s a vm; echo x'`);
    expect(batchScript([['dominfo', '--domain', 'a b']], M)).toBe(`echo ${M}-0; echo --err ${M}-0; 'dominfo' '--domain' 'a b'; echo ${M}-1; echo --err ${M}-1`);
  });

  it.runIf(HAVE_VIRSH)('answers each command as virsh does alone (stdout, success or failure), also for awkward names', () => {
    const commands = [
      ['dominfo', '--domain', 'test'],
      ['dumpxml', '--inactive', '--domain', 'test'],
      ['dumpxml', '--inactive', '--domain', "no such vm; echo it's"],
      ['snapshot-list', '--active', '--name', '--domain', 'test'],
    ];
    const batch = realBatch(commands);
    commands.forEach((c, i) => {
      const one = alone(c);
      expect(batch[i]!.code === 0, c.join(' ')).toBe(one.code === 0);
      // (the test driver's CPU time follows the clock: two processes never agree on it)
      if (one.code === 0) expect(cpuTimeless(batch[i]!.stdout)).toBe(cpuTimeless(one.stdout));
      else expect(batch[i]!.stderr.trim()).toBe(one.stderr.trim());
    });
  });

  it('splits output in the shape virsh 9.0 prints: an echo --err adds an empty line on stdout', () => {
    const out = {
      code: 0,
      stdout: `${M}-0\n\nId: -\nState: shut off\n\n${M}-1\n\n\n${M}-2\n\n<domain/>\n\n${M}-3\n\n`,
      stderr: `error: ${M}-0\nerror: ${M}-1\nerror: failed to get domain 'x'\nerror: ${M}-2\nerror: ${M}-3\n`,
    };
    expect(splitBatch(3, M, out)).toEqual([
      { code: 0, stdout: 'Id: -\nState: shut off\n\n', stderr: '' },
      { code: 1, stdout: '\n', stderr: "error: failed to get domain 'x'\n" },
      { code: 0, stdout: '<domain/>\n\n', stderr: '' },
    ]);
  });

  it.each<[string, VirshResult, number]>([
    ['no connection', { code: 1, stdout: '', stderr: 'error: failed to connect to the hypervisor\nerror: no socket\n' }, 1],
    ['killed by timeout after the first command', { code: 124, stdout: `${M}-0\n\nId: -\n\n${M}-1\n\n`, stderr: `error: ${M}-0\nerror: ${M}-1\n` }, 124],
  ])('%s: the commands not reached fail with virsh’s status and stderr', (_label, out, code) => {
    const r = splitBatch(2, M, out);
    expect(r.at(-1)).toEqual({ code, stdout: '', stderr: out.stderr });
    if (out.stdout) expect(r[0]).toEqual({ code: 0, stdout: 'Id: -\n\n', stderr: '' });
  });
});
