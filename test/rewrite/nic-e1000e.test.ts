import { describe, expect, it } from 'vitest';
import { nicE1000e } from '../../src/rewrite/nic-e1000e';
import { domainXml, runRule } from './support';

const nic = (model: string, mac = '52:54:00:0f:00:01') => `    <interface type='network'>\n      <mac address='${mac}'/>\n      <source network='default'/>\n      <model type='${model}'/>\n    </interface>\n`;

describe('nic-e1000e (R11)', () => {
  it.each([
    ['e1000 → e1000e, MAC kept', nic('e1000'), nic('e1000e'), 1],
    ['virtio and rtl8139 untouched', nic('virtio') + nic('rtl8139', '52:54:00:0f:00:02'), nic('virtio') + nic('rtl8139', '52:54:00:0f:00:02'), 0],
    ['every e1000', nic('e1000') + nic('e1000', '52:54:00:0f:00:02'), nic('e1000e') + nic('e1000e', '52:54:00:0f:00:02'), 2],
  ])('%s', (_label, before, after, n) => {
    const r = runRule(nicE1000e, domainXml({ devices: before }));
    expect(r.xml).toBe(domainXml({ devices: after }));
    expect(r.changes).toHaveLength(n);
  });

  it('reports the model change', () => {
    expect(runRule(nicE1000e, domainXml({ devices: nic('e1000') })).changes).toEqual([
      { rule: 'nic-e1000e', path: '/domain/devices/interface/model/@type', action: 'set', detail: "type 'e1000' → 'e1000e'" },
    ]);
  });

  it('leaves a q35 domain alone', () => {
    const input = domainXml({ machine: 'q35', devices: nic('e1000') });
    expect(runRule(nicE1000e, input)).toMatchObject({ applies: false, xml: input });
  });
});
