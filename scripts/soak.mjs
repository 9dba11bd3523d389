#!/usr/bin/env node
// Soak test in the real libvirtd: install the hook with install.sh (from the existing dist/), then
// run N cycles of `virsh start` → "BdsDxe" on the serial console → `virsh destroy` of one real
// OVMF domain (TCG, q35, no disk). After every cycle the archive is checked from disk:
//   - every generation verifies (size + sha256 of its data = its metadata);
//   - the newest generation equals the local NVRAM byte for byte (sha256);
//   - a new generation appeared iff the boot changed the varstore (measured per cycle);
//   - no temp files or half-written generations, no "ARCHIVE FAILED" in the hook log.
// Prints one line per cycle and a summary line; `--json` adds the summary as the last stdout line.
//
//   sudo node scripts/soak.mjs [--cycles N (default 100)] [--json]
//
// Host isolation: everything install.sh touches is saved under the guard directory shared with
// test/hook/hook.libvirt.test.ts (a mkdir lock; a crashed owner's saved state is put back by the
// next taker) and restored at the end; the test config leaves VMs of other sessions alone
// (`policy: {uefi: no, archive: no}`), the soak VM opts in through its metadata.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CONF_DIR, exists, NVRAM_DIR, restoreFromGuard, STATE_LIB, takeGuard, testInstallConfig } from './host-guard.mjs';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const URI = 'qemu:///system';
const OVMF_CODE = '/usr/share/OVMF/OVMF_CODE_4M.fd';
const OVMF_VARS = '/usr/share/OVMF/OVMF_VARS_4M.fd';
const BOOT_TIMEOUT_MS = 60_000;

// ------------------------------------------------------------------------------------------
// small helpers

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : dflt;
};
const CYCLES = Number(opt('--cycles', '100'));
const JSON_OUT = args.includes('--json');
if (!Number.isInteger(CYCLES) || CYCLES < 1) die(`--cycles must be a whole number ≥ 1, got ${opt('--cycles')}`);

function die(msg) {
  console.error(`soak: ${msg}`);
  process.exit(2);
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const sha256 = (b) => createHash('sha256').update(b).digest('hex');
const sec = (ms) => (ms / 1000).toFixed(2);

function run(cmd, argv, { timeoutSec = 120, allowFail = false } = {}) {
  const r = spawnSync('timeout', [String(timeoutSec), cmd, ...argv], { encoding: 'utf8', cwd: ROOT });
  const out = `${r.stdout ?? ''}${r.stderr ?? ''}`.trim();
  if (r.status !== 0 && !allowFail) throw new Error(`${cmd} ${argv.join(' ')}: exit ${r.status}: ${out}`);
  return { code: r.status ?? 128, out, stdout: r.stdout ?? '' };
}
const virsh = (argv, o = {}) => run('virsh', ['-c', URI, ...argv], { timeoutSec: 60, ...o });
const reloadLibvirt = () => run('bash', [join(ROOT, 'scripts/libvirt-reload.sh')], { timeoutSec: 90 });

// ------------------------------------------------------------------------------------------
// guard: lock + crash-safe backup of the host's install (same protocol as hook.libvirt.test.ts)

// ------------------------------------------------------------------------------------------
// the archive, read from disk (trusting nothing of the hook)

function archiveState(archiveDir, uuid) {
  const dir = join(archiveDir, uuid);
  if (!existsSync(dir)) return { generations: [], bad: [], debris: [] };
  const names = readdirSync(dir);
  const generations = [];
  const bad = [];
  for (const n of names) {
    const m = /^gen-(\d+)\.json$/.exec(n);
    if (!m) continue;
    try {
      const meta = JSON.parse(readFileSync(join(dir, n), 'utf8'));
      const data = readFileSync(join(dir, `gen-${m[1]}.fd`));
      if (data.length !== meta.size || sha256(data) !== meta.sha256) bad.push(n);
      else generations.push({ generation: meta.generation, sha256: meta.sha256, kind: meta.kind });
    } catch (e) {
      bad.push(`${n}: ${e.message}`);
    }
  }
  const debris = names.filter((n) => n.includes('.ovmf-hook-tmp-') || n.startsWith('claim.released-') || (/^gen-\d+\.fd$/.test(n) && !names.includes(n.replace('.fd', '.json'))));
  generations.sort((a, b) => a.generation - b.generation);
  return { generations, bad, debris };
}

// ------------------------------------------------------------------------------------------
// the soak

const xmlEscape = (s) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const domainXml = (name, serial) => `<domain type='qemu'>
  <name>${name}</name>
  <metadata>
    <ovmf:policy xmlns:ovmf="urn:ovmf-hook:policy:1" archive="yes"/>
  </metadata>
  <memory unit='MiB'>256</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
    <loader readonly='yes' type='pflash'>${OVMF_CODE}</loader>
    <nvram template='${OVMF_VARS}'/>
    <boot dev='hd'/>
  </os>
  <features><acpi/><apic/></features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <serial type='file'>
      <source path='${xmlEscape(serial)}'/>
      <target port='0'/>
    </serial>
    <memballoon model='none'/>
  </devices>
</domain>
`;

async function waitFor(pred, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = pred();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(100);
  }
}

const quantile = (xs, q) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor(q * s.length))] : NaN;
};

async function main() {
  if (process.geteuid?.() !== 0) die('run as root (it installs the hook into /etc/libvirt/hooks)');
  if (virsh(['version'], { allowFail: true, timeoutSec: 10 }).code !== 0) die(`libvirtd does not answer on ${URI}; run scripts/ci-setup.sh`);
  for (const f of [OVMF_CODE, OVMF_VARS]) if (!existsSync(f)) die(`${f} is missing; install the ovmf package`);
  if (!existsSync(join(ROOT, 'dist/hooks/qemu'))) run('npm', ['run', '--silent', 'build']);

  const name = `ovmfhook-t-soak-${Math.random().toString(16).slice(2, 10)}`;
  const tmp = mkdtempSync(join(tmpdir(), 'ovmfhook-soak-'));
  chmodSync(tmp, 0o755); // QEMU (libvirt-qemu) writes the serial log here
  const serial = join(tmp, 'serial.log');
  const config = { ...testInstallConfig(tmp), keepGenerations: 10 };
  const { archiveDir, logFile } = config;
  const nvram = join(NVRAM_DIR, `${name}_VARS.fd`);
  const cycles = [];
  let guarded = false;
  let defined = false;
  let fatal;
  try {
    await takeGuard({ label: 'soak', waitMs: 600_000, onRecovered: reloadLibvirt });
    guarded = true;
    mkdirSync(CONF_DIR, { recursive: true });
    rmSync(join(CONF_DIR, 'installs', 'etc-libvirt-hooks'), { force: true }); // install.sh's record of /etc/libvirt/hooks
    writeFileSync(join(CONF_DIR, 'config.json'), JSON.stringify(config, null, 2));
    mkdirSync(archiveDir, { mode: 0o700 });
    run('bash', [join(ROOT, 'install.sh'), '--no-build', '--no-reload']);
    reloadLibvirt();

    writeFileSync(join(tmp, 'domain.xml'), domainXml(name, serial));
    virsh(['define', join(tmp, 'domain.xml')]);
    defined = true;
    const uuid = virsh(['domuuid', name]).stdout.trim();
    const hookLog = () => (existsSync(logFile) ? readFileSync(logFile, 'utf8') : '');
    const ours = () => hookLog().split('\n').filter((l) => l.includes(` ${name}: `));
    const releases = () => ours().filter((l) => l.includes(`${name}: release:`) || l.includes(`${name}: ARCHIVE FAILED`)).length;
    console.log(`soak: ${CYCLES} cycles of start → BdsDxe → destroy of ${name} (uuid ${uuid}); archive ${archiveDir}`);

    let previous = archiveState(archiveDir, uuid);
    for (let i = 1; i <= CYCLES; i++) {
      const c = { cycle: i, ok: false };
      try {
        // another test (outside this guard) may have re-installed the hook with its own config
        const cfg = existsSync(join(CONF_DIR, 'config.json')) ? readFileSync(join(CONF_DIR, 'config.json'), 'utf8') : '';
        if (!cfg.includes(JSON.stringify(archiveDir))) throw new Error(`${CONF_DIR}/config.json was replaced by someone else during the soak`);
        const before = existsSync(nvram) ? sha256(readFileSync(nvram)) : null;
        if (existsSync(serial)) truncateSync(serial, 0);
        const released = releases();
        const logged = ours().length;
        const t0 = performance.now();
        virsh(['start', name]);
        await waitFor(() => existsSync(serial) && readFileSync(serial, 'latin1').includes('BdsDxe'), BOOT_TIMEOUT_MS, 'BdsDxe on the serial console');
        const t1 = performance.now();
        virsh(['destroy', name]);
        await waitFor(() => releases() > released, 30_000, 'the release hook');
        const t2 = performance.now();

        const local = sha256(readFileSync(nvram));
        const now = archiveState(archiveDir, uuid);
        const newest = now.generations.at(-1);
        const prevNewest = previous.generations.at(-1);
        c.bootMs = Math.round(t1 - t0);
        c.stopMs = Math.round(t2 - t1);
        c.totalMs = Math.round(t2 - t0);
        c.changedByBoot = before !== null && local !== before;
        c.archived = newest?.generation !== prevNewest?.generation;
        c.generation = newest?.generation ?? null;
        c.count = now.generations.length;
        const problems = [];
        if (now.bad.length) problems.push(`corrupt generations ${now.bad.join(', ')}`);
        if (now.debris.length) problems.push(`debris ${now.debris.join(', ')}`);
        if (newest?.sha256 !== local) problems.push('newest generation ≠ local NVRAM');
        const expectNew = local !== prevNewest?.sha256;
        if (expectNew && newest?.generation !== (prevNewest?.generation ?? 0) + 1) problems.push(`expected generation ${(prevNewest?.generation ?? 0) + 1}, newest is ${newest?.generation}`);
        if (!expectNew && c.archived) problems.push('a generation was added for unchanged content');
        if (now.generations.length !== Math.min(config.keepGenerations, newest?.generation ?? 0)) problems.push(`${now.generations.length} generations kept, expected ${Math.min(config.keepGenerations, newest?.generation ?? 0)}`);
        const errors = ours().slice(logged).filter((l) => / (err|warning): /.test(l));
        if (errors.length) problems.push(`the hook logged: ${errors.join(' | ')}`);
        c.ok = problems.length === 0;
        if (!c.ok) c.error = problems.join('; ');
        previous = now;
      } catch (e) {
        c.error = e.message.replace(/\s*\n\s*/g, ' / ');
        virsh(['destroy', name], { allowFail: true });
      }
      cycles.push(c);
      console.log(
        `cycle ${String(i).padStart(String(CYCLES).length)}/${CYCLES}: ${c.ok ? 'ok  ' : 'FAIL'} start→BdsDxe ${sec(c.bootMs ?? NaN)} s, destroy→archived ${sec(c.stopMs ?? NaN)} s, ` +
          `cycle ${sec(c.totalMs ?? NaN)} s; varstore ${i === 1 ? 'provisioned' : c.changedByBoot ? 'changed' : 'unchanged'}, generation ${c.generation ?? '-'} (${c.archived ? 'new' : 'same'}), ${c.count ?? '-'} kept${c.error ? `; ${c.error}` : ''}`,
      );
    }
  } catch (e) {
    fatal = e;
  } finally {
    if (defined) {
      virsh(['destroy', name], { allowFail: true });
      virsh(['undefine', '--nvram', name], { allowFail: true });
    }
    if (guarded) {
      try {
        run('bash', [join(ROOT, 'install.sh'), '--uninstall', '--no-reload'], { allowFail: true });
      } finally {
        restoreFromGuard();
        try {
          reloadLibvirt();
        } catch (e) {
          console.error(`soak: ${e.message}`);
        }
      }
    }
    rmSync(tmp, { recursive: true, force: true });
  }
  if (fatal) {
    console.error(`soak: ${fatal.message}`);
    process.exit(1);
  }

  const ok = cycles.filter((c) => c.ok);
  const totals = ok.map((c) => c.totalMs);
  const summary = {
    cycles: cycles.length,
    failures: cycles.length - ok.length,
    changedBoots: cycles.filter((c) => c.changedByBoot).length,
    newGenerations: cycles.filter((c) => c.archived).length,
    newestGeneration: cycles.at(-1)?.generation ?? null,
    cycleMs: { p50: quantile(totals, 0.5), p95: quantile(totals, 0.95), max: Math.max(...totals) },
    bootMs: { p50: quantile(ok.map((c) => c.bootMs), 0.5) },
    stopArchiveMs: { p50: quantile(ok.map((c) => c.stopMs), 0.5), max: Math.max(...ok.map((c) => c.stopMs)) },
  };
  console.log(
    `soak: ${summary.cycles} cycles, ${summary.failures} failures; the boot changed the varstore in ${summary.changedBoots}, ${summary.newGenerations} new generations ` +
      `(newest ${summary.newestGeneration}); archive = local NVRAM after every release; cycle p50 ${sec(summary.cycleMs.p50)} s, p95 ${sec(summary.cycleMs.p95)} s, max ${sec(summary.cycleMs.max)} s; ` +
      `destroy→archived p50 ${sec(summary.stopArchiveMs.p50)} s`,
  );
  if (JSON_OUT) console.log(JSON.stringify(summary));
  process.exit(summary.failures === 0 ? 0 : 1);
}

await main();
