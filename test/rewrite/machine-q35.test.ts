import { describe, expect, it } from 'vitest';
import { machineQ35 } from '../../src/core/rewrite/machine-q35';
import { domainXml, runRule } from './support';

describe('machine-q35 (R6)', () => {
  it.each([
    ['pc-i440fx-7.2', "<type arch='x86_64' machine='q35'>hvm</type>"],
    ['pc', "<type arch='x86_64' machine='q35'>hvm</type>"],
    ['pc-0.11', "<type arch='x86_64' machine='q35'>hvm</type>"],
    ['ubuntu', "<type arch='x86_64' machine='q35'>hvm</type>"],
    ['pc-i440fx-jammy', "<type arch='x86_64' machine='q35'>hvm</type>"],
    [null, "<type arch='x86_64' machine='q35'>hvm</type>"], // unset: QEMU's default is i440fx
  ])('sets machine %s to the q35 alias, nothing else', (machine, typeLine) => {
    const input = domainXml({ machine });
    const r = runRule(machineQ35, input);
    expect(r.xml).toBe(input.replace(/<type [^\n]*<\/type>/, typeLine));
    expect(r.changes).toEqual([
      { rule: 'machine-q35', path: '/domain/os/type/@machine', action: 'set', detail: `machine ${machine ? `'${machine}'` : '(none)'} → 'q35'` },
    ]);
  });

  it.each([
    ['q35 alias', { machine: 'q35' }],
    ['versioned q35', { machine: 'pc-q35-7.2' }],
    ['Ubuntu q35', { machine: 'ubuntu-q35' }],
    ['aarch64 virt', { arch: 'aarch64', machine: 'virt' }],
    ['xen', { type: 'xen', machine: 'xenfv' }],
  ])('leaves %s alone', (_label, p) => {
    const input = domainXml(p);
    const r = runRule(machineQ35, input);
    expect(r.applies).toBe(false);
    expect(r.xml).toBe(input);
    expect(r.warning).toBeUndefined();
  });

  it.each(['microvm', 'isapc'])('warns about machine %s and leaves it', (machine) => {
    const input = domainXml({ machine });
    const r = runRule(machineQ35, input);
    expect(r.applies).toBe(false);
    expect(r.xml).toBe(input);
    expect(r.warning).toBe(`vm1: machine '${machine}' is neither i440fx nor q35; chipset and firmware are left as they are`);
  });
});
