import { describe, expect, it } from 'vitest';
import { soundIch9 } from '../../src/core/rewrite/sound-ich9';
import { domainXml, runRule } from './support';

describe('sound-ich9 (R12)', () => {
  it.each([
    ['ich6 → ich9', "    <sound model='ich6'/>\n", "    <sound model='ich9'/>\n", 1],
    ['ac97 and ich9 untouched', "    <sound model='ac97'/>\n    <sound model='ich9'/>\n", "    <sound model='ac97'/>\n    <sound model='ich9'/>\n", 0],
    ['children kept', "    <sound model='ich6'>\n      <codec type='micro'/>\n    </sound>\n", "    <sound model='ich9'>\n      <codec type='micro'/>\n    </sound>\n", 1],
  ])('%s', (_label, before, after, n) => {
    const r = runRule(soundIch9, domainXml({ devices: before }));
    expect(r.xml).toBe(domainXml({ devices: after }));
    expect(r.changes).toHaveLength(n);
  });

  it('reports the model change', () => {
    expect(runRule(soundIch9, domainXml({ devices: "    <sound model='ich6'/>\n" })).changes).toEqual([
      { rule: 'sound-ich9', path: '/domain/devices/sound/@model', action: 'set', detail: "model 'ich6' → 'ich9'" },
    ]);
  });

  it('leaves a q35 domain alone', () => {
    const input = domainXml({ machine: 'pc-q35-7.2', devices: "    <sound model='ich6'/>\n" });
    expect(runRule(soundIch9, input)).toMatchObject({ applies: false, xml: input });
  });
});
