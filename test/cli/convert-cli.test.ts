/**
 * `ovmf-hook convert` through the bundled CLI with a fake virsh on PATH (test/cli/fake-virsh-bin.ts):
 * transient domains, which have no persistent definition to convert. No libvirt.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fakeVirshBin } from './fake-virsh-bin';
import { buildCli, runCli, scratchDir, writeConfig } from './support';

const BIOS = readFileSync(join(__dirname, '..', 'fixtures', 'domains', 'bios-i440fx-linux.xml'), 'utf8');
const named = (name: string) => BIOS.replace(/<name>[^<]*<\/name>/, `<name>${name}</name>`);

let cli: string;
let scratch: ReturnType<typeof scratchDir>;
let config: string;

beforeAll(async () => {
  scratch = scratchDir('cli-convert');
  cli = await buildCli(scratch.dir);
  config = writeConfig(scratch.dir, 'config.json', { firmwareDirs: [join(__dirname, '..', 'firmware', 'fixtures', 'debian')] });
}, 60_000);
afterAll(() => scratch?.cleanup());

/** A host with `domains` in its (fake) libvirt, and the built CLI run against it. */
function host(domains: Parameters<typeof fakeVirshBin>[1]) {
  const { dir, cleanup } = scratchDir('cli-convert-host');
  const virsh = fakeVirshBin(dir, domains);
  const run = (...args: string[]) => runCli(cli, args, { env: { ...virsh.env, OVMF_HOOK_CONFIG: config } });
  return { virsh, run, cleanup };
}

describe('ovmf-hook convert: transient domains (built CLI)', () => {
  it('--all counts and reports the transient domains it skips, and converts the rest', () => {
    const h = host({
      'web-1': { xml: named('web-1') },
      'web-2': { xml: named('web-2'), state: 'running', persistent: false },
      'web-3': { xml: named('web-3'), state: 'running', persistent: false },
    });
    try {
      const r = h.run('convert', '--all');
      expect(r.stdout).toBe('');
      expect(r.code).toBe(0);
      const lines = r.stderr.trimEnd().split('\n');
      expect(lines).toEqual([
        expect.stringMatching(/^\[1\/3\] web-1: converted \(\d+ changes\)$/),
        expect.stringMatching(/^\[2\/3\] web-2: skipped: transient \(no persistent definition to convert\); to convert it: virsh dumpxml --security-info web-2 > web-2\.xml; ovmf-hook rewrite web-2\.xml > web-2-uefi\.xml; virsh define web-2-uefi\.xml$/),
        expect.stringMatching(/^\[3\/3\] web-3: skipped: transient /),
        '3 domains: 1 converted, 2 skipped (2 transient)',
      ]);
      expect(Object.keys(h.virsh.domains()).filter((n) => h.virsh.domains()[n].xml.includes("machine='q35'"))).toEqual(['web-1']);
      // nothing but the listing is asked about a transient domain
      expect(h.virsh.calls().filter((c) => c.join(' ').includes('web-2'))).toEqual([]);
    } finally {
      h.cleanup();
    }
  });

  it('a running transient domain is refused with advice that works: convert its source definition, not "shut it down"', () => {
    const h = host({ tmp: { xml: named('tmp'), state: 'running', persistent: false } });
    try {
      const r = h.run('convert', 'tmp');
      expect(r.code).toBe(1);
      expect(r.stdout).toBe('');
      expect(r.stderr).toBe(
        'ovmf-hook: tmp: the domain is transient: it has no persistent definition to convert, and shutting it down would delete it; ' +
          'convert its source definition instead: virsh dumpxml --security-info tmp > tmp.xml; ovmf-hook rewrite tmp.xml > tmp-uefi.xml; ' +
          'then virsh define tmp-uefi.xml (the domain becomes persistent and boots UEFI from its next start)\n',
      );
      expect(r.stderr).not.toMatch(/shut it down first/);
      expect(h.virsh.calls().some((c) => c[0] === 'define')).toBe(false);
    } finally {
      h.cleanup();
    }
  });
});
