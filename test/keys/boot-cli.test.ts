/**
 * `ovmf-hook nvram boot` through the built CLI, without libvirt: the FILE form on copies of a store
 * OVMF wrote (test/nvram/varstore/fixtures/booted-4m.fd), the VM form against a fake virsh on PATH
 * (test/cli/fake-virsh-bin.ts) with a temp config — archive first, the result the newest generation,
 * undo by `nvram restore`, `--disk` reading a raw image's MBR — and every refusal: one line on
 * stderr, exit 1 or 2, nothing on stdout, the whole temp tree as it was.
 */
import { createHash } from 'node:crypto';
import { chmodSync, copyFileSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseVarstore, readBootConfig } from '../../src/core/varstore';
import { mbrHead } from './boot-disks';
import { builtCli, cliHost, expectRefused, fullSnapshot as snapshot } from './cli-host';

const BOOTED = join(__dirname, '../nvram/varstore/fixtures/booted-4m.fd');
const VM = 'ovmfhook-t-boot';
const UUID = '7e57e7e5-0000-4000-8000-00000000b001';

const built = builtCli('boot-cli');
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');


const boot = (file: string) => readBootConfig(parseVarstore(readFileSync(file)).variables);

const host = (domains?: Parameters<typeof cliHost>[1]['domains']) => cliHost(built.cli, { name: 'boot-host', domains, command: ['nvram'] });

describe('nvram boot FILE (built CLI)', () => {
  it('lists BootOrder, BootNext and every entry (table and --json)', () => {
    const h = host();
    try {
      const r = h.run('boot', BOOTED);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toMatch(/^BootOrder  Boot0000, Boot0001, Boot0002, Boot0003, Boot0004, Boot0005, Boot0006\nBootNext   \(none\)\n\nORDER  ENTRY +FLAGS +DESCRIPTION +DEVICE PATH\n/);
      expect(r.stdout).toMatch(/^1 +Boot0000 +active,hidden,app +"UiApp" +Fv\(7cb8bdc9-f8eb-4f34-aaea-3ee4af6516a1\)\/FvFile\(462caa21-7614-4503-836e-8ab6f4662331\)$/m);
      expect(r.stdout).toMatch(/^2 +Boot0001 +active +"UEFI PXEv4 \(MAC:5254000F0001\)" +PciRoot\(0x0\)\/Pci\(0x1,0x0\)\/Pci\(0x0,0x0\)\/MAC\(5254000F0001,0x1\)  \(\+16 bytes optional data\)$/m);
      const doc = JSON.parse(h.run('boot', BOOTED, '--json').stdout);
      expect(doc).toMatchObject({ target: BOOTED, file: BOOTED, order: ['Boot0000', 'Boot0001', 'Boot0002', 'Boot0003', 'Boot0004', 'Boot0005', 'Boot0006'], next: null, missing: [], problems: [] });
      expect(doc.entries[6]).toMatchObject({ number: 6, name: 'Boot0006', description: 'EFI Internal Shell', active: true, position: 6 });
    } finally {
      h.cleanup();
    }
  });

  it('--add --label --next --output: a new file with the entry first at the next start; the input untouched; --in-place keeps the mode; --dry-run writes nothing', () => {
    const h = host();
    try {
      const input = join(h.dir, 'vars.fd');
      copyFileSync(BOOTED, input);
      chmodSync(input, 0o640);
      const out = join(h.dir, 'out.fd');
      const r = h.run('boot', input, '--add', '\\EFI\\test\\shell.efi', '--label', 'test', '--next', '--output', out);
      expect([r.code, r.stderr]).toEqual([0, '']);
      expect(r.stdout).toBe(`${input}: added Boot0007 "test" (\\EFI\\test\\shell.efi), last in BootOrder; BootNext Boot0007 (the next start boots it once); written to ${out}\n`);
      expect(sha(readFileSync(input))).toBe(sha(readFileSync(BOOTED)));
      expect(statSync(out).mode & 0o777).toBe(0o640);
      expect(boot(out)).toMatchObject({ order: [0, 1, 2, 3, 4, 5, 6, 7], next: 7 });
      expect(h.run('boot', out).stdout).toMatch(/^BootNext   Boot0007 \(the next start boots it once\)$/m);

      const before = snapshot(h.dir);
      const dry = h.run('boot', out, '--order', '7,0', '--remove', '1', '--dry-run');
      expect(dry.stdout).toBe(`dry run: would change ${out}: removed Boot0001 (and from BootOrder); BootOrder Boot0007, Boot0000 (was Boot0000, Boot0002, Boot0003, Boot0004, Boot0005, Boot0006, Boot0007); nothing written\n`);
      expect(snapshot(h.dir)).toEqual(before);

      const inPlace = h.run('boot', out, '--order', '7,0', '--remove', '1', '--in-place', '--json');
      expect(inPlace.code, inPlace.stderr).toBe(0);
      expect(JSON.parse(inPlace.stdout)).toMatchObject({ written: out, changed: true, order: ['Boot0007', 'Boot0000'], next: 'Boot0007', added: null });
      expect(statSync(out).mode & 0o777).toBe(0o640);
      expect(boot(out).entries.map((e) => e.name)).toEqual(['Boot0007', 'Boot0000', 'Boot0002', 'Boot0003', 'Boot0004', 'Boot0005', 'Boot0006']);
      // the same again changes nothing
      expect(h.run('boot', out, '--order', '7,0', '--in-place').stdout).toBe(`${out}: already so; nothing written\n`);
    } finally {
      h.cleanup();
    }
  });

  it('refuses bad input in one line, exit 2 (1 for a file in the nvram directory), writing nothing', () => {
    const h = host();
    try {
      const d = h.dir;
      const at = (n: string) => join(d, n);
      copyFileSync(BOOTED, at('vars.fd'));
      writeFileSync(at('exists.fd'), 'x');
      writeFileSync(at('junk.fd'), Buffer.alloc(540672, 0x5a));
      const run = h.run;
      const f = at('vars.fd');
      expectRefused(d, () => run('boot', f, '--label', 'x', '--in-place'), 2, /--label names the entry --add creates; give --add PATH too/);
      expectRefused(d, () => run('boot', f, '--add', '\\EFI\\x.efi', '--in-place'), 2, /--add needs --label TEXT/);
      expectRefused(d, () => run('boot', f, '--add', '\\EFI\\x.efi', '--label', 'x', '--disk', '1', '--in-place'), 2, /--disk reads the partition table of a VM's disk; .* is a file: leave out --disk/);
      expectRefused(d, () => run('boot', f, '--next', '1'), 2, /is a file: write the result to --output OUT \(a new file\) or change it with --in-place/);
      expectRefused(d, () => run('boot', f, '--next', '1', '--output', at('o.fd'), '--in-place'), 2, /give either --output OUT or --in-place, not both/);
      expectRefused(d, () => run('boot', f, '--next', '1', '--output', at('exists.fd')), 2, /exists\.fd exists; --output writes a new file/);
      expectRefused(d, () => run('boot', f, '--in-place'), 2, /--output, --in-place and --dry-run go with a change: --add, --next, --order or --remove/);
      expectRefused(d, () => run('boot', f, '--next', 'zz', '--in-place'), 2, /--next "zz" is not a boot entry number: give its hex number as nvram boot lists it/);
      expectRefused(d, () => run('boot', f, '--next', '--in-place'), 2, /--next without a number names the entry --add creates/);
      expectRefused(d, () => run('boot', f, '--order', '1,9', '--in-place'), 2, /--order: there is no Boot0009 \(entries: Boot0000, Boot0001, /);
      expectRefused(d, () => run('boot', f, '--order', '1,1', '--in-place'), 2, /--order names Boot0001 twice/);
      expectRefused(d, () => run('boot', f, '--remove', '3', '--remove', '4', '--in-place'), 2, /--remove given 2 times; give it once/);
      expectRefused(d, () => run('boot', f, '--add', 'EFI\\x.efi', '--label', 'x', '--in-place'), 2, /the path must be absolute on the EFI system partition/);
      expectRefused(d, () => run('boot', at('junk.fd'), '--next', '1', '--in-place'), 2, /junk\.fd: .*no "_FVH" firmware volume signature/);
      expectRefused(d, () => run('boot', at('missing.fd'), '--next', '1', '--in-place'), 2, /missing\.fd: no such file/);
      copyFileSync(BOOTED, join(h.nvramDir, 'vm_VARS.fd'));
      expectRefused(d, () => run('boot', join(h.nvramDir, 'vm_VARS.fd'), '--next', '1', '--in-place'), 1, /is in libvirt's nvram directory: change its VM instead \(ovmf-hook nvram boot VM/);
    } finally {
      h.cleanup();
    }
  });
});

// ─── VM form ─────────────────────────────────────────────────────────────────────────────────

const vmXml = (nvram: string, o: { tpm?: boolean; disks?: string } = {}) => `<domain type='qemu'>
  <name>${VM}</name>
  <uuid>${UUID}</uuid>
  <memory unit='KiB'>262144</memory>
  <os>
    <type arch='x86_64' machine='pc-q35-7.2'>hvm</type>
    <loader readonly='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE_4M.fd</loader>
    <nvram template='/usr/share/OVMF/OVMF_VARS_4M.fd'>${nvram}</nvram>
  </os>
  <devices>${o.disks ?? ''}${o.tpm ? "\n    <tpm model='tpm-crb'><backend type='emulator' version='2.0'/></tpm>\n  " : ''}</devices>
</domain>
`;

/** A host whose VM has a copy of the booted store as its NVRAM (null: none yet); `disks` go into its `<devices>` (`DIR` = the temp tree). */
function vmHost(o: { state?: string; tpm?: boolean; local?: string | null; disks?: string } = {}) {
  let nvram = '';
  const h = host((nvramDir) => {
    nvram = join(nvramDir, `${VM}_VARS.fd`);
    const d = { xml: vmXml(nvram, { ...o, disks: o.disks?.replace(/DIR/g, join(nvramDir, '..')) }), state: o.state ?? 'shut off' };
    return { [VM]: d, [UUID]: d }; // the CLI asks by name, then by UUID
  });
  if (o.local !== null) copyFileSync(o.local ?? BOOTED, nvram);
  return { ...h, nvram };
}

const generations = (h: ReturnType<typeof vmHost>) =>
  (JSON.parse(h.run('list', VM, '--json').stdout) as { generations: Array<{ generation: number; kind: string; sha256: string; reason: string }> }).generations.map((g) => [
    g.generation,
    g.kind,
    g.sha256,
    g.reason,
  ]);

const rawDisk = (file: string, target = 'vda') => `\n    <disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='${file}'/><target dev='${target}' bus='virtio'/></disk>`;

describe('nvram boot VM (built CLI, fake virsh)', () => {
  it('a shut-off VM: the NVRAM before is archived, the result is the newest generation, nvram restore --generation undoes it byte for byte', () => {
    const h = vmHost();
    try {
      const original = readFileSync(h.nvram);
      const r = h.run('boot', VM, '--add', '/EFI/test/shell.efi', '--label', 'test', '--next');
      expect([r.code, r.stderr]).toEqual([0, '']);
      expect(r.stdout).toBe(
        `${VM}: added Boot0007 "test" (\\EFI\\test\\shell.efi), last in BootOrder; BootNext Boot0007 (the next start boots it once); archived as generation 2 (the newest); the NVRAM before is generation 1 (undo: ovmf-hook nvram restore ${VM} --generation 1)\n`,
      );
      const changed = readFileSync(h.nvram);
      expect(boot(h.nvram)).toMatchObject({ order: [0, 1, 2, 3, 4, 5, 6, 7], next: 7 });
      expect(generations(h)).toEqual([
        [1, 'manual', sha(original), 'copy taken before nvram boot'],
        [2, 'manual', sha(changed), 'nvram boot --add /EFI/test/shell.efi --next: added Boot0007 "test" (\\EFI\\test\\shell.efi), last in BootOrder; BootNext Boot0007 (the next start boots it once)'],
      ]);
      expect(h.virsh.calls().filter((c) => c[0] === 'domstate')).toHaveLength(2); // before, and under the VM lock

      // listing works on the VM too, and an unchanged request writes nothing
      expect(h.run('boot', VM).stdout).toMatch(new RegExp(`^${h.nvram}\\nBootOrder  Boot0000, .*Boot0007\\nBootNext   Boot0007 `));
      const before = snapshot(h.dir);
      expect(h.run('boot', VM, '--next', '7').stdout).toBe(`${VM}: the boot entries are already so; nothing written\n`);
      expect(snapshot(h.dir)).toEqual(before);

      const undo = h.run('restore', VM, '--generation', '1');
      expect(undo.code, undo.stderr).toBe(0);
      expect(sha(readFileSync(h.nvram))).toBe(sha(original));
    } finally {
      h.cleanup();
    }
  });

  it('--disk N: the entry names the ESP of that disk by its MBR signature and partition (HD(...)/path); --json reports it', () => {
    const h = vmHost({ disks: `${rawDisk('DIR/other.img', 'vda')}${rawDisk('DIR/esp.img', 'vdb')}` });
    try {
      writeFileSync(join(h.dir, 'other.img'), Buffer.alloc(1024 * 1024));
      // a raw image whose MBR holds an EFI system partition (type 0xEF) from LBA 2048, 4096 sectors
      writeFileSync(join(h.dir, 'esp.img'), mbrHead([[0xef, 2048, 4096]], 0xc0ffee01));
      const r = h.run('boot', VM, '--add', '\\EFI\\BOOT\\BOOTX64.EFI', '--label', 'esp', '--disk', '2', '--json');
      expect(r.code, r.stderr).toBe(0);
      const doc = JSON.parse(r.stdout);
      expect(doc).toMatchObject({ changed: true, added: 'Boot0007', generation: 2, saved: 1, tpm: false });
      expect(doc.entries.find((e: { name: string }) => e.name === 'Boot0007')).toMatchObject({ description: 'esp', devicePath: 'HD(1,MBR,0xC0FFEE01,0x800,0x1000)/\\EFI\\BOOT\\BOOTX64.EFI' });
      expectRefused(h.dir, () => h.run('boot', VM, '--add', '\\EFI\\x.efi', '--label', 'x', '--disk', 'vda'), 2, /vda, .*other\.img\) has no partition table \(a whole-disk file system\?\); leave out --disk/);
      expectRefused(h.dir, () => h.run('boot', VM, '--add', '\\EFI\\x.efi', '--label', 'x', '--disk', '3'), 2, /--disk "3": ovmfhook-t-boot has no such disk \(disks: 1 vda, 2 vdb\)/);
    } finally {
      h.cleanup();
    }
    const qcow = vmHost({ disks: "\n    <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='/nonexistent/a.qcow2'/><target dev='vda' bus='virtio'/></disk>" });
    try {
      expectRefused(qcow.dir, () => qcow.run('boot', VM, '--add', '\\EFI\\x.efi', '--label', 'x', '--disk', '1'), 2, /disk 1 \(vda\) is qcow2; ovmf-hook reads the partition table of raw images and block devices only/);
    } finally {
      qcow.cleanup();
    }
  });

  it('a VM with a TPM: changed, with a one-line note that BootOrder/Boot#### go into PCR1, not PCR7 (no reseal for BitLocker)', () => {
    const h = vmHost({ tpm: true });
    try {
      const r = h.run('boot', VM, '--order', '6,0');
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr).toBe(
        `ovmf-hook: note: ${VM} has a TPM: the firmware measures BootOrder and the Boot#### it lists into PCR1, not into PCR7 (Secure Boot), so BitLocker (default PCRs 7, 11; without Secure Boot 0, 2, 4, 11) needs no reseal; a one-shot boot of another loader (--next) changes PCR4 for that boot only\n`,
      );
      expect(boot(h.nvram).order).toEqual([6, 0]);
    } finally {
      h.cleanup();
    }
  });

  it('refuses, in one line and writing nothing: a running VM, --output for a VM, no NVRAM yet, an entry that does not exist', () => {
    const running = vmHost({ state: 'running' });
    try {
      expectRefused(running.dir, () => running.run('boot', VM, '--remove', '1'), 1, new RegExp(`^ovmf-hook: ${VM} is running; nvram boot works only on a shut-off VM: shut it down first \\(virsh shutdown ${VM}\\)\\n$`));
      expectRefused(running.dir, () => running.run('boot', VM, '--remove', '1', '--output', join(running.dir, 'x.fd')), 2, /is a VM: its NVRAM is changed in place \(archived first\); --output and --in-place apply to a FILE/);
      // looking is allowed while it runs
      expect(running.run('boot', VM).code).toBe(0);
    } finally {
      running.cleanup();
    }
    const none = vmHost({ local: null });
    try {
      expectRefused(none.dir, () => none.run('boot', VM, '--remove', '1'), 2, /its NVRAM .* does not exist yet; start the VM once/);
    } finally {
      none.cleanup();
    }
    const h = vmHost();
    try {
      expectRefused(h.dir, () => h.run('boot', VM, '--remove', '9'), 2, new RegExp(`^ovmf-hook: --remove: there is no Boot0009 \\(entries: Boot0000, `));
    } finally {
      h.cleanup();
    }
  });
});
