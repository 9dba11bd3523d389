/**
 * `npm run bench` works: a --quick run (few runs, small generated inputs, no libvirt) measures
 * every row without a failing command and reports numbers and goals. No timing is asserted:
 * timings belong in the bench's own output, not in a test that could flake.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ensureBuilt } from '../hook/harness';

const ROOT = join(__dirname, '..', '..');

interface Row {
  id: string;
  label: string;
  runs: number;
  medianMs: number | null;
  p90Ms: number | null;
  ratioToFloor: number | null;
  peakRssKiB: number | null;
  failed?: string;
}

describe('npm run bench --quick', () => {
  it('measures every row and prints one JSON report', () => {
    // built once for all test files (ensureBuilt), so --no-build: a build here would race the others
    ensureBuilt();
    const r = spawnSync(process.execPath, [join(ROOT, 'scripts/bench.mjs'), '--quick', '--json', '--no-build', '--no-libvirt', '--runs', '2'], {
      cwd: ROOT,
      encoding: 'utf8',
      timeout: 240_000,
    });
    expect(r.status, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout) as {
      machine: { cpu: string; cores: number; node: string };
      rows: Row[];
      rewrite: { devices: number; medianMs: number; usPerDevice: number; changes: number }[];
      certs: { vms: number; runs: number; medianMs: number; msPerVm: number }[];
      goals: { id: string; value: number; pass: boolean }[];
      bounds: { id: string; boundMs: number; boundToFloor: number; hookToBound: number; goalReachable: boolean }[];
      failures: string[];
    };
    expect(report.failures).toEqual([]);
    expect(report.machine.node).toMatch(/^v\d+\./);
    expect(report.machine.cores).toBeGreaterThan(0);
    expect(report.rows.map((x) => x.id)).toEqual(['floor', 'sh', 'started', 'prepare', 'prepareLarge', 'release', 'migrate', 'boundPrepare', 'boundRelease', 'boundMigrate']);
    for (const row of report.rows) {
      expect(row.failed, row.label).toBeUndefined();
      expect(row.runs, row.label).toBe(2);
      expect(row.medianMs, row.label).toBeGreaterThan(0);
      expect(row.p90Ms!, row.label).toBeGreaterThanOrEqual(row.medianMs!);
    }
    expect(report.rows[0].ratioToFloor).toBe(1);
    expect(report.rewrite.map((x) => x.devices)).toEqual([100, 1000]);
    for (const rw of report.rewrite) expect(rw.changes).toBeGreaterThan(rw.devices / 2); // it really converted
    // the fleet rows (nvram certs --all over generated VMs) need Debian's OVMF_VARS_4M.ms.fd
    const fleet = existsSync('/usr/share/OVMF/OVMF_VARS_4M.ms.fd');
    expect(report.goals.map((g) => g.id)).toEqual([
      'started',
      'prepare',
      'release',
      'migrate',
      'archiveScale',
      'rewriteSmall',
      'rewriteLinear',
      ...(fleet ? ['certsTotal', 'certsFlat'] : []),
    ]);
    expect(report.certs.map((x) => x.vms)).toEqual(fleet ? [20, 200] : []);
    for (const c of report.certs) {
      expect(c.runs).toBe(2);
      expect(c.medianMs).toBeGreaterThan(0);
      expect(c.msPerVm).toBeCloseTo(c.medianMs / c.vms, 2);
    }
    // each latency goal next to its lower bound (the same I/O without the hook), measured in the same run
    expect(report.bounds.map((b) => b.id)).toEqual(['prepare', 'release', 'migrate']);
    for (const b of report.bounds) {
      expect(b.boundMs, b.id).toBeGreaterThan(0);
      expect(b.boundToFloor, b.id).toBeCloseTo(b.boundMs / report.rows[0].medianMs!, 2);
      expect(typeof b.goalReachable, b.id).toBe('boolean');
    }
  }, 240_000);

  it('rejects an unknown option with exit 2', () => {
    const r = spawnSync(process.execPath, [join(ROOT, 'scripts/bench.mjs'), '--frobnicate'], { cwd: ROOT, encoding: 'utf8' });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/unknown argument --frobnicate/);
  });
});
