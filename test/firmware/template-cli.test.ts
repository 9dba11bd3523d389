/**
 * `ovmf-hook firmware template` through the built CLI (a child process, as an admin runs it): the
 * help names it, install → up to date → remove with exit codes and stdout/stderr as documented, a
 * usage error and a refusal each one line on stderr with their exit codes; libvirt is the fake
 * virsh on PATH (test/cli/fake-virsh-bin.ts), which answers the batch `--remove` sends.
 */
import { copyFileSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCli, scratchDir, writeConfig } from '../cli/support';
import { fakeVirshBin } from '../cli/fake-virsh-bin';
import { builtCli } from '../keys/cli-host';
import { MS_VARS_4M } from '../support/ms-2023';

const FIXTURES = join(__dirname, 'fixtures', 'debian');
const built = builtCli('template-cli');

/** A temp host: Debian's descriptors (their MS template a copy) in usr/, etc/ for ours, the fake virsh knowing `domains`. */
function host(domains: (copy: string) => Record<string, { xml: string }> = () => ({})) {
  const { dir, cleanup } = scratchDir('template-cli');
  const usr = join(dir, 'usr');
  const etc = join(dir, 'etc');
  for (const d of [usr, etc]) mkdirSync(d);
  const msVars = join(dir, 'OVMF_VARS_4M.ms.fd');
  copyFileSync(MS_VARS_4M, msVars);
  for (const f of readdirSync(FIXTURES)) writeFileSync(join(usr, f), readFileSync(join(FIXTURES, f), 'utf8').replaceAll('/usr/share/OVMF/OVMF_VARS_4M.ms.fd', msVars));
  const config = writeConfig(dir, 'config.json', { firmwareDirs: [usr, etc], stateDir: join(dir, 'state'), archiveDir: join(dir, 'archive'), templateDir: join(dir, 'templates') });
  const copy = join(dir, 'templates', 'OVMF_VARS_4M.ms.ms-2023.fd');
  const virsh = fakeVirshBin(dir, domains(copy));
  const run = (...args: string[]) => runCli(built.cli, ['firmware', 'template', ...args], { env: { ...virsh.env, OVMF_HOOK_CONFIG: config } });
  return { dir, etc, copy, run, cleanup };
}

describe('ovmf-hook firmware template (built CLI)', () => {
  it('--help of firmware lists template; install, up to date, --json, remove: exit 0, results on stdout, nothing on stderr', () => {
    const h = host();
    try {
      const help = runCli(built.cli, ['firmware', '--help']);
      expect(help.stdout).toMatch(/ovmf-hook firmware template +Give new Secure Boot VMs Microsoft's 2023 certificates/);
      const first = h.run('--ms-2023');
      expect([first.code, first.stderr]).toEqual([0, '']);
      expect(first.stdout).toMatch(/^source: .*\ntemplate: .*\ndescriptor: .*39-ovmf-hook-ms-2023\.json .*\ninstalled: /);
      const again = h.run('--ms-2023', '--json');
      expect([again.code, again.stderr]).toEqual([0, '']);
      expect(JSON.parse(again.stdout)).toMatchObject({ action: 'install', status: 'up-to-date', template: { path: h.copy } });
      const removed = h.run('--remove');
      expect(removed).toEqual({ code: 0, stderr: '', stdout: `removed: ${h.etc}/39-ovmf-hook-ms-2023.json\nremoved: ${h.copy}\nnew Secure Boot VMs get the template of the next descriptor in libvirt's order again (ovmf-hook firmware list)\n` });
      expect(readdirSync(h.etc)).toEqual([]);
    } finally {
      h.cleanup();
    }
  });

  it('a usage error exits 2, a refusal (a domain names the copy) exits 1: one line on stderr each, nothing on stdout', () => {
    const h = host((copy) => ({
      'vm-a': { xml: `<domain type='kvm'><name>vm-a</name><uuid>6f1b1c1e-0000-4000-8000-00000000000a</uuid><os><type arch='x86_64' machine='q35'>hvm</type><loader readonly='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE_4M.ms.fd</loader><nvram template='${copy}'/></os></domain>` },
    }));
    try {
      expect(h.run()).toEqual({ code: 2, stdout: '', stderr: 'ovmf-hook: name what to do: --ms-2023 (install or update the template) or --remove\n' });
      expect(h.run('--ms-2023').code).toBe(0);
      const refused = h.run('--remove');
      expect([refused.code, refused.stdout]).toEqual([1, '']);
      expect(refused.stderr).toMatch(/^ovmf-hook: 1 defined domain names \S+OVMF_VARS_4M\.ms\.ms-2023\.fd as its <nvram template> \(vm-a\): .*or add --force\n$/);
      expect(readdirSync(h.etc)).toEqual(['39-ovmf-hook-ms-2023.json']);
    } finally {
      h.cleanup();
    }
  });
});
