/**
 * Built-in OVMF paths of known distributions (rulebook §2.3) as synthetic descriptors. Used only
 * when a host has no firmware descriptors at all; the loader keeps the entries whose files exist.
 * Per distribution, in libvirt's preference order: SB + enrolled keys, SB with empty store, no SB.
 */
import type { FirmwareDescriptor } from './descriptor';

export const BUILTIN_DIR = '(builtin)';

type Kind = 'sb-enrolled' | 'sb' | 'nosb';

const FEATURES: Record<Kind, string[]> = {
  'sb-enrolled': ['enrolled-keys', 'requires-smm', 'secure-boot'],
  sb: ['requires-smm', 'secure-boot'],
  nosb: [],
};

const DESCRIPTIONS: Record<Kind, string> = {
  'sb-enrolled': 'Secure Boot and SMM, Microsoft keys enrolled',
  sb: 'Secure Boot and SMM, empty key store',
  nosb: 'no Secure Boot, no SMM',
};

function known(
  name: string,
  kind: Kind,
  code: string,
  vars: string,
  opts: { format?: string; s3?: boolean } = {},
): FirmwareDescriptor {
  const format = opts.format ?? 'raw';
  return {
    file: `builtin-${name}`,
    dir: BUILTIN_DIR,
    description: `${name.split('-')[0]} OVMF, ${DESCRIPTIONS[kind]} (built-in path)`,
    interfaceTypes: ['uefi'],
    device: 'flash',
    mode: 'split',
    executable: { filename: code, format },
    nvramTemplate: { filename: vars, format },
    targets: [{ architecture: 'x86_64', machines: kind === 'nosb' ? ['pc-i440fx-*', 'pc-q35-*'] : ['pc-q35-*'] }],
    // The 2 MB SMM builds lack S3 support (Debian changelog); everything else has it.
    features: [...(opts.s3 === false ? [] : ['acpi-s3']), ...FEATURES[kind]].sort(),
  };
}

const DEB = '/usr/share/OVMF';
const FED = '/usr/share/edk2/ovmf';
const FED4M = '/usr/share/edk2/ovmf-4m';
const ARCH = '/usr/share/edk2/x64';
const SUSE = '/usr/share/qemu';

export const KNOWN_FIRMWARE: readonly FirmwareDescriptor[] = [
  // Debian 12 / Ubuntu (package ovmf)
  known('debian-4m-sb-enrolled', 'sb-enrolled', `${DEB}/OVMF_CODE_4M.ms.fd`, `${DEB}/OVMF_VARS_4M.ms.fd`),
  known('debian-4m-sb', 'sb', `${DEB}/OVMF_CODE_4M.secboot.fd`, `${DEB}/OVMF_VARS_4M.fd`),
  known('debian-4m-nosb', 'nosb', `${DEB}/OVMF_CODE_4M.fd`, `${DEB}/OVMF_VARS_4M.fd`),
  // Fedora ≥ 38 (4M qcow2; the nosb file names are inferred) and Fedora/RHEL 2M raw
  known('fedora-4m-qcow2-sb-enrolled', 'sb-enrolled', `${FED}/OVMF_CODE_4M.secboot.qcow2`, `${FED}/OVMF_VARS_4M.secboot.qcow2`, { format: 'qcow2' }),
  known('fedora-2m-sb-enrolled', 'sb-enrolled', `${FED}/OVMF_CODE.secboot.fd`, `${FED}/OVMF_VARS.secboot.fd`, { s3: false }),
  known('fedora-4m-qcow2-sb', 'sb', `${FED}/OVMF_CODE_4M.secboot.qcow2`, `${FED}/OVMF_VARS_4M.qcow2`, { format: 'qcow2' }),
  known('fedora-2m-sb', 'sb', `${FED}/OVMF_CODE.secboot.fd`, `${FED}/OVMF_VARS.fd`, { s3: false }),
  known('fedora-4m-qcow2-nosb', 'nosb', `${FED}/OVMF_CODE_4M.qcow2`, `${FED}/OVMF_VARS_4M.qcow2`, { format: 'qcow2' }),
  known('fedora-2m-nosb', 'nosb', `${FED}/OVMF_CODE.fd`, `${FED}/OVMF_VARS.fd`),
  // Fedora 34–37 raw 4M
  known('fedora-4m-sb-enrolled', 'sb-enrolled', `${FED4M}/OVMF_CODE.secboot.fd`, `${FED4M}/OVMF_VARS.secboot.fd`),
  known('fedora-4m-sb', 'sb', `${FED4M}/OVMF_CODE.secboot.fd`, `${FED4M}/OVMF_VARS.fd`),
  known('fedora-4m-nosb', 'nosb', `${FED4M}/OVMF_CODE.fd`, `${FED4M}/OVMF_VARS.fd`),
  // Arch (edk2-ovmf): no template with enrolled keys is shipped
  known('arch-4m-sb', 'sb', `${ARCH}/OVMF_CODE.secboot.4m.fd`, `${ARCH}/OVMF_VARS.4m.fd`),
  known('arch-4m-nosb', 'nosb', `${ARCH}/OVMF_CODE.4m.fd`, `${ARCH}/OVMF_VARS.4m.fd`),
  // openSUSE / SLE (qemu-ovmf-x86_64); the smm (no ms) pairing is inferred from the naming
  known('opensuse-smm-sb-enrolled', 'sb-enrolled', `${SUSE}/ovmf-x86_64-smm-ms-code.bin`, `${SUSE}/ovmf-x86_64-smm-ms-vars.bin`),
  known('opensuse-smm-sb', 'sb', `${SUSE}/ovmf-x86_64-smm-code.bin`, `${SUSE}/ovmf-x86_64-smm-vars.bin`),
  known('opensuse-4m-nosb', 'nosb', `${SUSE}/ovmf-x86_64-4m-code.bin`, `${SUSE}/ovmf-x86_64-4m-vars.bin`),
];

/** Built-in entries that use `path` as executable or template (e.g. to learn a loader's features). */
export function knownFirmwareFor(path: string): FirmwareDescriptor[] {
  return KNOWN_FIRMWARE.filter((d) => d.executable.filename === path || d.nvramTemplate?.filename === path);
}
