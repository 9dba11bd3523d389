/**
 * The Debian package (scripts/package-deb.sh) without installing it: built from dist/ into a temp
 * dir, its control fields and file list read with `dpkg-deb -I/-f/-c`, its contents extracted
 * (`dpkg-deb -x/-e`) and compared with dist/, install.sh and packaging/deb/, its maintainer scripts
 * linted (`sh -n`, `bash -n`, shellcheck when installed), the packaged hook and CLI run from the
 * extracted tree (no node_modules anywhere above it). Then install.sh's `--from-package` mode (what
 * the maintainer scripts run) against the extracted tree and temp hooks/config/state dirs (as root,
 * `--no-reload`): it installs the hook and moves a foreign one exactly once, copies and removes
 * nothing of the package's files, takes over an install from a checkout, and a checkout's install.sh
 * refuses to touch the package's install. The real thing (apt-get, libvirtd, purge):
 * deb.libvirt.test.ts.
 */
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureBuilt, ROOT, TEST_NODE } from '../hook/harness';
import { exists } from '../../scripts/host-guard.mjs';

const VERSION: string = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).version;
const MARKER = 'ovmf-hook: libvirt QEMU hook';
const SCRIPTS = ['postinst', 'prerm', 'postrm'] as const;
const has = (tool: string) => spawnSync('sh', ['-c', `command -v ${tool}`]).status === 0;
const canBuild = has('dpkg-deb') && existsSync('/usr/bin/node');
const asRoot = process.getuid?.() === 0;

const run = (cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string } = {}) => {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 120_000, ...opts });
  return { code: r.status, out: r.stdout ?? '', err: r.stderr ?? '' };
};
const ok = (r: { code: number | null; out: string; err: string }) => {
  expect(r.code, `${r.out}\n${r.err}`).toBe(0);
  return r.out;
};
const sha = (p: string) => createHash('sha256').update(readFileSync(p)).digest('hex');
/** Every file under `dir` with its mode and content hash (or link text): what "untouched" means. */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string) => {
    for (const name of readdirSync(d).sort()) {
      const p = join(d, name);
      const st = lstatSync(p);
      if (st.isDirectory()) walk(p);
      out[p.slice(dir.length)] = st.isSymbolicLink() ? `-> ${readlinkSync(p)}` : st.isDirectory() ? 'dir' : `${(st.mode & 0o7777).toString(8)} ${sha(p)} ${st.mtimeMs}`;
    }
  };
  walk(dir);
  return out;
}

let tmp = '';
let deb = '';
let x = ''; // the extracted package
let control = ''; // its DEBIAN/
const build = (out: string, extra: string[] = [], env: NodeJS.ProcessEnv = {}) =>
  ok(run('bash', [join(ROOT, 'scripts/package-deb.sh'), '--out', out, ...extra], { env: { ...process.env, ...env }, cwd: tmp })).trim();

describe.skipIf(!canBuild)('the Debian package (scripts/package-deb.sh)', () => {
  beforeAll(() => {
    ensureBuilt();
    tmp = mkdtempSync(join(tmpdir(), 'ovmfhook-deb-'));
    chmodSync(tmp, 0o755);
    deb = build(join(tmp, 'out'));
    x = join(tmp, 'x');
    control = join(tmp, 'control');
    ok(run('dpkg-deb', ['-x', deb, x]));
    ok(run('dpkg-deb', ['-e', deb, control]));
  }, 200_000);
  afterAll(() => {
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  it('is ovmf-hook_<package.json version>_all.deb with the control fields the issue asks for', () => {
    expect(deb).toBe(join(tmp, 'out', `ovmf-hook_${VERSION}_all.deb`));
    const info = ok(run('dpkg-deb', ['-I', deb]));
    expect(info).toMatch(/^ new Debian package, version 2\.0\./m);
    const field = (name: string) => ok(run('dpkg-deb', ['-f', deb, name])).trim();
    expect(field('Package')).toBe('ovmf-hook');
    expect(field('Version')).toBe(VERSION);
    expect(field('Architecture')).toBe('all');
    expect(field('Depends')).toBe('nodejs (>= 18)');
    expect(field('Recommends')).toBe('ovmf, swtpm');
    expect(field('Section')).toBe('admin');
    expect(field('Priority')).toBe('optional');
    expect(field('Maintainer')).toMatch(/^.+ <[^>]+@[^>]+>$/);
    expect(Number(field('Installed-Size'))).toBeGreaterThan(500);
    expect(field('Description').split('\n')[0]).toMatch(/^libvirt QEMU hook/);
    // control archive: the three maintainer scripts (executable), control, md5sums; no conffiles
    expect(readdirSync(control).sort()).toEqual(['control', 'md5sums', 'postinst', 'postrm', 'prerm']);
    for (const s of SCRIPTS) expect(statSync(join(control, s)).mode & 0o777).toBe(0o755);
  });

  it('holds exactly the hook, the CLI, install.sh, the /usr/bin link, README, docs, copyright and the man page, owned by root', () => {
    const listing = ok(run('dpkg-deb', ['-c', deb])).trim().split('\n');
    const entries = listing.map((l) => {
      const m = /^(\S+) (\S+)\s+\d+ \S+ \S+ \.(\/\S*)(?: -> (\S+))?$/.exec(l);
      expect(m, l).not.toBeNull();
      return { mode: m![1], owner: m![2], path: m![3], link: m![4] };
    });
    expect(entries.every((e) => e.owner === 'root/root')).toBe(true);
    const files = entries.filter((e) => !e.mode.startsWith('d'));
    const docs = readdirSync(join(ROOT, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `/usr/share/doc/ovmf-hook/docs/${f}.gz`);
    expect(files.map((e) => e.path).sort()).toEqual(
      [
        '/usr/bin/ovmf-hook',
        '/usr/lib/ovmf-hook/dist/cli.cjs',
        '/usr/lib/ovmf-hook/dist/hooks/qemu',
        '/usr/lib/ovmf-hook/install.sh',
        '/usr/lib/ovmf-hook/package.json',
        '/usr/share/doc/ovmf-hook/README.md.gz',
        '/usr/share/doc/ovmf-hook/copyright',
        '/usr/share/doc/ovmf-hook/changelog.Debian.gz',
        '/usr/share/man/man8/ovmf-hook.8.gz',
        ...docs,
      ].sort(),
    );
    const mode = (p: string) => files.find((e) => e.path === p)!.mode;
    for (const p of ['/usr/lib/ovmf-hook/dist/cli.cjs', '/usr/lib/ovmf-hook/dist/hooks/qemu', '/usr/lib/ovmf-hook/install.sh']) expect(mode(p)).toBe('-rwxr-xr-x');
    for (const p of ['/usr/lib/ovmf-hook/package.json', '/usr/share/doc/ovmf-hook/copyright', '/usr/share/man/man8/ovmf-hook.8.gz']) expect(mode(p)).toBe('-rw-r--r--');
    expect(entries.find((e) => e.path === '/usr/bin/ovmf-hook')).toMatchObject({ mode: 'lrwxrwxrwx', link: '../lib/ovmf-hook/dist/cli.cjs' });
    expect(entries.some((e) => e.path.startsWith('/etc/'))).toBe(false); // config.json is postinst's (install.sh), not a dpkg file
  });

  it("carries dist/ as built with the distro's node in the #! line, this checkout's install.sh and packaging/deb's scripts; md5sums match", () => {
    const lib = join(x, 'usr/lib/ovmf-hook');
    for (const [packaged, built] of [
      ['dist/hooks/qemu', 'dist/hooks/qemu'],
      ['dist/cli.cjs', 'dist/cli.cjs'],
    ]) {
      const [first, ...rest] = readFileSync(join(lib, packaged), 'utf8').split('\n');
      expect(first).toBe('#!/usr/bin/node');
      expect(rest.join('\n')).toBe(readFileSync(join(ROOT, built), 'utf8').split('\n').slice(1).join('\n'));
    }
    expect(readFileSync(join(lib, 'dist/hooks/qemu'), 'utf8').split('\n')[1]).toContain(MARKER);
    expect(readFileSync(join(lib, 'install.sh'), 'utf8')).toBe(readFileSync(join(ROOT, 'install.sh'), 'utf8'));
    for (const s of SCRIPTS) expect(readFileSync(join(control, s), 'utf8')).toBe(readFileSync(join(ROOT, 'packaging/deb', s), 'utf8'));
    ok(run('md5sum', ['--check', '--quiet', join(control, 'md5sums')], { cwd: x }));
    expect(readFileSync(join(control, 'md5sums'), 'utf8').trim().split('\n')).toHaveLength(8 + readdirSync(join(ROOT, 'docs')).filter((f) => f.endsWith('.md')).length); // every regular file
  });

  it('maintainer scripts: sh -n, bash -n and shellcheck clean; they run install.sh --from-package and nothing else of ours', () => {
    for (const s of SCRIPTS) {
      const p = join(control, s);
      expect(readFileSync(p, 'utf8').split('\n')[0]).toBe('#!/bin/sh');
      ok(run('sh', ['-n', p]));
      ok(run('bash', ['-n', p]));
      if (has('shellcheck')) ok(run('shellcheck', ['--shell=sh', p]));
    }
    ok(run('bash', ['-n', join(x, 'usr/lib/ovmf-hook/install.sh')]));
    if (has('shellcheck')) ok(run('shellcheck', ['-S', 'warning', join(x, 'usr/lib/ovmf-hook/install.sh'), join(ROOT, 'scripts/package-deb.sh')]));
    const text = (s: string) => readFileSync(join(control, s), 'utf8');
    expect(text('postinst')).toContain('bash /usr/lib/ovmf-hook/install.sh --from-package --prefix /usr/lib/ovmf-hook --bin-link /usr/bin/ovmf-hook\n');
    expect(text('prerm')).toContain('bash /usr/lib/ovmf-hook/install.sh --from-package --uninstall\n');
    expect(text('postrm')).not.toMatch(/rm -rf? [^\n]*\/var\/lib\/ovmf-hook/); // the archive is kept, even on purge
  });

  // under TEST_NODE (the node18 lane: Debian 12's Node 18, the oldest the package's Depends allow)
  it('the packaged CLI and hook run from the extracted tree alone (no node_modules above it), in a bare environment', () => {
    const env = { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LC_ALL: 'C' };
    const cli = join(x, 'usr/lib/ovmf-hook/dist/cli.cjs');
    const hook = join(x, 'usr/lib/ovmf-hook/dist/hooks/qemu');
    for (let d = x; d !== '/'; d = join(d, '..')) expect(existsSync(join(d, 'node_modules')), d).toBe(false);
    expect(ok(run(TEST_NODE, [cli, '--help'], { env, cwd: '/' }))).toMatch(/ovmf-hook nvram\s/);
    // a command that loads yargs, fast-xml-parser and the config loader
    const w = join(tmp, 'run');
    for (const d of ['archive', 'state', 'nvram', 'fw']) mkdirSync(join(w, d), { recursive: true });
    const conf = join(w, 'config.json');
    writeFileSync(conf, JSON.stringify({ policy: { uefi: 'no', archive: 'no' }, archiveDir: join(w, 'archive'), stateDir: join(w, 'state'), nvramDir: join(w, 'nvram'), firmwareDirs: [join(w, 'fw')], logFile: join(w, 'hook.log') }));
    expect(ok(run(TEST_NODE, [cli, 'config', 'check', '--file', conf], { env, cwd: '/' }))).toBe(`${conf}: valid\n`);
    const xml = "<domain type='kvm'><name>deb-unit</name><uuid>0b5e3c1e-6f2a-4c43-9a53-5b7a2f4c9d10</uuid><memory unit='KiB'>1024</memory><os><type arch='x86_64' machine='pc-q35-7.2'>hvm</type></os><devices/></domain>";
    const r = spawnSync(TEST_NODE, [hook, 'deb-unit', 'prepare', 'begin', '-'], { input: xml, encoding: 'utf8', env: { ...env, OVMF_HOOK_CONFIG: conf }, cwd: '/', timeout: 30_000 });
    expect(r.status, r.stderr).toBe(0);
    expect(readdirSync(join(w, 'nvram'))).toEqual([]);
  });

  it('man page: every command of the CLI with its --help; README and docs gzipped; copyright names the bundled packages', () => {
    const man = gunzipSync(readFileSync(join(x, 'usr/share/man/man8/ovmf-hook.8.gz'))).toString('utf8');
    expect(man).toMatch(/^\.TH OVMF\\-HOOK 8 "\d{4}-\d\d-\d\d" "ovmf\\-hook /);
    const sections = [...man.matchAll(/^\.SS "([^"]+)"$/gm)].map((m) => m[1].replace(/\\-/g, '-'));
    for (const c of ['ovmf-hook', 'ovmf-hook rewrite', 'ovmf-hook convert', 'ovmf-hook firmware list', 'ovmf-hook nvram list', 'ovmf-hook nvram enroll', 'ovmf-hook config check', 'ovmf-hook doctor'])
      expect(sections).toContain(c);
    expect(man).toContain('.SH EXIT STATUS');
    expect(man).toContain('/etc/ovmf\\-hook/config.json');
    if (has('man')) {
      const rendered = run('man', ['-l', join(x, 'usr/share/man/man8/ovmf-hook.8.gz')], { env: { ...process.env, MANWIDTH: '80', MANPAGER: 'cat', PAGER: 'cat' } });
      expect(ok(rendered)).toContain('ovmf-hook nvram enroll');
      expect(rendered.out.split('\n').filter((l) => l.length > 80)).toEqual([]);
    }
    expect(gunzipSync(readFileSync(join(x, 'usr/share/doc/ovmf-hook/README.md.gz'))).toString('utf8')).toBe(readFileSync(join(ROOT, 'README.md'), 'utf8'));
    const copyright = readFileSync(join(x, 'usr/share/doc/ovmf-hook/copyright'), 'utf8');
    expect(copyright).toMatch(/^Format: https:\/\/www\.debian\.org\/doc\/packaging-manuals\/copyright-format\/1\.0\/\n/);
    expect(copyright).toMatch(/^License: MIT\n Permission is hereby granted/m);
    for (const name of ['yargs', 'fast-xml-parser', 'fs-extra']) expect(copyright).toMatch(new RegExp(`^ ${name} \\d+\\.\\d+\\.\\d+ \\(`, 'm'));
    // a changelog entry dpkg-parsechangelog reads: this version, the maintainer, an RFC 2822 date
    const changelog = gunzipSync(readFileSync(join(x, 'usr/share/doc/ovmf-hook/changelog.Debian.gz'))).toString('utf8');
    const version = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).version;
    expect(changelog).toMatch(new RegExp(`^ovmf-hook \\(${version.replace(/\./g, '\\.')}\\) unstable; urgency=medium\n\n  \\* Built from ovmf-hook \\S+ with scripts/package-deb\\.sh\\.\n\n -- .+ <.+@.+>  \\w{3}, \\d\\d \\w{3} \\d{4} \\d\\d:\\d\\d:\\d\\d \\+0000\n$`));
  });

  it('is reproducible: the same checkout and SOURCE_DATE_EPOCH give the same bytes; --version names another package', () => {
    const epoch = String(Math.floor(statSync(join(ROOT, 'package.json')).mtimeMs / 1000));
    const a = build(join(tmp, 'ra'), [], { SOURCE_DATE_EPOCH: epoch });
    const b = build(join(tmp, 'rb'), [], { SOURCE_DATE_EPOCH: epoch });
    expect(sha(a)).toBe(sha(b));
    const v = build(join(tmp, 'rv'), ['--version', `${VERSION}+t1`]);
    expect(v).toBe(join(tmp, 'rv', `ovmf-hook_${VERSION}+t1_all.deb`));
    expect(ok(run('dpkg-deb', ['-f', v, 'Version'])).trim()).toBe(`${VERSION}+t1`);
    const bad = run('bash', [join(ROOT, 'scripts/package-deb.sh'), '--out', join(tmp, 'rx'), '--version', 'not a version']);
    expect(bad.code).toBe(1);
    expect(bad.err).toContain("'not a version' is not a Debian version");
  });

  // --- install.sh --from-package, as the maintainer scripts run it, into temp directories

  describe.skipIf(!asRoot)('install.sh --from-package (the maintainer scripts\' mode), into temp directories', () => {
    let n = 0;
    /** Temp hooks/config/state dirs; the prefix is the extracted package's /usr/lib/ovmf-hook. */
    const tree = () => {
      const root = join(tmp, `t${++n}`);
      const t = {
        root,
        hooks: join(root, 'hooks'),
        conf: join(root, 'etc'),
        state: join(root, 'var'),
        bin: join(root, 'bin', 'ovmf-hook'),
        lib: join(x, 'usr/lib/ovmf-hook'),
        hook: join(root, 'hooks', 'qemu'),
        saved: join(root, 'hooks', 'qemu.d', '00-original-qemu'),
        foreign: '#!/bin/sh\necho "$@" >> /dev/null\n',
        record: () => readFileSync(join(t.conf, 'installs', readdirSync(join(t.conf, 'installs'))[0]), 'utf8'),
        common: () => ['--hooks-dir', t.hooks, '--config-dir', t.conf, '--state-dir', t.state, '--no-reload'],
        pkg: (extra: string[] = []) => run('bash', [join(t.lib, 'install.sh'), '--from-package', '--prefix', t.lib, '--bin-link', t.bin, ...t.common(), ...extra]),
        src: (prefix: string, extra: string[] = []) => run('bash', [join(ROOT, 'install.sh'), '--no-build', '--prefix', prefix, '--bin-link', t.bin, ...t.common(), ...extra]),
      };
      mkdirSync(t.hooks, { recursive: true });
      writeFileSync(t.hook, t.foreign, { mode: 0o755 });
      return t;
    };

    it('installs the packaged hook, moves a foreign hook once, writes the config once, and copies, links or removes nothing of the package', () => {
      const t = tree();
      const before = snapshot(x);
      const first = t.pkg();
      ok(first);
      expect(first.out).toMatch(/moved the existing hook to .*qemu\.d\/00-original-qemu/);
      expect(readFileSync(t.hook)).toEqual(readFileSync(join(t.lib, 'dist/hooks/qemu')));
      expect(readFileSync(t.saved, 'utf8')).toBe(t.foreign);
      expect(t.record()).toMatch(new RegExp(`^prefix=${t.lib}\\n[^]*^installed_by=package\\n[^]*^moved_foreign_hook=1\\n`, 'm'));
      expect(exists(t.bin)).toBe(false); // the package's own /usr/bin/ovmf-hook is dpkg's, not install.sh's
      expect(existsSync(join(t.conf, 'config.json'))).toBe(true);
      expect(first.out).toContain(`config check: ${join(t.conf, 'config.json')}: valid`);

      // the upgrade (postinst configure again): nothing moved twice, config kept
      writeFileSync(join(t.conf, 'config.json'), '{ "mode": "warn" }\n');
      const again = t.pkg();
      ok(again);
      expect(again.out).not.toMatch(/moved the existing hook/);
      expect(again.out).toContain('kept existing');
      expect(readdirSync(join(t.hooks, 'qemu.d'))).toEqual(['00-original-qemu']);
      expect(readFileSync(t.saved, 'utf8')).toBe(t.foreign);
      expect(readFileSync(join(t.conf, 'config.json'), 'utf8')).toBe('{ "mode": "warn" }\n');

      // a checkout's install.sh leaves the package's install alone
      const src = t.src(join(t.root, 'prefix'));
      expect(src.code).toBe(1);
      expect(src.err).toMatch(/is installed by the ovmf-hook package \(apt-get remove ovmf-hook puts back the previous hook\); upgrade that package/);
      const srcUn = run('bash', [join(ROOT, 'install.sh'), '--uninstall', ...t.common()]);
      expect(srcUn.code).toBe(1);
      expect(srcUn.err).toMatch(/is installed by the ovmf-hook package .*; kept everything: remove that package instead/);
      expect(readFileSync(t.hook)).toEqual(readFileSync(join(t.lib, 'dist/hooks/qemu')));

      // prerm remove: the foreign hook back; the package's files, config and state stay
      ok(run('bash', [join(t.lib, 'install.sh'), '--from-package', '--uninstall', ...t.common()]));
      expect(readFileSync(t.hook, 'utf8')).toBe(t.foreign);
      expect(exists(join(t.hooks, 'qemu.d'))).toBe(false);
      expect(readdirSync(t.conf)).toEqual(['config.json']);
      expect(existsSync(join(t.state, 'archive'))).toBe(true);
      expect(snapshot(x)).toEqual(before);
    });

    it('takes over an install from a checkout: keeps its record of the foreign hook, removes its files and CLI link', () => {
      const t = tree();
      const prefix = join(t.root, 'prefix');
      ok(t.src(prefix));
      expect(readlinkSync(t.bin)).toBe(join(prefix, 'dist/cli.cjs'));
      const r = t.pkg(['--bin-link', join(t.root, 'usr-bin', 'ovmf-hook')]);
      ok(r);
      expect(r.out).not.toMatch(/moved the existing hook/);
      expect(r.out).toContain(`replaced the install from a checkout in ${prefix}`);
      expect(exists(prefix) || exists(t.bin)).toBe(false);
      expect(t.record()).toMatch(/^installed_by=package\n[^]*^moved_foreign_hook=1\n/m);
      expect(readFileSync(t.saved, 'utf8')).toBe(t.foreign);
      ok(run('bash', [join(t.lib, 'install.sh'), '--from-package', '--uninstall', ...t.common()]));
      expect(readFileSync(t.hook, 'utf8')).toBe(t.foreign);
    });

    it('an uninstall by the package leaves an install from a checkout alone', () => {
      const t = tree();
      const prefix = join(t.root, 'prefix');
      ok(t.src(prefix));
      const r = run('bash', [join(t.lib, 'install.sh'), '--from-package', '--uninstall', ...t.common()]);
      ok(r);
      expect(r.out).toMatch(/is installed from a checkout \(install\.sh\), not by the package: left it/);
      expect(readFileSync(t.saved, 'utf8')).toBe(t.foreign);
      expect(existsSync(join(prefix, 'dist/cli.cjs'))).toBe(true);
      ok(run('bash', [join(ROOT, 'install.sh'), '--uninstall', ...t.common()]));
      expect(readFileSync(t.hook, 'utf8')).toBe(t.foreign);
    });
  });
});
