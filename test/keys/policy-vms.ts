/**
 * What the real-libvirt tests of the certificate readiness and policy (certs.libvirt.test.ts,
 * policy.libvirt.test.ts) share: the `<ovmf:policy>` metadata markup, a TPM 2.0 emulator device
 * (swtpm) in a test domain, and the removal of such a domain with its TPM state.
 */
import { spawnSync } from 'node:child_process';
import { destroyDomain, TEST_VM_PREFIX, virsh } from '../support/libvirt';

/** `<ovmf:policy …>` with `attrs` for DomainSpec.metadata. */
export const policyMetadata = (attrs: Record<string, string>): string =>
  `<ovmf:policy xmlns:ovmf="urn:ovmf-hook:policy:1"${Object.entries(attrs)
    .map(([k, v]) => ` ${k}="${v}"`)
    .join('')}/>`;

/** The domain XML (makeDomainXml's) with a TPM 2.0 CRB emulator before its serial console. */
export const withTpm = (xml: string): string => xml.replace("    <serial type='file'>", "    <tpm model='tpm-crb'><backend type='emulator' version='2.0'/></tpm>\n    <serial type='file'>");

/** Why libvirt cannot run an emulated TPM here, or undefined. */
export function swtpmMissing(): string | undefined {
  const missing = ['swtpm', 'swtpm_setup'].filter((cmd) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status !== 0);
  return missing.length ? `${missing.join(' and ')} not installed (apt-get install swtpm swtpm-tools)` : undefined;
}

/** Destroy and undefine a test domain with its NVRAM and its TPM state (libvirt's swtpm directory). */
export function removeWithTpm(name: string): void {
  if (!name.startsWith(TEST_VM_PREFIX)) throw new Error(`refusing to touch domain '${name}'`);
  destroyDomain(name);
  virsh(['undefine', '--nvram', '--tpm', name], { allowFail: true });
}
