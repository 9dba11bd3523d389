/**
 * Many virsh commands in few batches (src/io/virsh.ts runInBatches, used by `nvram certs`): each
 * batch's command string stays under Linux's 128 KiB cap on one argument, the answers come back in
 * the order of the commands, and no more batches run at once than asked.
 */
import { describe, expect, it } from 'vitest';
import { BATCH_MAX_CHARS, batchScript, runInBatches, type VirshResult } from '../../src/io/virsh';

const MARKER = 'ovmf-hook-0123456789abcdef01234567'; // the length runVirshBatch's markers have
const MAX_ARG_STRLEN = 128 * 1024;

/** A batch runner that records each batch and answers every command with its own words. */
function recorder(delayMs = 0) {
  const batches: string[][][] = [];
  let running = 0;
  let most = 0;
  const batch = async (commands: readonly (readonly string[])[]): Promise<VirshResult[]> => {
    batches.push(commands.map((c) => [...c]));
    most = Math.max(most, ++running);
    await new Promise((r) => setTimeout(r, delayMs));
    running--;
    return commands.map((c) => ({ code: 0, stdout: c.join(' '), stderr: '' }));
  };
  return { batch, batches, most: () => most };
}

describe('runInBatches', () => {
  it('1,000 dumpxml of long names: batches whose command string fits one argument, answers in order', async () => {
    const names = Array.from({ length: 1000 }, (_, i) => `a-rather-long-domain-name-of-a-windows-guest-${String(i).padStart(4, '0')}`);
    const commands = names.map((n) => ['dumpxml', '--inactive', n]);
    const r = recorder();
    const answers = await runInBatches(r.batch, commands);
    expect(answers.map((a) => a.stdout)).toEqual(commands.map((c) => c.join(' ')));
    expect(r.batches.length).toBeGreaterThan(1);
    expect(r.batches.flat()).toEqual(commands);
    for (const b of r.batches) expect(Buffer.byteLength(batchScript(b, MARKER))).toBeLessThan(MAX_ARG_STRLEN);
    for (const b of r.batches) expect(batchScript(b, MARKER).length).toBeLessThanOrEqual(BATCH_MAX_CHARS + 200);
  });

  it('a few commands: one batch; none: no batch at all', async () => {
    const r = recorder();
    expect((await runInBatches(r.batch, [['list', '--all', '--name'], ['dumpxml', 'x']])).map((a) => a.stdout)).toEqual(['list --all --name', 'dumpxml x']);
    expect(r.batches).toHaveLength(1);
    expect(await runInBatches(r.batch, [])).toEqual([]);
    expect(r.batches).toHaveLength(1);
  });

  it('at most `parallel` batches at once', async () => {
    const r = recorder(20);
    const commands = Array.from({ length: 50 }, (_, i) => ['dumpxml', `vm-${i}`]);
    const answers = await runInBatches(r.batch, commands, { maxChars: 1000, parallel: 2 });
    expect(answers.map((a) => a.stdout)).toEqual(commands.map((c) => c.join(' ')));
    expect(r.batches.length).toBeGreaterThan(2);
    expect(r.most()).toBe(2);
  });
});
