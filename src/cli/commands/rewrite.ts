/**
 * `ovmf-hook rewrite [FILE|-] [--secure-boot] [--tpm] [--root-ports N] [--firmware manual|auto]
 * [--print-diff | --json]`: rewrite one domain XML (a file, or stdin) to Q35 + OVMF and print it.
 * Nothing changes → the input bytes, unchanged. Writes no file and never talks to libvirt.
 */
import { createReadStream, statSync } from 'node:fs';
import type { Argv, CommandModule } from 'yargs';
import { loadConfig } from '../../io';
import { type Config } from '../../core/config';
import { DEFAULT_MAX_BYTES, parseDomain } from '../../core/domain';
import { UsageError, XmlInputError } from '../../core/errors';
import { unifiedDiff } from '../diff';
import { jsonOption, printJson } from '../output';
import { catalogPicker, rewriteWithPolicy, withRewriteFlags, type RewriteFlags } from '../rewrite-options';

export interface RewriteArgs extends RewriteFlags {
  /** path; `-`, empty or absent = stdin */
  file?: string;
  printDiff?: boolean;
  json?: boolean;
}

export interface RewriteDeps {
  /** default: loadConfig() (`$OVMF_HOOK_CONFIG` or /etc/ovmf-hook/config.json) */
  config?: () => Config;
  /** default: process.stdin */
  stdin?: NodeJS.ReadableStream & { isTTY?: boolean };
}

const MiB = (n: number) => `${Math.round(n / 1048576)} MiB`;

/** Read a stream, giving up (XmlInputError) as soon as it exceeds `maxBytes`. */
async function readLimited(stream: NodeJS.ReadableStream, maxBytes: number, what: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of stream) {
    const b = typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer);
    total += b.length;
    if (total > maxBytes) throw new XmlInputError(`${what} is larger than ${MiB(maxBytes)}, the limit for a domain XML`);
    chunks.push(b);
  }
  return Buffer.concat(chunks);
}

const errnoMessage = (file: string, e: NodeJS.ErrnoException): string =>
  e.code === 'ENOENT'
    ? `${file}: no such file; give the path of a domain XML, or - to read stdin`
    : e.code === 'EACCES'
      ? `${file}: permission denied`
      : e.code === 'EISDIR'
        ? `${file}: is a directory; give the path of a domain XML`
        : `${file}: cannot read (${e.code ?? e.message})`;

/** The input bytes: a file (regular file, FIFO …) or stdin, at most DEFAULT_MAX_BYTES. */
export async function readDomainInput(file: string | undefined, stdin: RewriteDeps['stdin'] = process.stdin): Promise<Buffer> {
  if (file === undefined || file === '' || file === '-') {
    if (stdin.isTTY) throw new UsageError('no input: give a domain XML file, or pipe one in (virsh dumpxml --inactive --security-info VM | ovmf-hook rewrite)');
    return readLimited(stdin, DEFAULT_MAX_BYTES, 'stdin');
  }
  try {
    const st = statSync(file);
    if (st.isDirectory()) throw new UsageError(`${file}: is a directory; give the path of a domain XML`);
    if (st.isFile() && st.size > DEFAULT_MAX_BYTES) throw new XmlInputError(`${file} is ${MiB(st.size)}; the limit for a domain XML is ${MiB(DEFAULT_MAX_BYTES)}`);
    return await readLimited(createReadStream(file), DEFAULT_MAX_BYTES, file);
  } catch (e) {
    if (e instanceof UsageError || e instanceof XmlInputError) throw e;
    throw new UsageError(errnoMessage(file, e as NodeJS.ErrnoException));
  }
}

/** Strict UTF-8 (the BOM kept, so unchanged input round-trips byte for byte). */
export function decodeUtf8(bytes: Uint8Array, what: string): string {
  try {
    return new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch {
    throw new XmlInputError(`${what} is not valid UTF-8; libvirt domain XML is UTF-8`);
  }
}

export async function runRewrite(args: RewriteArgs, deps: RewriteDeps = {}): Promise<void> {
  if (args.printDiff && args.json) throw new UsageError('--print-diff and --json cannot be combined; pick one');
  const label = args.file && args.file !== '-' ? args.file : 'stdin';
  const bytes = await readDomainInput(args.file, deps.stdin);
  const input = decodeUtf8(bytes, label);
  const domain = parseDomain(input);
  const config = (deps.config ?? loadConfig)();
  const result = rewriteWithPolicy(domain, config, args, catalogPicker(config));
  // already UEFI, switched to Secure Boot (R21): the XML alone does not make the firmware enforce
  if (result.secureBootSwitched)
    result.warnings.push(
      `${domain.name}: its firmware is switched to the Secure Boot build in place; its existing NVRAM may hold no Secure Boot keys, and without them the firmware does not enforce: ` +
        `ovmf-hook convert ${domain.name} --secure-boot defines this and enrols the keys into that NVRAM, keeping its boot entries (rewrite only prints XML)`,
    );

  if (args.json) {
    const { name, uuid } = domain;
    const doc = { name, uuid: uuid ?? null, changed: result.changed, changes: result.changes, warnings: result.warnings, skipped: result.skipped, xml: result.xml };
    printJson(doc);
    return;
  }
  for (const w of [...(result.skipped ? [result.skipped] : []), ...result.warnings]) process.stderr.write(`ovmf-hook: warning: ${w}\n`);
  if (args.printDiff) {
    const where = label === 'stdin' ? `${domain.name}.xml` : label;
    process.stdout.write(unifiedDiff(input, result.xml, { from: where, to: where }));
    return;
  }
  process.stdout.write(result.changed ? result.xml : bytes);
}

export const rewriteCommand: CommandModule<object, any> = {
  command: 'rewrite [file]',
  describe: 'Rewrite a domain XML (file or stdin) to Q35 + OVMF UEFI and print it; writes nothing',
  builder: (y: Argv) =>
    withRewriteFlags(
      y
        .positional('file', { type: 'string', describe: 'domain XML file; - or none: stdin' })
        .option('print-diff', { type: 'boolean', default: false, describe: 'print a unified diff instead of the XML' })
        .option('json', jsonOption('print one JSON document {name, uuid, changed, changes, warnings, skipped, xml}'))
        .example('virsh dumpxml --inactive --security-info vm1 | $0 rewrite --secure-boot', 'what convert would define')
        .example('$0 rewrite vm1.xml --print-diff', 'review the changes as a diff'),
    ),
  handler: (argv) => runRewrite(argv as RewriteArgs),
};
