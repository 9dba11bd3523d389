/**
 * A fake `virsh` executable for tests that run the built CLI as a child process: put `env.PATH`
 * in its environment and every `virsh …` the CLI runs (single commands and the batches of
 * src/io/virsh.ts, `virsh -c URI 'echo M; cmd …; …'`) is answered from `domains` instead of the
 * host's libvirt, so those tests never reach a real VM. Calls are recorded (`calls()`), and a
 * `define` stores the new XML (`defined()`).
 *
 * Understood: list [--all] [--persistent|--transient] [--name], dominfo, domstate, dumpxml,
 * snapshot-list, define FILE, echo [--err] (batches); anything else fails like virsh does.
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface FakeVirshDomain {
  xml: string;
  /** default `shut off`; a transient domain is `running` (libvirt has no shut-off transient domain) */
  state?: string;
  /** default true */
  persistent?: boolean;
  managedSave?: boolean;
  /** names of snapshots with memory state */
  memorySnapshots?: string[];
  /** `define` of this domain fails with this error (as libvirt refusing a definition) */
  defineError?: string;
}

const SCRIPT = String.raw`
import { appendFileSync, readFileSync, writeFileSync } from 'node:fs';
const STATE = process.env.FAKE_VIRSH_DIR + '/state.json';
const domains = JSON.parse(readFileSync(STATE, 'utf8'));
const argv = process.argv.slice(2);
if (argv[0] === '-c') argv.splice(0, 2);
appendFileSync(process.env.FAKE_VIRSH_DIR + '/calls.jsonl', JSON.stringify(argv) + '\n');

/** sh-like words of virsh's command string: single quotes, ';' between commands. */
function commands(text) {
  const out = [[]];
  let word = null;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === "'") {
      const end = text.indexOf("'", i + 1);
      word = (word ?? '') + text.slice(i + 1, end);
      i = end;
    } else if (c === ' ' || c === ';') {
      if (word !== null) out.at(-1).push(word);
      word = null;
      if (c === ';') out.push([]);
    } else word = (word ?? '') + c;
  }
  if (word !== null) out.at(-1).push(word);
  return out.filter((c) => c.length);
}

const ok = (stdout = '') => ({ code: 0, stdout, stderr: '' });
const fail = (msg) => ({ code: 1, stdout: '', stderr: 'error: ' + msg + '\n' });

function run(args) {
  const [cmd, ...rest] = args;
  const flags = new Set(rest.filter((a) => a.startsWith('--')));
  const at = rest.indexOf('--domain');
  const name = at >= 0 ? rest[at + 1] : rest.filter((a) => !a.startsWith('--')).at(-1);
  const d = domains[name];
  const active = (x) => (x.state ?? 'shut off') !== 'shut off';
  const missing = () => fail("failed to get domain '" + name + "'");
  switch (cmd) {
    case 'echo':
      return flags.has('--err') ? { code: 0, stdout: '\n', stderr: 'error: ' + rest.filter((a) => a !== '--err').join(' ') + '\n' } : ok(rest.join(' ') + '\n');
    case 'list':
      return ok(
        Object.keys(domains)
          .filter((n) => (flags.has('--all') || active(domains[n])) && !(flags.has('--persistent') && domains[n].persistent === false) && !(flags.has('--transient') && domains[n].persistent !== false))
          .map((n) => n + '\n')
          .join('') + '\n',
      );
    case 'dominfo':
      return d ? ok('Id:             -\nName:           ' + name + '\nState:          ' + (d.state ?? 'shut off') + '\nPersistent:     ' + (d.persistent === false ? 'no' : 'yes') + '\nAutostart:      disable\nManaged save:   ' + (d.managedSave ? 'yes' : 'no') + '\n\n') : missing();
    case 'domstate':
      return d ? ok((d.state ?? 'shut off') + '\n\n') : missing();
    case 'dumpxml':
      return d ? ok(d.xml) : missing();
    case 'snapshot-list':
      return d ? ok((d.memorySnapshots ?? []).map((s) => s + '\n').join('') + '\n') : missing();
    case 'define': {
      const xml = readFileSync(rest[0], 'utf8');
      const n = /<name>([^<]*)<\/name>/.exec(xml)[1];
      if (domains[n]?.defineError) return { code: 1, stdout: '', stderr: 'error: Failed to define domain from ' + rest[0] + '\nerror: ' + domains[n].defineError + '\n' };
      domains[n] = { ...domains[n], xml, persistent: true };
      writeFileSync(STATE, JSON.stringify(domains));
      return ok("Domain '" + n + "' defined from " + rest[0] + '\n');
    }
    default:
      return fail('unknown command: ' + cmd);
  }
}

const batch = argv.length === 1 && argv[0].includes(';');
let code = 0;
for (const c of batch ? commands(argv[0]) : [argv]) {
  const r = run(c);
  process.stdout.write(r.stdout);
  process.stderr.write(r.stderr);
  code = r.code;
}
process.exitCode = code;
`;

/** Install a fake virsh for `domains` under `dir`; run the CLI with `env`. */
export function fakeVirshBin(dir: string, domains: Record<string, FakeVirshDomain>) {
  const home = join(dir, 'fake-virsh');
  const bin = join(home, 'bin');
  mkdirSync(bin, { recursive: true });
  writeFileSync(join(home, 'state.json'), JSON.stringify(domains));
  writeFileSync(join(home, 'virsh.mjs'), SCRIPT);
  writeFileSync(join(bin, 'virsh'), `#!/bin/sh\nexec '${process.execPath}' '${join(home, 'virsh.mjs')}' "$@"\n`);
  chmodSync(join(bin, 'virsh'), 0o755);
  const env = { PATH: `${bin}:${process.env.PATH ?? '/usr/bin:/bin'}`, FAKE_VIRSH_DIR: home };
  const callsFile = join(home, 'calls.jsonl');
  return {
    env,
    /** every virsh command line the CLI ran (without `-c URI`) */
    calls: (): string[][] => (existsSync(callsFile) ? readFileSync(callsFile, 'utf8').trim().split('\n').map((l) => JSON.parse(l)) : []),
    /** the domains now, with the XML of each define */
    domains: (): Record<string, FakeVirshDomain> => JSON.parse(readFileSync(join(home, 'state.json'), 'utf8')),
  };
}
