/** Shared bits of the rewrite tests: a Debian 12 firmware picker and a one-rule runner. */
import { parseDomain } from '../../src/core/domain';
import { DEFAULT_REWRITE_OPTIONS } from '../../src/core/rewrite';
import type { FirmwareRequest } from '../../src/core/firmware';
import type { Change, FirmwarePick, RewriteOptions, Rule } from '../../src/core/rewrite/types';

export const OVMF = {
  code: '/usr/share/OVMF/OVMF_CODE_4M.fd',
  vars: '/usr/share/OVMF/OVMF_VARS_4M.fd',
  msCode: '/usr/share/OVMF/OVMF_CODE_4M.ms.fd',
  msVars: '/usr/share/OVMF/OVMF_VARS_4M.ms.fd',
} as const;

/** Debian 12's picks: the `.ms.fd` pair (SMM) for Secure Boot, else the plain 4M pair. */
export function debianPicker(requests: FirmwareRequest[] = []): (req: FirmwareRequest) => FirmwarePick {
  return (req) => {
    requests.push(req);
    return req.secureBoot
      ? { executable: OVMF.msCode, template: OVMF.msVars, requiresSmm: true, secureBoot: true, enrolledKeys: true, descriptor: '40-edk2-x86_64-secure-enrolled.json' }
      : { executable: OVMF.code, template: OVMF.vars, requiresSmm: false, secureBoot: false, enrolledKeys: false, descriptor: '60-edk2-x86_64.json' };
  };
}

export const options = (o: Partial<RewriteOptions> = {}): RewriteOptions => ({ ...DEFAULT_REWRITE_OPTIONS, pickFirmware: debianPicker(), ...o });

/** Run one rule (if it applies) on `xml`; returns the XML after it and its changes. */
export function runRule(rule: Rule, xml: string, o: Partial<RewriteOptions> = {}): { xml: string; changes: Change[]; applies: boolean; warning?: string } {
  const d = parseDomain(xml);
  const opts = options(o);
  const warning = rule.warn?.(d, opts);
  const applies = rule.applies(d, opts);
  const changes = applies ? rule.apply(d, opts) : [];
  return { xml: d.toXml(), changes, applies, warning };
}

/** A minimal domain around the given `<os>` body / features / devices, two-space indented like libvirt. */
export function domainXml(p: { type?: string; arch?: string; machine?: string | null; os?: string; features?: string | null; devices?: string; name?: string }): string {
  const machine = p.machine === null ? '' : ` machine='${p.machine ?? 'pc-i440fx-7.2'}'`;
  const features = p.features === null ? '' : `  <features>\n${p.features ?? '    <acpi/>\n    <apic/>\n'}  </features>\n`;
  return (
    `<domain type='${p.type ?? 'kvm'}'>\n` +
    `  <name>${p.name ?? 'vm1'}</name>\n` +
    `  <uuid>4dea22b3-1d52-d8f3-2516-782e98ab3fa0</uuid>\n` +
    `  <memory unit='KiB'>1048576</memory>\n` +
    `  <os>\n` +
    `    <type arch='${p.arch ?? 'x86_64'}'${machine}>hvm</type>\n` +
    (p.os ?? `    <boot dev='hd'/>\n`) +
    `  </os>\n` +
    features +
    `  <devices>\n` +
    (p.devices ?? '') +
    `  </devices>\n` +
    `</domain>\n`
  );
}
