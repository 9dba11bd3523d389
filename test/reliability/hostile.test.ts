/**
 * Hostile input matrix through the real hook binary (test/hook/harness.ts runs it like libvirt):
 * hostile XML, stdin, argv, names, UUIDs, paths, planted links, templates and configs.
 *
 * Every row states the exit for its operation — prepare (and the migrate/restore filters): the
 * start is refused, non-zero with exactly one stderr line; release/reconnect/stopped: exit 0 —
 * and proves on the filesystem that nothing outside the intended files was written or modified:
 * the whole tree (host dirs, firmware, a fake /etc/shadow, another VM's NVRAM) is snapshotted
 * before and after (paths, types, modes, owners, sizes, mtimes, ctimes, sha256 of files ≤ 1 MiB).
 */
import { chmodSync, linkSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  DEFAULT_UUID,
  domainXml,
  ensureBuilt,
  makeFirmware,
  makeHost,
  pattern,
  tempRoot,
  VARS_SIZE,
  type Firmware,
  type HookHost,
  type Stdin,
  type XmlSpec,
} from '../hook/harness';
import { checkArchive, diffSnapshots, sha256, snapshot } from './support';

const VM = 'vm1';
const SHADOW = 'root:$6$hashed$secret:19000:0:99999:7:::\n';
const tmp = tempRoot();
let fw: Firmware;
let shared: string;
let shadow: string;

beforeAll(() => {
  ensureBuilt();
  shared = path.join(tmp.root, 'shared');
  fw = makeFirmware(path.join(shared, 'fw'));
  mkdirSync(path.join(shared, 'etc'));
  shadow = path.join(shared, 'etc', 'shadow');
  writeFileSync(shadow, SHADOW);
  chmodSync(shadow, 0o640);
}, 120_000);
afterAll(() => tmp.cleanup());

type Op = 'prepare' | 'release' | 'reconnect' | 'stopped' | 'migrate' | 'restore';
const SUBOP: Record<Op, string> = { prepare: 'begin', release: 'end', reconnect: 'begin', stopped: 'end', migrate: 'begin', restore: 'begin' };
/** Ops whose failure must reach libvirt (non-zero + one line); all others must exit 0. */
const FAILS_CLOSED: ReadonlySet<Op> = new Set(['prepare', 'migrate', 'restore']);

interface Ctx {
  h: HookHost;
  /** the intended VM's NVRAM */
  nvram: string;
  /** another VM's NVRAM in the same directory */
  other: string;
  xml: (spec?: Partial<XmlSpec>) => string;
}

interface Row {
  name: string;
  op: Op;
  /** expected outcome: 'refused' = fails closed per op (exit 0 for never-fail ops), 'works' = exit 0 and the NVRAM is managed */
  expect: 'refused' | 'works' | 'ignored';
  argv?: (c: Ctx) => string[];
  stdin?: (c: Ctx) => Stdin;
  config?: string | Record<string, unknown>;
  setup?: (c: Ctx) => void;
  /** stderr must match (refused prepare) */
  err?: RegExp;
  /** relative paths (under the host dir) that may be written besides the log, archive and state */
  writes?: (c: Ctx) => string[];
  /** the hook has no usable config, so its lines go to the journal only (no log file to read) */
  journalOnly?: true;
}

const xmlDecl = (body: string) => `<?xml version="1.0"?>\n${body}`;
const billionLaughs = xmlDecl(
  `<!DOCTYPE lolz [<!ENTITY lol "lol">${Array.from({ length: 9 }, (_, i) => `<!ENTITY lol${i + 1} "${`&lol${i || ''};`.repeat(10)}">`).join('')}]>\n<domain type='qemu'><name>&lol9;</name></domain>`,
);
const withName = (xml: string, name: string) => xml.replace(/<name>[^<]*<\/name>/, `<name>${name}</name>`);
const withUuid = (xml: string, uuid: string) => xml.replace(/<uuid>[^<]*<\/uuid>/, `<uuid>${uuid}</uuid>`);
const UNICODE = 'Wïn 11 — 日本語 ✓';
/** The longest name libvirt takes whose NVRAM file name fits NAME_MAX: 247 bytes (+ "_VARS.fd" = 255). */
const LONGEST = 'é'.repeat(100) + 'a'.repeat(47);
/** Config files the hook must survive: each makes `file` that thing. */
const BROKEN_CONFIGS: Array<[string, (file: string) => void]> = [
  ['a FIFO', (f) => { rmSync(f); spawnSync('mkfifo', [f]); }],
  ['a symlink to /dev/zero', (f) => { rmSync(f); symlinkSync('/dev/zero', f); }],
  ['a directory', (f) => { rmSync(f); mkdirSync(f); }],
  ['larger than 64 KiB', (f) => writeFileSync(f, `{"mode": "warn"${' '.repeat(70_000)}}`)],
  ['empty', (f) => writeFileSync(f, '')],
  ['an unknown key', (f) => writeFileSync(f, '{"archivedir": "/srv/archive"}')],
  ['a wrong type', (f) => writeFileSync(f, '{"keepGenerations": "10"}')],
];
const SHELLISH = `-rf $HOME 'quoted' "dq" ;echo`;

const ROWS: Row[] = [
  // --- stdin content
  { name: 'malformed XML (unclosed element)', op: 'prepare', expect: 'refused', stdin: () => "<domain type='qemu'><name>vm1</name><os>", err: /XML|closed|tag/i },
  { name: 'DOCTYPE with an internal entity', op: 'prepare', expect: 'refused', stdin: (c) => xmlDecl(`<!DOCTYPE domain [<!ENTITY n "vm1">]>\n${withName(c.xml(), '&n;')}`), err: /DOCTYPE/ },
  { name: 'external entity (file:// fake shadow)', op: 'prepare', expect: 'refused', stdin: (c) => xmlDecl(`<!DOCTYPE domain [<!ENTITY x SYSTEM "file://${shadow}">]>\n${withName(c.xml(), 'vm1&x;')}`), err: /DOCTYPE/ },
  { name: 'billion laughs', op: 'prepare', expect: 'refused', stdin: () => billionLaughs, err: /DOCTYPE/ },
  { name: 'billion laughs at release', op: 'release', expect: 'refused', stdin: () => billionLaughs },
  { name: '50 MB on stdin', op: 'prepare', expect: 'refused', stdin: () => Buffer.concat([Buffer.from("<domain type='qemu'><name>vm1</name><description>"), Buffer.alloc(50 * 1024 * 1024, 'x')]), err: /larger than 16 MiB/ },
  { name: '50 MB on stdin at release', op: 'release', expect: 'refused', stdin: () => Buffer.alloc(50 * 1024 * 1024, '<') },
  { name: 'binary garbage', op: 'prepare', expect: 'refused', stdin: () => pattern(64 * 1024, 'garbage'), err: /NUL|XML|UTF|domain/i },
  { name: 'empty stdin', op: 'prepare', expect: 'refused', stdin: () => '', err: /empty/ },
  { name: 'empty stdin at release', op: 'release', expect: 'refused', stdin: () => '' },
  { name: 'two root elements', op: 'prepare', expect: 'refused', stdin: (c) => c.xml() + c.xml(), err: /root|domain|XML/i },
  { name: 'root is not <domain>', op: 'prepare', expect: 'refused', stdin: () => '<network><name>vm1</name></network>', err: /domain/ },
  { name: 'migrate filter: DOCTYPE', op: 'migrate', expect: 'refused', stdin: () => billionLaughs, err: /DOCTYPE/ },
  { name: 'restore filter: garbage', op: 'restore', expect: 'refused', stdin: () => pattern(4096, 'junk'), err: /NUL|XML|domain/i },
  { name: 'reconnect with garbage', op: 'reconnect', expect: 'ignored', stdin: () => pattern(4096, 'junk') },
  { name: 'stopped with garbage', op: 'stopped', expect: 'ignored', stdin: () => pattern(4096, 'junk') },

  // --- argv
  { name: 'no arguments', op: 'prepare', expect: 'refused', argv: () => [], err: /got 0/ },
  { name: 'one argument', op: 'prepare', expect: 'refused', argv: () => [VM], err: /got 1/ },
  { name: 'five arguments', op: 'prepare', expect: 'refused', argv: () => [VM, 'prepare', 'begin', '-', 'x'], err: /got 5/ },
  { name: 'five arguments at release', op: 'release', expect: 'refused', argv: () => [VM, 'release', 'end', '-', 'x'] },
  { name: 'two arguments at release', op: 'release', expect: 'refused', argv: () => [VM, 'release'] },

  // --- names and UUIDs
  { name: 'name with "/" (argv and XML)', op: 'prepare', expect: 'refused', argv: () => ['../etc/x', 'prepare', 'begin', '-'], stdin: (c) => withName(c.xml(), '../etc/x'), err: /invalid domain name/ },
  { name: 'name ".."', op: 'prepare', expect: 'refused', argv: () => ['..', 'prepare', 'begin', '-'], stdin: (c) => withName(c.xml(), '..'), err: /invalid domain name/ },
  { name: 'name ".." at release', op: 'release', expect: 'refused', argv: () => ['..', 'release', 'end', '-'], stdin: (c) => withName(c.xml(), '..') },
  { name: 'name with a newline', op: 'prepare', expect: 'refused', argv: () => ['vm\n1', 'prepare', 'begin', '-'], stdin: (c) => withName(c.xml(), 'vm\n1'), err: /invalid domain name/ },
  { name: 'NUL in the XML <name>', op: 'prepare', expect: 'refused', stdin: (c) => withName(c.xml(), 'vm1\u0000../x'), err: /NUL/ },
  { name: 'NUL in the XML <uuid>', op: 'prepare', expect: 'refused', stdin: (c) => withUuid(c.xml(), `${DEFAULT_UUID}\u0000`), err: /NUL/ },
  { name: 'UUID "../../etc"', op: 'prepare', expect: 'refused', stdin: (c) => withUuid(c.xml(), '../../etc'), err: /invalid VM UUID/ },
  { name: 'UUID with a "/.." suffix at release', op: 'release', expect: 'refused', stdin: (c) => withUuid(c.xml(), `${DEFAULT_UUID}/..`) },
  { name: 'UUID missing', op: 'prepare', expect: 'refused', stdin: (c) => c.xml().replace(/\s*<uuid>[^<]*<\/uuid>/, ''), err: /uuid/i },
  { name: 'argv name differs from <name>', op: 'prepare', expect: 'refused', argv: () => ['vm2', 'prepare', 'begin', '-'], err: /"vm2" but the XML on stdin is for "vm1"/ },
  ...([UNICODE, SHELLISH] as const).flatMap((name): Row[] => [
    {
      name: `legit name ${JSON.stringify(name)}: prepare provisions`,
      op: 'prepare',
      expect: 'works',
      argv: () => [name, 'prepare', 'begin', '-'],
      stdin: (c) => c.xml({ name, nvram: c.h.nvramPath(name) }),
      writes: (c) => [path.relative(c.h.dir, c.h.nvramPath(name))],
    },
    {
      name: `legit name ${JSON.stringify(name)}: release archives`,
      op: 'release',
      expect: 'works',
      argv: () => [name, 'release', 'end', 'shutdown'],
      stdin: (c) => c.xml({ name, nvram: c.h.nvramPath(name) }),
      setup: (c) => writeFileSync(c.h.nvramPath(name), pattern(VARS_SIZE, 'guest')),
    },
  ]),

  // --- paths in the XML
  { name: 'relative loader path', op: 'prepare', expect: 'refused', stdin: (c) => c.xml({ loader: 'fw/OVMF_CODE_4M.fd' }), err: /loader path "fw\/OVMF_CODE_4M.fd" must be absolute/ },
  { name: 'relative NVRAM path', op: 'prepare', expect: 'refused', stdin: (c) => c.xml({ nvram: 'nvram/vm1_VARS.fd' }), err: /NVRAM path .* must be absolute/ },
  { name: 'NVRAM path with ".." into the fake /etc', op: 'prepare', expect: 'refused', stdin: (c) => c.xml({ nvram: `${c.h.nvramDir}/../../shared/etc/shadow` }), err: /must not contain/ },
  { name: 'NVRAM path with ".." at release', op: 'release', expect: 'refused', stdin: (c) => c.xml({ nvram: `${c.h.nvramDir}/../../shared/etc/shadow` }) },
  { name: 'NVRAM = the fake /etc/shadow (outside the nvram dir): left alone', op: 'prepare', expect: 'ignored', stdin: (c) => c.xml({ nvram: shadow }) },
  { name: 'NVRAM = the fake /etc/shadow at release: not archived', op: 'release', expect: 'ignored', stdin: (c) => c.xml({ nvram: shadow }) },
  { name: 'NVRAM path = the nvram directory itself', op: 'prepare', expect: 'refused', stdin: (c) => c.xml({ nvram: `${c.h.nvramDir}/` }), err: /not a regular file|must|does not name a file/ },
  { name: 'template with ".."', op: 'prepare', expect: 'refused', stdin: (c) => c.xml({ template: `${fw.dir}/../fw/OVMF_VARS_4M.fd` }), err: /template path .* must not contain/ },
  { name: 'template = the fake /etc/shadow', op: 'prepare', expect: 'refused', stdin: (c) => c.xml({ template: shadow }), err: /not one OVMF build|cannot form a flash/ },
  { name: 'template of the wrong size (2M VARS with 4M CODE)', op: 'prepare', expect: 'refused', stdin: (c) => c.xml({ template: path.join(c.h.dir, 'VARS_2M.fd') }), setup: (c) => writeFileSync(path.join(c.h.dir, 'VARS_2M.fd'), pattern(131_072, 'vars-2m')), err: /not one OVMF build/ },

  // --- files planted in the nvram directory (writable by libvirt-qemu)
  ...(['prepare', 'release'] as const).flatMap((op): Row[] => [
    { name: `${op}: NVRAM is a symlink to the fake /etc/shadow`, op, expect: 'refused', setup: (c) => symlinkSync(shadow, c.nvram), err: /symlink/ },
    { name: `${op}: NVRAM is a symlink to another VM's NVRAM`, op, expect: 'refused', setup: (c) => symlinkSync(c.other, c.nvram), err: /symlink/ },
    { name: `${op}: NVRAM is a hard link to another VM's NVRAM`, op, expect: 'refused', setup: (c) => linkSync(c.other, c.nvram), err: /hard links/ },
    { name: `${op}: NVRAM is a FIFO (must not block)`, op, expect: 'refused', setup: (c) => void spawnSync('mkfifo', [c.nvram]), err: /not a regular file/ },
    { name: `${op}: NVRAM is a directory`, op, expect: 'refused', setup: (c) => mkdirSync(c.nvram), err: /not a regular file/ },
  ]),
  { name: 'NVRAM larger than 64 MiB (sparse)', op: 'prepare', expect: 'refused', setup: (c) => void spawnSync('truncate', ['-s', '65M', c.nvram]), err: /more than the/ },

  // --- configuration
  { name: 'config is not JSON', op: 'prepare', expect: 'refused', config: '{"archiveDir": ', err: /invalid JSON/ },
  { name: 'config is not JSON at release', op: 'release', expect: 'refused', config: '{"archiveDir": ' },
  { name: 'config has an unknown key', op: 'prepare', expect: 'refused', config: { archiveDri: '/tmp/x' }, err: /unknown key "archiveDri"/ },
  { name: 'config has an unknown key at release', op: 'release', expect: 'refused', config: { archiveDri: '/tmp/x' } },
  { name: 'config archiveDir with ".."', op: 'prepare', expect: 'refused', config: { archiveDir: '/var/lib/../../tmp/x' }, err: /archiveDir/ },
  // a broken config file: a UEFI start is refused naming the file (the archive location is
  // unknown), a BIOS domain starts, a release archives nothing and exits 0 — and nothing hangs
  ...BROKEN_CONFIGS.flatMap(([what, make]): Row[] => [
    { name: `config is ${what}: UEFI start refused`, op: 'prepare', expect: 'refused', setup: (c) => make(c.h.configPath), journalOnly: true, err: /start refused, the NVRAM archive location is unknown: .*config\.json/ },
    { name: `config is ${what}: a BIOS start goes ahead`, op: 'prepare', expect: 'ignored', stdin: (c) => c.xml({ firmware: 'bios' }), setup: (c) => make(c.h.configPath), journalOnly: true },
    { name: `config is ${what}: release archives nothing`, op: 'release', expect: 'refused', setup: (c) => { writeFileSync(c.nvram, pattern(VARS_SIZE, 'guest')); make(c.h.configPath); }, journalOnly: true },
  ]),
  {
    name: 'config with a UTF-8 BOM: accepted',
    op: 'prepare',
    expect: 'works',
    setup: (c) => writeFileSync(c.h.configPath, `\uFEFF${readFileSync(c.h.configPath, 'utf8')}`),
    writes: (c) => [path.relative(c.h.dir, c.nvram)],
  },
  {
    name: 'logFile is a symlink to the fake /etc/shadow: the start works, the shadow is untouched',
    op: 'prepare',
    expect: 'works',
    config: { logFile: '/LOGLINK' },
    setup: (c) => {
      const link = path.join(c.h.dir, 'evil.log');
      symlinkSync(shadow, link);
      c.h.setConfig({ logFile: link });
    },
    writes: (c) => [path.relative(c.h.dir, c.nvram)],
  },

  // --- long names: libvirt takes up to 247 bytes (<name>_VARS.fd must fit in 255)
  ...([LONGEST, 'b'.repeat(230)] as const).map((name): Row => ({
    name: `a ${Buffer.byteLength(name)}-byte name: prepare provisions`,
    op: 'prepare',
    expect: 'works',
    argv: () => [name, 'prepare', 'begin', '-'],
    stdin: (c) => c.xml({ name, nvram: c.h.nvramPath(name) }),
    writes: (c) => [path.relative(c.h.dir, c.h.nvramPath(name))],
  })),
  {
    name: `a ${Buffer.byteLength(LONGEST)}-byte name: release archives`,
    op: 'release',
    expect: 'works',
    argv: () => [LONGEST, 'release', 'end', 'shutdown'],
    stdin: (c) => c.xml({ name: LONGEST, nvram: c.h.nvramPath(LONGEST) }),
    setup: (c) => writeFileSync(c.h.nvramPath(LONGEST), pattern(VARS_SIZE, 'guest')),
  },
  { name: 'a 248-byte UEFI name: too long for an NVRAM file name', op: 'prepare', expect: 'refused', argv: () => [`${LONGEST}x`, 'prepare', 'begin', '-'], stdin: (c) => c.xml({ name: `${LONGEST}x`, nvram: `${c.h.nvramDir}/${LONGEST}x_VARS.fd` }), err: /too long for an NVRAM file name/ },
  { name: 'a 250-byte BIOS name: starts', op: 'prepare', expect: 'ignored', argv: () => ['c'.repeat(250), 'prepare', 'begin', '-'], stdin: (c) => c.xml({ name: 'c'.repeat(250), firmware: 'bios' }) },
];

const lines = (s: string) => s.split('\n').filter((l) => l !== '');

describe(`hostile input matrix through the real hook (${ROWS.length} cases): right exit, one stderr line, nothing else touched`, () => {
  // independent rows (each has its own host tree): run a few at once, the hook spends time waiting
  it.concurrent.each(ROWS)('$op: $name → $expect', async (row) => {
    const h = makeHost(tmp.root, { firmware: fw });
    if (typeof row.config === 'string') h.setConfigText(row.config);
    else if (row.config) h.setConfig(row.config);
    const c: Ctx = {
      h,
      nvram: h.nvramPath(VM),
      other: h.nvramPath('vm2'),
      xml: (spec = {}) => domainXml({ name: VM, firmware: 'ovmf', nvram: h.nvramPath(VM), ...spec }, fw),
    };
    writeFileSync(c.other, pattern(VARS_SIZE, 'other VM'));
    row.setup?.(c);
    const argv = row.argv?.(c) ?? [VM, row.op, SUBOP[row.op], '-'];
    const stdin = row.stdin?.(c) ?? c.xml();
    const before = { host: snapshot(h.dir), shared: snapshot(shared) };

    const r = await h.run(argv, stdin, { killAfterMs: 15_000 });

    expect(r.killed, 'finished by itself').toBe(false);
    expect(r.signal).toBeNull();
    const refuse = row.expect === 'refused' && FAILS_CLOSED.has(row.op);
    if (refuse) {
      expect(r.code, r.stderr).not.toBe(0);
      expect(lines(r.stderr), 'exactly one stderr line').toHaveLength(1);
      expect(r.stderr).toMatch(/^ovmf-hook: [^\n]+\n$/);
      if (row.err) expect(r.stderr).toMatch(row.err);
    } else {
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr).toBe('');
    }
    expect(r.stdout, 'no XML printed').toBe('');

    // The filesystem: the shared tree (firmware, fake shadow) is untouched; in the host tree only
    // the log, the archive and state (when the row works) and the row's own files may change.
    expect(diffSnapshots(before.shared, snapshot(shared))).toEqual({ added: [], removed: [], changed: [] });
    const diff = diffSnapshots(before.host, snapshot(h.dir));
    const after = snapshot(h.dir);
    const works = row.expect === 'works';
    const allowed = (p: string) =>
      p === 'hook.log' ||
      row.writes?.(c).includes(p) ||
      (works && (p === 'archive' || p.startsWith('archive/') || p === 'state' || p.startsWith('state/'))) ||
      // a refused prepare may leave empty archive directories behind (its claim is given back)
      ((p === 'archive' || p.startsWith('archive/')) && after.get(p)?.type === 'dir') ||
      // ... and records the refused start in the root-only per-host state (for the release that follows)
      (row.op === 'prepare' && (p === 'state' || p.startsWith('state/')));
    const dirMtimeOnly = (p: string) => before.host.get(p)?.type === 'dir' && allowed(p);
    expect(diff.added.filter((p) => !allowed(p)), 'files created').toEqual([]);
    expect(diff.removed, 'files removed').toEqual([]);
    expect(diff.changed.filter((p) => !allowed(p) && !dirMtimeOnly(p) && !(works && p === 'nvram')), 'files modified').toEqual([]);
    expect(after.get('nvram/vm2_VARS.fd')?.content, "the other VM's NVRAM").toBe(sha256(pattern(VARS_SIZE, 'other VM')));
    const archived = checkArchive(h.archiveDir, DEFAULT_UUID);
    expect(archived.generations.map((g) => g.sha256), 'neither the shadow nor the other VM was archived').not.toContain(sha256(Buffer.from(SHADOW)));
    expect(archived.generations.map((g) => g.sha256)).not.toContain(sha256(pattern(VARS_SIZE, 'other VM')));

    if (works) {
      const name = argv[0];
      if (row.op === 'prepare') expect(after.get(path.relative(h.dir, h.nvramPath(name)))?.content).toBe(sha256(pattern(VARS_SIZE, 'vars')));
      if (row.op === 'release') expect(archived.generations.map((g) => g.sha256)).toEqual([sha256(pattern(VARS_SIZE, 'guest'))]);
    }
    if (row.expect === 'refused' && !FAILS_CLOSED.has(row.op) && !row.config && !row.argv && !row.journalOnly) {
      expect(h.log(), 'a never-fail op logs why it did nothing').toMatch(/(warning|err): /);
    }
  });

  it.concurrent('stdin never closed: the hook ends itself on its watchdog (hookTimeoutSeconds: 2) — prepare refuses with one line, release exits 0', async () => {
    const rows = (['prepare', 'release'] as const).map(async (op) => {
      const h = makeHost(tmp.root, { firmware: fw, config: { hookTimeoutSeconds: 2, archiveUnavailable: 'allow' } });
      const before = snapshot(h.dir);
      const r = await h.run([VM, op, SUBOP[op], '-'], { keepOpen: true }, { killAfterMs: 10_000 });
      return { op, h, r, before };
    });
    for (const { op, h, r, before } of await Promise.all(rows)) {
      expect(r.killed, `${op}: ended by its own watchdog, not by the test`).toBe(false);
      expect(r.exitMs).toBeGreaterThan(1_900);
      expect(r.exitMs).toBeLessThan(5_000);
      if (op === 'prepare') {
        expect(r.code).toBe(1);
        expect(lines(r.stderr)).toHaveLength(1);
        expect(r.stderr).toMatch(/did not finish within 2 s \(stdin was not closed\)/);
      } else {
        expect(r.code).toBe(0);
        expect(r.stderr).toBe('');
      }
      expect(h.log()).toMatch(/did not finish within 2 s/);
      expect(diffSnapshots(before, snapshot(h.dir)).added.filter((p) => p !== 'hook.log')).toEqual([]);
      console.info(`[watchdog] ${op} with stdin never closed: exit ${r.code} after ${Math.round(r.exitMs)} ms (hookTimeoutSeconds 2)`);
    }
  });
});
