/**
 * The soak script (`scripts/soak.mjs`, `npm run soak` runs 100 cycles) with a small count in CI:
 * the hook installed by install.sh into the real libvirtd, cycles of start → BdsDxe → destroy of
 * one OVMF domain, the archive checked from disk after every release.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { beforeAll, expect, it } from 'vitest';
import { ensureBuilt, ROOT } from '../hook/harness';
import { describeLibvirt } from '../support/libvirt';

const CYCLES = 5;

describeLibvirt('soak in the real libvirtd', () => {
  beforeAll(() => ensureBuilt(), 120_000);

  it(`${CYCLES} start → BdsDxe → destroy cycles: 0 failures, a new verified generation whenever the varstore changed, archive = local after every release`, () => {
    const r = spawnSync('timeout', ['600', 'node', join(ROOT, 'scripts/soak.mjs'), '--cycles', String(CYCLES), '--json'], { encoding: 'utf8' });
    const out = r.stdout ?? '';
    console.info(out.trim());
    expect(r.status, `${out}\n${r.stderr}`).toBe(0);
    const summary = JSON.parse(out.trim().split('\n').at(-1)!);
    expect(summary).toMatchObject({ cycles: CYCLES, failures: 0 });
    // cycle 1 archives the provisioned + booted varstore; later ones when the boot changed it
    expect(summary.newGenerations).toBe(1 + summary.changedBoots);
    expect(summary.newestGeneration).toBe(summary.newGenerations);
    expect(out.match(/^cycle +\d+\/\d+: ok /gm)).toHaveLength(CYCLES);
  }, 600_000);
});
