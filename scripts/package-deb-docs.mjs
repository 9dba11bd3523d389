// The two generated documents of the Debian package (scripts/package-deb.sh runs this):
//   node scripts/package-deb-docs.mjs man CLI VERSION DATE   > ovmf-hook.8   (roff, from the CLI's own --help)
//   node scripts/package-deb-docs.mjs copyright ROOT         > copyright     (DEP-5)
// The man page holds every command's `--help` exactly as the CLI prints it, wrapped for a terminal
// of 80 columns, plus the files, exit codes and environment. `--help` runs in a child process of
// the CLI file given (the staged package's copy, so this also proves that it loads without
// node_modules). The copyright file names the npm packages bundled into dist/ (the runtime
// dependencies in package-lock.json), their copyright lines and license texts (from node_modules/).
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

const [, , what, ...args] = process.argv;

/** `ovmf-hook ARGS --help` as the CLI prints it, `columns` wide. */
function help(cli, words, columns = 72) {
  const run = 'Object.defineProperty(process.stdout, "columns", { value: Number(process.env.HELP_COLUMNS) }); require(process.argv[1]);';
  const r = spawnSync(process.execPath, ['-e', run, resolve(cli), ...words, '--help'], {
    encoding: 'utf8',
    cwd: '/',
    env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LC_ALL: 'C', HELP_COLUMNS: String(columns) },
    timeout: 60_000,
  });
  if (r.status !== 0 || !r.stdout.trim()) throw new Error(`ovmf-hook ${words.join(' ')} --help: exit ${r.status}: ${r.stderr || r.error}`);
  return r.stdout.replace(/\s+$/, '');
}

/** The commands a help text lists (`ovmf-hook nvram list [vm]  …` → ['nvram', 'list']). */
function subcommands(text) {
  const at = text.indexOf('\nCommands:\n');
  if (at < 0) return [];
  const out = [];
  for (const line of text.slice(at + 11).split('\n')) {
    if (!line.trim()) break;
    const m = /^ {2}ovmf-hook ((?:[a-z][a-z0-9-]*)(?: [a-z][a-z0-9-]*)*)/.exec(line);
    if (m) out.push(m[1].split(' '));
  }
  return out;
}

/** roff for text shown as is (no fill): backslashes, minus signs, leading dots and quotes escaped. */
const literal = (text) =>
  text
    .split('\n')
    .map((l) => l.replace(/\\/g, '\\e').replace(/-/g, '\\-').replace(/^([.'])/, '\\&$1'))
    .join('\n');
/** roff for running text. */
const para = (text) => literal(text.replace(/\s*\n\s*/g, ' '));

function manPage(cli, version, date) {
  const sections = [];
  const visit = (words) => {
    const text = help(cli, words);
    sections.push([words, text]);
    for (const sub of subcommands(text)) visit(sub);
  };
  visit([]);
  const files = [
    ['/etc/ovmf-hook/config.json', 'the configuration: created once by the package or install.sh, never overwritten, removed on purge; "ovmf-hook config check" validates it, "ovmf-hook config show" prints it'],
    ['/etc/libvirt/hooks/qemu', 'the hook libvirt runs (a copy of /usr/lib/ovmf-hook/dist/hooks/qemu)'],
    ['/etc/libvirt/hooks/qemu.d/00-original-qemu', 'a hook that was there before, moved aside; it keeps running after ours and is put back when the package is removed'],
    ['/etc/ovmf-hook/installs/', 'one install record per hooks directory'],
    ['/var/lib/ovmf-hook/archive', 'the NVRAM archive (default archiveDir): generations of every VM\'s UEFI variables; kept even on purge'],
    ['/var/lib/ovmf-hook/state', 'per-host record of which generation each local NVRAM was synced with'],
    ['/var/lib/libvirt/qemu/nvram', 'libvirt\'s NVRAM files (nvramDir)'],
    ['/usr/lib/ovmf-hook', 'the hook, the CLI and install.sh, which the package\'s maintainer scripts run'],
  ];
  return [
    `.TH OVMF\\-HOOK 8 "${date}" "ovmf\\-hook ${literal(version)}" "System Administration"`,
    '.ad l',
    '.nh',
    '.SH NAME',
    'ovmf\\-hook \\- libvirt QEMU hook and CLI: UEFI (OVMF), Q35 and Secure Boot for libvirt VMs, per\\-VM NVRAM archive and restore',
    '.SH SYNOPSIS',
    '.B ovmf\\-hook',
    '.I command',
    '.RI [ options ]',
    '.br',
    '.B /etc/libvirt/hooks/qemu',
    '.I domain operation sub\\-operation extra',
    '.SH DESCRIPTION',
    para(`libvirt runs /etc/libvirt/hooks/qemu on every VM start and stop. For a UEFI domain the hook
      restores the newest archived NVRAM generation at "prepare begin" (or provisions the NVRAM from
      the OVMF VARS template), archives the NVRAM as a new generation at "release end", and maps
      firmware paths for "migrate begin" and "restore begin". It checks each domain against its policy
      (mode "enforce" refuses a start that breaks it, "warn" logs it). It never calls back into
      libvirt, writes XML only to stdout and one line to stderr on failure, and logs to the journal
      (logger -t ovmf-hook).`),
    '.PP',
    para(`The ovmf-hook command converts domains to Q35 + OVMF at define time (rewrite, convert),
      inspects the firmware catalog, manages the NVRAM archive (nvram list, show, restore, reset,
      prune, unlock, repair, vars, diff, enroll), checks the configuration (config check, config show)
      and the host (doctor). The sections below are each command's --help.`),
    '.SH COMMANDS',
    ...sections.flatMap(([words, text]) => [`.SS "${literal(['ovmf-hook', ...words].join(' '))}"`, '.nf', literal(text), '.fi']),
    '.SH EXIT STATUS',
    '0: done; 1: refused by policy or state; 2: bad input or usage. Errors are one line on stderr; stdout carries only results.',
    '.SH ENVIRONMENT',
    '.TP',
    '.B OVMF_HOOK_CONFIG',
    'the configuration file to use instead of /etc/ovmf\\-hook/config.json.',
    '.SH FILES',
    ...files.flatMap(([file, text]) => ['.TP', `.I ${literal(file)}`, para(text)]),
    '.SH SEE ALSO',
    '.BR virsh (1),',
    '.BR libvirtd (8),',
    '/usr/share/doc/ovmf\\-hook/README.md.gz and docs/ there (rules, hook contract, guarantees, cluster, benchmark).',
    '',
  ].join('\n');
}

// --- copyright

const MIT = `Permission is hereby granted, free of charge, to any person obtaining a copy of this software and
associated documentation files (the "Software"), to deal in the Software without restriction,
including without limitation the rights to use, copy, modify, merge, publish, distribute,
sublicense, and/or sell copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all copies or
substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR IMPLIED, INCLUDING BUT
NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY, FITNESS FOR A PARTICULAR PURPOSE AND
NONINFRINGEMENT. IN NO EVENT SHALL THE AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES
OR OTHER LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM, OUT OF OR IN
CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE SOFTWARE.`;

/** A text as the continuation lines of a DEP-5 field (blank lines become " ."). */
const field = (text) =>
  text
    .replace(/\r/g, '')
    .replace(/\s+$/, '')
    .split('\n')
    .map((l) => (l.trim() ? ` ${l.replace(/\s+$/, '')}` : ' .'))
    .join('\n');

function copyright(root) {
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
  const lock = JSON.parse(readFileSync(join(root, 'package-lock.json'), 'utf8'));
  const bundled = Object.entries(lock.packages ?? {})
    .filter(([path, p]) => path.startsWith('node_modules/') && !p.dev)
    .map(([path, p]) => ({ name: path.slice('node_modules/'.length), version: p.version, license: p.license ?? 'UNKNOWN', dir: join(root, path) }))
    .sort((a, b) => a.name.localeCompare(b.name));
  const found = bundled.map((b) => {
    const file = existsSync(b.dir) ? readdirSync(b.dir).find((f) => /^(licen[cs]e|copying)(\.md|\.txt|-mit\.txt)?$/i.test(f)) : undefined;
    const text = file ? readFileSync(join(b.dir, file), 'utf8') : '';
    const holders = text
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => /^(?:[Cc]opyright|COPYRIGHT)\s+(?:\([cC]\)|©|\d{4}|[A-Z][a-z])/.test(l) && !/\b(holders|notice)\b/i.test(l));
    return { ...b, text, holders: holders.length ? holders : [`the ${b.name} authors`] };
  });
  const licenses = [...new Set(found.map((b) => b.license))];
  const out = [
    'Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/',
    'Upstream-Name: ovmf-hook',
    '',
    'Files: *',
    'Copyright: the ovmf-hook authors',
    `License: ${pkg.license}`,
    '',
    'Files: usr/lib/ovmf-hook/dist/*',
    `Copyright: the ovmf-hook authors`,
    ...[...new Set(found.flatMap((b) => b.holders))].map((h) => ` ${h}`),
    `License: ${[...new Set([pkg.license, ...licenses])].join(' and ')}`,
    'Comment: The hook (dist/hooks/qemu) and the CLI (dist/cli.cjs) are single files made by esbuild',
    ' from the ovmf-hook sources; they bundle, as far as they use them, these npm packages (the runtime',
    ' dependencies in package-lock.json), each under its own license:',
    ...found.map((b) => ` ${b.name} ${b.version} (${b.license})${b.text ? '' : ': ships no license file; license from its package.json'}`),
    ' The CLI also carries Microsoft\'s public 2023 Secure Boot CA certificates (nvram enroll --ms-2023;',
    ' provenance in certs/microsoft/README.md of the source).',
    '',
  ];
  const texts = new Map([['MIT', MIT]]);
  for (const b of found) if (b.text && !texts.has(b.license)) texts.set(b.license, b.text);
  for (const name of [...new Set([pkg.license, ...licenses])]) {
    out.push(`License: ${name}`, texts.has(name) ? field(texts.get(name)) : ' (no license text found: see the package)', '');
  }
  return `${out.join('\n').replace(/\n+$/, '')}\n`;
}

if (what === 'man' && args.length === 3) process.stdout.write(manPage(...args));
else if (what === 'copyright' && args.length === 1) process.stdout.write(copyright(args[0]));
else {
  process.stderr.write('usage: package-deb-docs.mjs man CLI VERSION DATE | copyright ROOT\n');
  process.exit(2);
}
