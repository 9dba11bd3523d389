import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import yargs from 'yargs';
import { firmwareCommand } from '../../src/cli/commands/firmware';

const fixtures = join(__dirname, 'fixtures');

async function run(args: string[]): Promise<{ stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  vi.spyOn(process.stdout, 'write').mockImplementation((s) => ((stdout += String(s)), true));
  vi.spyOn(process.stderr, 'write').mockImplementation((s) => ((stderr += String(s)), true));
  await yargs(args).command(firmwareCommand).strict().fail(false).parseAsync();
  return { stdout, stderr };
}

afterEach(() => {
  vi.restoreAllMocks();
});

describe('ovmf-hook firmware list', () => {
  it('--json prints one document in match order with override, masking and flash class', async () => {
    const { stdout } = await run([
      'firmware', 'list', '--json',
      '--root', join(fixtures, 'debian'),
      '--root', join(fixtures, 'etc-override'),
    ]);
    const doc = JSON.parse(stdout);
    expect(doc.source).toBe('descriptors');
    expect(doc.descriptors.map((d: { order: number; file: string }) => `${d.order} ${d.file}`)).toEqual([
      '1 50-edk2-x86_64-secure.json',
      '2 55-local-combined.json',
      '3 60-edk2-x86_64.json',
    ]);
    // /opt/ovmf does not exist on the test machine: its sizes are null, flash "missing"
    expect(doc.descriptors[2]).toMatchObject({ flash: 'missing', executable: { filename: '/opt/ovmf/OVMF_CODE_4M.fd', size: null } });
  });

  it('prints a table with one row per descriptor and warnings on stderr', async () => {
    const { stdout, stderr } = await run(['firmware', 'list', '--root', join(fixtures, 'invalid')]);
    const lines = stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^#\s+FILE\s+EXECUTABLE\s+TEMPLATE\s+SIZES\s+FLASH\s+FEATURES\s+MACHINES$/);
    expect(lines).toHaveLength(2);
    expect(lines[1]).toMatch(/^1\s+60-edk2-x86_64\.json\s+\/usr\/share\/OVMF\/OVMF_CODE_4M\.fd\s/);
    expect(lines[1]).toContain('x86_64:pc-i440fx-*,pc-q35-*');
    expect(stderr.trimEnd().split('\n')).toHaveLength(2);
    expect(stderr).toContain('ovmf-hook: warning: firmware descriptor');
  });
});
