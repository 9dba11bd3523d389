import { promises as fs } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { makeNvramCommand } from '../../src/cli/commands/nvram';
import { openArchive, sha256, type Archive } from '../../src/io';
import { type GenerationMeta } from '../../src/core/nvram';
import { buildStore, u16 } from '../nvram/varstore/store-builder';
import { biosDomainXml, fakeVirsh, runCommand, tempConfig, tempDir, uefiDomainXml, type FakeDomain } from './nvram-support';

const VM = 'ovmfhook-t-vm1';
const UUID = '6f1e3a52-1111-4a2b-8c3d-0123456789ab';
/** A VM that only the archive still knows (undefined on this host). */
const GONE = 'ovmfhook-t-gone';
const GONE_UUID = '0d4c9b1e-2222-4f00-9a00-aaaaaaaaaaaa';
const BIOS = 'ovmfhook-t-bios';
const BIOS_UUID = '0d4c9b1e-3333-4f00-9a00-bbbbbbbbbbbb';
const NOW = new Date('2026-11-29T12:00:00Z');

const ascii = (s: string) => [...Buffer.from(s)];
/** Three different variable stores: the template, and what the guest wrote over time. */
const TEMPLATE = Buffer.from(buildStore());
const GEN1 = Buffer.from(buildStore({ records: [{ name: 'PlatformLang', data: ascii('en-US\0') }] }));
const GEN2 = Buffer.from(buildStore({ records: [{ name: 'PlatformLang', data: ascii('de-DE\0') }, { name: 'Timeout', data: u16(5) }] }));
const DISPLACED = Buffer.from(buildStore({ records: [{ name: 'PlatformLang', data: ascii('fr-FR\0') }] }));
const GUEST = Buffer.from(buildStore({ records: [{ name: 'Timeout', data: u16(9) }] }));

interface World {
  base: string;
  archive: Archive;
  nvram: string;
  template: string;
  vm: FakeDomain;
  virsh: ReturnType<typeof fakeVirsh>;
  run: (...args: string[]) => ReturnType<typeof runCommand>;
  /** gen-N.fd path in the archive */
  dataFile: (n: number) => string;
}

/**
 * A host with VM (defined, shut off, UEFI) whose archive holds 1 archive, 2 archive, 3 displaced,
 * an archive-only VM with one generation, and a BIOS VM. `local` is the VM's local NVRAM content.
 */
async function world(o: { state?: string; local?: Buffer | null; libvirtDown?: boolean } = {}): Promise<World> {
  const base = await tempDir();
  const config = tempConfig(base);
  await fs.mkdir(config.nvramDir, { recursive: true });
  const template = path.join(base, 'OVMF_VARS.fd');
  await fs.writeFile(template, TEMPLATE);
  const nvram = path.join(config.nvramDir, `${VM}_VARS.fd`);
  if (o.local !== null) await fs.writeFile(nvram, o.local ?? GEN2, { mode: 0o600 });
  const archive = await openArchive({ root: config.archiveDir, host: 'here', hostId: 'host-here' });
  const at = (h: number) => new Date(Date.UTC(2026, 10, 1, h));
  await archive.add(UUID, GEN1, { kind: 'archive', reason: 'release (shutdown)', vmName: VM, now: at(1) });
  await archive.add(UUID, GEN2, { kind: 'archive', reason: 'release (shutdown)', vmName: VM, now: at(2) });
  await archive.add(UUID, DISPLACED, { kind: 'displaced', reason: 'displaced by restore', vmName: VM, now: at(3) });
  await archive.add(GONE_UUID, GEN1, { kind: 'archive', reason: 'release (destroyed)', vmName: GONE, now: at(4) });
  const vm: FakeDomain = { name: VM, uuid: UUID, state: o.state ?? 'shut off', xml: uefiDomainXml({ name: VM, uuid: UUID, nvram, template }) };
  const bios: FakeDomain = { name: BIOS, uuid: BIOS_UUID, state: 'shut off', xml: biosDomainXml({ name: BIOS, uuid: BIOS_UUID }) };
  const virsh = fakeVirsh([vm, bios], { down: o.libvirtDown });
  const cmd = makeNvramCommand({ virsh, config: () => config, now: () => NOW });
  return {
    base,
    archive,
    nvram,
    template,
    vm,
    virsh,
    run: (...args) => runCommand(cmd, ['nvram', ...args]),
    dataFile: (n) => path.join(config.archiveDir, UUID, `gen-${String(n).padStart(6, '0')}.fd`),
  };
}

const json = (stdout: string) => JSON.parse(stdout);
/** Flip one byte of a file in place (bit rot in an archived generation's data). */
const flipByte = async (file: string, at = 100) => {
  const b = await fs.readFile(file);
  b[at] ^= 0xff;
  await fs.writeFile(file, b);
};
const kinds = (metas: GenerationMeta[]) => metas.map((m) => `${m.generation}:${m.kind}`);
/** An error: exit code, nothing on stdout, exactly one `ovmf-hook: …` line on stderr. */
const expectOneLineError = (r: { code: number; stdout: string; stderr: string }, code: number, re: RegExp) => {
  expect(r.code).toBe(code);
  expect(r.stdout).toBe('');
  expect(r.stderr).toMatch(/^ovmf-hook: [^\n]+\n$/);
  expect(r.stderr).toMatch(re);
};

describe('nvram list', () => {
  it('prints the generations with short sha256, marks the newest auto-restorable one, the claim and the local file', async () => {
    const w = await world();
    const { code, stdout } = await w.run('list', VM);
    expect(code).toBe(0);
    const lines = stdout.trimEnd().split('\n');
    expect(lines[0]).toBe(`VM ${VM}  ${UUID}  archive ${path.join(w.base, 'archive')}`);
    expect(lines[1]).toMatch(/^GEN\s+KIND\s+SHA256\s+SIZE\s+TIME\s+HOST\s+REASON$/);
    expect(lines[2]).toMatch(new RegExp(`^1\\s+archive\\s+${sha256(GEN1).slice(0, 12)}\\s+${GEN1.length}\\s+2026-11-01 01:00:00Z\\s+here\\s+release \\(shutdown\\)$`));
    expect(lines[3]).toMatch(/^\*2\s+archive\s/);
    expect(lines[4]).toMatch(/^3\s+displaced\s/);
    expect(stdout).not.toContain(sha256(GEN1)); // full hashes only in JSON
    expect(stdout).toMatch(/^claim\s+none$/m);
    expect(stdout).toMatch(new RegExp(`^local\\s+${w.nvram}  sha256 ${sha256(GEN2).slice(0, 12)}  ${GEN2.length} bytes: equals generation 2, the newest$`, 'm'));
  });

  it.each([
    { what: 'equal to the newest', local: GEN2, equalsNewest: true, same: 2, text: /equals generation 2, the newest/ },
    { what: 'an older generation', local: GEN1, equalsNewest: false, same: 1, text: /differs from generation 2, the newest \(same as generation 1\)/ },
    { what: 'not archived', local: GUEST, equalsNewest: false, same: null, text: /differs from generation 2, the newest \(not archived yet\)/ },
  ])('--json tells whether the local NVRAM is $what', async ({ local, equalsNewest, same, text }) => {
    const w = await world({ local });
    const doc = json((await w.run('list', VM, '--json')).stdout);
    expect(doc.vm).toEqual({ name: VM, uuid: UUID, defined: true });
    expect(doc.generations.map((g: GenerationMeta) => [g.generation, g.kind, g.sha256])).toEqual([
      [1, 'archive', sha256(GEN1)],
      [2, 'archive', sha256(GEN2)],
      [3, 'displaced', sha256(DISPLACED)],
    ]);
    expect(doc.newestRestorable).toBe(2);
    expect(doc.local).toMatchObject({ path: w.nvram, exists: true, sha256: sha256(local), equalsNewest, sameAsGeneration: same });
    expect((await w.run('list', VM)).stdout).toMatch(text);
  });

  it('shows the claim holder and a missing local file', async () => {
    const w = await world({ local: null });
    const other = await openArchive({ root: w.archive.root, host: 'elsewhere', hostId: 'host-other' });
    await other.claim(UUID, { vmName: VM, now: NOW });
    const doc = json((await w.run('list', VM, '--json')).stdout);
    expect(doc.claim).toMatchObject({ host: 'elsewhere', hostId: 'host-other', since: NOW.toISOString(), expires: null });
    expect(doc.local).toMatchObject({ path: w.nvram, exists: false });
    const { stdout } = await w.run('list', VM);
    expect(stdout).toMatch(/^claim\s+held by host elsewhere \(host-other\) since 2026-11-29 12:00:00Z, expires never$/m);
    expect(stdout).toMatch(/does not exist \(provisioned at the next start\)/);
  });

  it('works from the archive alone for a UUID libvirt does not know', async () => {
    const w = await world();
    const doc = json((await w.run('list', GONE_UUID.toUpperCase(), '--json')).stdout);
    expect(doc.vm).toEqual({ name: GONE, uuid: GONE_UUID, defined: false });
    expect(kinds(doc.generations)).toEqual(['1:archive']);
    expect(doc.local).toMatchObject({ path: null });
    expect((await w.run('list', GONE_UUID)).stdout).toContain('(not defined on this host)');
  });

  it('without a VM lists every VM in the archive', async () => {
    const w = await world();
    const doc = json((await w.run('list', '--json')).stdout);
    expect(doc.vms.map((v: { uuid: string; name: string; generations: number }) => [v.uuid, v.name, v.generations])).toEqual([
      [GONE_UUID, GONE, 1],
      [UUID, VM, 3],
    ]);
    const lines = (await w.run('list')).stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^UUID\s+NAME\s+GENS\s+NEWEST\s+TIME\s+CLAIM\s+CORRUPT$/);
    expect(lines[2]).toMatch(new RegExp(`^${UUID}\\s+${VM}\\s+3\\s+3 displaced\\s`));
  });

  it('marks a generation with one byte flipped as corrupt; * and the note point at the newest valid one; nothing is moved', async () => {
    const w = await world();
    await flipByte(w.dataFile(2));
    const { code, stdout } = await w.run('list', VM);
    expect(code).toBe(0);
    const lines = stdout.trimEnd().split('\n');
    expect(lines[1]).toMatch(/^GEN\s+KIND\s+SHA256\s+SIZE\s+TIME\s+HOST\s+REASON$/);
    expect(lines[2]).toMatch(/^\*1\s+archive\s/);
    expect(lines[3]).toMatch(new RegExp(`^2\\s+archive CORRUPT\\s+${sha256(GEN2).slice(0, 12)}\\s`));
    expect(lines[4]).toMatch(/^3\s+displaced\s/);
    expect(lines[5]).toBe('* = the newest auto-restorable generation whose data verifies (what the next start restores)');
    expect(lines[6]).toBe(`generation 2 is corrupt (sha256 mismatch): it is never restored; \`ovmf-hook nvram repair ${VM}\` moves it aside`);
    expect(stdout).toMatch(/^local\s+.*: differs from generation 1, the newest/m);
    await fs.stat(w.dataFile(2)); // listing only looks
  });

  it('--json gives each generation data ok|corrupt (+ problem), newestRestorable = the newest valid one', async () => {
    const w = await world();
    await flipByte(w.dataFile(2));
    const doc = json((await w.run('list', VM, '--json')).stdout);
    expect(doc.generations.map((g: { generation: number; data: string; problem?: string }) => [g.generation, g.data, g.problem])).toEqual([
      [1, 'ok', undefined],
      [2, 'corrupt', 'sha256 mismatch'],
      [3, 'ok', undefined],
    ]);
    expect(doc.newestRestorable).toBe(1);
    expect(doc.corrupt).toEqual([]);
  });

  it('lists a generation moved aside as corrupt, and marks its VM in the list of all VMs', async () => {
    const w = await world();
    await flipByte(w.dataFile(2));
    await w.archive.quarantine(UUID, 2); // what a restore or repair does with it
    const { stdout } = await w.run('list', VM);
    const lines = stdout.trimEnd().split('\n');
    expect(lines[2]).toMatch(/^\*1\s+archive\s/);
    expect(lines[3]).toMatch(new RegExp(`^2\\s+archive, moved aside \\(corrupt\\)\\s+${sha256(GEN2).slice(0, 12)}\\s+${GEN2.length}\\s`));
    expect(lines[4]).toMatch(/^3\s+displaced\s/);
    expect(stdout).toContain('\ngeneration 2 was moved aside as corrupt (never restored; gen-NNNNNN.corrupt.fd/.json kept for inspection)\n');
    expect(stdout).not.toContain('is corrupt (');
    const doc = json((await w.run('list', VM, '--json')).stdout);
    expect(doc.generations.map((g: GenerationMeta) => g.generation)).toEqual([1, 3]);
    expect(doc.corrupt).toEqual([expect.objectContaining({ generation: 2, kind: 'archive', sha256: sha256(GEN2), data: 'corrupt', movedAside: true })]);
    expect(doc.newestRestorable).toBe(1);

    const all = (await w.run('list')).stdout;
    expect(all).toMatch(new RegExp(`^${UUID}\\s+${VM}\\s+2\\s+3 displaced\\s.*\\s2 moved aside$`, 'm'));
    expect(all).toMatch(new RegExp(`^${GONE_UUID}\\s.*\\s-$`, 'm'));
    expect(all).toMatch(/^CORRUPT = generations found corrupt and moved aside \(never restored\); details: ovmf-hook nvram list VM$/m);
    const allDoc = json((await w.run('list', '--json')).stdout);
    expect(allDoc.vms.map((v: { uuid: string; corrupt: number[] }) => [v.uuid, v.corrupt])).toEqual([
      [GONE_UUID, []],
      [UUID, [2]],
    ]);
  });

  it('never creates a missing archive: the VM is listed with its local file, show says the archive is missing', async () => {
    const w = await world();
    await fs.rm(w.archive.root, { recursive: true });
    const doc = json((await w.run('list', VM, '--json')).stdout);
    expect(doc).toMatchObject({ generations: [], claim: null, local: { exists: true, sha256: sha256(GEN2), equalsNewest: false } });
    expect((await w.run('list')).stdout).toBe(`no VMs in the archive: ${w.archive.root} does not exist yet\n`);
    expectOneLineError(await w.run('show', VM), 1, /the NVRAM archive .* does not exist: nothing was archived on this host yet, or its storage is not mounted/);
    await expect(fs.stat(w.archive.root)).rejects.toThrow(/ENOENT/);
  });

  it.each([
    { what: 'an unknown VM name', args: ['list', 'ovmfhook-t-nope'], code: 2, re: /no VM named "ovmfhook-t-nope" on this host; check: virsh list --all/ },
    { what: 'an unknown UUID', args: ['list', '99999999-9999-4999-8999-999999999999'], code: 2, re: /no VM with UUID 99999999-.* on this host or in the archive/ },
    { what: 'a bad generation number', args: ['show', VM, '--generation', '0'], code: 2, re: /--generation must be a whole number ≥ 1/ },
    { what: 'a generation that does not exist', args: ['show', VM, '--generation', '9'], code: 2, re: /has no generation 9; see: ovmf-hook nvram list/ },
  ])('refuses $what with exit $code and one line', async ({ args, code, re }) => {
    const w = await world();
    expectOneLineError(await w.run(...args), code, re);
  });

  it('says so (exit 1) when libvirt cannot be asked about a name, but still serves a UUID from the archive', async () => {
    const w = await world({ libvirtDown: true });
    expectOneLineError(await w.run('list', VM), 1, /cannot ask libvirt about "ovmfhook-t-vm1": failed to connect to the hypervisor; is libvirtd running\?/);
    expect(json((await w.run('list', UUID, '--json')).stdout).vm).toEqual({ name: VM, uuid: UUID, defined: false });
  });
});

describe('nvram show', () => {
  it('shows the newest generation by default, a chosen one with --generation, data verified', async () => {
    const w = await world();
    const newest = json((await w.run('show', VM, '--json')).stdout);
    expect(newest).toMatchObject({ generation: 3, kind: 'displaced', autoRestorable: false, newestRestorable: false, sha256: sha256(DISPLACED), data: { ok: true } });
    const first = json((await w.run('show', VM, '--generation', '1', '--json')).stdout);
    expect(first).toMatchObject({ vm: { name: VM, uuid: UUID }, generation: 1, kind: 'archive', autoRestorable: true, size: GEN1.length, host: 'here', reason: 'release (shutdown)' });
    const text = (await w.run('show', VM, '--generation', '2')).stdout;
    expect(text).toMatch(/^generation\s+2 of 3 \(the newest auto-restorable\)$/m);
    expect(text).toMatch(new RegExp(`^sha256\\s+${sha256(GEN2)}$`, 'm'));
    expect(text).toMatch(/^data\s+ok \(size and sha256 verified\)$/m);
  });

  it('shows a generation moved aside as corrupt: its metadata and data CORRUPT (moved aside)', async () => {
    const w = await world();
    await flipByte(w.dataFile(2));
    await w.archive.quarantine(UUID, 2);
    const r = await w.run('show', VM, '--generation', '2');
    expect(r).toMatchObject({ code: 0, stderr: '' });
    expect(r.stdout).toMatch(/^generation\s+2 \(moved aside: never restored; its number is not reused\)$/m);
    expect(r.stdout).toMatch(new RegExp(`^sha256\\s+${sha256(GEN2)}$`, 'm'));
    expect(r.stdout).toMatch(/^kind\s+archive$/m);
    expect(r.stdout).toMatch(/^data\s+CORRUPT \(moved aside; kept as gen-000002\.corrupt\.fd for inspection\)$/m);
    const doc = json((await w.run('show', VM, '--generation', '2', '--json')).stdout);
    expect(doc).toMatchObject({ generation: 2, kind: 'archive', sha256: sha256(GEN2), autoRestorable: false, newestRestorable: false, data: { ok: false, movedAside: true } });
    // the newest valid one is now the newest auto-restorable
    expect((await w.run('show', VM, '--generation', '1')).stdout).toMatch(/^generation\s+1 of 3 \(the newest auto-restorable\)$/m);
  });

  it('reports a generation whose data no longer matches its sha256', async () => {
    const w = await world();
    await fs.writeFile(w.dataFile(1), GUEST.subarray(0, GEN1.length));
    const doc = json((await w.run('show', VM, '--generation', '1', '--json')).stdout);
    expect(doc.data).toMatchObject({ ok: false, problem: expect.stringMatching(/generation 1 of ovmfhook-t-vm1 is corrupt \(sha256 mismatch\)/) });
    expect((await w.run('show', VM, '--generation', '1')).stdout).toMatch(/^data\s+CORRUPT: /m);
  });
});

describe('nvram restore / reset', () => {
  it.each([
    { verb: 'restore', args: ['--generation', '1'] },
    { verb: 'reset', args: [] },
  ])('$verb is refused (exit 1) while the VM runs; nothing changes', async ({ verb, args }) => {
    const w = await world({ state: 'running', local: GUEST });
    expectOneLineError(await w.run(verb, VM, ...args), 1, new RegExp(`${VM} is running; nvram ${verb} works only on a shut-off VM: shut it down first \\(virsh shutdown ${VM}\\)`));
    expect(w.virsh.calls).toContainEqual(['domstate', UUID]);
    expect((await fs.readFile(w.nvram)).equals(GUEST)).toBe(true);
    expect(kinds(await w.archive.list(UUID))).toEqual(['1:archive', '2:archive', '3:displaced']);
  });

  it('restore writes the generation to the local NVRAM, archives it again as the newest, keeps the unarchived local copy', async () => {
    const w = await world({ local: GUEST });
    const r = await w.run('restore', VM, '--generation', '1');
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`${VM}: restored generation 1 to ${w.nvram}; archived again as generation 5, the newest; the previous local NVRAM is kept as generation 4\n`);
    expect((await fs.readFile(w.nvram)).equals(GEN1)).toBe(true);
    const metas = await w.archive.list(UUID);
    expect(kinds(metas)).toEqual(['1:archive', '2:archive', '3:displaced', '4:displaced', '5:manual']);
    expect(metas[3].sha256).toBe(sha256(GUEST));
    expect(metas[4]).toMatchObject({ sha256: sha256(GEN1), basedOn: 1, reason: 'restore of generation 1' });
    expect(await w.archive.claimInfo(UUID)).toBeNull(); // the claim taken for the restore is given back
  });

  it('restore without --generation takes the newest auto-restorable generation (not the displaced one)', async () => {
    const w = await world({ local: GEN1 });
    const doc = json((await w.run('restore', VM, '--json')).stdout);
    expect(doc).toMatchObject({ action: 'restore', from: 2, generation: 2, nvram: w.nvram }); // already the newest: not archived twice
    expect(doc.displaced).toBeUndefined(); // the local copy (= generation 1) is archived already
    expect((await fs.readFile(w.nvram)).equals(GEN2)).toBe(true);
    expect(kinds(await w.archive.list(UUID))).toEqual(['1:archive', '2:archive', '3:displaced']);
    await fs.writeFile(w.nvram, GEN1);
    expect((await w.run('restore', VM)).stdout).toBe(`${VM}: restored generation 2 to ${w.nvram}; it is the newest generation\n`);
  });

  it('reset writes the template and keeps the old NVRAM as a generation', async () => {
    const w = await world({ local: GUEST });
    const r = await w.run('reset', VM);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`${VM}: reset ${w.nvram} to the template ${w.template} (archived as generation 5); the previous NVRAM is kept as generation 4\n`);
    expect((await fs.readFile(w.nvram)).equals(TEMPLATE)).toBe(true);
    const metas = await w.archive.list(UUID);
    expect(kinds(metas)).toEqual(['1:archive', '2:archive', '3:displaced', '4:manual', '5:reset']);
    expect(metas[3].sha256).toBe(sha256(GUEST));
    expect(metas[4].sha256).toBe(sha256(TEMPLATE));
  });

  it.each([
    { what: 'a BIOS VM', args: ['restore', BIOS], code: 2, re: /ovmfhook-t-bios: the domain boots BIOS \(no UEFI NVRAM\); nothing to do here/ },
    { what: 'a VM not defined here', args: ['reset', GONE_UUID], code: 2, re: /ovmfhook-t-gone: ovmfhook-t-gone is not defined on this host; nothing to do here/ },
  ])('restore/reset refuse $what', async ({ args, code, re }) => {
    const w = await world();
    expectOneLineError(await w.run(...args), code, re);
  });

  it('restore is refused while another host holds the claim', async () => {
    const w = await world({ local: GUEST });
    const other = await openArchive({ root: w.archive.root, host: 'elsewhere', hostId: 'host-other' });
    await other.claim(UUID, { vmName: VM, now: NOW });
    expectOneLineError(await w.run('restore', VM, '--generation', '1'), 1, /claimed by host elsewhere .* run: ovmf-hook nvram unlock/);
    expect((await fs.readFile(w.nvram)).equals(GUEST)).toBe(true);
  });
});

describe('nvram prune', () => {
  it('prunes one VM to --keep, always keeping the newest auto-restorable generation', async () => {
    const w = await world();
    const doc = json((await w.run('prune', VM, '--keep', '1', '--json')).stdout);
    expect(doc).toEqual({ keep: 1, vms: [{ uuid: UUID, name: VM, removed: [1] }] });
    expect(kinds(await w.archive.list(UUID))).toEqual(['2:archive', '3:displaced']);
    expect(kinds(await w.archive.list(GONE_UUID))).toEqual(['1:archive']);
  });

  it('prunes every VM of the archive, defaulting to keepGenerations', async () => {
    const w = await world();
    expect((await w.run('prune')).stdout).toMatch(/nothing to remove \(keep 10\)/);
    await w.archive.add(GONE_UUID, GEN2, { kind: 'archive', reason: 'r', vmName: GONE });
    const { stdout } = await w.run('prune', '--keep', '1');
    expect(stdout).toMatch(new RegExp(`^${GONE}\\s+${GONE_UUID}\\s+removed generation 1$`, 'm'));
    expect(stdout).toMatch(new RegExp(`^${VM}\\s+${UUID}\\s+removed generation 1$`, 'm'));
    expect(kinds(await w.archive.list(GONE_UUID))).toEqual(['2:archive']);
  });
});

describe('nvram repair', () => {
  it('removes old leftovers, keeps young ones, and says all generations verify', async () => {
    const w = await world();
    const dir = path.dirname(w.dataFile(1));
    const old = path.join(dir, 'gen-000009.fd'); // data without its metadata: an interrupted add
    const young = path.join(dir, 'gen-000010.fd');
    await fs.writeFile(old, 'x');
    await fs.writeFile(young, 'y');
    const past = new Date(Date.now() - 2 * 3600_000);
    await fs.utimes(old, past, past);
    const doc = json((await w.run('repair', VM, '--json')).stdout);
    expect(doc).toEqual({ vms: [{ uuid: UUID, removed: [old], kept: [young], corrupt: [] }] });
    await expect(fs.stat(old)).rejects.toThrow();
    await fs.stat(young);
  });

  it('moves a corrupt generation aside, says so, exits 1 with one line; list and show then report it moved aside', async () => {
    const w = await world();
    await fs.writeFile(w.dataFile(2), 'tampered');
    const r = await w.run('repair');
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(new RegExp(`^${UUID}\\s+no leftovers; moved aside corrupt generation 2$`, 'm'));
    expect(r.stdout).toMatch(new RegExp(`^${GONE_UUID}\\s+no leftovers; all generations verify$`, 'm'));
    expect(r.stderr).toBe(
      `ovmf-hook: moved aside corrupt generation 2 of ${UUID} (never restored; the newest valid generation is restored instead); see: ovmf-hook nvram list ${UUID}\n`,
    );
    await fs.stat(w.dataFile(2).replace(/\.fd$/, '.corrupt.fd'));
    const list = (await w.run('list', VM)).stdout.split('\n');
    expect(list[2]).toMatch(/^\*1\s+archive\s/);
    expect(list[3]).toMatch(/^2\s+archive, moved aside \(corrupt\)\s/);
    expect((await w.run('show', VM, '--generation', '2')).stdout).toMatch(/^data\s+CORRUPT \(moved aside/m);
    // moved aside: the next repair finds nothing (exit 0)
    expect(await w.run('repair', VM)).toMatchObject({ code: 0, stdout: `${UUID}  no leftovers; all generations verify\n`, stderr: '' });
  });

  it('repair --json still lists the corrupt generations it moved aside (exit 1)', async () => {
    const w = await world();
    await flipByte(w.dataFile(1));
    await flipByte(w.dataFile(3));
    const r = await w.run('repair', VM, '--json');
    expect(r.code).toBe(1);
    expect(json(r.stdout)).toEqual({ vms: [{ uuid: UUID, removed: [], kept: [], corrupt: [1, 3] }] });
    expect(r.stderr).toMatch(new RegExp(`^ovmf-hook: moved aside corrupt generations 1, 3 of ${UUID} \\([^\n]*\n$`));
    expect(kinds(await w.archive.list(UUID))).toEqual(['2:archive']);
  });
});

describe('nvram unlock', () => {
  const claimBy = async (w: World, hostId: string, leaseSeconds = 0, now = NOW) => {
    const a = hostId === 'host-here' ? w.archive : await openArchive({ root: w.archive.root, host: hostId.replace('host-', ''), hostId });
    await a.claim(UUID, { vmName: VM, leaseSeconds, now });
  };

  it.each([
    { what: "another host's live claim", holder: 'host-other', lease: 0, state: 'shut off', force: false, code: 1, re: /the NVRAM claim is held by host other since 2026-11-01 00:00:00Z \(expires never\); the VM may be running there: check on other, then run: ovmf-hook nvram unlock ovmfhook-t-vm1 --force/ },
    { what: "another host's live claim, --force", holder: 'host-other', lease: 0, state: 'shut off', force: true, code: 0, re: /unlocked: removed the claim of host other .*; if other still runs the VM, its next archive is kept as a fenced generation/ },
    { what: "another host's expired claim", holder: 'host-other', lease: 60, state: 'shut off', force: false, code: 0, re: /unlocked: removed the claim of host other/ },
    { what: 'our claim while the VM runs here', holder: 'host-here', lease: 0, state: 'running', force: false, code: 1, re: /ovmfhook-t-vm1 is running on this host, which holds its NVRAM claim/ },
    { what: 'our claim of a shut-off VM', holder: 'host-here', lease: 0, state: 'shut off', force: false, code: 0, re: /^ovmfhook-t-vm1: unlocked: removed the claim of host here \(since 2026-11-01 00:00:00Z\)\n$/ },
  ])('$what → exit $code', async ({ holder, lease, state, force, code, re }) => {
    const w = await world({ state });
    await claimBy(w, holder, lease, new Date('2026-11-01T00:00:00Z'));
    const r = await w.run('unlock', VM, ...(force ? ['--force'] : []));
    expect(r.code).toBe(code);
    expect(code ? r.stderr : r.stdout).toMatch(re);
    expect(await w.archive.claimInfo(UUID)).toEqual(code ? expect.objectContaining({ hostId: holder }) : null);
  });

  it('says when there is no claim', async () => {
    const w = await world();
    expect(await w.run('unlock', VM)).toMatchObject({ code: 0, stdout: `${VM}: no claim to unlock\n` });
  });
});

describe('nvram vars / diff with VMs and generations', () => {
  const names = (doc: { variables: { name: string }[] }) => doc.variables.map((v) => v.name);

  it.each([
    { what: "the VM's local NVRAM", args: [VM], vars: ['PlatformLang', 'Timeout'], generation: undefined },
    { what: 'an archived generation', args: [VM, '--generation', '1'], vars: ['PlatformLang'], generation: 1 },
    { what: 'a generation of a VM only the archive knows', args: [GONE_UUID, '--generation', '1'], vars: ['PlatformLang'], generation: 1 },
  ])('vars reads $what', async ({ args, vars, generation }) => {
    const w = await world();
    const r = await w.run('vars', ...args, '--json');
    expect(r.code).toBe(0);
    const doc = json(r.stdout);
    expect(names(doc)).toEqual(vars);
    expect(doc.generation).toBe(generation);
    expect(doc.target).toBe(args[0]);
  });

  it('vars still reads a file path, and refuses --generation on one', async () => {
    const w = await world();
    expect(names(json((await w.run('vars', w.template, '--json')).stdout))).toEqual([]);
    expectOneLineError(await w.run('vars', w.template, '--generation', '1'), 2, /is a file; --generation\/--from\/--to apply to a VM name or UUID/);
  });

  it('vars of a VM without a local NVRAM points to --generation', async () => {
    const w = await world({ local: null });
    expectOneLineError(await w.run('vars', VM), 2, /the local NVRAM .* does not exist .*; read an archived copy with --generation N/);
    expectOneLineError(await w.run('vars', GONE_UUID), 2, /not defined on this host; read an archived copy with --generation N/);
  });

  it('diff VM --from N --to M compares two generations; without --to the local file', async () => {
    const w = await world({ local: GUEST });
    const d = json((await w.run('diff', VM, '--from', '1', '--to', '2', '--json')).stdout);
    expect(d.a).toBe(`${VM} generation 1`);
    expect(d.b).toBe(`${VM} generation 2`);
    expect(d.added.map((v: { name: string }) => v.name)).toEqual(['Timeout']);
    expect(d.changed.map((c: { name: string }) => c.name)).toEqual(['PlatformLang']);
    const text = (await w.run('diff', VM, '--from', '2')).stdout;
    expect(text.split('\n').slice(0, 2)).toEqual([`--- ${VM} generation 2`, `+++ ${w.nvram}`]);
    expect(text).toMatch(/^- EfiGlobalVariable:PlatformLang/m);
    expect(text).toMatch(/0 added, 1 removed, 1 changed, 0 unchanged\n$/);
  });

  it('diff keeps the two-file form', async () => {
    const w = await world();
    const gen1 = path.join(w.base, 'gen1.fd');
    await fs.writeFile(gen1, GEN1);
    const d = json((await w.run('diff', gen1, w.nvram, '--json')).stdout);
    expect([d.a, d.b]).toEqual([gen1, w.nvram]);
    expect(d.added.map((v: { name: string }) => v.name)).toEqual(['Timeout']);
  });

  it.each([
    { what: 'a VM without --from', args: ['diff', VM], re: /nvram diff ovmfhook-t-vm1 needs --from N/ },
    { what: 'two targets and --from', args: ['diff', VM, VM, '--from', '1'], re: /give either two targets .* or one VM with --from N/ },
  ])('diff refuses $what (exit 2)', async ({ args, re }) => {
    const w = await world();
    expectOneLineError(await w.run(...args), 2, re);
  });
});
