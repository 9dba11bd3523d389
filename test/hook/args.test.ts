import { describe, expect, it } from 'vitest';
import { checkVmName, FILTER_OPS, HANDLED, NEVER_FAIL, parseHookArgs } from '../../src/hook/args';
import { UsageError } from '../../src/core/errors';

describe('parseHookArgs', () => {
  it.each([
    [['vm', 'prepare', 'begin', '-'], { vm: 'vm', op: 'prepare', subop: 'begin', extra: '-' }],
    [['vm', 'release', 'end', 'destroyed'], { vm: 'vm', op: 'release', subop: 'end', extra: 'destroyed' }],
    [['vm', 'release', 'end', 'from snapshot'], { vm: 'vm', op: 'release', subop: 'end', extra: 'from snapshot' }],
    [['vm', 'start', 'begin'], { vm: 'vm', op: 'start', subop: 'begin', extra: '-' }],
  ])('%j', (argv, want) => {
    expect(parseHookArgs(argv)).toEqual(want);
  });

  it.each([[[]], [['vm']], [['vm', 'prepare']], [['vm', 'prepare', 'begin', '-', 'more']]])('%j is a usage error', (argv) => {
    expect(() => parseHookArgs(argv)).toThrow(UsageError);
    expect(() => parseHookArgs(argv)).toThrow(`got ${argv.length}`);
  });
});

describe('checkVmName', () => {
  // libvirt takes names up to 247 bytes (the longest whose <name>_VARS.fd fits NAME_MAX)
  it.each(['vm1', 'win11-pro', "it's a vm", 'ünïcode', 'a.b', '...', '-x', 'x'.repeat(201), 'x'.repeat(247)])('accepts %j', (name) => {
    expect(checkVmName(name)).toBe(name);
  });
  it.each(['', '.', '..', 'a/b', '/', 'a\nb', 'a\u0000b', 'tab\there', 'del\u007f'])('refuses %j', (name) => {
    expect(() => checkVmName(name)).toThrow(UsageError);
  });
  it.each([
    ['', /it is empty/],
    ['a/b', /contains "\/"/],
    ['a\tb', /control characters/],
  ])('says the reason that applies for %j, and only that one', (name, why) => {
    expect(() => checkVmName(name)).toThrow(why);
    expect(() => checkVmName(name)).not.toThrow(/must not be empty.*or contain/);
  });
  it('the message is one line even for a name with a newline', () => {
    expect(() => checkVmName('a\nb')).toThrow(/^invalid domain name "a\\nb": [^\n]*$/);
  });
});

describe('operation sets (docs/HOOK.md §1.2)', () => {
  it('never fails the operations whose failure libvirt ignores or punishes (reconnect kills the VM)', () => {
    expect([...NEVER_FAIL].sort()).toEqual(['attach', 'reconnect', 'release', 'started', 'stopped']);
  });
  it('filters exactly migrate and restore, and handles only the four acting calls', () => {
    expect([...FILTER_OPS].sort()).toEqual(['migrate', 'restore']);
    expect([...HANDLED].sort()).toEqual(['migrate begin', 'prepare begin', 'release end', 'restore begin']);
  });
});
