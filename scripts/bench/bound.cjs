// The lower bound of a hook call for `npm run bench`: the same system calls that the hook's
// operation cannot do without — stdin read, node:crypto loaded, the same bytes read, hashed,
// written and fsynced in the same order (the durability protocol of src/nvram: temp + fsync +
// link/rename + directory fsync, each commit durable before the next) — and nothing else: no
// parsing, no checks, no code to load. Synchronous calls, fixed file names. What a hook call costs
// above this is the hook's own; what this costs above `node -e 0` no implementation that keeps
// the guarantees can avoid on the machine.
//
//   node bound.cjs prepare <generation file> <nvram file> <archive vm dir> <state dir>
//   node bound.cjs release <nvram file> <archive vm dir> <state dir>
//   node bound.cjs migrate <state dir>          (also writes stdin back to stdout)
'use strict';
const fs = require('node:fs');
const path = require('node:path');

const [mode, ...args] = process.argv.slice(2);
const stdin = fs.readFileSync(0);

/** temp in `dir`, write, fsync, close; returns the temp's path */
function temp(dir, data) {
  const tmp = path.join(dir, `.bound-${process.pid}-${Math.random().toString(16).slice(2)}`);
  const fd = fs.openSync(tmp, fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_WRONLY, 0o600);
  fs.writeSync(fd, data);
  fs.fsyncSync(fd);
  fs.closeSync(fd);
  return tmp;
}
function fsyncDir(dir) {
  const fd = fs.openSync(dir, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
  fs.fsyncSync(fd);
  fs.closeSync(fd);
}
/** rename commit: temp, rename over `file`, fsync its directory */
function replace(file, data) {
  fs.renameSync(temp(path.dirname(file), data), file);
  fsyncDir(path.dirname(file));
}
/** link commit: temp, link as `file` (exclusive), unlink the temp, fsync the directory */
function create(file, data) {
  const tmp = temp(path.dirname(file), data);
  fs.rmSync(file, { force: true }); // the bound re-runs: make room for the exclusive link
  fs.linkSync(tmp, file);
  fs.unlinkSync(tmp);
  fsyncDir(path.dirname(file));
}
const sha256 = (data) => require('node:crypto').createHash('sha256').update(data).digest('hex');
const state = (dir, sha) => replace(path.join(dir, 'bound-state.json'), `{"sha256":"${sha}","time":"${new Date().toISOString()}"}\n`);

if (mode === 'prepare') {
  const [generation, nvram, vmDir, stateDir] = args;
  create(path.join(vmDir, 'bound-claim.json'), `{"host":"bench","time":"${new Date().toISOString()}"}\n`); // claim
  const data = fs.readFileSync(generation);
  const sha = sha256(data); // verify the generation
  replace(nvram, data); // restore
  state(stateDir, sha);
} else if (mode === 'release') {
  const [nvram, vmDir, stateDir] = args;
  const data = fs.readFileSync(nvram);
  const sha = sha256(data);
  create(path.join(vmDir, 'bound-gen.fd'), data); // data, durable before its metadata
  create(path.join(vmDir, 'bound-gen.json'), `{"sha256":"${sha}","size":${data.length}}\n`); // commit
  state(stateDir, sha);
  fsyncDir(vmDir); // prune: unlink the oldest generation, fsync
} else if (mode === 'migrate') {
  const [stateDir] = args;
  state(stateDir, '-'); // mark the incoming VM
  for (let off = 0; off < stdin.length; ) off += fs.writeSync(1, stdin, off);
} else {
  process.stderr.write(`bound.cjs: unknown mode ${mode}\n`);
  process.exitCode = 2;
}
