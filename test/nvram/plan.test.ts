import { describe, expect, it } from 'vitest';
import { planPrepare, planRelease, type PrepareInput, type ReleaseInput } from '../../src/core/nvram/plan';
import type { GenerationMeta, LocalState } from '../../src/core/nvram/types';

const SIZE = 540672;
const sha = (c: string): string => c.repeat(64);
const gen = (generation: number, s: string, size = SIZE): GenerationMeta => ({
  generation,
  sha256: sha(s),
  size,
  host: 'h1',
  hostId: 'id1',
  time: '2024-01-01T00:00:00.000Z',
  reason: 'release',
  kind: 'archive',
  vmName: 'vm',
});
const local = (s: string, size = SIZE) => ({ sha256: sha(s), size });
const state = (generation: number | null): LocalState => ({ generation, sha256: sha('0'), time: '2024-01-01T00:00:00.000Z' });

const base: PrepareInput = {
  local: null,
  newest: null,
  knownShas: new Set(),
  state: null,
  templateAvailable: true,
  incomingMigration: false,
};

describe('planPrepare', () => {
  const cases: Array<[string, Partial<PrepareInput>, Record<string, unknown>]> = [
    ['incoming migration → keep even with a newer archive', { incomingMigration: true, local: local('a'), newest: gen(3, 'b') }, { action: 'keep' }],
    ['local missing, archive has newest → restore', { newest: gen(3, 'b'), knownShas: new Set([sha('b')]) }, { action: 'restore', generation: 3, displaceLocal: false }],
    ['local missing, archive newest has wrong size → refuse', { newest: gen(3, 'b', 131072), expectedSize: SIZE }, { action: 'refuse' }],
    ['local missing, nothing archived → provision', {}, { action: 'provision', displaceLocal: false }],
    ['local missing, nothing archived, no template → keep (libvirt)', { templateAvailable: false }, { action: 'keep' }],
    ['local equals newest → keep', { local: local('b'), newest: gen(3, 'b'), knownShas: new Set([sha('b')]) }, { action: 'keep' }],
    ['archive empty, local present → keep', { local: local('a') }, { action: 'keep' }],
    [
      'local is an older archived generation → restore without displace',
      { local: local('a'), newest: gen(3, 'b'), knownShas: new Set([sha('a'), sha('b')]), state: state(1) },
      { action: 'restore', generation: 3, displaceLocal: false },
    ],
    [
      'local unknown, synced with newest (failed archive) → keep',
      { local: local('x'), newest: gen(3, 'b'), knownShas: new Set([sha('b')]), state: state(3) },
      { action: 'keep' },
    ],
    [
      'local unknown, synced with an older generation → restore + displace',
      { local: local('x'), newest: gen(3, 'b'), knownShas: new Set([sha('b')]), state: state(2) },
      { action: 'restore', generation: 3, displaceLocal: true },
    ],
    [
      'local unknown, no state → restore + displace',
      { local: local('x'), newest: gen(3, 'b'), knownShas: new Set([sha('b')]) },
      { action: 'restore', generation: 3, displaceLocal: true },
    ],
    [
      'local unknown, newest has wrong size → refuse',
      { local: local('x'), newest: gen(3, 'b', 131072), knownShas: new Set([sha('b')]), expectedSize: SIZE },
      { action: 'refuse' },
    ],
    [
      'local wrong size (unknown), archive fine → restore + displace',
      { local: local('x', 131072), newest: gen(3, 'b'), knownShas: new Set([sha('b')]), state: state(3), expectedSize: SIZE },
      { action: 'restore', generation: 3, displaceLocal: true },
    ],
    [
      'local wrong size but archived → restore without displace',
      { local: local('a', 131072), newest: gen(3, 'b'), knownShas: new Set([sha('a'), sha('b')]), expectedSize: SIZE },
      { action: 'restore', generation: 3, displaceLocal: false },
    ],
    ['local wrong size, no archive → provision + displace', { local: local('x', 131072), expectedSize: SIZE }, { action: 'provision', displaceLocal: true }],
    ['local wrong size, no archive, no template → refuse', { local: local('x', 131072), expectedSize: SIZE, templateAvailable: false }, { action: 'refuse' }],
    [
      'local wrong size, newest wrong size too → refuse',
      { local: local('b', 131072), newest: gen(3, 'b', 131072), knownShas: new Set([sha('b')]), expectedSize: SIZE },
      { action: 'refuse' },
    ],
  ];
  it.each(cases)('%s', (_name, input, expected) => {
    const plan = planPrepare({ ...base, ...input });
    expect(plan).toMatchObject(expected);
    expect(plan.why).toMatch(/\S/);
  });
});

describe('planRelease', () => {
  const rbase: ReleaseInput = { local: local('a'), newest: gen(3, 'b'), reason: 'shutdown', claimHeldByUs: true };
  const cases: Array<[string, Partial<ReleaseInput>, Record<string, unknown>]> = [
    ['migrated → skip and forget the sync state', { reason: 'migrated' }, { action: 'skip', forgetState: true }],
    ['local missing → skip (archives are never deleted)', { local: null }, { action: 'skip' }],
    ['identical to newest → skip', { local: local('b') }, { action: 'skip' }],
    ['claim not ours → archive as fenced', { claimHeldByUs: false }, { action: 'archive', kind: 'fenced' }],
    ['changed, claim ours → archive', {}, { action: 'archive', kind: 'archive' }],
    ['changed, no archive yet → archive', { newest: null }, { action: 'archive', kind: 'archive' }],
    ["libvirt < 10.5 reason '-' → archive", { reason: '-' }, { action: 'archive', kind: 'archive' }],
  ];
  it.each(cases)('%s', (_name, input, expected) => {
    expect(planRelease({ ...rbase, ...input })).toMatchObject(expected);
  });
});
