/**
 * `ovmf-hook nvram enroll` through the built CLI, without libvirt: the FILE form on copies of
 * Debian's OVMF VARS templates, the VM form against a fake virsh on PATH (test/cli/fake-virsh-bin.ts)
 * with a temp config (archive, state and nvram directories in a temp tree), and every refusal —
 * one line on stderr, exit 1 or 2, nothing on stdout, and the whole temp tree byte for byte as it
 * was (a snapshot before and after).
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { editVarstore, parseVarstore, readSignatureLists, type Variable } from '../../src/core/varstore';
import type { FakeVirshDomain } from '../cli/fake-virsh-bin';
import { builtCli, cliHost, expectRefused, fullSnapshot as snapshot } from './cli-host';

const MS = '/usr/share/OVMF/OVMF_VARS_4M.ms.fd';
const BLANK = '/usr/share/OVMF/OVMF_VARS_4M.fd';
const CODE = '/usr/share/OVMF/OVMF_CODE_4M.fd';
const MS_2M = '/usr/share/OVMF/OVMF_VARS.ms.fd';
const MICROSOFT = '77fa9abd-0359-4d32-bd60-28f4e78f784b';
const OVMF_HOOK_OWNER = 'bc2a7257-8555-4a15-a5ed-9364623e3175';
const HASH = 'a'.repeat(64);

const haveOvmf = [MS, BLANK, CODE].every(existsSync);
const haveOpenssl = spawnSync('openssl', ['version']).status === 0;
if (!haveOvmf || !haveOpenssl) console.warn('SKIPPED: nvram enroll CLI tests need /usr/share/OVMF (Debian ovmf) and the openssl CLI');

const built = builtCli('enroll-cli');
/** The test certificate, PEM and DER, and its SHA-256. */
let pem = '';
let der = '';

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');


const variable = (file: string, name: string): Variable => parseVarstore(readFileSync(file)).variables.find((v) => v.name === name)!;
const x509Count = (v: Variable) => readSignatureLists(v.data).reduce((n, l) => n + (l.type === 'a5c059a1-94e4-4aa7-87b5-ab155c2bf072' ? l.entries.length : 0), 0);

beforeAll(() => {
  if (haveOpenssl) {
    const r = spawnSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=ovmf-hook-unit/', '-days', '30', '-keyout', 'k.pem', '-out', 'c.pem'], { cwd: built.dir });
    if (r.status !== 0) throw new Error(`openssl: ${r.stderr}`);
    pem = join(built.dir, 'c.pem');
    der = join(built.dir, 'c.der');
    spawnSync('openssl', ['x509', '-in', pem, '-outform', 'der', '-out', der], { cwd: built.dir });
  }
}, 60_000);

/** A temp tree: config (archive, state, nvram dir inside), a fake virsh knowing `domains`; `run` runs `nvram …`. */
const host = (domains?: (nvramDir: string) => Record<string, FakeVirshDomain>) => cliHost(built.cli, { name: 'enroll-host', domains, command: ['nvram'] });

describe.skipIf(!haveOvmf || !haveOpenssl)('nvram enroll FILE (built CLI)', () => {
  it('--ms-2023 --output: the four 2023 certificates next to the 2011 ones, owner Microsoft, timestamps moved to the newest notBefore; the input untouched; a second look finds them present', () => {
    const h = host();
    try {
      const input = join(h.dir, 'vars.fd');
      copyFileSync(MS, input);
      const out = join(h.dir, 'out.fd');
      const r = h.run('enroll', input, '--ms-2023', '--output', out);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect(r.stdout).toBe(
        [
          'KEK  added  Microsoft Corporation KEK 2K CA 2023  --ms-2023, owner Microsoft',
          'db   added  Windows UEFI CA 2023                  --ms-2023, owner Microsoft',
          'db   added  Microsoft UEFI CA 2023                --ms-2023, owner Microsoft',
          'db   added  Microsoft Option ROM UEFI CA 2023     --ms-2023, owner Microsoft',
          `${input}: added KEK +1, db +3; written to ${out}`,
          '',
        ].join('\n'),
      );
      expect(sha(readFileSync(input))).toBe(sha(readFileSync(MS)));
      expect(statSync(out).size).toBe(statSync(MS).size);
      const [kek, db] = [variable(out, 'KEK'), variable(out, 'db')];
      expect([x509Count(kek), x509Count(db)]).toEqual([3, 5]);
      expect(readSignatureLists(db.data).slice(-3).map((l) => l.entries[0].owner)).toEqual([MICROSOFT, MICROSOFT, MICROSOFT]);
      // the newest added notBefore: KEK 2K CA 2023 2023-03-02, Option ROM UEFI CA 2023 2023-10-26 (never earlier than before)
      const later = (a: string | undefined, b: string) => (a !== undefined && a > b ? a : b);
      expect(kek.timestamp).toBe(later(variable(MS, 'KEK').timestamp, '2023-03-02T20:21:35'));
      expect(db.timestamp).toBe(later(variable(MS, 'db').timestamp, '2023-10-26T19:02:20'));
      // every other variable as it was
      const others = (f: string) => parseVarstore(readFileSync(f)).variables.filter((v) => v.name !== 'KEK' && v.name !== 'db').map((v) => [v.name, v.vendorGuid, sha(v.data)]);
      expect(others(out)).toEqual(others(MS));

      const again = h.run('enroll', out, '--ms-2023', '--dry-run', '--json');
      expect(again.code, again.stderr).toBe(0);
      const doc = JSON.parse(again.stdout);
      expect(doc).toMatchObject({ file: out, dryRun: true, changed: false, written: null });
      expect(doc.items.map((i: { status: string }) => i.status)).toEqual(['present', 'present', 'present', 'present']);
    } finally {
      h.cleanup();
    }
  });

  it('--add-kek PEM, --add-db PEM and the same certificate as DER, --add-db-hash, --in-place: a duplicate is said and left out, the file keeps its mode', () => {
    const h = host();
    try {
      const file = join(h.dir, 'vars.fd');
      copyFileSync(MS, file);
      const dry = h.run('enroll', file, '--add-kek', pem, '--add-db', pem, '--add-db', der, '--add-db-hash', HASH.toUpperCase(), '--dry-run');
      expect(dry.code, dry.stderr).toBe(0);
      expect(dry.stdout).toMatch(/^KEK +would add +ovmf-hook-unit +.*c\.pem\n/);
      expect(dry.stdout).toMatch(/\ndb +present +ovmf-hook-unit +already in db\n/);
      expect(dry.stdout).toMatch(new RegExp(`\\ndry run: would add 3 entries \\(KEK \\+1, db \\+2\\) to ${file}; nothing written\\n$`));
      expect(sha(readFileSync(file))).toBe(sha(readFileSync(MS)));

      const r = h.run('enroll', file, '--add-kek', pem, '--add-db', pem, '--add-db', der, '--add-db-hash', HASH.toUpperCase(), '--in-place', '--json');
      expect(r.code, r.stderr).toBe(0);
      const doc = JSON.parse(r.stdout);
      expect(doc.items.map((i: { variable: string; kind: string; status: string; owner: string }) => [i.variable, i.kind, i.status, i.owner])).toEqual([
        ['KEK', 'x509', 'added', OVMF_HOOK_OWNER],
        ['db', 'x509', 'added', OVMF_HOOK_OWNER],
        ['db', 'x509', 'present', OVMF_HOOK_OWNER],
        ['db', 'sha256', 'added', OVMF_HOOK_OWNER],
      ]);
      expect(doc).toMatchObject({ changed: true, written: file });
      expect(statSync(file).mode & 0o777).toBe(statSync(MS).mode & 0o777);
      const db = readSignatureLists(variable(file, 'db').data);
      expect(db.at(-1)).toMatchObject({ type: 'c1c41626-504c-4092-aca9-41f936934328', entries: [{ owner: OVMF_HOOK_OWNER }] });
      expect(Buffer.from(db.at(-1)!.entries[0].data).toString('hex')).toBe(HASH);
      expect(x509Count(variable(file, 'KEK'))).toBe(3);
    } finally {
      h.cleanup();
    }
  });

  it('refuses, in one line and writing nothing: no Secure Boot keys, malformed PEM/DER, wrong size, not a variable store, a full store, bad options', () => {
    const h = host();
    try {
      const d = h.dir;
      const at = (n: string) => join(d, n);
      copyFileSync(MS, at('ms.fd'));
      copyFileSync(BLANK, at('blank.fd'));
      writeFileSync(at('padded.fd'), Buffer.concat([readFileSync(MS), Buffer.alloc(4096, 0xff)]));
      writeFileSync(at('truncated.fd'), readFileSync(MS).subarray(0, 100_000));
      copyFileSync(CODE, at('code.fd'));
      writeFileSync(at('random.fd'), Buffer.from(Array.from({ length: 540672 }, (_, i) => (i * 7919) & 0xff)));
      writeFileSync(at('bad.pem'), '-----BEGIN CERTIFICATE-----\nTm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n');
      writeFileSync(at('bad.der'), Buffer.from('30820122300d06092a864886f70d01010105000382010f00', 'hex'));
      writeFileSync(at('nocert.pem'), '-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n');
      // a store with less room left than one 2023 certificate needs
      const ed = editVarstore(readFileSync(MS));
      for (let i = 0; ed.usage().free > 1200; i++) ed.set(`Fill${i}`, OVMF_HOOK_OWNER, 0x3, new Uint8Array(Math.min(30_000, ed.usage().free - 200)));
      writeFileSync(at('full.fd'), ed.toBuffer());
      writeFileSync(at('exists.fd'), 'x');
      const run = h.run;

      expectRefused(d, () => run('enroll', at('blank.fd'), '--ms-2023', '--in-place'), 1, /blank\.fd: the variable store has no Secure Boot keys \(no PK: setup mode\).*OVMF_VARS_4M\.ms\.fd/);
      expectRefused(d, () => run('enroll', at('ms.fd'), '--add-db', at('bad.pem'), '--in-place'), 2, /bad\.pem is not a valid X\.509 certificate \(PEM or DER\)/);
      expectRefused(d, () => run('enroll', at('ms.fd'), '--add-kek', at('bad.der'), '--in-place'), 2, /bad\.der is not a valid X\.509 certificate/);
      expectRefused(d, () => run('enroll', at('ms.fd'), '--add-db', at('nocert.pem'), '--in-place'), 2, /nocert\.pem has no PEM "BEGIN CERTIFICATE" block/);
      expectRefused(d, () => run('enroll', at('ms.fd'), '--add-db', at('missing.pem'), '--in-place'), 2, /missing\.pem: no such file/);
      expectRefused(d, () => run('enroll', at('padded.fd'), '--ms-2023', '--in-place'), 2, /padded\.fd: the file is 544768 bytes but its variable store volume is 540672 bytes: not a VARS file/);
      expectRefused(d, () => run('enroll', at('truncated.fd'), '--ms-2023', '--in-place'), 2, /truncated\.fd: .*truncated/);
      expectRefused(d, () => run('enroll', at('code.fd'), '--ms-2023', '--in-place'), 2, /code\.fd: .*(CODE image|firmware volume)/);
      expectRefused(d, () => run('enroll', at('random.fd'), '--ms-2023', '--output', at('out.fd')), 2, /random\.fd: .*no "_FVH" firmware volume signature/);
      expectRefused(d, () => run('enroll', at('full.fd'), '--ms-2023', '--in-place'), 2, /full\.fd: the variable store is full: adding 1 entry to KEK needs \d+ bytes, has \d+ free/);
      expectRefused(d, () => run('enroll', at('ms.fd'), '--ms-2023', '--output', at('exists.fd')), 2, /exists\.fd exists; --output writes a new file/);
      expectRefused(d, () => run('enroll', at('ms.fd'), '--ms-2023'), 2, /is a file: write the result to --output OUT \(a new file\) or change it with --in-place/);
      expectRefused(d, () => run('enroll', at('ms.fd'), '--ms-2023', '--output', at('o.fd'), '--in-place'), 2, /give either --output OUT or --in-place, not both/);
      expectRefused(d, () => run('enroll', at('ms.fd'), '--in-place'), 2, /name what to enrol: --ms-2023, --add-kek CERT, --add-db CERT, --add-db-hash SHA256 or --set-dbx FILE/);
      expectRefused(d, () => run('enroll', at('ms.fd'), '--add-db-hash', 'abc', '--in-place'), 2, /--add-db-hash "abc" is not a SHA-256 hash/);
      expectRefused(d, () => run('enroll', at('ms.fd'), '--add-db', pem, '--owner', 'me', '--in-place'), 2, /"me" is not a GUID/);
      copyFileSync(MS, join(h.nvramDir, 'vm_VARS.fd'));
      expectRefused(d, () => run('enroll', join(h.nvramDir, 'vm_VARS.fd'), '--ms-2023', '--in-place'), 1, /is in libvirt's nvram directory: enrol its VM instead/);
    } finally {
      h.cleanup();
    }
  });

  it.skipIf(!existsSync(MS_2M))('a 2 MB store: --ms-2023 fits within the firmware’s per-variable limit', () => {
    const h = host();
    try {
      const out = join(h.dir, 'out.fd');
      const r = h.run('enroll', MS_2M, '--ms-2023', '--output', out);
      expect(r.code, r.stderr).toBe(0);
      expect(parseVarstore(readFileSync(out)).layout).toBe('2M');
      expect(x509Count(variable(out, 'db'))).toBe(5);
    } finally {
      h.cleanup();
    }
  });
});

// ─── VM form ─────────────────────────────────────────────────────────────────────────────────

const VM = 'ovmfhook-t-enroll';
const UUID = '7e57e7e5-0000-4000-8000-00000000e401';
const vmXml = (nvram: string, o: { tpm?: boolean } = {}) => `<domain type='qemu'>
  <name>${VM}</name>
  <uuid>${UUID}</uuid>
  <memory unit='KiB'>262144</memory>
  <os>
    <type arch='x86_64' machine='pc-q35-7.2'>hvm</type>
    <loader readonly='yes' secure='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE_4M.ms.fd</loader>
    <nvram template='${MS}'>${nvram}</nvram>
  </os>
  <features><acpi/><smm state='on'/></features>
  <devices>${o.tpm ? "\n    <tpm model='tpm-crb'><backend type='emulator' version='2.0'/></tpm>\n  " : ''}</devices>
</domain>
`;

/** A host whose VM has `local` as its NVRAM (null: none yet). */
function vmHost(o: { state?: string; tpm?: boolean; local?: string | null } = {}) {
  let nvram = '';
  const h = host((dir) => {
    nvram = join(dir, `${VM}_VARS.fd`);
    const d = { xml: vmXml(nvram, o), state: o.state ?? 'shut off' };
    return { [VM]: d, [UUID]: d }; // the CLI asks by name, then by UUID
  });
  if (o.local !== null) copyFileSync(o.local ?? MS, nvram);
  return { ...h, nvram };
}

describe.skipIf(!haveOvmf || !haveOpenssl)('nvram enroll VM (built CLI, fake virsh)', () => {
  it('a shut-off VM: the NVRAM before is archived, the result is the newest generation, nvram restore --generation undoes it byte for byte', () => {
    const h = vmHost();
    try {
      const original = readFileSync(h.nvram);
      const r = h.run('enroll', VM, '--ms-2023', '--add-db', pem);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(/^db +added +ovmf-hook-unit +.*c\.pem\n/m);
      expect(r.stdout).toMatch(
        new RegExp(`\\n${VM}: enrolled KEK \\+1, db \\+4 into ${h.nvram}, archived as generation 2 \\(the newest\\); the NVRAM before is generation 1 \\(undo: ovmf-hook nvram restore ${VM} --generation 1 --force\\)\\n$`),
      );
      const enrolled = readFileSync(h.nvram);
      expect(x509Count(variable(h.nvram, 'db'))).toBe(6);
      const list = JSON.parse(h.run('list', VM, '--json').stdout);
      expect(list.generations.map((g: { generation: number; kind: string; sha256: string; reason: string }) => [g.generation, g.kind, g.sha256, g.reason])).toEqual([
        [1, 'manual', sha(original), 'copy taken before nvram enroll'],
        [2, 'manual', sha(enrolled), 'nvram enroll --ms-2023 --add-db c.pem: KEK +1, db +4'],
      ]);
      expect(list.local).toMatchObject({ equalsNewest: true });
      expect(h.virsh.calls().filter((c) => c[0] === 'domstate')).toHaveLength(2); // before, and under the VM lock

      // nothing more to add: nothing written, no generation
      const before = snapshot(h.dir);
      expect(h.run('enroll', VM, '--ms-2023').stdout).toMatch(new RegExp(`\\n${VM}: every entry is already present; nothing written\\n$`));
      expect(snapshot(h.dir)).toEqual(before);

      // the undo drops the 2023 certificates: refused unless --force (test/keys/certs-cli.test.ts)
      expect(h.run('restore', VM, '--generation', '1').code).toBe(1);
      const undo = h.run('restore', VM, '--generation', '1', '--force');
      expect(undo.code, undo.stderr).toBe(0);
      expect(sha(readFileSync(h.nvram))).toBe(sha(original));
    } finally {
      h.cleanup();
    }
  });

  it('a VM with a TPM: refused without --force (PCR7, BitLocker recovery key, manage-bde); --dry-run warns; --force enrols and warns', () => {
    const h = vmHost({ tpm: true });
    try {
      const r = expectRefused(h.dir, () => h.run('enroll', VM, '--ms-2023'), 1, /has a TPM: changing KEK\/db changes the Secure Boot measurement in PCR7/);
      expect(r.stderr).toContain('BitLocker (or anything sealed to PCR7) asks for its recovery key at the next boot');
      expect(r.stderr).toContain('manage-bde -protectors -disable C: -RebootCount 2');
      expect(r.stderr).toContain('--force');

      const before = snapshot(h.dir);
      const dry = h.run('enroll', VM, '--ms-2023', '--dry-run');
      expect(dry.code, dry.stderr).toBe(0);
      expect(dry.stderr).toMatch(/^ovmf-hook: warning: .* has a TPM: .*\(dry run: nothing is written\)\n$/);
      expect(snapshot(h.dir)).toEqual(before);

      const forced = h.run('enroll', VM, '--ms-2023', '--force');
      expect(forced.code, forced.stderr).toBe(0);
      expect(forced.stderr).toMatch(/^ovmf-hook: warning: ovmfhook-t-enroll has a TPM: PCR7 changes with KEK\/db; BitLocker asks for its recovery key unless it was suspended \(manage-bde -protectors -disable C: -RebootCount 2\)\n$/);
      expect(x509Count(variable(h.nvram, 'KEK'))).toBe(3);
    } finally {
      h.cleanup();
    }
  });

  it('refuses, in one line and writing nothing: a running VM, a VM without Secure Boot keys, no NVRAM yet, --output for a VM, a store that is full', () => {
    const running = vmHost({ state: 'running' });
    try {
      expectRefused(running.dir, () => running.run('enroll', VM, '--ms-2023'), 1, new RegExp(`^ovmf-hook: ${VM} is running; nvram enroll works only on a shut-off VM: shut it down first \\(virsh shutdown ${VM}\\)\\n$`));
      expectRefused(running.dir, () => running.run('enroll', VM, '--ms-2023', '--output', join(running.dir, 'x.fd')), 2, /is a VM: its NVRAM is changed in place \(archived first\); --output and --in-place apply to a FILE/);
    } finally {
      running.cleanup();
    }
    const blank = vmHost({ local: BLANK });
    try {
      expectRefused(blank.dir, () => blank.run('enroll', VM, '--ms-2023'), 1, new RegExp(`${VM}: the variable store has no Secure Boot keys \\(no PK: setup mode\\).*ovmf-hook nvram reset ${VM}`));
    } finally {
      blank.cleanup();
    }
    const none = vmHost({ local: null });
    try {
      expectRefused(none.dir, () => none.run('enroll', VM, '--ms-2023'), 2, /its NVRAM .* does not exist yet; start the VM once/);
    } finally {
      none.cleanup();
    }
    const full = vmHost();
    try {
      const ed = editVarstore(readFileSync(MS));
      for (let i = 0; ed.usage().free > 1200; i++) ed.set(`Fill${i}`, OVMF_HOOK_OWNER, 0x3, new Uint8Array(Math.min(30_000, ed.usage().free - 200)));
      writeFileSync(full.nvram, ed.toBuffer());
      expectRefused(full.dir, () => full.run('enroll', VM, '--ms-2023'), 2, new RegExp(`^ovmf-hook: ${VM}: the variable store is full`));
    } finally {
      full.cleanup();
    }
  });
});
