/**
 * `ovmf-hook nvram certs` and the certificate guards of `nvram restore` / `nvram reset`, through the
 * built CLI with a fake virsh on PATH (test/cli/fake-virsh-bin.ts) and a temp config: VMs of each
 * kind (2011-only Secure Boot, enrolled with the 2023 certificates, no Secure Boot, no NVRAM yet,
 * a TPM, BIOS), NVRAM files made from Debian's OVMF VARS templates with the pure enrolment.
 */
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { FakeVirshDomain } from '../cli/fake-virsh-bin';
import { enrolledWith2023, MS_VARS_4M as MS } from '../support/ms-2023';
import { builtCli, cliHost, treeSnapshot } from './cli-host';

const BLANK = '/usr/share/OVMF/OVMF_VARS_4M.fd';
const CODE = '/usr/share/OVMF/OVMF_CODE_4M.fd';
const SECURE_CODE = '/usr/share/OVMF/OVMF_CODE_4M.ms.fd';
const haveOvmf = [MS, BLANK, CODE].every(existsSync);
if (!haveOvmf) console.warn('SKIPPED: nvram certs CLI tests need /usr/share/OVMF (Debian ovmf)');

const ALL_2023 = ['Microsoft Corporation KEK 2K CA 2023', 'Windows UEFI CA 2023', 'Microsoft UEFI CA 2023', 'Microsoft Option ROM UEFI CA 2023'];
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const enrolledImage = (): Buffer => enrolledWith2023(readFileSync(MS));

const built = builtCli('certs-cli');

let uuidSeq = 0;
interface Spec {
  secureBoot?: boolean;
  tpm?: boolean;
  bios?: boolean;
}
/** A domain as `virsh dumpxml --inactive` prints it; its NVRAM `<nvramDir>/<name>_VARS.fd`. */
function domainXml(name: string, nvramDir: string, s: Spec = {}): { xml: string; uuid: string } {
  const uuid = `7e57e7e5-0000-4000-8000-${String(++uuidSeq).padStart(12, '0')}`;
  const sb = s.secureBoot !== false;
  const os = s.bios
    ? ''
    : `\n    <loader readonly='yes'${sb ? " secure='yes'" : ''} type='pflash'>${sb ? SECURE_CODE : CODE}</loader>\n    <nvram template='${sb ? MS : BLANK}'>${join(nvramDir, `${name}_VARS.fd`)}</nvram>`;
  const xml = `<domain type='kvm'>
  <name>${name}</name>
  <uuid>${uuid}</uuid>
  <memory unit='KiB'>262144</memory>
  <os>
    <type arch='x86_64' machine='${s.bios ? 'pc-i440fx-7.2' : 'pc-q35-7.2'}'>hvm</type>${os}
  </os>
  <features><acpi/>${sb && !s.bios ? "<smm state='on'/>" : ''}</features>
  <devices>${s.tpm ? "\n    <tpm model='tpm-crb'><backend type='emulator' version='2.0'/></tpm>\n  " : ''}</devices>
</domain>
`;
  return { xml, uuid };
}

/** A temp tree (config with archive, state and nvram directories) and a fake virsh knowing `domains`; `run` runs `nvram …`. */
const host = (domains: (nvramDir: string) => Record<string, FakeVirshDomain>) => cliHost(built.cli, { name: 'certs-host', domains, command: ['nvram'] });

/** Every file under `root` with its content hash and mtime (what "nothing written" is checked against). */
const snapshot = (root: string) => treeSnapshot(root, (p, st) => (st.isDirectory() ? undefined : `${st.size} ${sha(readFileSync(p))} ${st.mtimeMs}`));

// ─── nvram certs ────────────────────────────────────────────────────────────────────────────

const P = 'ovmfhook-t-certs-';
const FLEET: Record<string, Spec & { nvram: 'ms' | 'enrolled' | 'blank' | null }> = {
  [`${P}2011`]: { nvram: 'ms' },
  [`${P}bios`]: { bios: true, nvram: null },
  [`${P}enrolled`]: { nvram: 'enrolled' },
  [`${P}new`]: { nvram: null },
  [`${P}nosb`]: { secureBoot: false, nvram: 'blank' },
  [`${P}tpm`]: { tpm: true, nvram: 'enrolled' },
};

function fleetHost() {
  const h = host((nvramDir) => Object.fromEntries(Object.entries(FLEET).map(([name, s]) => [name, { xml: domainXml(name, nvramDir, s).xml }])));
  const enrolled = enrolledImage();
  for (const [name, s] of Object.entries(FLEET)) {
    if (s.nvram === 'ms') copyFileSync(MS, h.nvram(name));
    if (s.nvram === 'blank') copyFileSync(BLANK, h.nvram(name));
    if (s.nvram === 'enrolled') writeFileSync(h.nvram(name), enrolled);
  }
  return h;
}

describe.skipIf(!haveOvmf)('nvram certs (built CLI, fake virsh)', () => {
  it('--all --json: the right state, Secure Boot, PK owner, certificate set and TPM per VM; libvirt asked twice (list + one dumpxml batch); nothing written', () => {
    const h = fleetHost();
    try {
      const before = snapshot(h.dir);
      const r = h.run('certs', '--all', '--json');
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      const doc = JSON.parse(r.stdout) as { vms: Array<Record<string, unknown>>; counts: Record<string, number> };
      const by = Object.fromEntries(doc.vms.map((v) => [v.name as string, v]));
      expect(doc.vms.map((v) => v.name)).toEqual(Object.keys(FLEET).sort());
      const pick = (n: string) => {
        const v = by[`${P}${n}`]!;
        return [v.state, v.secureBoot, v.pkOwner, v.tpm];
      };
      const debianPk = 'Debian UEFI Secure Boot (PK/KEK key)';
      expect(pick('2011')).toEqual(['update-available', true, debianPk, false]);
      expect(pick('enrolled')).toEqual(['current', true, debianPk, false]);
      expect(pick('tpm')).toEqual(['current', true, debianPk, true]);
      expect(pick('nosb')).toEqual(['not-secure-boot', false, null, false]);
      expect(pick('new')).toEqual(['no-nvram', null, null, false]);
      expect(pick('bios')).toEqual(['not-secure-boot', false, null, false]);
      expect(by[`${P}2011`]).toMatchObject({
        nvram: h.nvram(`${P}2011`),
        microsoft: { kek2011: true, kek2023: false, windowsPca2011: true, windowsUefiCa2023: false, uefiCa2011: true, uefiCa2023: false, optionRomUefiCa2023: false },
        missing2023: ALL_2023,
      });
      expect(Object.values(by[`${P}enrolled`]!.microsoft as object).every(Boolean)).toBe(true);
      expect(by[`${P}nosb`]).toMatchObject({ note: 'no PK enrolled (setup mode)', missing2023: [] });
      expect(by[`${P}new`]).toMatchObject({ template: { path: MS, state: 'update-available' }, microsoft: null });
      expect(by[`${P}bios`]).toMatchObject({ note: 'boots BIOS', nvram: null });
      expect(doc.counts).toEqual({ current: 2, 'update-available': 1, 'not-secure-boot': 2, 'no-nvram': 1, error: 0 });
      const calls = h.virsh.calls();
      expect(calls).toHaveLength(2);
      expect(calls[0]).toEqual(['list', '--all', '--name']);
      expect(calls[1]).toHaveLength(1); // one batch: every dumpxml in one virsh process
      expect(calls[1]![0]!.match(/'dumpxml' '--inactive'/g)).toHaveLength(Object.keys(FLEET).length);
      expect(snapshot(h.dir)).toEqual(before);
      // the quick way in (src/cli/fast.ts) and yargs (which `--all=true` needs) answer alike
      const viaYargs = h.run('certs', '--all=true', '--json=true');
      expect([viaYargs.code, viaYargs.stderr, viaYargs.stdout]).toEqual([0, '', r.stdout]);
    } finally {
      h.cleanup();
    }
  });

  it('VM names: one line each in the order given, a summary, the enrol hint; an unknown name is a usage error', () => {
    const h = fleetHost();
    try {
      const r = h.run('certs', `${P}2011`, `${P}enrolled`, `${P}new`, `${P}tpm`);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      const lines = r.stdout.split('\n');
      expect(lines[0]).toMatch(/^VM +STATE +SECURE BOOT +PK OWNER +TPM +MICROSOFT 2011 +MICROSOFT 2023 +NOTE$/);
      expect(lines[1]).toMatch(new RegExp(`^${P}2011 +update-available +on +Debian UEFI Secure Boot \\(PK/KEK key\\) +no +KEK PCA UEFI +none$`));
      expect(lines[2]).toMatch(new RegExp(`^${P}enrolled +current +on +Debian UEFI Secure Boot \\(PK/KEK key\\) +no +KEK PCA UEFI +KEK Windows UEFI OptionROM$`));
      expect(lines[3]).toMatch(new RegExp(`^${P}new +no-nvram +- +- +no +- +- +first start copies ${MS} \\(update-available\\)$`));
      expect(lines[4]).toMatch(new RegExp(`^${P}tpm +current +on +.* +yes +KEK PCA UEFI +KEK Windows UEFI OptionROM$`));
      expect(lines[5]).toBe('4 VMs: 2 current, 1 update-available, 1 no-nvram');
      expect(lines[6]).toMatch(/^update-available: .*ovmf-hook nvram enroll VM --ms-2023/);

      const unknown = h.run('certs', `${P}2011`, 'ovmfhook-t-nope');
      expect([unknown.code, unknown.stdout]).toEqual([2, '']);
      expect(unknown.stderr).toMatch(/^ovmf-hook: no VM named "ovmfhook-t-nope" on this host; check: virsh list --all\n$/);
      expect(h.run('certs').stderr).toMatch(/^ovmf-hook: name the VMs to look at, or use --all/);
      expect(h.run('certs', '--all', `${P}2011`).code).toBe(2);
    } finally {
      h.cleanup();
    }
  });

  it("--all --match GLOB: only the VMs whose name matches ('*', '?'), as convert --all --match; --match without --all is a usage error", () => {
    const h = fleetHost();
    try {
      const names = (r: { code: number; stdout: string; stderr: string }) => {
        expect([r.code, r.stderr]).toEqual([0, '']);
        return (JSON.parse(r.stdout) as { vms: Array<{ name: string }> }).vms.map((v) => v.name);
      };
      expect(names(h.run('certs', '--all', '--match', `${P}*n*`, '--json'))).toEqual([`${P}enrolled`, `${P}new`, `${P}nosb`]);
      expect(names(h.run('certs', '--all', '--match', `${P}?pm`, '--json'))).toEqual([`${P}tpm`]);
      expect(h.run('certs', '--all', '--match', 'nothing-*')).toEqual({ code: 0, stdout: 'no VMs\n', stderr: '' });
      const alone = h.run('certs', `${P}2011`, '--match', '*');
      expect(alone).toEqual({ code: 2, stdout: '', stderr: 'ovmf-hook: --match selects domains for --all; use it with --all\n' });
    } finally {
      h.cleanup();
    }
  });

  it('an NVRAM that is no variable store: state error with the reason, the other VMs still reported, exit 1', () => {
    const h = fleetHost();
    try {
      writeFileSync(h.nvram(`${P}2011`), Buffer.alloc(540672, 0xa5));
      const r = h.run('certs', '--all', '--json');
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(new RegExp(`^ovmf-hook: 1 of 6 VMs could not be read \\(${P}2011: .*"_FVH".*\\); see their lines above\\n$`));
      const doc = JSON.parse(r.stdout);
      expect(doc.counts).toMatchObject({ error: 1, current: 2 });
    } finally {
      h.cleanup();
    }
  });
});

// ─── restore / reset guards ─────────────────────────────────────────────────────────────────

const VM = 'ovmfhook-t-guard';

function guardHost() {
  let nvram = '';
  const h = host((nvramDir) => {
    const { xml, uuid } = domainXml(VM, nvramDir);
    nvram = join(nvramDir, `${VM}_VARS.fd`);
    const d = { xml };
    return { [VM]: d, [uuid]: d }; // the CLI asks by name, then by UUID
  });
  copyFileSync(MS, nvram);
  return h;
}

describe.skipIf(!haveOvmf)('nvram restore / reset: refused without --force when Microsoft 2023 certificates would be lost', () => {
  it('enrolled, then restore --generation <2011-only>: one line naming the certificates, exit 1, nothing written; --force restores it with a warning', () => {
    const h = guardHost();
    try {
      const enroll = h.run('enroll', VM, '--ms-2023');
      expect(enroll.code, enroll.stderr).toBe(0);
      expect(enroll.stdout).toMatch(/the NVRAM before is generation 1/);
      const enrolled = readFileSync(h.nvram(VM));

      const before = snapshot(h.dir);
      const refused = h.run('restore', VM, '--generation', '1');
      expect([refused.code, refused.stdout]).toEqual([1, '']);
      expect(refused.stderr).toBe(
        `ovmf-hook: ${VM}: generation 1 trusts fewer Microsoft 2023 Secure Boot certificates than the current NVRAM; nvram restore would drop ${ALL_2023.join(', ')} (a guest whose boot manager is signed by Windows UEFI CA 2023 may no longer boot): add --force to restore anyway, then add them again with ovmf-hook nvram enroll ${VM} --ms-2023\n`,
      );
      expect(snapshot(h.dir)).toEqual(before);
      expect(sha(readFileSync(h.nvram(VM)))).toBe(sha(enrolled));

      // the newest generation is the enrolled one: restoring it loses nothing
      expect(h.run('restore', VM, '--generation', '2').code).toBe(0);

      const forced = h.run('restore', VM, '--generation', '1', '--force', '--json');
      expect(forced.code, forced.stderr).toBe(0);
      expect(forced.stderr).toBe(`ovmf-hook: warning: ${VM}: generation 1 does not trust ${ALL_2023.join(', ')}, which the NVRAM it replaces did; add them again with: ovmf-hook nvram enroll ${VM} --ms-2023\n`);
      expect(JSON.parse(forced.stdout)).toMatchObject({ from: 1, lostCertificates: ALL_2023 });
      expect(sha(readFileSync(h.nvram(VM)))).toBe(sha(readFileSync(MS)));
    } finally {
      h.cleanup();
    }
  });

  it('reset of an enrolled VM to its 2011-only template: refused naming the certificates; --force resets', () => {
    const h = guardHost();
    try {
      expect(h.run('enroll', VM, '--ms-2023').code).toBe(0);
      const before = snapshot(h.dir);
      const refused = h.run('reset', VM);
      expect([refused.code, refused.stdout]).toEqual([1, '']);
      expect(refused.stderr).toMatch(new RegExp(`^ovmf-hook: ${VM}: the template ${MS} trusts fewer Microsoft 2023 Secure Boot certificates than the current NVRAM; nvram reset would drop ${ALL_2023.join(', ')} .*add --force to reset anyway[^\\n]*\\n$`));
      expect(snapshot(h.dir)).toEqual(before);

      const forced = h.run('reset', VM, '--force');
      expect(forced.code, forced.stderr).toBe(0);
      expect(forced.stderr).toMatch(/^ovmf-hook: warning: .*does not trust Microsoft Corporation KEK 2K CA 2023, /);
      expect(forced.stdout).toMatch(/reset .* to the template/);
      expect(sha(readFileSync(h.nvram(VM)))).toBe(sha(readFileSync(MS)));
      // a 2011-only NVRAM reset to the 2011-only template: nothing to lose, no --force needed
      const again = h.run('reset', VM);
      expect([again.code, again.stderr]).toEqual([0, '']);
    } finally {
      h.cleanup();
    }
  });
});
