import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { loadBytes, nvramDiffCommand, nvramVarsCommand } from '../../../src/cli/commands/nvram-vars';
import { UsageError, VarstoreError } from '../../../src/core/errors';
import { diffVarstores, parseVarstore, renderDiff, renderVarsTable } from '../../../src/core/varstore';

const BOOTED = join(__dirname, 'fixtures/booted-4m.fd');
const MS = '/usr/share/OVMF/OVMF_VARS_4M.ms.fd';
const EMPTY = '/usr/share/OVMF/OVMF_VARS_4M.fd';
const haveOvmf = existsSync('/usr/share/OVMF');
if (!haveOvmf) console.warn('SKIPPED: /usr/share/OVMF is absent — template rendering tests do not run');

describe('renderVarsTable', () => {
  it('shows the store, Secure Boot, boot entries in BootOrder order, then every variable', () => {
    const out = renderVarsTable(parseVarstore(readFileSync(BOOTED)));
    const at = (s: string) => out.indexOf(s);
    expect(out).toMatch(/^Variable store: 4M layout, authenticated, 262072 bytes/);
    expect(out).toMatch(/at next boot +off \(no PK: setup mode\)/);
    expect(out).toContain('BootOrder   Boot0000, Boot0001, Boot0002, Boot0003, Boot0004, Boot0005, Boot0006');
    expect(out).toContain('* Boot0000  "UiApp" [hidden,app]');
    expect(out).toContain('* Boot0006  "EFI Internal Shell"\n      Fv(7cb8bdc9-f8eb-4f34-aaea-3ee4af6516a1)/FvFile(7c04a583-9e3e-4f1c-ad65-e05268d0b4d1)');
    expect(at('Secure Boot')).toBeLessThan(at('\nBoot\n'));
    expect(at('* Boot0001')).toBeLessThan(at('* Boot0002'));
    expect(at('\nBoot\n')).toBeLessThan(at('Variables (34)'));
    expect(out).toMatch(/EfiGlobalVariable +BootOrder +NV,BS,RT +14\n/);
    expect(out).toMatch(/EfiMemoryTypeInformation +MemoryTypeInformation +NV,BS +48\n/);
  });

  it.skipIf(!haveOvmf)('names the enrolled Microsoft certificates of the ms template', () => {
    const out = renderVarsTable(parseVarstore(readFileSync(MS)));
    expect(out).toMatch(/at next boot +on/);
    expect(out).toContain('KEK               2 certificates: Debian UEFI Secure Boot (PK/KEK key); Microsoft Corporation KEK CA 2011');
    expect(out).toContain('KEK CA 2011 yes, KEK 2K CA 2023 no');
    expect(out).toContain('Windows Production PCA 2011 yes');
    expect(out).toContain('dbx               1 SHA-256 hash');
  });

  it.skipIf(!haveOvmf)('says when a VM has not reached the boot manager', () => {
    expect(renderVarsTable(parseVarstore(readFileSync(EMPTY)))).toContain('BootOrder   (none)');
  });
});

describe.skipIf(!haveOvmf)('renderDiff', () => {
  it('lists added boot entries with their description and path, then a count line', () => {
    const out = renderDiff(diffVarstores(parseVarstore(readFileSync(EMPTY)), parseVarstore(readFileSync(BOOTED))));
    expect(out).toContain('+ EfiGlobalVariable:Boot0006 "EFI Internal Shell" Fv(');
    expect(out).toContain('+ EfiGlobalVariable:BootOrder Boot0000,Boot0001');
    expect(out).toMatch(/\n34 added, 0 removed, 0 changed, 0 unchanged\n$/);
  });
});

describe('nvram vars / nvram diff commands', () => {
  afterEach(() => vi.restoreAllMocks());
  const capture = () => {
    const chunks: string[] = [];
    vi.spyOn(process.stdout, 'write').mockImplementation((c: string | Uint8Array) => {
      chunks.push(String(c));
      return true;
    });
    return () => chunks.join('');
  };
  const run = (cmd: typeof nvramVarsCommand, args: Record<string, unknown>) => cmd.handler({ _: [], $0: 'ovmf-hook', ...args } as never);

  it('are the vars <target> and diff <a> [b] subcommands (diff VM --from N: one target)', () => {
    expect(nvramVarsCommand.command).toBe('vars <target>');
    expect(nvramDiffCommand.command).toBe('diff <a> [b]');
  });

  it('vars --json prints one JSON document with hex data and decoded boot entries', async () => {
    const out = capture();
    await run(nvramVarsCommand, { target: BOOTED, json: true });
    const doc = JSON.parse(out());
    expect(doc).toMatchObject({ target: BOOTED, layout: '4M', authenticated: true, secureBoot: { effective: 'off' } });
    const bootOrder = doc.variables.find((v: { name: string }) => v.name === 'BootOrder');
    expect(bootOrder).toMatchObject({ vendor: 'EfiGlobalVariable', data: '0000010002000300040005000600', decoded: { kind: 'order' } });
  });

  it('vars prints the text report', async () => {
    const out = capture();
    await run(nvramVarsCommand, { target: BOOTED, json: false });
    expect(out()).toContain('"EFI Internal Shell"');
  });

  it.skipIf(!haveOvmf)('diff --json lists added, removed and changed variables', async () => {
    const out = capture();
    await run(nvramDiffCommand, { a: MS, b: BOOTED, json: true });
    const doc = JSON.parse(out());
    expect(doc.removed.map((v: { name: string }) => v.name)).toEqual(expect.arrayContaining(['PK', 'KEK', 'db', 'dbx']));
    expect(doc.added.map((v: { name: string }) => v.name)).toContain('BootOrder');
    expect(doc.changed.map((c: { name: string }) => c.name)).toContain('Boot0001');
  });

  it.each([
    { what: 'a missing file', target: '/nonexistent/x_VARS.fd', error: UsageError, msg: /no such file/ },
    { what: 'a directory', target: __dirname, error: UsageError, msg: /not a regular file/ },
    { what: 'a file that is not a variable store', target: __filename, error: VarstoreError, msg: /render-cli\.test\.ts: not a usable OVMF variable store/ },
  ])('refuses $what with a typed error naming it', async ({ target, error, msg }) => {
    capture();
    await expect(run(nvramVarsCommand, { target, json: false })).rejects.toThrow(error);
    await expect(run(nvramVarsCommand, { target, json: false })).rejects.toThrow(msg);
  });

  it('loadBytes returns the file bytes', async () => {
    expect((await loadBytes(BOOTED)).length).toBe(540672);
  });
});
