/**
 * `ovmf-hook firmware list [--json] [--root DIR...]`: the host's firmware catalog in match order;
 * `ovmf-hook firmware template --ms-2023 | --remove`: ./firmware-template.ts.
 */
import type { Argv, CommandModule } from 'yargs';
import { DEFAULT_CONFIG } from '../../core/config';
import { isOvmfHookError } from '../../core/errors';
import { checkFlashPair, sizeClass, type FirmwareDescriptor, type SizeMap } from '../../core/firmware';
import { loadCatalog, statSizes } from '../../io';
import { jsonOption, printJson } from '../output';
import { table } from '../table';
import type { CliDeps } from '../vm';
import { makeTemplateCommand } from './firmware-template';

interface ListArgs {
  json: boolean;
  root?: string[];
}

/** Flash size class of a descriptor's CODE+VARS on this host, or why it cannot be told ('missing', 'qcow2', 'mismatch'). */
export function flashOf(d: FirmwareDescriptor, sizes: SizeMap): string {
  const code = sizes[d.executable.filename];
  const vars = d.nvramTemplate && sizes[d.nvramTemplate.filename];
  if (code === undefined || (d.nvramTemplate && vars === undefined)) return 'missing';
  if (d.executable.format !== 'raw' || (d.nvramTemplate && d.nvramTemplate.format !== 'raw')) return 'qcow2';
  if (vars === undefined) return sizeClass(code);
  try {
    return checkFlashPair(code, vars);
  } catch (e) {
    if (isOvmfHookError(e)) return 'mismatch';
    throw e;
  }
}

function list(argv: ListArgs): void {
  const catalog = loadCatalog(argv.root?.length ? { roots: argv.root } : {});
  const sizes = statSizes(catalog.descriptors.flatMap((d) => [d.executable.filename, d.nvramTemplate?.filename]));
  const entries = catalog.descriptors.map((d, i) => ({
    order: i + 1,
    file: d.file,
    dir: d.dir,
    description: d.description,
    executable: { ...d.executable, size: sizes[d.executable.filename] ?? null },
    template: d.nvramTemplate ? { ...d.nvramTemplate, size: sizes[d.nvramTemplate.filename] ?? null } : null,
    flash: flashOf(d, sizes),
    features: d.features,
    targets: d.targets,
  }));

  if (argv.json) {
    printJson({ source: catalog.source, descriptors: entries, warnings: catalog.warnings });
    return;
  }
  for (const w of catalog.warnings) process.stderr.write(`ovmf-hook: warning: ${w}\n`);
  const size = (n: number | null) => (n === null ? '-' : String(n));
  process.stdout.write(
    table([
      ['#', 'FILE', 'EXECUTABLE', 'TEMPLATE', 'SIZES', 'FLASH', 'FEATURES', 'MACHINES'],
      ...entries.map((e) => [
        String(e.order),
        e.file,
        e.executable.filename,
        e.template?.filename ?? '-',
        `${size(e.executable.size)}+${size(e.template?.size ?? null)}`,
        e.flash,
        e.features.join(','),
        e.targets.map((t) => `${t.architecture}:${t.machines.join(',')}`).join(' '),
      ]),
    ]),
  );
}

const listCommand: CommandModule<object, ListArgs> = {
  command: 'list',
  describe: 'List firmware descriptors in the order libvirt tries them, with flash sizes',
  builder: (y: Argv) =>
    y
      .option('json', jsonOption('Print one JSON document'))
      .option('root', {
        type: 'string',
        array: true,
        describe: `Descriptor directory, least specific first (repeatable; default ${DEFAULT_CONFIG.firmwareDirs.join(' ')})`,
      }) as unknown as Argv<ListArgs>,
  handler: list,
};

export function makeFirmwareCommand(deps: CliDeps = {}): CommandModule<object, any> {
  return {
    command: 'firmware',
    describe: "Inspect this host's OVMF firmware catalog; give new Secure Boot VMs Microsoft's 2023 certificates",
    builder: (y: Argv) => y.command(listCommand).command(makeTemplateCommand(deps)).demandCommand(1, 'name a firmware subcommand: list, template'),
    handler: () => {},
  };
}

export const firmwareCommand = makeFirmwareCommand();
