/** Text reports and JSON documents for parsed variable stores. Pure string building. */
import {
  decodeVariable,
  secureBootSummary,
  type Decoded,
  type SecureBootSummary,
  type SignatureCounts,
  type VarstoreDiff,
} from './decode';
import { plural } from '../text';
import { EFI_GLOBAL_VARIABLE, vendorName } from './guids';
import type { ParsedVarstore, Variable } from './parse';

const pad = (s: string, n: number) => (s.length >= n ? s : s + ' '.repeat(n - s.length));
const vendorLabel = (guid: string) => vendorName(guid) ?? guid;

const countsText = (c: SignatureCounts): string => {
  if (!c.present) return 'not enrolled';
  const parts = [c.x509 && plural(c.x509, 'certificate'), c.sha256 && plural(c.sha256, 'SHA-256 hash'), c.other && `${c.other} other`];
  return parts.filter(Boolean).join(', ') || 'empty';
};

const MS_LABELS: Record<keyof SecureBootSummary['microsoft'], string> = {
  kek2011: 'KEK CA 2011',
  kek2023: 'KEK 2K CA 2023',
  windowsPca2011: 'Windows Production PCA 2011',
  windowsUefiCa2023: 'Windows UEFI CA 2023',
  uefiCa2011: 'UEFI CA 2011',
  uefiCa2023: 'UEFI CA 2023',
  optionRomUefiCa2023: 'Option ROM UEFI CA 2023',
};

const secureBootBlock = (s: SecureBootSummary): string[] => {
  const lines = ['Secure Boot'];
  const row = (k: string, v: string) => lines.push(`  ${pad(k, 18)}${v}`);
  row('at next boot', `${s.effective}${s.effective === 'on' ? ' (PK enrolled, SecureBootEnable not off)' : s.pk.present ? ' (SecureBootEnable is off)' : ' (no PK: setup mode)'}`);
  row('mode', `${s.setupMode}${s.customMode === 'on' ? ', custom' : ''}${s.auditMode === 'on' ? ', audit' : ''}${s.deployedMode === 'on' ? ', deployed' : ''}`);
  if (s.secureBoot !== 'absent') row('SecureBoot var', s.secureBoot);
  row('SecureBootEnable', s.secureBootEnable);
  for (const db of ['pk', 'kek', 'db', 'dbx'] as const) {
    const names = s.subjects[db];
    row(db === 'pk' || db === 'kek' ? db.toUpperCase() : db, `${countsText(s[db])}${names.length ? `: ${names.join('; ')}` : ''}`);
  }
  const ms = (Object.keys(MS_LABELS) as Array<keyof typeof MS_LABELS>).map((k) => `${MS_LABELS[k]} ${s.microsoft[k] ? 'yes' : 'no'}`);
  row('Microsoft', ms.slice(0, 2).join(', '));
  row('', ms.slice(2).join(', '));
  for (const p of s.problems) row('problem', p);
  return lines;
};

const global = (vars: readonly Variable[], name: string) =>
  vars.find((v) => v.vendorGuid === EFI_GLOBAL_VARIABLE && v.name === name);

const bootBlock = (vars: readonly Variable[]): string[] => {
  const lines = ['Boot'];
  const scalar = (name: string, unit = '') => {
    const v = global(vars, name);
    const d = v && decodeVariable(v);
    if (d?.kind === 'u16') lines.push(`  ${pad(name, 12)}${d.option && name !== 'Timeout' ? d.option : `${d.value}${unit}`}`);
  };
  scalar('Timeout', ' s');
  scalar('BootCurrent');
  scalar('BootNext');
  const orderVar = global(vars, 'BootOrder');
  const order = orderVar && decodeVariable(orderVar);
  const ordered = order?.kind === 'order' ? order.options : [];
  lines.push(`  ${pad('BootOrder', 12)}${order?.kind === 'error' ? order.error : orderVar ? ordered.join(', ') || '(empty)' : '(none)'}`);
  const entries = vars.filter((v) => v.vendorGuid === EFI_GLOBAL_VARIABLE && /^(Boot|Driver)[0-9A-F]{4}$/.test(v.name));
  const rank = (v: Variable) => {
    const i = ordered.indexOf(v.name);
    return i < 0 ? ordered.length + (v.name.startsWith('Driver') ? 1 : 0) : i;
  };
  for (const v of [...entries].sort((a, b) => rank(a) - rank(b) || a.name.localeCompare(b.name))) {
    const d = decodeVariable(v);
    if (d?.kind !== 'load-option') {
      lines.push(`  ${pad(v.name, 10)}  ${d?.kind === 'error' ? d.error : '(undecodable)'}`);
      continue;
    }
    const o = d.option;
    const flags = [o.active ? '' : 'inactive', o.hidden ? 'hidden' : '', o.category === 'boot' ? '' : o.category].filter(Boolean);
    lines.push(`  ${ordered.includes(v.name) ? '*' : ' '} ${pad(v.name, 10)}${JSON.stringify(o.description)}${flags.length ? ` [${flags.join(',')}]` : ''}`);
    for (const p of o.devicePaths) lines.push(`      ${p}`);
    if (o.optionalDataLength) lines.push(`      + ${o.optionalDataLength} bytes optional data`);
  }
  if (!entries.length) lines.push('  (no Boot#### entries: the VM has not reached the boot manager yet)');
  return lines;
};

const variablesBlock = (vars: readonly Variable[]): string[] => {
  const vendorW = Math.max(6, ...vars.map((v) => vendorLabel(v.vendorGuid).length));
  const nameW = Math.max(4, ...vars.map((v) => v.name.length));
  const lines = [`Variables (${vars.length})`, `  ${pad('VENDOR', vendorW)}  ${pad('NAME', nameW)}  ${pad('ATTRS', 14)}  SIZE`];
  const sorted = [...vars].sort(
    (a, b) => vendorLabel(a.vendorGuid).localeCompare(vendorLabel(b.vendorGuid)) || a.name.localeCompare(b.name),
  );
  for (const v of sorted)
    lines.push(`  ${pad(vendorLabel(v.vendorGuid), vendorW)}  ${pad(v.name, nameW)}  ${pad(v.attributes.flags.join(','), 14)}  ${v.data.length}`);
  return lines;
};

/** Admin-oriented report: store facts, Secure Boot summary, boot entries, then every variable. */
export const renderVarsTable = (parsed: ParsedVarstore): string => {
  const s = parsed.skipped;
  const head = [
    `Variable store: ${parsed.layout === 'unknown' ? `non-standard (FV ${parsed.fv.length} bytes)` : `${parsed.layout} layout`}, ` +
      `${parsed.authenticated ? 'authenticated' : 'plain'}, ${parsed.storeSize} bytes (${parsed.used} used, ${parsed.free} free)`,
    `  ${plural(parsed.variables.length, 'live variable')}; skipped ${s.deleted} deleted, ${s.inTransition} in transition, ` +
      `${s.headerOnly} header-only${parsed.fv.checksumOk ? '' : '; WARNING: firmware volume header checksum is wrong'}`,
  ];
  return [head, secureBootBlock(secureBootSummary(parsed.variables)), bootBlock(parsed.variables), variablesBlock(parsed.variables)]
    .map((b) => b.join('\n'))
    .join('\n\n')
    .concat('\n');
};

const describe = (v: Variable): string => {
  const d = decodeVariable(v);
  if (d?.kind === 'load-option') return ` ${JSON.stringify(d.option.description)} ${d.option.devicePath}`;
  if (d?.kind === 'order') return ` ${d.options.join(',')}`;
  return ` (${plural(v.data.length, 'byte')})`;
};
const label = (v: Variable) => `${vendorLabel(v.vendorGuid)}:${v.name}`;

/** `+`/`-`/`~` lines, one per added/removed/changed variable. */
export const renderDiff = (diff: VarstoreDiff): string => {
  const lines = [
    ...diff.removed.map((v) => `- ${label(v)}${describe(v)}`),
    ...diff.added.map((v) => `+ ${label(v)}${describe(v)}`),
    ...diff.changed.map(({ before, after, dataChanged, attributesChanged }) => {
      const what = [
        dataChanged
          ? before.data.length === after.data.length
            ? `data changed (${plural(after.data.length, 'byte')})`
            : `data ${before.data.length} → ${after.data.length} bytes`
          : '',
        attributesChanged ? `attrs ${before.attributes.flags.join(',')} → ${after.attributes.flags.join(',')}` : '',
      ].filter(Boolean);
      const d = decodeVariable(after);
      const now = d?.kind === 'load-option' || d?.kind === 'order' ? `; now${describe(after)}` : '';
      return `~ ${label(after)} ${what.join(', ')}${now}`;
    }),
  ];
  const summary = `${diff.added.length} added, ${diff.removed.length} removed, ${diff.changed.length} changed, ${diff.unchanged} unchanged`;
  return `${lines.length ? `${lines.join('\n')}\n` : ''}${summary}\n`;
};

export interface VariableJson {
  vendor: string;
  vendorGuid: string;
  name: string;
  attributes: number;
  attributeFlags: string[];
  size: number;
  /** Lowercase hex of the data. */
  data: string;
  monotonicCount?: number;
  timestamp?: string;
  decoded?: Decoded;
}

/** A JSON-safe view of one variable (data as hex, decoded value when known). */
export const variableToJson = (v: Variable): VariableJson => {
  const decoded = decodeVariable(v);
  return {
    vendor: vendorName(v.vendorGuid) ?? '',
    vendorGuid: v.vendorGuid,
    name: v.name,
    attributes: v.attributes.value,
    attributeFlags: v.attributes.flags,
    size: v.data.length,
    data: Buffer.from(v.data).toString('hex'),
    ...(v.monotonicCount !== undefined && { monotonicCount: v.monotonicCount }),
    ...(v.timestamp !== undefined && { timestamp: v.timestamp }),
    ...(decoded && { decoded }),
  };
};

/** The whole store as one JSON-safe document. */
export const varstoreToJson = (parsed: ParsedVarstore) => ({
  layout: parsed.layout,
  authenticated: parsed.authenticated,
  storeSize: parsed.storeSize,
  used: parsed.used,
  free: parsed.free,
  fvChecksumOk: parsed.fv.checksumOk,
  skipped: parsed.skipped,
  secureBoot: secureBootSummary(parsed.variables),
  variables: parsed.variables.map(variableToJson),
});

/** A diff as one JSON-safe document. */
export const diffToJson = (diff: VarstoreDiff) => ({
  added: diff.added.map(variableToJson),
  removed: diff.removed.map(variableToJson),
  changed: diff.changed.map((c) => ({
    vendorGuid: c.after.vendorGuid,
    name: c.after.name,
    dataChanged: c.dataChanged,
    attributesChanged: c.attributesChanged,
    before: variableToJson(c.before),
    after: variableToJson(c.after),
  })),
  unchanged: diff.unchanged,
});
