/**
 * The built hook's automatic restore (`prepare begin`) of a generation that trusts fewer Microsoft
 * 2023 Secure Boot certificates than the local NVRAM it replaces: the start goes ahead (availability)
 * and the log says which certificates were lost. Two simulated hosts sharing one archive
 * (./harness.ts); NVRAM contents from Debian's OVMF_VARS_4M.ms.fd, enrolled with the pure enrolment.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { enrolledWith2023, MS_VARS_4M as MS } from '../support/ms-2023';
import { domainXml, hostsFixture, makeHost, type HookHost, type HookResult } from './harness';

const haveOvmf = existsSync(MS);
if (!haveOvmf) console.warn('SKIPPED: hook certificate guard tests need /usr/share/OVMF (Debian ovmf)');

const VM = 'vm1';
const ALL_2023 = 'Microsoft Corporation KEK 2K CA 2023, Windows UEFI CA 2023, Microsoft UEFI CA 2023, Microsoft Option ROM UEFI CA 2023';
const hosts = hostsFixture();

const owner = (() => {
  const user = spawnSync('id', ['-u', 'libvirt-qemu']).status === 0 ? 'libvirt-qemu' : 'nobody';
  return { user, gid: Number(spawnSync('id', ['-g', user], { encoding: 'utf8' }).stdout.trim()) };
})();
const host = (name: string, archiveDir?: string): HookHost =>
  makeHost(hosts.root, { name, archiveDir, firmware: hosts.fw, config: { qemuUser: owner.user, qemuGroup: `+${owner.gid}` } });
const xml = (h: HookHost) => domainXml({ name: VM, firmware: 'ovmf-secure', nvram: h.nvramPath(VM) }, hosts.fw);
const ok = (r: HookResult, what: string) => expect([r.code, r.stderr], what).toEqual([0, '']);

/** prepare, the guest's NVRAM becomes `content`, release (archived as the next generation). */
async function cycle(h: HookHost, content: Buffer): Promise<void> {
  ok(await h.run([VM, 'prepare', 'begin', '-'], xml(h)), `prepare on ${h.name}`);
  writeFileSync(h.nvramPath(VM), content);
  ok(await h.run([VM, 'release', 'end', '-'], xml(h)), `release on ${h.name}`);
}

describe.skipIf(!haveOvmf)('hook prepare: restoring a generation with fewer Microsoft 2023 certificates', () => {
  it('starts anyway, restores it, and logs a warning naming the certificates lost; a restore that loses nothing logs none', async () => {
    const old = readFileSync(MS);
    const enrolled = enrolledWith2023(old);
    const a = host('hostA');
    const b = host('hostB', a.archiveDir);
    await cycle(a, enrolled); // generation 1: enrolled on A
    await cycle(b, old); // B restores generation 1 (no local copy there: nothing replaced), then runs with a 2011-only store: generation 2
    expect(b.log()).not.toMatch(/trusts fewer/);

    const r = await a.run([VM, 'prepare', 'begin', '-'], xml(a));
    ok(r, 'prepare on A');
    expect(readFileSync(a.nvramPath(VM)).equals(old)).toBe(true);
    expect(a.log()).toMatch(/prepare: restore generation 2/);
    const warning = a.log().split('\n').filter((l) => /trusts fewer/.test(l));
    expect(warning).toHaveLength(1);
    expect(warning[0]).toMatch(/warning/i);
    expect(warning[0]).toContain(
      `prepare: the restored generation 2 trusts fewer Microsoft 2023 Secure Boot certificates than the local NVRAM it replaced; lost: ${ALL_2023} (a guest whose boot manager is signed by Windows UEFI CA 2023 may not boot); to add them again, shut the VM down and run: ovmf-hook nvram enroll ${VM} --ms-2023`,
    );
  });
});
