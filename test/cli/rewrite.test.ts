/**
 * `ovmf-hook rewrite`: the bundled CLI end to end (stdin, exit codes, one-line errors, hostile
 * input), and the handler in-process for the flag / policy / idempotence tables. No libvirt.
 * The firmware catalog is test/firmware/fixtures/debian (Debian 12's descriptors) via a config file.
 */
import { copyFileSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runRewrite, type RewriteArgs } from '../../src/cli/commands/rewrite';
import { DEFAULT_CONFIG, parseConfig, type Config } from '../../src/core/config';
import { FirmwareNotFoundError, UsageError, XmlInputError } from '../../src/core/errors';
import { applyUnified, buildCli, capture, runCli, scratchDir, writeConfig } from './support';

const DOMAINS = join(__dirname, '..', 'fixtures', 'domains');
const DEBIAN_FIRMWARE = join(__dirname, '..', 'firmware', 'fixtures', 'debian');
const fixture = (f: string) => readFileSync(join(DOMAINS, f), 'utf8');
const LINUX = 'bios-i440fx-linux.xml';
const EDGE = 'edge-namespaces-comments.xml'; // CRLF, no final newline, <ovmf:policy secure-boot="yes"/>
const FIXTURES = readdirSync(DOMAINS).filter((f) => f.endsWith('.xml'));

const CODE = '/usr/share/OVMF/OVMF_CODE_4M.fd';
const MS_CODE = '/usr/share/OVMF/OVMF_CODE_4M.ms.fd';
const PLAIN_LOADER = `<loader readonly='yes' type='pflash'>${CODE}</loader>`;
const SECURE_LOADER = `<loader readonly='yes' type='pflash' secure='yes'>${MS_CODE}</loader>`;

const config = (over: Partial<Config> = {}): Config => ({ ...DEFAULT_CONFIG, firmwareDirs: [DEBIAN_FIRMWARE], ...over });

/** The handler in-process with `xml` on stdin (or `args.file`). */
async function rewrite(xml: string | undefined, args: Partial<RewriteArgs> = {}, cfg: Config = config()) {
  return capture(() => runRewrite(args, { config: () => cfg, stdin: Readable.from(xml === undefined ? [] : [Buffer.from(xml)]) }));
}

/** Insert `<ovmf:policy …/>` metadata into a libvirt-formatted fixture. */
const withPolicy = (xml: string, attrs: string) =>
  xml.replace('  <metadata>\n', `  <metadata>\n    <ovmf:policy xmlns:ovmf="urn:ovmf-hook:policy:1" ${attrs}/>\n`);

let cli: string;
let scratch: ReturnType<typeof scratchDir>;
let env: Record<string, string>;
/** a catalog with only the non-Secure-Boot descriptor */
let noSecure: string;

beforeAll(async () => {
  scratch = scratchDir('cli-rewrite');
  cli = await buildCli(scratch.dir);
  env = { OVMF_HOOK_CONFIG: writeConfig(scratch.dir, 'config.json', { firmwareDirs: [DEBIAN_FIRMWARE] }) };
  noSecure = join(scratch.dir, 'fw-no-secure');
  mkdirSync(noSecure);
  copyFileSync(join(DEBIAN_FIRMWARE, '60-edk2-x86_64.json'), join(noSecure, '60-edk2-x86_64.json'));
}, 60_000);
afterAll(() => scratch?.cleanup());

describe('ovmf-hook rewrite (built CLI)', () => {
  it('reads a file, stdin and "-" alike and prints the rewritten XML', () => {
    const fromFile = runCli(cli, ['rewrite', join(DOMAINS, LINUX)], { env });
    const fromStdin = runCli(cli, ['rewrite'], { env, input: fixture(LINUX) });
    const fromDash = runCli(cli, ['rewrite', '-'], { env, input: fixture(LINUX) });
    expect(fromFile).toMatchObject({ code: 0, stderr: '' });
    expect(fromFile.stdout).toContain("<type arch='x86_64' machine='q35'>hvm</type>");
    expect(fromFile.stdout).toContain(PLAIN_LOADER);
    expect(fromStdin).toEqual(fromFile);
    expect(fromDash).toEqual(fromFile);
  });

  it.each(['q35-ovmf-manual.xml', 'q35-efi-auto.xml', EDGE])('prints the input byte for byte when nothing changes: %s', (f) => {
    const input = fixture(f);
    const first = runCli(cli, ['rewrite', '--no-secure-boot'], { env, input });
    const out = f === EDGE ? first.stdout : input;
    const again = runCli(cli, ['rewrite', '--no-secure-boot'], { env, input: out });
    if (f !== EDGE) expect(first.stdout).toBe(input);
    expect(again).toEqual({ code: 0, stdout: out, stderr: '' });
  });

  it('--print-diff prints a unified diff that turns the input into the output, and nothing when unchanged', () => {
    const full = runCli(cli, ['rewrite', join(DOMAINS, EDGE)], { env });
    const diff = runCli(cli, ['rewrite', join(DOMAINS, EDGE), '--print-diff'], { env });
    expect(diff.code).toBe(0);
    expect(diff.stdout.startsWith(`--- ${join(DOMAINS, EDGE)}\n+++ ${join(DOMAINS, EDGE)}\n@@ `)).toBe(true);
    expect(diff.stdout).toContain("-    <type arch=\"x86_64\" machine='pc-i440fx-7.2'>hvm</type>\r\n");
    expect(applyUnified(fixture(EDGE), diff.stdout)).toBe(full.stdout);
    const viaStdin = runCli(cli, ['rewrite', '--print-diff'], { env, input: fixture(LINUX) });
    expect(viaStdin.stdout.split('\n').slice(0, 2)).toEqual(['--- ovmfhook-fix-bios-i440fx-linux.xml', '+++ ovmfhook-fix-bios-i440fx-linux.xml']);
    expect(runCli(cli, ['rewrite', '--print-diff'], { env, input: fixture('q35-ovmf-manual.xml') })).toEqual({ code: 0, stdout: '', stderr: '' });
  });

  it('--json prints one document: name, uuid, changed, changes, warnings, xml', () => {
    const plain = runCli(cli, ['rewrite', '--secure-boot'], { env, input: fixture(LINUX) });
    const r = runCli(cli, ['rewrite', '--secure-boot', '--json'], { env, input: fixture(LINUX) });
    expect(r.code).toBe(0);
    const doc = JSON.parse(r.stdout);
    expect(Object.keys(doc)).toEqual(['name', 'uuid', 'changed', 'changes', 'warnings', 'xml']);
    expect(doc).toMatchObject({ name: 'ovmfhook-fix-bios-i440fx-linux', uuid: '0a1f4f0e-0b1d-4c2e-9e01-000000000001', changed: true, warnings: [], xml: plain.stdout });
    expect(doc.changes).toContainEqual({ rule: 'machine-q35', path: '/domain/os/type/@machine', action: 'set', detail: expect.stringContaining('q35') });
    for (const c of doc.changes) expect(Object.keys(c).sort()).toEqual(['action', 'detail', 'path', 'rule']);
  });

  it('an e1000 NIC that becomes e1000e gets the e1000e boot ROM, and --json says so', () => {
    const input = fixture(LINUX).replace("      <model type='e1000'/>\n", "      <model type='e1000'/>\n      <rom bar='on' file='/usr/share/qemu/efi-e1000.rom'/>\n");
    const r = runCli(cli, ['rewrite', '--json'], { env, input });
    expect(r.code).toBe(0);
    const doc = JSON.parse(r.stdout);
    expect(doc.xml).toContain("      <model type='e1000e'/>\n      <rom bar='on' file='/usr/share/qemu/efi-e1000e.rom'/>\n");
    expect(doc.xml).not.toContain('efi-e1000.rom');
    expect(doc.changes).toContainEqual({ rule: 'nic-e1000e', path: '/domain/devices/interface/rom/@file', action: 'set', detail: "file '/usr/share/qemu/efi-e1000.rom' → '/usr/share/qemu/efi-e1000e.rom'" });
    expect(runCli(cli, ['rewrite'], { env, input: doc.xml })).toEqual({ code: 0, stdout: doc.xml, stderr: '' }); // idempotent
  });

  it('warnings go to stderr, one line each, prefixed "ovmf-hook: warning:"', () => {
    // a combined (read-write) OVMF image: no separate NVRAM, so Secure Boot cannot be switched on in place
    const input = fixture('q35-ovmf-manual.xml').replace("<loader readonly='yes' type='pflash'>", "<loader type='pflash'>");
    const r = runCli(cli, ['rewrite', '--secure-boot'], { env, input });
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(input);
    expect(r.stderr).toMatch(/^ovmf-hook: warning: ovmfhook-fix-q35-ovmf-manual: already boots UEFI without Secure Boot, and its firmware is a combined read-write image[^\n]*virsh start --reset-nvram ovmfhook-fix-q35-ovmf-manual\n$/);
  });

  it('an already-UEFI domain with --secure-boot: firmware switched in place (same NVRAM path), and a warning that the NVRAM needs keys (convert enrols them)', () => {
    const input = fixture('q35-ovmf-manual.xml');
    const r = runCli(cli, ['rewrite', '--secure-boot'], { env, input });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain("<loader readonly='yes' type='pflash' secure='yes'>/usr/share/OVMF/OVMF_CODE_4M.ms.fd</loader>");
    expect(r.stdout).toContain("<nvram template='/usr/share/OVMF/OVMF_VARS_4M.ms.fd'>/var/lib/libvirt/qemu/nvram/ovmfhook-fix-q35-ovmf-manual_VARS.fd</nvram>");
    expect(r.stdout).toContain("<smm state='on'/>");
    expect(r.stderr).toMatch(
      /^ovmf-hook: warning: ovmfhook-fix-q35-ovmf-manual: its firmware is switched to the Secure Boot build in place;[^\n]*ovmf-hook convert ovmfhook-fix-q35-ovmf-manual --secure-boot defines this and enrols the keys[^\n]*\n$/,
    );
  });

  it('exits 1 with one line naming the domain when the catalog has no matching firmware', () => {
    const cfg = writeConfig(scratch.dir, 'no-secure.json', { firmwareDirs: [noSecure] });
    const r = runCli(cli, ['rewrite', '--secure-boot'], { env: { OVMF_HOOK_CONFIG: cfg }, input: fixture(LINUX) });
    expect(r).toMatchObject({ code: 1, stdout: '' });
    expect(r.stderr).toMatch(/^ovmf-hook: ovmfhook-fix-bios-i440fx-linux: no uefi firmware for x86_64 machine 'q35', secure-boot=yes[^\n]*'ovmf-hook firmware list'[^\n]*\n$/);
  });

  describe('refuses bad input: exit 2, one line on stderr, nothing on stdout, no file written', () => {
    const big = () => {
      const path = join(scratch.dir, 'big.xml');
      writeFileSync(path, `<domain type='kvm'><name>x</name>${' '.repeat(50 * 1024 * 1024)}</domain>`);
      return path;
    };
    const lol = '<?xml version="1.0"?>\n<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>\n<domain><name>&lol2;</name></domain>';
    const cases: [string, { input?: string | Buffer; args?: () => string[] }, RegExp][] = [
      ['missing file', { args: () => ['/nonexistent/vm.xml'] }, /^ovmf-hook: \/nonexistent\/vm\.xml: no such file/],
      ['a directory', { args: () => [scratch.dir] }, /is a directory/],
      ['empty input', { input: '' }, /input is empty/],
      ['malformed XML', { input: "<domain type='kvm'><name>x</name>" }, /^ovmf-hook: malformed XML at line 1/],
      ['DOCTYPE entity bomb', { input: lol }, /DOCTYPE and ENTITY declarations are not accepted/],
      ['external entity', { input: '<!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/shadow">]><domain><name>&x;</name></domain>' }, /DOCTYPE and ENTITY/],
      ['unknown entity reference', { input: '<domain><name>&foo;</name></domain>' }, /unknown entity reference &foo;/],
      ['wrong root element', { input: '<network><name>default</name></network>' }, /root element is <network>; expected <domain>/],
      ['__proto__ element', { input: "<domain type='kvm'><name>x</name><__proto__><polluted/></__proto__></domain>" }, /__proto__/],
      ['constructor element', { input: "<domain type='kvm'><name>x</name><constructor/></domain>" }, /constructor/],
      ['two roots', { input: '<domain><name>a</name></domain><domain><name>b</name></domain>' }, /^ovmf-hook: /],
      ['NUL bytes', { input: "<domain type='kvm'><name>x\0</name></domain>" }, /NUL/],
      ['invalid UTF-8', { input: Buffer.concat([Buffer.from("<domain type='kvm'><name>"), Buffer.from([0xff, 0xfe]), Buffer.from('</name></domain>')]) }, /not valid UTF-8/],
      ['no <name>', { input: "<domain type='kvm'/>" }, /no <name>/],
      ['50 MB file', { args: () => [big()] }, /is 50 MiB; the limit for a domain XML is 16 MiB/],
      ['50 MB on stdin', { input: Buffer.alloc(50 * 1024 * 1024, 0x20) }, /stdin is larger than 16 MiB/],
      ['--print-diff with --json', { input: fixture(LINUX), args: () => ['--print-diff', '--json'] }, /cannot be combined/],
      ['--root-ports out of range', { input: fixture(LINUX), args: () => ['--root-ports', '99'] }, /root ports must be an integer from 0 to 64, got 99/],
      ['--root-ports not a number', { input: fixture(LINUX), args: () => ['--root-ports', 'many'] }, /--root-ports must be an integer/],
      ['--firmware bogus', { input: fixture(LINUX), args: () => ['--firmware', 'bogus'] }, /Invalid values: Argument: firmware, Given: "bogus"/],
      ['an unknown flag (the handler must not run)', { input: fixture(LINUX), args: () => ['--secure-bot'] }, /Unknown arguments?: secure-bot/],
      ['bad metadata policy', { input: withPolicy(fixture(LINUX), 'secure-boot="maybe"') }, /<ovmf:policy secure-boot="maybe"> must be "yes" or "no"/],
    ];
    it.each(cases)('%s', (_, c, message) => {
      const cwd = scratchDir('cwd');
      try {
        const r = runCli(cli, ['rewrite', ...(c.args?.() ?? [])], { env, input: c.input ?? '', cwd: cwd.dir });
        expect(r.stdout).toBe('');
        expect(r.stderr).toMatch(message);
        expect(r.stderr).toMatch(/^ovmf-hook: [^\n]+\n$/);
        expect(r.code).toBe(2);
        expect(readdirSync(cwd.dir)).toEqual([]);
      } finally {
        cwd.cleanup();
      }
    });
  });
});

describe('ovmf-hook rewrite (handler)', () => {
  const count = (s: string, needle: string) => s.split(needle).length - 1;
  const FLAGS: [string, Partial<RewriteArgs>, (xml: string) => void][] = [
    ['defaults: q35 + plain OVMF, no SMM', {}, (x) => {
      expect(x).toContain(PLAIN_LOADER);
      expect(x).toContain("<nvram template='/usr/share/OVMF/OVMF_VARS_4M.fd'>/var/lib/libvirt/qemu/nvram/ovmfhook-fix-bios-i440fx-linux_VARS.fd</nvram>");
      expect(x).not.toContain('<smm');
      expect(count(x, "model='pcie-root-port'")).toBe(14);
    }],
    ['--secure-boot: the MS-keys SMM build, SMM on', { secureBoot: true }, (x) => {
      expect(x).toContain(SECURE_LOADER);
      expect(x).toContain("template='/usr/share/OVMF/OVMF_VARS_4M.ms.fd'");
      expect(x).toContain("<smm state='on'/>");
    }],
    ['--no-secure-boot', { secureBoot: false }, (x) => expect(x).toContain(PLAIN_LOADER)],
    ['--tpm: a tpm-crb device', { tpm: true }, (x) => expect(x).toMatch(/<tpm model='tpm-crb'>\s*<backend type='emulator' version='2\.0'\/>/)],
    ['--root-ports 3', { rootPorts: 3 }, (x) => expect(count(x, "model='pcie-root-port'")).toBe(3)],
    ['--firmware auto', { firmware: 'auto' }, (x) => {
      expect(x).toContain("<os firmware='efi'>");
      expect(x).not.toContain('<loader');
    }],
    ['--no-uefi: the chipset only', { uefi: false }, (x) => {
      expect(x).toContain("machine='q35'");
      expect(x).not.toContain('<loader');
    }],
  ];
  it.each(FLAGS)('%s', async (_, args, check) => {
    const r = await rewrite(fixture(LINUX), args);
    expect(r.error).toBeUndefined();
    check(r.stdout);
  });

  it('--root-ports defaults to the config rootPorts', async () => {
    const r = await rewrite(fixture(LINUX), {}, config({ rootPorts: 5 }));
    expect(count(r.stdout, "model='pcie-root-port'")).toBe(5);
  });

  const POLICY: [string, string | undefined, Partial<Config['policy']>, Partial<RewriteArgs>, 'secure' | 'plain' | 'bios'][] = [
    ['config secure-boot=yes', undefined, { secureBoot: true }, {}, 'secure'],
    ['metadata secure-boot=yes', 'secure-boot="yes"', {}, {}, 'secure'],
    ['metadata secure-boot=no overrides the config', 'secure-boot="no"', { secureBoot: true }, {}, 'plain'],
    ['--no-secure-boot overrides metadata secure-boot=yes', 'secure-boot="yes"', {}, { secureBoot: false }, 'plain'],
    ['--secure-boot overrides metadata secure-boot=no', 'secure-boot="no"', {}, { secureBoot: true }, 'secure'],
    ['metadata uefi=no: the chipset only', 'uefi="no"', {}, {}, 'bios'],
    ['--uefi overrides metadata uefi=no', 'uefi="no"', {}, { uefi: true }, 'plain'],
    ['config uefi=no', undefined, { uefi: false }, {}, 'bios'],
  ];
  it.each(POLICY)('policy layers: %s', async (_, attrs, policy, args, expected) => {
    const xml = attrs ? withPolicy(fixture(LINUX), attrs) : fixture(LINUX);
    const r = await rewrite(xml, args, config({ policy: { ...DEFAULT_CONFIG.policy, ...policy } }));
    expect(r.error).toBeUndefined();
    expect(r.stdout).toContain("machine='q35'");
    const loader = r.stdout.match(/<loader[^>]*>[^<]*<\/loader>/)?.[0];
    expect(loader).toBe(expected === 'secure' ? SECURE_LOADER : expected === 'plain' ? PLAIN_LOADER : undefined);
  });

  it('metadata tpm=yes adds a TPM; --no-tpm overrides it', async () => {
    const xml = withPolicy(fixture(LINUX), 'tpm="yes"');
    expect((await rewrite(xml)).stdout).toContain("<tpm model='tpm-crb'>");
    expect((await rewrite(xml, { tpm: false })).stdout).not.toContain('<tpm');
  });

  it('reads the real config file layer (parseConfig) like the built CLI does', async () => {
    const cfg = parseConfig(JSON.stringify({ firmwareDirs: [DEBIAN_FIRMWARE], policy: { 'secure-boot': 'yes' } }), 'test.json');
    expect((await rewrite(fixture(LINUX), {}, cfg)).stdout).toContain(SECURE_LOADER);
  });

  it('--no-uefi with Secure Boot from metadata is a usage error', async () => {
    const r = await rewrite(fixture(EDGE), { uefi: false });
    expect(r.error).toBeInstanceOf(UsageError);
    expect((r.error as Error).message).toMatch(/--no-uefi conflicts with Secure Boot \(from the domain metadata or the config\)/);
    expect(r.stdout).toBe('');
  });

  const OPTION_SETS: Partial<RewriteArgs>[] = [{}, { secureBoot: true, tpm: true }, { firmware: 'auto' }, { uefi: false, secureBoot: false }, { rootPorts: 2 }];
  it.each(FIXTURES.flatMap((f) => OPTION_SETS.map((o): [string, Partial<RewriteArgs>] => [f, o])))('idempotent: rewriting %s %j again is byte-identical', async (f, o) => {
    const once = await rewrite(fixture(f), o);
    expect(once.error).toBeUndefined();
    const twice = await rewrite(once.stdout, o);
    expect(twice.error).toBeUndefined();
    expect(twice.stdout).toBe(once.stdout);
  });

  it('a domain the rewrite does not touch: input unchanged, the reason as a warning, "skipped" in --json', async () => {
    const arm = fixture(LINUX).replace("arch='x86_64' machine='pc-i440fx-7.2'", "arch='aarch64' machine='virt'");
    const r = await rewrite(arm);
    expect(r.stdout).toBe(arm);
    expect(r.stderr).toBe("ovmf-hook: warning: ovmfhook-fix-bios-i440fx-linux: architecture 'aarch64' is not x86_64; left untouched\n");
    const j = JSON.parse((await rewrite(arm, { json: true })).stdout);
    expect(j).toMatchObject({ changed: false, changes: [], skipped: expect.stringContaining('aarch64') });
  });

  it('a file argument is read like stdin; errors are typed', async () => {
    const r = await capture(() => runRewrite({ file: join(DOMAINS, LINUX) }, { config: () => config() }));
    expect(r.stdout).toBe((await rewrite(fixture(LINUX))).stdout);
    const missing = await capture(() => runRewrite({ file: '/nonexistent.xml' }, { config: () => config() }));
    expect(missing.error).toBeInstanceOf(UsageError);
    const bad = await rewrite('<domain');
    expect(bad.error).toBeInstanceOf(XmlInputError);
    const noFw = await rewrite(fixture(LINUX), {}, config({ firmwareDirs: [noSecure] }));
    expect(noFw.error).toBeUndefined();
    const noSb = await rewrite(fixture(LINUX), { secureBoot: true }, config({ firmwareDirs: [noSecure] }));
    expect(noSb.error).toBeInstanceOf(FirmwareNotFoundError);
  });
});
