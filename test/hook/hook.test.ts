/**
 * The built hook (`dist/hooks/qemu`) under a fake libvirt (./harness.ts): exit codes and stdout of
 * every operation, NVRAM provisioning / archiving / restore across simulated hosts, the policy
 * guard, the migrate/restore filter, hostile input, the watchdog and the stdio contract.
 * No libvirt and no OVMF package needed (hermetic firmware in a temp dir).
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, statSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  DEFAULT_UUID,
  domainXml,
  ensureBuilt,
  makeFirmware,
  makeHost,
  pattern,
  sha256,
  tempRoot,
  VARS_SIZE,
  type Firmware,
  type HookHost,
  type HookResult,
  type XmlSpec,
} from './harness';

const VM = 'vm1';
let fw: Firmware;
let tmp: ReturnType<typeof tempRoot> | undefined;
let root: string;

beforeAll(() => {
  ensureBuilt();
  tmp = tempRoot();
  root = tmp.root;
  fw = makeFirmware(join(root, 'fw'));
}, 120_000);
afterAll(() => tmp?.cleanup());

/** Owner the tests ask for: libvirt-qemu where it exists (Debian), else nobody. */
const owner = (() => {
  const uid = (u: string) => spawnSync('id', ['-u', u], { encoding: 'utf8' });
  const user = uid('libvirt-qemu').status === 0 ? 'libvirt-qemu' : 'nobody';
  const g = spawnSync('id', ['-g', user], { encoding: 'utf8' }).stdout.trim();
  return { user, uid: Number(uid(user).stdout.trim()), gid: Number(g) };
})();

const host = (config: Record<string, unknown> = {}, opts: { name?: string; archiveDir?: string } = {}): HookHost =>
  makeHost(root, { firmware: fw, ...opts, config: { qemuUser: owner.user, qemuGroup: `+${owner.gid}`, ...config } });

/** UEFI domain `vm1` whose NVRAM lives in the host's nvram dir. */
const uefi = (h: HookHost, spec: Partial<XmlSpec> = {}): string => domainXml({ name: VM, firmware: 'ovmf', nvram: h.nvramPath(VM), ...spec }, fw);
const bios = (spec: Partial<XmlSpec> = {}): string => domainXml({ name: VM, firmware: 'bios', ...spec }, fw);

const ok = (r: HookResult, what: string) => {
  expect(r.signal, `${what}: signal`).toBeNull();
  expect(r.stderr, `${what}: stderr`).toBe('');
  expect(r.code, `${what}: exit code`).toBe(0);
};
const lines = (s: string) => s.split('\n').filter((l) => l !== '');

/** Committed generations of the default UUID in an archive, ascending. */
function generations(archiveDir: string, uuid = DEFAULT_UUID): Array<{ generation: number; sha256: string; kind: string; vmName: string; data: Buffer }> {
  const dir = join(archiveDir, uuid);
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((f) => /^gen-\d+\.json$/.test(f))
    .sort()
    .map((f) => {
      const meta = JSON.parse(readFileSync(join(dir, f), 'utf8'));
      return { ...meta, data: readFileSync(join(dir, f.replace('.json', '.fd'))) };
    });
}

/** One VM run on a host: prepare, the guest writes `content` (unless null), release. */
async function cycle(h: HookHost, content: Buffer | null, xml = uefi(h)): Promise<void> {
  ok(await h.run([VM, 'prepare', 'begin', '-'], xml), 'prepare');
  if (content) writeFileSync(h.nvramPath(VM), content);
  ok(await h.run([VM, 'release', 'end', '-'], xml), 'release');
}

describe('operation matrix (docs/HOOK.md §1.2)', () => {
  const ops: Array<[string, string, string]> = [
    ['prepare', 'begin', '-'],
    ['start', 'begin', '-'],
    ['started', 'begin', '-'],
    ['stopped', 'end', '-'],
    ['release', 'end', '-'],
    ['release', 'end', 'destroyed'],
    ['migrate', 'begin', '-'],
    ['restore', 'begin', '-'],
    ['reconnect', 'begin', '-'],
    ['attach', 'begin', '-'],
    ['prepare', 'end', '-'],
    ['some-future-op', 'begin', '-'],
  ];
  it.each(ops)('%s %s %s: exit 0, nothing on stdout or stderr', async (op, subop, extra) => {
    const h = host();
    const r = await h.run([VM, op, subop, extra], uefi(h));
    ok(r, op);
    expect(r.stdout).toBe('');
  });

  it.each([['prepare'], ['migrate'], ['restore']])('%s of a BIOS domain (policy uefi=no): exit 0, no NVRAM made', async (op) => {
    const h = host({ policy: { uefi: 'no' } });
    const r = await h.run([VM, op, 'begin', '-'], bios());
    ok(r, op);
    expect(r.stdout).toBe('');
    expect(existsSync(h.nvramPath(VM))).toBe(false);
  });
});

describe('NVRAM provisioning, archive and restore', () => {
  it('prepare provisions from the template: owner, mode 0600, template bytes', async () => {
    const h = host();
    ok(await h.run([VM, 'prepare', 'begin', '-'], uefi(h)), 'prepare');
    const st = statSync(h.nvramPath(VM));
    expect({ uid: st.uid, gid: st.gid, mode: st.mode & 0o7777 }).toEqual({ uid: owner.uid, gid: owner.gid, mode: 0o600 });
    expect(readFileSync(h.nvramPath(VM)).equals(readFileSync(fw.vars))).toBe(true);
    expect(h.log()).toMatch(/vm1: prepare: provision/);
  });

  it.each([['ünïcödé vm'], ["it's-a vm.v2"]])('a VM named %j (bare LC_ALL=C environment) gets <nvramDir>/<name>_VARS.fd', async (name) => {
    const h = host();
    const xml = domainXml({ name, firmware: 'ovmf', nvram: h.nvramPath(name) }, fw);
    ok(await h.run([name, 'prepare', 'begin', '-'], xml), 'prepare');
    expect(readdirSync(h.nvramDir)).toEqual([`${name}_VARS.fd`]);
    writeFileSync(h.nvramPath(name), pattern(VARS_SIZE, name));
    ok(await h.run([name, 'release', 'end', '-'], xml), 'release');
    expect(generations(h.archiveDir).map((g) => g.vmName)).toEqual([name]);
  });

  it('release archives a modified NVRAM as generation 1 with its sha256', async () => {
    const h = host();
    const content = pattern(VARS_SIZE, 'guest wrote this');
    await cycle(h, content);
    const gens = generations(h.archiveDir);
    expect(gens.map((g) => [g.generation, g.kind, g.sha256])).toEqual([[1, 'archive', sha256(content)]]);
    expect(gens[0].data.equals(content)).toBe(true);
    expect(h.log()).toMatch(/release: archived generation 1/);
  });

  it("release with reason 'migrated' does not archive", async () => {
    const h = host();
    ok(await h.run([VM, 'prepare', 'begin', '-'], uefi(h)), 'prepare');
    writeFileSync(h.nvramPath(VM), pattern(VARS_SIZE, 'x'));
    ok(await h.run([VM, 'release', 'end', 'migrated'], uefi(h)), 'release');
    expect(generations(h.archiveDir)).toEqual([]);
  });

  it('identical content is not archived twice', async () => {
    const h = host();
    const content = pattern(VARS_SIZE, 'once');
    await cycle(h, content);
    await cycle(h, null);
    await cycle(h, content); // unchanged again
    expect(generations(h.archiveDir).map((g) => g.generation)).toEqual([1]);
    expect(h.log()).toMatch(/release: skipped: local NVRAM equals generation 1/);
  });

  it('a deleted local NVRAM is restored from the newest generation, not the template', async () => {
    const h = host();
    await cycle(h, pattern(VARS_SIZE, 'first'));
    await cycle(h, pattern(VARS_SIZE, 'second'));
    unlinkSync(h.nvramPath(VM));
    ok(await h.run([VM, 'prepare', 'begin', '-'], uefi(h)), 'prepare');
    const local = readFileSync(h.nvramPath(VM));
    expect(local.equals(pattern(VARS_SIZE, 'second'))).toBe(true);
    expect(local.equals(readFileSync(fw.vars))).toBe(false);
    expect(statSync(h.nvramPath(VM)).mode & 0o777).toBe(0o600);
    expect(h.log()).toMatch(/prepare: restore generation 2/);
  });

  it('an older archived local copy is replaced by the newer generation of another host', async () => {
    const a = host({}, { name: 'hostA' });
    const b = host({}, { name: 'hostB', archiveDir: a.archiveDir });
    await cycle(a, pattern(VARS_SIZE, 'on A'));
    await cycle(b, pattern(VARS_SIZE, 'on B')); // B restored A's gen 1 first, archives gen 2
    ok(await a.run([VM, 'prepare', 'begin', '-'], uefi(a)), 'prepare on A');
    expect(readFileSync(a.nvramPath(VM)).equals(pattern(VARS_SIZE, 'on B'))).toBe(true);
    expect(generations(a.archiveDir).map((g) => [g.generation, g.kind])).toEqual([
      [1, 'archive'],
      [2, 'archive'],
    ]);
  });

  it('an unarchived local copy older than the archive is restored over and kept as a displaced generation', async () => {
    const a = host({}, { name: 'hostA' });
    const b = host({}, { name: 'hostB', archiveDir: a.archiveDir });
    await cycle(a, pattern(VARS_SIZE, 'on A'));
    await cycle(b, pattern(VARS_SIZE, 'on B'));
    const stale = pattern(VARS_SIZE, 'changed on A, never archived');
    writeFileSync(a.nvramPath(VM), stale);
    ok(await a.run([VM, 'prepare', 'begin', '-'], uefi(a)), 'prepare on A');
    expect(readFileSync(a.nvramPath(VM)).equals(pattern(VARS_SIZE, 'on B'))).toBe(true);
    const gens = generations(a.archiveDir);
    expect(gens.map((g) => [g.generation, g.kind])).toEqual([
      [1, 'archive'],
      [2, 'archive'],
      [3, 'displaced'],
    ]);
    expect(gens[2].data.equals(stale)).toBe(true);
    expect(a.log()).toMatch(/restore generation 2 \(local copy kept as generation 3\)/);
  });

  it('generations strictly increase over cycles alternating between two hosts, each start resuming the newest', async () => {
    const a = host({}, { name: 'hostA' });
    const b = host({}, { name: 'hostB', archiveDir: a.archiveDir });
    const contents = [0, 1, 2, 3, 4].map((i) => pattern(VARS_SIZE, `cycle ${i}`));
    for (const [i, content] of contents.entries()) {
      const h = i % 2 ? b : a;
      ok(await h.run([VM, 'prepare', 'begin', '-'], uefi(h)), `prepare ${i}`);
      if (i > 0) expect(readFileSync(h.nvramPath(VM)).equals(contents[i - 1]), `cycle ${i} starts from the previous one`).toBe(true);
      writeFileSync(h.nvramPath(VM), content);
      ok(await h.run([VM, 'release', 'end', '-'], uefi(h)), `release ${i}`);
    }
    const gens = generations(a.archiveDir);
    expect(gens.map((g) => g.generation)).toEqual([1, 2, 3, 4, 5]);
    expect(gens.map((g) => g.sha256)).toEqual(contents.map(sha256));
    expect(gens.every((g) => g.kind === 'archive')).toBe(true);
  });

  it('a VM running on one host cannot start on another until it is released there (claim)', async () => {
    const a = host({}, { name: 'hostA' });
    const b = host({}, { name: 'hostB', archiveDir: a.archiveDir });
    ok(await a.run([VM, 'prepare', 'begin', '-'], uefi(a)), 'prepare on A');
    const refused = await b.run([VM, 'prepare', 'begin', '-'], uefi(b));
    expect(refused.code).toBe(1);
    expect(lines(refused.stderr)).toHaveLength(1);
    expect(refused.stderr).toMatch(/^ovmf-hook: vm1: .*hostA/);
    expect(existsSync(b.nvramPath(VM))).toBe(false);
    writeFileSync(a.nvramPath(VM), pattern(VARS_SIZE, 'ran on A'));
    ok(await a.run([VM, 'release', 'end', '-'], uefi(a)), 'release on A');
    ok(await b.run([VM, 'prepare', 'begin', '-'], uefi(b)), 'prepare on B');
    expect(readFileSync(b.nvramPath(VM)).equals(pattern(VARS_SIZE, 'ran on A'))).toBe(true);
  });

  it('a local NVRAM of the wrong size is replaced by the template and kept as a displaced generation', async () => {
    const h = host();
    const wrong = pattern(131_072, '2M build varstore');
    writeFileSync(h.nvramPath(VM), wrong, { mode: 0o600 });
    ok(await h.run([VM, 'prepare', 'begin', '-'], uefi(h)), 'prepare');
    expect(readFileSync(h.nvramPath(VM)).equals(readFileSync(fw.vars))).toBe(true);
    const gens = generations(h.archiveDir);
    expect(gens.map((g) => [g.generation, g.kind, g.data.equals(wrong)])).toEqual([[1, 'displaced', true]]);
  });

  it('a symlinked local NVRAM is never followed: prepare refuses, release archives nothing, the target is untouched', async () => {
    const h = host();
    const target = join(h.dir, 'precious');
    writeFileSync(target, pattern(VARS_SIZE, 'not an NVRAM'));
    symlinkSync(target, h.nvramPath(VM));
    const r = await h.run([VM, 'prepare', 'begin', '-'], uefi(h));
    expect(r.code).toBe(1);
    expect(lines(r.stderr)).toHaveLength(1);
    expect(r.stderr).toMatch(/is a symlink; refusing to follow it/);
    ok(await h.run([VM, 'release', 'end', '-'], uefi(h)), 'release');
    expect(readFileSync(target).equals(pattern(VARS_SIZE, 'not an NVRAM'))).toBe(true);
    expect(lstatSync(h.nvramPath(VM)).isSymbolicLink()).toBe(true);
    expect(generations(h.archiveDir)).toEqual([]);
    expect(h.log()).toMatch(/ARCHIVE FAILED.*symlink/);
  });

  it('policy archive="no" in the domain metadata leaves the NVRAM to libvirt', async () => {
    const h = host();
    ok(await h.run([VM, 'prepare', 'begin', '-'], uefi(h, { policy: { archive: 'no' } })), 'prepare');
    expect(h.createdFiles()).toEqual([]);
  });
});

describe("<os firmware='efi'> without paths (libvirt 9.0 prepare XML)", () => {
  const cases: Array<{ name: string; spec: Partial<XmlSpec>; template: keyof Firmware }> = [
    { name: 'no features: the first descriptor (Secure Boot, MS keys)', spec: {}, template: 'msVars' },
    {
      name: 'secure-boot disabled: the plain build',
      spec: { osExtra: ["<firmware><feature enabled='no' name='secure-boot'/></firmware>"] },
      template: 'vars',
    },
    { name: "smm off: no SMM build", spec: { features: ["<smm state='off'/>"] }, template: 'vars' },
    {
      name: 'enrolled-keys disabled: Secure Boot, empty varstore',
      spec: { osExtra: ["<firmware><feature enabled='yes' name='secure-boot'/><feature enabled='no' name='enrolled-keys'/></firmware>"] },
      template: 'vars',
    },
  ];
  it.each(cases)('$name', async ({ spec, template }) => {
    const h = host();
    const xml = domainXml({ name: VM, firmware: 'efi-auto', ...spec }, fw);
    expect(xml).not.toMatch(/<loader|<nvram/);
    ok(await h.run([VM, 'prepare', 'begin', '-'], xml), 'prepare');
    expect(readFileSync(h.nvramPath(VM)).equals(readFileSync(fw[template] as string))).toBe(true);
  });
});

describe('policy guard at prepare', () => {
  const rows: Array<{ name: string; config: Record<string, unknown>; xml: () => string; code: number; hint?: string }> = [
    {
      name: 'enforce: BIOS domain with secure-boot="yes" metadata is refused',
      config: { mode: 'enforce', policy: { uefi: 'no' } },
      xml: () => bios({ policy: { 'secure-boot': 'yes' } }),
      code: 1,
      hint: 'ovmf-hook convert vm1 --secure-boot',
    },
    {
      name: 'enforce: UEFI domain without Secure Boot, metadata asks for it',
      config: { mode: 'enforce' },
      xml: () => domainXml({ name: VM, firmware: 'ovmf', policy: { 'secure-boot': 'yes' } }, fw),
      code: 1,
      hint: 'ovmf-hook convert vm1 --secure-boot',
    },
    {
      name: 'enforce: config policy tpm="yes", domain has no TPM',
      config: { mode: 'enforce', policy: { tpm: 'yes' } },
      xml: () => domainXml({ name: VM, firmware: 'ovmf' }, fw),
      code: 1,
      hint: 'ovmf-hook convert vm1 --tpm',
    },
    { name: 'enforce: default policy refuses a BIOS domain', config: { mode: 'enforce' }, xml: () => bios(), code: 1, hint: 'ovmf-hook convert vm1' },
    { name: 'enforce: domain metadata uefi="no" overrides the config', config: { mode: 'enforce' }, xml: () => bios({ policy: { uefi: 'no' } }), code: 0 },
    { name: 'off: nothing is checked', config: { mode: 'off' }, xml: () => bios({ policy: { 'secure-boot': 'yes' } }), code: 0 },
  ];
  it.each(rows)('$name', async (row) => {
    const h = host(row.config);
    const r = await h.run([VM, 'prepare', 'begin', '-'], row.xml());
    expect(r.code).toBe(row.code);
    expect(r.stdout).toBe('');
    if (row.code === 0) expect(r.stderr).toBe('');
    else {
      expect(lines(r.stderr)).toHaveLength(1);
      expect(r.stderr).toMatch(/^ovmf-hook: vm1: /);
      expect(r.stderr).toContain(`run: ${row.hint}`);
      expect(h.createdFiles()).toEqual([]);
    }
  });

  it('warn mode starts the domain and logs the violation with the fix', async () => {
    const h = host({ mode: 'warn', policy: { uefi: 'no' } });
    ok(await h.run([VM, 'prepare', 'begin', '-'], bios({ policy: { 'secure-boot': 'yes' } })), 'prepare');
    expect(h.log()).toMatch(/warning: vm1: .*policy requires Secure Boot.*run: ovmf-hook convert vm1 --secure-boot \(mode "warn": starting anyway\)/);
  });

  it('a VM name needing quotes is quoted in the hint', async () => {
    const h = host({ mode: 'enforce' });
    const name = "it's a vm";
    const r = await h.run([name, 'prepare', 'begin', '-'], domainXml({ name, firmware: 'bios' }, fw));
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`run: ovmf-hook convert 'it'\\''s a vm'`);
  });
});

describe('migrate/restore filter', () => {
  const foreign = { loader: '/opt/other/OVMF_CODE_4M.fd', template: '/opt/other/OVMF_VARS_4M.fd' };
  /** Lines that differ between two texts of the same line count. */
  const changedLines = (a: string, b: string) => {
    const x = a.split('\n');
    const y = b.split('\n');
    expect(y.length).toBe(x.length);
    return x.flatMap((l, i) => (l === y[i] ? [] : [[l, y[i]]]));
  };

  it.each([['migrate'], ['restore']])('%s: foreign firmware paths are mapped to this host, nothing else changes', async (op) => {
    const h = host();
    const xml = uefi(h, { ...foreign, devices: ["<graphics type='vnc' port='-1' autoport='yes' passwd='s3cr3t-pw'/>"] });
    const r = await h.run([VM, op, 'begin', '-'], xml);
    ok(r, op);
    expect(changedLines(xml, r.stdout)).toEqual([
      [`    <loader readonly='yes' type='pflash'>${foreign.loader}</loader>`, `    <loader readonly='yes' type='pflash'>${fw.code}</loader>`],
      [`    <nvram template='${foreign.template}'>${h.nvramPath(VM)}</nvram>`, `    <nvram template='${fw.vars}'>${h.nvramPath(VM)}</nvram>`],
    ]);
    expect(h.log()).toContain(`${op}: loader ${foreign.loader} -> ${fw.code}`);
    expect(h.log()).not.toContain('s3cr3t-pw'); // the filter XML carries secrets: never logged
  });

  it.each([['migrate'], ['restore']])('%s: an NVRAM in a directory missing here moves to the nvram dir', async (op) => {
    const h = host();
    const xml = uefi(h, { nvram: `/srv/elsewhere/${VM}_VARS.fd` });
    const r = await h.run([VM, op, 'begin', '-'], xml);
    ok(r, op);
    expect(changedLines(xml, r.stdout)).toEqual([[`    <nvram template='${fw.vars}'>/srv/elsewhere/${VM}_VARS.fd</nvram>`, `    <nvram template='${fw.vars}'>${h.nvramPath(VM)}</nvram>`]]);
  });

  it.each([['migrate'], ['restore']])('%s: prints nothing when every path exists here', async (op) => {
    const h = host();
    const r = await h.run([VM, op, 'begin', '-'], uefi(h));
    ok(r, op);
    expect(r.stdout).toBe('');
  });

  it.each([['migrate'], ['restore']])('%s: a firmware build this host lacks cancels with one line', async (op) => {
    const h = host();
    const r = await h.run([VM, op, 'begin', '-'], uefi(h, { loader: '/opt/other/OVMF_CODE_8M.fd' }));
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(lines(r.stderr)).toHaveLength(1);
    expect(r.stderr).toMatch(/^ovmf-hook: vm1: firmware \/opt\/other\/OVMF_CODE_8M\.fd does not exist on this host/);
  });

  it.each([['migrated'], ['-']])(
    'live migration A → B (source release reason %s): B starts although A still holds the claim, and B archives afterwards',
    async (reason) => {
      const a = host({}, { name: 'hostA' });
      const b = host({}, { name: 'hostB', archiveDir: a.archiveDir });
      await cycle(a, pattern(VARS_SIZE, 'gen 1'));
      ok(await a.run([VM, 'prepare', 'begin', '-'], uefi(a)), 'prepare on A'); // A runs the VM, holds the claim
      writeFileSync(a.nvramPath(VM), pattern(VARS_SIZE, 'A at migration time'));
      ok(await b.run([VM, 'migrate', 'begin', '-'], uefi(b)), 'migrate on B');
      ok(await b.run([VM, 'prepare', 'begin', '-'], uefi(b)), 'prepare on B');
      writeFileSync(b.nvramPath(VM), pattern(VARS_SIZE, 'A at migration time')); // QEMU's migration stream
      ok(await a.run([VM, 'release', 'end', reason], uefi(a)), 'release on A');
      writeFileSync(b.nvramPath(VM), pattern(VARS_SIZE, 'ran on B'));
      ok(await b.run([VM, 'release', 'end', '-'], uefi(b)), 'release on B');
      const gens = generations(a.archiveDir);
      expect(gens.at(-1)).toMatchObject({ kind: 'archive', sha256: sha256(pattern(VARS_SIZE, 'ran on B')) });
      // and the next start anywhere resumes B's state
      ok(await a.run([VM, 'prepare', 'begin', '-'], uefi(a)), 'prepare on A again');
      expect(readFileSync(a.nvramPath(VM)).equals(pattern(VARS_SIZE, 'ran on B'))).toBe(true);
    },
  );

  it('a migration cancelled by the filter does not mark the VM incoming: a normal start right after restores the archive', async () => {
    const a = host({}, { name: 'hostA' });
    const b = host({}, { name: 'hostB', archiveDir: a.archiveDir });
    await cycle(a, pattern(VARS_SIZE, 'archived on A'));
    const r = await b.run([VM, 'migrate', 'begin', '-'], uefi(b, { loader: '/opt/other/OVMF_CODE_8M.fd' }));
    expect(r.code).toBe(1);
    ok(await b.run([VM, 'prepare', 'begin', '-'], uefi(b)), 'prepare');
    expect(b.log()).toMatch(/prepare: restore generation 1/);
    expect(readFileSync(b.nvramPath(VM)).equals(pattern(VARS_SIZE, 'archived on A'))).toBe(true);
  });

  it('a filtered migration is followed by a prepare that keeps the streamed NVRAM (no archive restore)', async () => {
    const a = host({}, { name: 'hostA' });
    const b = host({}, { name: 'hostB', archiveDir: a.archiveDir });
    await cycle(a, pattern(VARS_SIZE, 'archived on A'));
    ok(await b.run([VM, 'migrate', 'begin', '-'], uefi(b)), 'migrate');
    ok(await b.run([VM, 'prepare', 'begin', '-'], uefi(b)), 'prepare');
    // QEMU brings the flash content; the hook must not put an archive generation in its way
    expect(existsSync(b.nvramPath(VM))).toBe(false);
    expect(b.log()).toMatch(/prepare: incoming migration, keep/);
  });
});

describe('hostile input and failures: one stderr line, right exit code, no file created', () => {
  const billionLaughs = `<?xml version="1.0"?><!DOCTYPE d [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]><domain><name>&b;</name></domain>`;
  type Row = { name: string; argv?: string[]; stdin?: string | { devNull: true }; xml?: (h: HookHost) => string; config?: string | Record<string, unknown>; code: number; err: RegExp };
  const prepare = [VM, 'prepare', 'begin', '-'];
  const rows: Row[] = [
    { name: 'malformed XML', stdin: "<domain type='qemu'><name>vm1</name><os>", code: 2, err: /XML|closed|tag/i },
    { name: 'not a domain', stdin: '<network><name>vm1</name></network>', code: 2, err: /domain/ },
    { name: 'DOCTYPE with entities', stdin: billionLaughs, code: 2, err: /DOCTYPE/ },
    { name: 'XML larger than 16 MiB', stdin: `<domain><name>vm1</name><description>${'x'.repeat(17 * 1024 * 1024)}</description></domain>`, code: 2, err: /larger than 16 MiB/ },
    { name: 'stdin is /dev/null', stdin: { devNull: true }, code: 2, err: /XML|empty|domain/i },
    { name: 'no arguments', argv: [], code: 2, err: /expected arguments .* got 0/ },
    { name: 'one argument', argv: [VM], code: 2, err: /got 1/ },
    { name: 'two arguments', argv: [VM, 'prepare'], code: 2, err: /got 2/ },
    { name: 'five arguments', argv: [...prepare, 'x'], code: 2, err: /got 5/ },
    { name: 'name with "/"', argv: ['a/b', 'prepare', 'begin', '-'], xml: () => domainXml({ name: 'a/b', firmware: 'ovmf', nvram: '/tmp/x' }, fw), code: 2, err: /invalid domain name "a\/b"/ },
    { name: 'name ".."', argv: ['..', 'prepare', 'begin', '-'], xml: () => domainXml({ name: '..', firmware: 'ovmf' }, fw), code: 2, err: /invalid domain name "\.\."/ },
    { name: 'name with a newline', argv: ['a\nb', 'prepare', 'begin', '-'], xml: () => domainXml({ name: 'a\nb', firmware: 'ovmf' }, fw), code: 2, err: /invalid domain name "a\\nb"/ },
    { name: 'argv name differs from the XML name', argv: ['other', 'prepare', 'begin', '-'], code: 2, err: /hook called for "other" but the XML on stdin is for "vm1"/ },
    { name: 'config is not JSON', config: '{ "mode": ', code: 2, err: /config\.json: invalid JSON/ },
    { name: 'config has an unknown key', config: { modee: 'warn' }, code: 2, err: /unknown key "modee"/ },
    { name: 'invalid policy value in metadata', xml: (h) => uefi(h, { policy: { archive: 'maybe' } }), code: 2, err: /archive="maybe"> must be "yes" or "no"/ },
    { name: 'loader missing', xml: (h) => uefi(h, { loader: '/nonexistent/OVMF_CODE_4M.fd' }), code: 1, err: /firmware \/nonexistent\/OVMF_CODE_4M\.fd does not exist/ },
    { name: 'template missing', xml: (h) => uefi(h, { template: '/nonexistent/OVMF_VARS_4M.fd' }), code: 1, err: /NVRAM template \/nonexistent\/OVMF_VARS_4M\.fd does not exist/ },
    { name: 'CODE and VARS of different builds', xml: (h) => uefi(h, { template: fw.code }), code: 1, err: /are not one OVMF build/ },
    { name: 'NVRAM path with ".."', xml: (h) => uefi(h, { nvram: `${h.nvramDir}/../${VM}_VARS.fd` }), code: 2, err: /must be absolute and must not contain/ },
    { name: 'UUID that is not a UUID', xml: (h) => uefi(h, { uuid: '../../etc' }), code: 2, err: /invalid VM UUID/ },
  ];

  const setup = (row: Row) => {
    const h = host();
    if (typeof row.config === 'string') h.setConfigText(row.config);
    else if (row.config) h.setConfig(row.config);
    return { h, stdin: row.stdin ?? (row.xml ?? uefi)(h) };
  };

  it.each(rows)('prepare, $name: exit $code', async (row) => {
    const { h, stdin } = setup(row);
    const r = await h.run(row.argv ?? prepare, stdin);
    expect(r.signal).toBeNull();
    expect(r.code).toBe(row.code);
    expect(r.stdout).toBe('');
    expect(lines(r.stderr)).toHaveLength(1);
    expect(r.stderr).toMatch(/^ovmf-hook: /);
    expect(r.stderr).toMatch(row.err);
    expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
    expect(h.createdFiles()).toEqual([]);
  });

  // release/stopped: libvirt only logs failures; the hook must exit 0 and stay silent
  it.each(rows.filter((r) => (r.argv ?? prepare).length === 4))('release, $name: exit 0, nothing created', async (row) => {
    const { h, stdin } = setup(row);
    const argv = [...(row.argv ?? prepare)];
    argv.splice(1, 3, 'release', 'end', '-');
    const r = await h.run(argv, stdin);
    expect({ code: r.code, stdout: r.stdout, stderr: r.stderr }).toEqual({ code: 0, stdout: '', stderr: '' });
    expect(h.createdFiles()).toEqual([]);
  });

  it.each([['migrate'], ['restore']])('%s with malformed XML cancels (exit 2) and prints no XML', async (op) => {
    const h = host();
    const r = await h.run([VM, op, 'begin', '-'], '<domain><name>vm1</name');
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(lines(r.stderr)).toHaveLength(1);
    expect(h.createdFiles()).toEqual([]);
  });

  it.each([['reconnect'], ['attach'], ['started'], ['stopped']])('%s with garbage on stdin: exit 0 (never fail)', async (op) => {
    const h = host();
    const r = await h.run([VM, op, op === 'stopped' ? 'end' : 'begin', '-'], '\u0000garbage<<<');
    expect({ code: r.code, stdout: r.stdout, stderr: r.stderr }).toEqual({ code: 0, stdout: '', stderr: '' });
    expect(h.createdFiles()).toEqual([]);
  });

  it('an archive directory that is unsafe: prepare starts from the local NVRAM (archiveUnavailable "allow") or refuses ("refuse")', async () => {
    const h = host();
    const shared = join(h.dir, 'open-archive');
    h.setConfig({ qemuUser: owner.user, qemuGroup: `+${owner.gid}`, archiveDir: shared });
    mkdirSync(shared, { mode: 0o777 });
    chmodSync(shared, 0o777);
    // no local NVRAM: "allow" has nothing to start from (a blank template would outrank the archive)
    const none = await h.run(prepare, uefi(h));
    expect(none.code).toBe(1);
    expect(lines(none.stderr)).toHaveLength(1);
    expect(none.stderr).toMatch(/is unavailable .* and there is no local NVRAM .* to start from .*ovmf-hook nvram reset vm1/);
    writeFileSync(h.nvramPath(VM), pattern(VARS_SIZE, 'ran here before'), { mode: 0o600 });
    const allow = await h.run(prepare, uefi(h));
    ok(allow, 'prepare (allow)');
    expect(h.log()).toMatch(/NVRAM archive .* is unavailable .*writable by group\/other.*starting from the local NVRAM/);
    h.setConfig({ qemuUser: owner.user, qemuGroup: `+${owner.gid}`, archiveDir: shared, archiveUnavailable: 'refuse' });
    const refuse = await h.run(prepare, uefi(h));
    expect(refuse.code).toBe(1);
    expect(lines(refuse.stderr)).toHaveLength(1);
    expect(refuse.stderr).toMatch(/archive .* is unavailable.*set "archiveUnavailable": "allow"/);
    expect(readdirSync(shared)).toEqual([]);
  });

  it('requireArchiveMarker: an unmounted share (no .ovmf-hook-archive) counts as unavailable; nothing is written into the mount point', async () => {
    const h = host();
    const mnt = join(h.dir, 'share-mountpoint');
    mkdirSync(mnt, { mode: 0o700 });
    h.setConfig({ qemuUser: owner.user, qemuGroup: `+${owner.gid}`, archiveDir: mnt, requireArchiveMarker: true, archiveUnavailable: 'refuse' });
    const refuse = await h.run(prepare, uefi(h));
    expect(refuse.code).toBe(1);
    expect(lines(refuse.stderr)).toHaveLength(1);
    expect(refuse.stderr).toMatch(/\.ovmf-hook-archive is missing \(is the shared archive mounted\?\)/);
    h.setConfig({ qemuUser: owner.user, qemuGroup: `+${owner.gid}`, archiveDir: mnt, requireArchiveMarker: true });
    // the VM ran here before: "allow" starts from that local NVRAM; the guest writes to it
    writeFileSync(h.nvramPath(VM), pattern(VARS_SIZE, 'ran here before'), { mode: 0o600 });
    ok(await h.run(prepare, uefi(h)), 'prepare (allow)');
    writeFileSync(h.nvramPath(VM), pattern(VARS_SIZE, 'guest wrote this'), { mode: 0o600 });
    const rel = await h.run([VM, 'release', 'end', '-'], uefi(h));
    expect({ code: rel.code, stderr: rel.stderr }).toEqual({ code: 0, stderr: '' });
    expect(h.log()).toMatch(/err: .*ARCHIVE FAILED, the local NVRAM is kept.*\.ovmf-hook-archive is missing/);
    expect(readdirSync(mnt)).toEqual([]);
    writeFileSync(join(mnt, '.ovmf-hook-archive'), '');
    ok(await h.run([VM, 'release', 'end', '-'], uefi(h)), 'release with the share mounted');
    expect(readdirSync(mnt).filter((n) => n !== '.ovmf-hook-archive')).toHaveLength(1);
  });
});

describe('watchdog (hookTimeoutSeconds: 2) with a stdin that is never closed', () => {
  const rows: Array<{ op: string; subop: string; config?: Record<string, unknown>; code: number; stderr?: RegExp; log: RegExp }> = [
    // the policy guard never saw the XML: "archiveUnavailable": "allow" does not cover that
    { op: 'prepare', subop: 'begin', config: { archiveUnavailable: 'allow' }, code: 1, stderr: /^ovmf-hook: vm1: prepare begin did not finish within 2 s \(stdin was not closed\)$/, log: /err: vm1: .*refusing/ },
    { op: 'prepare', subop: 'begin', config: { archiveUnavailable: 'refuse' }, code: 1, stderr: /^ovmf-hook: vm1: prepare begin did not finish within 2 s \(stdin was not closed\)$/, log: /err: vm1: .*refusing/ },
    { op: 'migrate', subop: 'begin', code: 1, stderr: /^ovmf-hook: vm1: migrate begin did not finish within 2 s \(stdin was not closed\)$/, log: /refusing/ },
    { op: 'release', subop: 'end', code: 0, log: /warning: vm1: release end did not finish within 2 s \(stdin was not closed\); continuing/ },
  ];
  // a pipe (libvirt's: read without blocking) and a socket (read as a stream)
  it.each([['pipe'], ['socket']])('ends every operation within ~2 s by its failure rule (stdin: %s)', async (via) => {
    const results = await Promise.all(
      rows.map(async (row) => {
        const h = host({ hookTimeoutSeconds: 2, ...row.config });
        const r = await h.run([VM, row.op, row.subop, '-'], { keepOpen: true, socket: via === 'socket' }, { killAfterMs: 10_000 });
        return { row, h, r };
      }),
    );
    for (const { row, h, r } of results) {
      const what = `${row.op} ${JSON.stringify(row.config ?? {})} via ${via}`;
      expect(r.killed, what).toBe(false);
      expect(r.code, what).toBe(row.code);
      expect(r.doneMs, what).toBeGreaterThan(1_900);
      expect(r.doneMs, what).toBeLessThan(5_000);
      expect(r.stdout, what).toBe('');
      if (row.stderr) {
        expect(lines(r.stderr), what).toHaveLength(1);
        expect(r.stderr.trimEnd(), what).toMatch(row.stderr);
      } else expect(r.stderr, what).toBe('');
      expect(h.log(), what).toMatch(row.log);
      expect(h.createdFiles(), what).toEqual([]);
    }
  });
});

describe('stdio: nothing keeps libvirt waiting', () => {
  it('stdout and stderr reach EOF right after the hook exits', async () => {
    const h = host();
    const r = await h.run([VM, 'prepare', 'begin', '-'], uefi(h)); // logs → spawns logger
    ok(r, 'prepare');
    expect(h.log()).toMatch(/provision/);
    expect(r.doneMs).toBeLessThan(3_000);
    expect(r.doneMs - r.exitMs).toBeLessThan(500);
  });

  // Without journald the hook hands log lines to a detached `logger`. One that lingers (a slow
  // syslog) must not hold the hook's fd 1/2, or libvirt waits for it. In a private mount namespace
  // of the hook only: no journal socket, a /dev/log (so the fallback is taken) and a sleeper as
  // /usr/bin/logger that records its pid.
  const canUnshare = process.getuid?.() === 0 && spawnSync('unshare', ['--mount', '--propagation', 'private', 'true']).status === 0;
  const NAMESPACE_SETUP = [
    'fake=$0; old=$1; shift',
    'mount --rbind /dev "$old" && mount -t tmpfs -o mode=755 none /dev || exit 97',
    'for f in null zero full random urandom tty; do touch /dev/$f && mount --bind "$old/$f" /dev/$f || exit 97; done',
    'ln -s /proc/self/fd /dev/fd && : > /dev/log || exit 97',
    'if [ -d /run/systemd/journal ]; then mount -t tmpfs none /run/systemd/journal || exit 97; fi',
    'mount --bind "$fake" /usr/bin/logger || exit 97',
    'exec "$@"',
  ].join('\n');
  it.skipIf(!canUnshare)('a detached logger child that lives on does not hold stdout/stderr (grandchild regression)', async () => {
    const h = host();
    const marker = join(h.dir, 'logger.pid');
    const fake = join(h.dir, 'slow-logger');
    const oldDev = join(h.dir, 'dev');
    mkdirSync(oldDev);
    writeFileSync(fake, `#!/bin/sh\necho $$ >> '${marker}'\nexec sleep 8\n`, { mode: 0o755 });
    const wrap = ['unshare', '--mount', '--propagation', 'private', 'sh', '-c', NAMESPACE_SETUP, fake, oldDev];
    try {
      const r = await h.run([VM, 'prepare', 'begin', '-'], uefi(h), { wrap });
      ok(r, 'prepare');
      expect(r.doneMs).toBeLessThan(3_000);
      expect(existsSync(marker)).toBe(true); // the slow logger did run, so a leak would have shown
    } finally {
      for (const pid of existsSync(marker) ? lines(readFileSync(marker, 'utf8')) : []) {
        try {
          process.kill(Number(pid), 'SIGKILL');
        } catch {
          /* already gone */
        }
      }
    }
  });

  it('stdin written in pieces with pauses (a domain larger than a pipe buffer) is read whole', async () => {
    const h = host();
    const big = Array.from({ length: 3000 }, (_, i) => `<!-- padding comment number ${i} ${'.'.repeat(40)} -->`);
    const xml = uefi(h, { loader: '/opt/other/OVMF_CODE_4M.fd', devices: big });
    expect(xml.length).toBeGreaterThan(3 * 65536);
    // cut inside the XML, the last piece after a pause longer than the hook's busy-retry phase
    const cut = [0, 70_000, 140_000, xml.length - 10, xml.length];
    const pieces = cut.slice(1).map((end, i) => xml.slice(cut[i], end));
    const r = await h.run([VM, 'migrate', 'begin', '-'], { pieces, pauseMs: 60 });
    ok(r, 'migrate');
    expect(r.stdout).toBe(xml.replace('/opt/other/OVMF_CODE_4M.fd', fw.code));
  });

  it('stdin that cannot be reopened (a socket) is read as a stream', async () => {
    const h = host();
    ok(await h.run([VM, 'prepare', 'begin', '-'], { socket: uefi(h) }), 'prepare');
    expect(h.log()).toMatch(/provision/);
    const xml = uefi(h, { loader: '/opt/other/OVMF_CODE_4M.fd' });
    const r = await h.run([VM, 'migrate', 'begin', '-'], { socket: xml });
    ok(r, 'migrate');
    expect(r.stdout).toBe(xml.replace('/opt/other/OVMF_CODE_4M.fd', fw.code));
  });

  it.each([[0], [1500]])('a filter output larger than a pipe buffer arrives complete (reader paused %i ms)', async (pauseMs) => {
    const h = host();
    const big = Array.from({ length: 12000 }, (_, i) => `<!-- padding comment number ${i} ${'.'.repeat(40)} -->`);
    const xml = uefi(h, { loader: '/opt/other/OVMF_CODE_4M.fd', devices: big });
    expect(xml.length).toBeGreaterThan(768 * 1024);
    const r = await h.run([VM, 'migrate', 'begin', '-'], xml, { stdoutPauseMs: pauseMs });
    ok(r, 'migrate');
    expect(r.stdout).toBe(xml.replace('/opt/other/OVMF_CODE_4M.fd', fw.code));
    if (pauseMs) expect(r.exitMs).toBeGreaterThan(pauseMs - 100); // the hook really waited for the reader
  });
});
