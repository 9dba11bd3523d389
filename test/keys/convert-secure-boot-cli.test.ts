/**
 * `ovmf-hook convert VM --secure-boot` of an already-UEFI domain through the built CLI with a fake
 * virsh (no libvirt): what happens to its NVRAM around the definition — XML only when there is no
 * NVRAM yet, the TPM guard (refused without --force, listed by --dry-run), an NVRAM only the archive
 * holds, the NVRAM put back when libvirt refuses the new definition. Refusals write nothing (the
 * temp tree byte for byte). The firmware itself is tested in convert-secure-boot.libvirt.test.ts.
 */
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { editVarstore, EFI_GLOBAL_VARIABLE } from '../../src/core/varstore';
import type { FakeVirshDomain } from '../cli/fake-virsh-bin';
import { builtCli, cliHost, treeSnapshot } from './cli-host';

const MS = '/usr/share/OVMF/OVMF_VARS_4M.ms.fd';
const BOOTED = join(__dirname, '..', 'nvram', 'varstore', 'fixtures', 'booted-4m.fd');
const FIRMWARE = join(__dirname, '..', 'firmware', 'fixtures', 'debian');
const UUID = '5b7d1a52-6f0e-4d1c-9a51-0c6c4e1f2a10';
const VM = 'uefi-vm';
const haveOvmf = ['/usr/share/OVMF/OVMF_CODE_4M.ms.fd', MS].every(existsSync);

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

const built = builtCli('convert-sb');

/** A q35 domain booting plain OVMF (manual form) with its NVRAM in `nvramDir`. */
const plainUefi = (nvramDir: string, devices = '') =>
  `<domain type='kvm'>
  <name>${VM}</name>
  <uuid>${UUID}</uuid>
  <memory unit='KiB'>1048576</memory>
  <os>
    <type arch='x86_64' machine='pc-q35-7.2'>hvm</type>
    <loader readonly='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE_4M.fd</loader>
    <nvram template='/usr/share/OVMF/OVMF_VARS_4M.fd'>${nvramDir}/${VM}_VARS.fd</nvram>
    <boot dev='hd'/>
  </os>
  <features>
    <acpi/>
    <apic/>
  </features>
  <devices>
${devices}  </devices>
</domain>
`;
const TPM = "    <tpm model='tpm-crb'>\n      <backend type='emulator' version='2.0'/>\n    </tpm>\n";

/** Every file under `root`: mode, size, content hash (what "nothing written" is checked against). */
const snapshot = (root: string) => treeSnapshot(root, (p, st) => (st.isDirectory() ? undefined : `${(st.mode & 0o7777).toString(8)} ${st.size} ${sha(readFileSync(p))}`));

/** A temp tree (config, Debian's firmware descriptors) and a fake virsh knowing the domain VM; `nvram` is its NVRAM. */
function host(domain: (nvramDir: string) => FakeVirshDomain) {
  const h = cliHost(built.cli, {
    name: 'convert-sb-host',
    firmwareDir: FIRMWARE,
    domains: (nvramDir) => {
      const d = domain(nvramDir);
      return { [VM]: d, [UUID]: d }; // the CLI asks by name, then (domstate) by UUID
    },
  });
  const nvram = h.nvram(VM);
  const vars = () => JSON.parse(h.run('nvram', 'vars', nvram, '--json').stdout) as { secureBoot: { effective: string } };
  const defined = () => h.virsh.domains()[VM]!.xml;
  const setDomain = (x: FakeVirshDomain) => writeFileSync(join(h.dir, 'fake-virsh', 'state.json'), JSON.stringify({ [VM]: x, [UUID]: x }));
  return { ...h, nvram, vars, defined, setDomain };
}

describe.skipIf(!haveOvmf)('convert --secure-boot of an already-UEFI domain: its NVRAM (built CLI, fake virsh)', () => {
  it('no NVRAM on this host yet: only the definition changes (its first start creates the NVRAM from the Microsoft-keys template); nothing is archived', () => {
    const h = host((d) => ({ xml: plainUefi(d) }));
    try {
      const r = h.run('convert', VM, '--secure-boot');
      expect(r.stdout).toBe('');
      expect(r.stderr).toBe(`${VM}: converted (4 changes; no NVRAM on this host yet: its first start creates ${h.nvram} from ${MS}, keys included)\n`);
      expect(r.code).toBe(0);
      expect(h.defined()).toContain(`<loader readonly='yes' type='pflash' secure='yes'>/usr/share/OVMF/OVMF_CODE_4M.ms.fd</loader>`);
      expect(h.defined()).toContain(`<nvram template='${MS}'>${h.nvram}</nvram>`);
      expect(existsSync(h.nvram) || existsSync(join(h.dir, 'archive'))).toBe(false);
    } finally {
      h.cleanup();
    }
  });

  it('a TPM: refused without --force (why, and what to do first), writing nothing; --dry-run lists it; --force converts and enrols, archived first', () => {
    const h = host((d) => ({ xml: plainUefi(d, TPM) }));
    try {
      copyFileSync(BOOTED, h.nvram);
      const before = snapshot(h.dir);
      const refused = h.run('convert', VM, '--secure-boot');
      expect(refused).toMatchObject({ code: 1, stdout: '' });
      expect(refused.stderr).toBe(
        `ovmf-hook: ${VM}: the domain has a TPM: turning Secure Boot on changes the Secure Boot measurement in PCR7, so BitLocker (or anything sealed to PCR7) asks for its recovery key at the next boot; ` +
          `suspend BitLocker in the guest first (manage-bde -protectors -disable C: -RebootCount 2), shut the VM down, then run ovmf-hook convert ${VM} --secure-boot --force\n`,
      );
      expect(snapshot(h.dir)).toEqual(before);
      expect(h.virsh.calls().some((c) => c[0] === 'define')).toBe(false);

      const dry = h.run('convert', VM, '--secure-boot', '--dry-run');
      expect(dry.code, dry.stderr).toBe(0);
      expect(dry.stderr).toMatch(new RegExp(`^${VM}: would convert \\(4 changes; NVRAM would get Secure Boot keys from ${MS}: .*; refused if run now: the domain has a TPM: [^\\n]*\\)\\n$`));
      expect(snapshot(h.dir)).toEqual(before);

      const original = readFileSync(h.nvram);
      const r = h.run('convert', VM, '--secure-boot', '--force');
      expect(r.code, r.stderr).toBe(0);
      const [warning, status, ...rest] = r.stderr.split('\n');
      expect(warning).toBe(
        `ovmf-hook: warning: ${VM} has a TPM: PCR7 changes with Secure Boot on; BitLocker asks for its recovery key unless it was suspended (manage-bde -protectors -disable C: -RebootCount 2)`,
      );
      expect(status).toMatch(new RegExp(`^${VM}: converted \\(4 changes; NVRAM got Secure Boot keys from ${MS}: .*archived as generation 2, the NVRAM before is generation 1 .*\\)$`));
      expect(rest).toEqual(['']);
      expect(h.vars().secureBoot.effective).toBe('on');
      const list = JSON.parse(h.run('nvram', 'list', VM, '--json').stdout) as { generations: Array<{ generation: number; sha256: string }> };
      expect(list.generations.map((g) => [g.generation, g.sha256])).toEqual([
        [1, sha(original)],
        [2, sha(readFileSync(h.nvram))],
      ]);
    } finally {
      h.cleanup();
    }
  });

  it('a store too full for the keys: --dry-run says so, the convert is refused in one line and writes nothing (the definition neither)', () => {
    const h = host((d) => ({ xml: plainUefi(d) }));
    try {
      const ed = editVarstore(readFileSync(BOOTED));
      for (let i = 0; ed.usage().free > 0x1000; i++) ed.set(`Filler${i}`, EFI_GLOBAL_VARIABLE, 7, new Uint8Array(Math.min(0x7000, ed.usage().free - 0x800)));
      writeFileSync(h.nvram, ed.toBuffer(), { mode: 0o600 });
      const before = snapshot(h.dir);
      const dry = h.run('convert', VM, '--secure-boot', '--dry-run');
      expect(dry.code, dry.stderr).toBe(0);
      expect(dry.stderr).toMatch(new RegExp(`^${VM}: would convert \\(4 changes; NVRAM ${h.nvram}: the variable store is full: [^;]*; refused if run now: its NVRAM cannot get the keys \\(above\\)\\)\\n$`));
      const r = h.run('convert', VM, '--secure-boot');
      expect(r).toMatchObject({ code: 2, stdout: '' });
      expect(r.stderr).toMatch(new RegExp(`^ovmf-hook: ${VM}: the variable store is full: [^\\n]*\\n$`));
      expect(snapshot(h.dir)).toEqual(before);
      expect(h.virsh.calls().some((c) => c[0] === 'define')).toBe(false);
    } finally {
      h.cleanup();
    }
  });

  it('libvirt refuses the new definition: the NVRAM is put back as it was, and the refusal says so', () => {
    const h = host((d) => ({ xml: plainUefi(d), defineError: 'unsupported configuration: no firmware for you' }));
    try {
      copyFileSync(BOOTED, h.nvram);
      const original = readFileSync(h.nvram);
      const r = h.run('convert', VM, '--secure-boot');
      expect(r).toMatchObject({ code: 1, stdout: '' });
      expect(r.stderr).toBe(
        `ovmf-hook: ${VM}: libvirt refused the converted definition (unsupported configuration: no firmware for you); the domain is unchanged; see the changes with: ovmf-hook convert ${VM} --dry-run; its NVRAM was put back as it was (generation 1, archived again as 3)\n`,
      );
      expect(sha(readFileSync(h.nvram))).toBe(sha(original));
      expect(h.defined()).toBe(plainUefi(h.nvramDir));
    } finally {
      h.cleanup();
    }
  });

  it('its NVRAM only in the archive (another host ran it last): refused, naming the restore to do first', () => {
    const h = host((d) => ({ xml: plainUefi(d) }));
    try {
      copyFileSync(BOOTED, h.nvram);
      expect(h.run('convert', VM, '--secure-boot').code).toBe(0); // archives generations 1 and 2
      h.setDomain({ xml: plainUefi(h.nvramDir) }); // the old definition again, as on another host
      rmSync(h.nvram);
      const before = snapshot(h.dir);
      const r = h.run('convert', VM, '--secure-boot');
      expect(r).toMatchObject({ code: 1, stdout: '' });
      expect(r.stderr).toBe(
        `ovmf-hook: ${VM}: its NVRAM is not on this host, but the archive holds generation 2, which a start would restore without Secure Boot keys; restore it here first (ovmf-hook nvram restore ${VM}), then run the convert again\n`,
      );
      expect(snapshot(h.dir)).toEqual(before);
    } finally {
      h.cleanup();
    }
  });
});
