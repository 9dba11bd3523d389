/**
 * Regression tests of reliability round 2 (issue 11) through the real built binaries — the hook as
 * libvirt runs it (test/hook/harness.ts) and the CLI with a fake virsh on PATH — on simulated
 * hosts in temp trees. Each test names the finding it guards against:
 *   1  nvram restore/reset racing a VM start (the start must not run on a file being replaced);
 *   2  a corrupt newest generation (never a template copy over real data, never silently skipped);
 *   3  one domain's <nvram> pointing at another domain's file (never archived or restored across);
 *   8  libvirt's nvram directory swapped for a symlink (no write through it).
 * Items 4–7 (config as FIFO/device/directory/huge/BOM, long names, logFile symlink) are rows of
 * the hostile-input matrix (hostile.test.ts) and of test/hook/log*.test.ts.
 */
import { spawn, spawnSync } from 'node:child_process';
import { chownSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fakeVirshBin } from '../cli/fake-virsh-bin';
import { CLI_BIN, DEFAULT_UUID, domainXml, ensureBuilt, makeFirmware, makeHost, pattern, tempRoot, TEST_NODE, VARS_SIZE, type Firmware, type HookHost } from '../hook/harness';
import { checkArchive, sha256 } from './support';

const VM = 'vm1';
const OTHER = 'vm2';
const OTHER_UUID = '0b0b0b0b-1111-4222-8333-444444444444';
const tmp = tempRoot();
let fw: Firmware;
/** uid/gid the NVRAM files must get (as libvirt would give them): a real non-root account */
const QEMU = { user: 'nobody', uid: 65534 };

beforeAll(() => {
  ensureBuilt();
  fw = makeFirmware(path.join(tmp.root, 'fw'));
}, 120_000);
afterAll(() => tmp.cleanup());

const lines = (s: string) => s.split('\n').filter(Boolean);
const prepare = [VM, 'prepare', 'begin', '-'];
const release = [VM, 'release', 'end', 'shutdown'];

function host(): HookHost & { xml: (spec?: Parameters<typeof domainXml>[0] extends infer S ? Partial<S> : never) => string } {
  const h = makeHost(tmp.root, { firmware: fw, config: { qemuUser: QEMU.user, qemuGroup: `+${QEMU.uid}` } });
  return Object.assign(h, { xml: (spec = {}) => domainXml({ name: VM, firmware: 'ovmf', nvram: h.nvramPath(VM), ...spec }, fw) });
}

/** Run the built CLI as a child (optionally under strace), with the host's config and a fake virsh. */
function cli(h: HookHost, args: string[], opts: { wrap?: string[] } = {}) {
  // the CLI asks for a domain by name (dumpxml) and then by its UUID (domstate): the fake knows both
  const xml = (h as ReturnType<typeof host>).xml();
  const virsh = fakeVirshBin(h.dir, { [VM]: { xml }, [DEFAULT_UUID]: { xml } });
  const [cmd, ...pre] = [...(opts.wrap ?? []), TEST_NODE, CLI_BIN, ...args];
  const child = spawn(cmd, pre, { env: { ...process.env, ...virsh.env, OVMF_HOOK_CONFIG: h.configPath }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  const done = new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr })));
  return { child, done };
}

/** strace that delays every rename by `ms` before it happens: the window the race needs, made wide. */
const delayRenames = (ms: number) => ['strace', '-f', '-qq', '-o', '/dev/null', '-e', 'trace=rename,renameat,renameat2', '-e', `inject=rename,renameat,renameat2:delay_enter=${ms * 1000}`];
const hasStrace = spawnSync('strace', ['-V']).status === 0;

describe('1: nvram restore / reset and a VM start on the same host exclude each other', () => {
  it.skipIf(!hasStrace)('a start while `nvram restore` replaces the file is refused in one line naming the restore; the restore completes, owned as libvirt would, and the next start uses it', async () => {
    const h = host();
    writeFileSync(h.nvramPath(VM), pattern(VARS_SIZE, 'gen 1'));
    expect((await h.run(release, h.xml())).code).toBe(0); // generation 1
    writeFileSync(h.nvramPath(VM), pattern(VARS_SIZE, 'gen 2'));
    expect((await h.run(release, h.xml())).code).toBe(0); // generation 2 = local

    const restore = cli(h, ['nvram', 'restore', VM, '--generation', '1'], { wrap: delayRenames(1500) });
    await new Promise((r) => setTimeout(r, 1000)); // the CLI holds the VM's lock and is in its first (delayed) rename
    const start = await h.run(prepare, h.xml());
    expect(start.code).toBe(1);
    expect(lines(start.stderr)).toHaveLength(1);
    expect(start.stderr).toMatch(/^ovmf-hook: vm1: not started: its NVRAM is being changed by ovmf-hook nvram restore \(pid \d+\); start it again once that has finished\n$/);

    const r = await restore.done;
    expect(r.code, r.stderr).toBe(0);
    const st = statSync(h.nvramPath(VM));
    expect(sha256(readFileSync(h.nvramPath(VM)))).toBe(sha256(pattern(VARS_SIZE, 'gen 1')));
    expect({ uid: st.uid, mode: st.mode & 0o777 }).toEqual({ uid: QEMU.uid, mode: 0o600 });

    const again = await h.run(prepare, h.xml());
    expect(again.code, again.stderr).toBe(0);
    expect(sha256(readFileSync(h.nvramPath(VM)))).toBe(sha256(pattern(VARS_SIZE, 'gen 1')));
  }, 60_000);

  it.skipIf(!hasStrace)('`nvram reset` while a start prepares the NVRAM is refused naming the start, and so is one right after the prepare until libvirt has run release', async () => {
    const h = host();
    writeFileSync(h.nvramPath(VM), pattern(VARS_SIZE, 'guest'));
    expect((await h.run(release, h.xml())).code).toBe(0);
    rmSync(h.nvramPath(VM)); // the next start restores: its prepare renames
    const starting = h.run(prepare, h.xml(), { wrap: delayRenames(1500), killAfterMs: 30_000 });
    await new Promise((r) => setTimeout(r, 1000));
    const during = await cli(h, ['nvram', 'reset', VM]).done;
    expect(during.code).toBe(1);
    expect(lines(during.stderr)).toHaveLength(1);
    expect(during.stderr).toMatch(/its NVRAM is in use by (the start of vm1 \(hook prepare, pid \d+\)|another ovmf-hook process.*); nvram reset works only on a shut-off VM/);
    expect((await starting).code).toBe(0);

    // prepare done, QEMU not (yet) running, libvirt still says "shut off": not yet
    const after = await cli(h, ['nvram', 'reset', VM]).done;
    expect(after.code).toBe(1);
    expect(lines(after.stderr)).toHaveLength(1);
    expect(after.stderr).toMatch(/was started at .* and libvirt has not opened its NVRAM yet/);
    expect(sha256(readFileSync(h.nvramPath(VM)))).toBe(sha256(pattern(VARS_SIZE, 'guest')));

    expect((await h.run(release, h.xml())).code).toBe(0); // the VM stopped
    const ok = await cli(h, ['nvram', 'reset', VM]).done;
    expect(ok.code, ok.stderr).toBe(0);
    expect(sha256(readFileSync(h.nvramPath(VM)))).toBe(sha256(pattern(VARS_SIZE, 'vars')));
  }, 60_000);
});

describe('2: a corrupt generation is moved aside and the newest valid one is used', () => {
  /** generations 1 and 2 of VM, then one byte of generation 2's data flipped and the local NVRAM gone */
  async function corruptNewest(h: ReturnType<typeof host>) {
    for (const g of ['gen 1', 'gen 2']) {
      writeFileSync(h.nvramPath(VM), pattern(VARS_SIZE, g));
      expect((await h.run(release, h.xml())).code).toBe(0);
    }
    const data = path.join(h.archiveDir, DEFAULT_UUID, 'gen-000002.fd');
    const b = readFileSync(data);
    b[1000] ^= 0x01;
    writeFileSync(data, b);
  }

  it('no local NVRAM: the start restores generation 1 (not the template), logs the corruption, and the next archive gets a new number', async () => {
    const h = host();
    await corruptNewest(h);
    rmSync(h.nvramPath(VM));
    const r = await h.run(prepare, h.xml());
    expect(r.code, r.stderr).toBe(0);
    expect(sha256(readFileSync(h.nvramPath(VM)))).toBe(sha256(pattern(VARS_SIZE, 'gen 1')));
    expect(h.log()).toMatch(/err: vm1: archive generation 2 is corrupt, moved aside \(never restored\): .*sha256 mismatch/);
    expect(h.log()).toMatch(/restore generation 1: no local NVRAM: restoring generation 1 \(generation 2 corrupt, moved aside\)/);
    expect(readdirSync(path.join(h.archiveDir, DEFAULT_UUID)).filter((n) => n.includes('corrupt')).sort()).toEqual(['gen-000002.corrupt.fd', 'gen-000002.corrupt.json']);
    writeFileSync(h.nvramPath(VM), pattern(VARS_SIZE, 'booted'));
    expect((await h.run(release, h.xml())).code).toBe(0);
    const c = checkArchive(h.archiveDir, DEFAULT_UUID);
    expect(c.bad).toEqual([]);
    expect(c.generations.map((g) => [g.generation, g.sha256])).toEqual([
      [1, sha256(pattern(VARS_SIZE, 'gen 1'))],
      [3, sha256(pattern(VARS_SIZE, 'booted'))],
    ]);
  });

  it('every restorable generation corrupt and no local NVRAM: the start is refused in one line and no template copy is made', async () => {
    const h = host();
    writeFileSync(h.nvramPath(VM), pattern(VARS_SIZE, 'only'));
    expect((await h.run(release, h.xml())).code).toBe(0);
    const data = path.join(h.archiveDir, DEFAULT_UUID, 'gen-000001.fd');
    writeFileSync(data, Buffer.concat([readFileSync(data).subarray(0, 100), Buffer.alloc(VARS_SIZE - 100)]));
    rmSync(h.nvramPath(VM));
    const r = await h.run(prepare, h.xml());
    expect(r.code).toBe(1);
    expect(lines(r.stderr)).toHaveLength(1);
    expect(r.stderr).toMatch(/no local NVRAM and every archived generation that could be restored is corrupt \(generation 1 corrupt, moved aside\); restore an older one .* or start from the template on purpose \(ovmf-hook nvram reset\)/);
    expect(existsSync(h.nvramPath(VM))).toBe(false);
    // libvirt runs release after the refused start: nothing is archived
    expect((await h.run(release, h.xml())).code).toBe(0);
    expect(checkArchive(h.archiveDir, DEFAULT_UUID).generations).toEqual([]);
  });

  it('a local NVRAM that is the content of the corrupt generation is kept (it is the real data), and archived again at release', async () => {
    const h = host();
    await corruptNewest(h);
    writeFileSync(h.nvramPath(VM), pattern(VARS_SIZE, 'gen 2'));
    const r = await h.run(prepare, h.xml());
    expect(r.code, r.stderr).toBe(0);
    expect(sha256(readFileSync(h.nvramPath(VM)))).toBe(sha256(pattern(VARS_SIZE, 'gen 2')));
    expect((await h.run(release, h.xml())).code).toBe(0);
    expect(checkArchive(h.archiveDir, DEFAULT_UUID).generations.at(-1)).toMatchObject({ generation: 3, sha256: sha256(pattern(VARS_SIZE, 'gen 2')) });
  });

  it('archive unavailable and no local NVRAM: "allow" refuses too (a blank template would outrank the archive)', async () => {
    const h = host();
    h.setConfig({ qemuUser: QEMU.user, qemuGroup: `+${QEMU.uid}`, requireArchiveMarker: true, archiveUnavailable: 'allow' });
    const r = await h.run(prepare, h.xml());
    expect(r.code).toBe(1);
    expect(lines(r.stderr)).toHaveLength(1);
    expect(r.stderr).toMatch(/there is no local NVRAM .*vm1_VARS\.fd to start from/);
    expect(existsSync(h.nvramPath(VM))).toBe(false);
  });
});

describe("3: a domain never uses another domain's NVRAM file", () => {
  it("vm1 pointed at vm2's file for one run: the start is refused naming both, nothing of vm2 is archived as vm1's, and vm1's own file is never overwritten with vm2's bytes", async () => {
    const h = host();
    const xmlOther = domainXml({ name: OTHER, uuid: OTHER_UUID, firmware: 'ovmf', nvram: h.nvramPath(OTHER) }, fw);
    writeFileSync(h.nvramPath(OTHER), pattern(VARS_SIZE, 'vm2 data'));
    expect((await h.run([OTHER, 'prepare', 'begin', '-'], xmlOther)).code).toBe(0); // vm2 uses its file
    writeFileSync(h.nvramPath(VM), pattern(VARS_SIZE, 'vm1 data'));
    expect((await h.run(prepare, h.xml())).code).toBe(0);
    expect((await h.run(release, h.xml())).code).toBe(0); // vm1: generation 1 = its own data

    const wrong = h.xml({ nvram: h.nvramPath(OTHER) });
    const start = await h.run(prepare, wrong);
    expect(start.code).toBe(1);
    expect(lines(start.stderr)).toHaveLength(1);
    expect(start.stderr).toMatch(new RegExp(`vm1: its <nvram> ${h.nvramPath(OTHER)} is the NVRAM of domain vm2 \\(${OTHER_UUID}\\).*point vm1's <nvram> at its own file`));
    // had it run anyway (e.g. the hook installed later), its release must not archive vm2's bytes
    const rel = await h.run(release, wrong);
    expect({ code: rel.code, stderr: rel.stderr }).toEqual({ code: 0, stderr: '' });
    expect(h.log()).toMatch(/ARCHIVE FAILED.*is the NVRAM of domain vm2/);
    expect(sha256(readFileSync(h.nvramPath(OTHER)))).toBe(sha256(pattern(VARS_SIZE, 'vm2 data')));

    // path fixed: vm1 starts on its own file; nothing of vm2 was ever archived as vm1's
    expect((await h.run(prepare, h.xml())).code).toBe(0);
    expect(sha256(readFileSync(h.nvramPath(VM)))).toBe(sha256(pattern(VARS_SIZE, 'vm1 data')));
    expect(checkArchive(h.archiveDir, DEFAULT_UUID).generations.map((g) => g.sha256)).toEqual([sha256(pattern(VARS_SIZE, 'vm1 data'))]);
  });

  it('a domain defined again under the same name with a new UUID (undefine --keep-nvram) adopts its file, with a log line', async () => {
    const h = host();
    writeFileSync(h.nvramPath(VM), pattern(VARS_SIZE, 'kept'));
    expect((await h.run(prepare, h.xml())).code).toBe(0);
    const redefined = h.xml({ uuid: OTHER_UUID });
    const r = await h.run(prepare, redefined);
    expect(r.code, r.stderr).toBe(0);
    expect(h.log()).toMatch(/was the NVRAM of a domain of the same name that is gone \(6f1d3c2a-[^)]*\): it is this domain's now/);
    expect(sha256(readFileSync(h.nvramPath(VM)))).toBe(sha256(pattern(VARS_SIZE, 'kept')));
  });
});

describe("8: libvirt's nvram directory", () => {
  it('swapped for a symlink (its parent is writable by the QEMU user): the start is refused and nothing is written through the link', async () => {
    const h = host();
    const elsewhere = path.join(h.dir, 'etc-like');
    mkdirSync(elsewhere);
    renameSync(h.nvramDir, `${h.nvramDir}.real`);
    symlinkSync(elsewhere, h.nvramDir);
    const r = await h.run(prepare, h.xml());
    expect(r.code).toBe(1);
    expect(lines(r.stderr)).toHaveLength(1);
    expect(r.stderr).toMatch(/libvirt's nvram directory .*nvram is a symlink; refusing to write NVRAM files through it/);
    expect(readdirSync(elsewhere)).toEqual([]);
    const rel = await h.run(release, h.xml());
    expect({ code: rel.code, stderr: rel.stderr }).toEqual({ code: 0, stderr: '' });
    expect(readdirSync(elsewhere)).toEqual([]);
  });

  it('owned by another account than root or the QEMU user: refused', async () => {
    const h = host();
    chownSync(h.nvramDir, 12345, 12345);
    const r = await h.run(prepare, h.xml());
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/is owned by uid 12345, not by root or the QEMU user/);
  });

  it('owned by the QEMU user (as Debian ships it): works, and the file is written through the checked directory', async () => {
    const h = host();
    chownSync(h.nvramDir, QEMU.uid, QEMU.uid);
    const r = await h.run(prepare, h.xml());
    expect(r.code, r.stderr).toBe(0);
    expect(statSync(h.nvramPath(VM)).uid).toBe(QEMU.uid);
    expect(h.log()).not.toMatch(/\/proc\/self\/fd/);
  });
});

describe('10: smaller wrongs in what the hook says', () => {
  it('a qemu user that does not exist here is said in the log (the NVRAM is then written owned by root)', async () => {
    const h = host();
    h.setConfig({ qemuUser: 'no-such-qemu-user', qemuGroup: 'no-such-qemu-group' });
    const r = await h.run(prepare, h.xml());
    expect(r.code, r.stderr).toBe(0);
    expect(h.log()).toMatch(/warning: vm1: user "no-such-qemu-user" and group "no-such-qemu-group" not found on this host: the NVRAM file is written owned by root; set "qemuUser"\/"qemuGroup"/);
    expect(statSync(h.nvramPath(VM)).uid).toBe(0);
  });

  it('log lines name the VM once ("vm1: …", never "vm1: vm1: …")', async () => {
    const h = host();
    h.setConfig({ qemuUser: QEMU.user, qemuGroup: `+${QEMU.uid}`, mode: 'warn', policy: { 'secure-boot': 'yes' } });
    expect((await h.run(prepare, h.xml({ firmware: 'bios' }))).code).toBe(0); // warn: the guard logs and starts
    expect(h.log()).toMatch(/warning: vm1: policy requires/);
    expect(h.log()).not.toMatch(/vm1: vm1:/);
  });
});

