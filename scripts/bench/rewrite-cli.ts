/**
 * Bench-only stand-in for `ovmf-hook rewrite FILE`, used by scripts/bench.mjs only while the real
 * CLI has neither `convert` nor `rewrite`: the same cost profile as the admin CLI (yargs parsing,
 * firmware catalog, parse + rewrite + serialize), printing the rewritten XML.
 */
import { readFileSync, writeSync } from 'node:fs';
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { rewriteXml } from '../../src/rewrite';
import { catalogPicker } from './core-entry';

void yargs(hideBin(process.argv))
  .scriptName('ovmf-hook')
  .strict()
  .command(
    'rewrite <file>',
    'print the Q35/UEFI rewrite of a domain XML file',
    (y) => y.positional('file', { type: 'string', demandOption: true }),
    (argv) => {
      const r = rewriteXml(readFileSync(argv.file, 'utf8'), { pickFirmware: catalogPicker() });
      const buf = Buffer.from(r.xml);
      for (let off = 0; off < buf.length; ) off += writeSync(1, buf, off);
    },
  )
  .demandCommand(1)
  .parseAsync();
