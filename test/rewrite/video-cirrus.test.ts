import { describe, expect, it } from 'vitest';
import { videoCirrus } from '../../src/core/rewrite/video-cirrus';
import { domainXml, runRule } from './support';

const video = (type: string) => `    <video>\n      <model type='${type}' vram='16384' heads='1' primary='yes'/>\n    </video>\n`;

describe('video-cirrus (R14)', () => {
  it.each([
    ['cirrus → vga, vram/heads kept', video('cirrus'), video('vga'), 1],
    ['qxl, virtio, vga, bochs untouched', video('qxl') + video('virtio') + video('vga') + video('bochs'), video('qxl') + video('virtio') + video('vga') + video('bochs'), 0],
  ])('%s', (_label, before, after, n) => {
    const r = runRule(videoCirrus, domainXml({ devices: before }));
    expect(r.xml).toBe(domainXml({ devices: after }));
    expect(r.changes).toHaveLength(n);
  });

  it('reports the model change', () => {
    expect(runRule(videoCirrus, domainXml({ devices: video('cirrus') })).changes).toEqual([
      { rule: 'video-cirrus', path: '/domain/devices/video/model/@type', action: 'set', detail: "type 'cirrus' → 'vga'" },
    ]);
  });

  it('leaves a q35 domain alone', () => {
    const input = domainXml({ machine: 'q35', devices: video('cirrus') });
    expect(runRule(videoCirrus, input)).toMatchObject({ applies: false, xml: input });
  });
});
