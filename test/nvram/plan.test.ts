import { describe, expect, it } from 'vitest';
import { planPrepare, planRelease, type PrepareInput, type ReleaseInput } from '../../src/core/nvram/plan';
import { ARCHIVED, stateAfter, WRITTEN, type StateUpdate } from '../../src/core/nvram/state-update';
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

/** What a prepare records: the sync point, stamped as this host's start. */
const prepared = (generation: number | null, sha256: string | null | typeof WRITTEN, incoming?: true): StateUpdate => ({
  do: 'record',
  generation,
  sha256,
  ...(incoming ? { incomingMigration: incoming } : {}),
  prepared: true,
});
const REFUSED = undefined; // a refusal records nothing (the executor throws)

const base: PrepareInput = {
  local: null,
  newest: null,
  knownShas: new Set(),
  state: null,
  templateAvailable: true,
  incomingMigration: false,
};

describe('planPrepare', () => {
  const cases: Array<[string, Partial<PrepareInput>, Record<string, unknown>, StateUpdate | undefined]> = [
    ['incoming migration → keep even with a newer archive', { incomingMigration: true, local: local('a'), newest: gen(3, 'b') }, { action: 'keep' }, prepared(3, sha('a'), true)],
    ['local missing, archive has newest → restore', { newest: gen(3, 'b'), knownShas: new Set([sha('b')]) }, { action: 'restore', generation: 3, displaceLocal: false }, prepared(3, sha('b'))],
    ['local missing, archive newest has wrong size → refuse', { newest: gen(3, 'b', 131072), expectedSize: SIZE }, { action: 'refuse' }, REFUSED],
    ['local missing, nothing archived → provision', {}, { action: 'provision', displaceLocal: false }, prepared(null, WRITTEN)],
    ['local missing, nothing archived, no template → keep (libvirt)', { templateAvailable: false }, { action: 'keep' }, prepared(null, null)],
    ['local equals newest → keep', { local: local('b'), newest: gen(3, 'b'), knownShas: new Set([sha('b')]) }, { action: 'keep' }, prepared(3, sha('b'))],
    ['archive empty, local present → keep', { local: local('a') }, { action: 'keep' }, prepared(null, sha('a'))],
    [
      'local is an older archived generation → restore without displace',
      { local: local('a'), newest: gen(3, 'b'), knownShas: new Set([sha('a'), sha('b')]), state: state(1) },
      { action: 'restore', generation: 3, displaceLocal: false },
      prepared(3, sha('b')),
    ],
    [
      'local unknown, synced with newest (failed archive) → keep',
      { local: local('x'), newest: gen(3, 'b'), knownShas: new Set([sha('b')]), state: state(3) },
      { action: 'keep' },
      prepared(3, sha('0')),
    ],
    [
      'local unknown, synced with an older generation → restore + displace',
      { local: local('x'), newest: gen(3, 'b'), knownShas: new Set([sha('b')]), state: state(2) },
      { action: 'restore', generation: 3, displaceLocal: true },
      prepared(3, sha('b')),
    ],
    [
      'local unknown, no state → restore + displace',
      { local: local('x'), newest: gen(3, 'b'), knownShas: new Set([sha('b')]) },
      { action: 'restore', generation: 3, displaceLocal: true },
      prepared(3, sha('b')),
    ],
    [
      'local unknown, newest has wrong size → refuse',
      { local: local('x'), newest: gen(3, 'b', 131072), knownShas: new Set([sha('b')]), expectedSize: SIZE },
      { action: 'refuse' },
      REFUSED,
    ],
    [
      'local wrong size (unknown), archive fine → restore + displace',
      { local: local('x', 131072), newest: gen(3, 'b'), knownShas: new Set([sha('b')]), state: state(3), expectedSize: SIZE },
      { action: 'restore', generation: 3, displaceLocal: true },
      prepared(3, sha('b')),
    ],
    [
      'local wrong size but archived → restore without displace',
      { local: local('a', 131072), newest: gen(3, 'b'), knownShas: new Set([sha('a'), sha('b')]), expectedSize: SIZE },
      { action: 'restore', generation: 3, displaceLocal: false },
      prepared(3, sha('b')),
    ],
    ['local wrong size, no archive → provision + displace', { local: local('x', 131072), expectedSize: SIZE }, { action: 'provision', displaceLocal: true }, prepared(null, WRITTEN)],
    ['local wrong size, no archive, no template → refuse', { local: local('x', 131072), expectedSize: SIZE, templateAvailable: false }, { action: 'refuse' }, REFUSED],
    [
      'local wrong size, newest wrong size too → refuse',
      { local: local('b', 131072), newest: gen(3, 'b', 131072), knownShas: new Set([sha('b')]), expectedSize: SIZE },
      { action: 'refuse' },
      REFUSED,
    ],
  ];
  it.each(cases)('%s', (_name, input, expected, update) => {
    const plan = planPrepare({ ...base, ...input });
    expect(plan).toMatchObject(expected);
    expect(plan.why).toMatch(/\S/);
    expect('state' in plan ? plan.state : undefined).toEqual(update);
  });

  it('a local copy whose archived generation turned out corrupt is kept, recorded as synced with the newest valid one', () => {
    const plan = planPrepare({ ...base, local: local('c'), newest: gen(2, 'b'), knownShas: new Set([sha('b')]), corrupt: [gen(3, 'c')], state: state(3) });
    expect(plan).toMatchObject({ action: 'keep', state: prepared(2, sha('c')) });
  });
});

describe('planRelease', () => {
  const rbase: ReleaseInput = { local: local('a'), newest: gen(3, 'b'), reason: 'shutdown', claimHeldByUs: true };
  const synced = (generation: number, s: string): StateUpdate => ({ do: 'record', generation, sha256: sha(s) });
  const cases: Array<[string, Partial<ReleaseInput>, Record<string, unknown>, StateUpdate]> = [
    ['migrated → skip and forget the sync state', { reason: 'migrated' }, { action: 'skip' }, { do: 'clear' }],
    ['local missing → skip (archives are never deleted)', { local: null }, { action: 'skip' }, { do: 'keep' }],
    [
      'local missing after this host\'s start → skip, the marks of that start go',
      { local: null, state: { ...state(3), claimToken: 't', preparedAt: '2024-01-01T00:00:00.000Z' } },
      { action: 'skip' },
      { do: 'forget', marks: ['claimToken', 'preparedAt'] },
    ],
    ['identical to newest → skip', { local: local('b') }, { action: 'skip' }, synced(3, 'b')],
    ['claim not ours → archive as fenced', { claimHeldByUs: false }, { action: 'archive', kind: 'fenced' }, { do: 'clear' }],
    ['changed, claim ours → archive', {}, { action: 'archive', kind: 'archive' }, { do: 'record', generation: ARCHIVED, sha256: sha('a') }],
    ['changed, no archive yet → archive', { newest: null }, { action: 'archive', kind: 'archive' }, { do: 'record', generation: ARCHIVED, sha256: sha('a') }],
    ["libvirt < 10.5 reason '-' → archive", { reason: '-' }, { action: 'archive', kind: 'archive' }, { do: 'record', generation: ARCHIVED, sha256: sha('a') }],
    [
      'start refused by this host → skip, the refusal mark goes (the claim token stays)',
      { startRefused: true, state: { ...state(3), claimToken: 't', startRefused: '2024-01-01T00:00:00.000Z' } },
      { action: 'skip' },
      { do: 'forget', marks: ['startRefused', 'preparedAt'] },
    ],
  ];
  it.each(cases)('%s', (_name, input, expected, update) => {
    const plan = planRelease({ ...rbase, ...input });
    expect(plan).toMatchObject(expected);
    expect(plan.state).toEqual(update);
  });
});

describe('stateAfter: the state an update leaves', () => {
  const now = new Date('2024-02-02T00:00:00.000Z');
  const T = now.toISOString();
  const previous: LocalState = { ...state(2), claimToken: 'tok', preparedAt: '2024-01-01T00:00:00.000Z', startRefused: '2024-01-01T00:00:00.000Z' };

  it('keep: nothing written; clear: the file removed', () => {
    expect(stateAfter({ do: 'keep' }, { now, previous })).toBeUndefined();
    expect(stateAfter({ do: 'clear' }, { now, previous })).toBeNull();
  });

  it("record: the sync point alone, stamped; a prepare's also with preparedAt and the claim token it took", () => {
    expect(stateAfter({ do: 'record', generation: 3, sha256: sha('b') }, { now, previous, claimToken: 'new' })).toEqual({ generation: 3, sha256: sha('b'), time: T });
    expect(stateAfter(prepared(3, sha('b'), true), { now, previous, claimToken: 'new' })).toEqual({
      generation: 3,
      sha256: sha('b'),
      incomingMigration: true,
      time: T,
      preparedAt: T,
      claimToken: 'new',
    });
    expect(stateAfter(prepared(null, null), { now, previous: null })).toEqual({ generation: null, sha256: null, time: T, preparedAt: T });
  });

  it('record: ARCHIVED and WRITTEN are the facts the execution gives; a missing one is an error', () => {
    expect(stateAfter({ do: 'record', generation: ARCHIVED, sha256: sha('a') }, { now, previous, archived: 7 })).toMatchObject({ generation: 7, sha256: sha('a') });
    expect(stateAfter(prepared(null, WRITTEN), { now, previous, written: sha('t') })).toMatchObject({ generation: null, sha256: sha('t') });
    expect(() => stateAfter({ do: 'record', generation: ARCHIVED, sha256: sha('a') }, { now, previous })).toThrow(/archived/);
    expect(() => stateAfter(prepared(null, WRITTEN), { now, previous })).toThrow(/written/);
  });

  it('forget: the previous state without those marks; nothing written when it has none of them', () => {
    expect(stateAfter({ do: 'forget', marks: ['startRefused', 'preparedAt'] }, { now, previous })).toEqual({ ...state(2), claimToken: 'tok' });
    expect(stateAfter({ do: 'forget', marks: ['incomingMigration'] }, { now, previous })).toBeUndefined();
    expect(stateAfter({ do: 'forget', marks: ['claimToken'] }, { now, previous: null })).toBeUndefined();
  });
});
