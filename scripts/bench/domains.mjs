// Generated inputs for scripts/bench.mjs: domain XMLs with N devices and archive trees with N VMs.
import { createHash } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** A deterministic UUID for bench VM number `i` of a given kind. */
export function benchUuid(kind, i) {
  const h = createHash('sha256').update(`${kind}:${i}`).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-8${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

const hex2 = (n) => `0x${(n & 0xff).toString(16).padStart(2, '0')}`;
/** libvirt's disk name suffixes: a … z, aa … */
const suffix = (i) => {
  let s = '';
  for (let n = i + 1; n > 0; n = Math.floor((n - 1) / 26)) s = String.fromCharCode(97 + ((n - 1) % 26)) + s;
  return s;
};
const pci = (i) => `<address type='pci' domain='0x0000' bus='${hex2(1 + (i >> 5))}' slot='${hex2(i & 31)}' function='0x0'/>`;
const mac = (i) => `52:54:00:${hex2(i >> 16).slice(2)}:${hex2(i >> 8).slice(2)}:${hex2(i).slice(2)}`;

/**
 * `n` devices of the kinds a real i440fx domain carries, most with a guest PCI address: IDE and
 * virtio disks, e1000 NICs, serial ports, channels, USB inputs, RNGs, watchdog-free filler.
 */
export function devices(n, { pciAddresses = true } = {}) {
  const out = [];
  for (let i = 0; i < n; i++) {
    const addr = pciAddresses ? `\n      ${pci(i)}` : '';
    switch (i % 8) {
      case 0:
        out.push(`    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='/var/lib/libvirt/images/bench-${i}.qcow2'/>
      <target dev='hd${suffix(i)}' bus='ide'/>
      <address type='drive' controller='0' bus='0' target='0' unit='${i % 2}'/>
    </disk>`);
        break;
      case 1:
        out.push(`    <disk type='file' device='disk'>
      <driver name='qemu' type='raw' cache='none'/>
      <source file='/var/lib/libvirt/images/bench-${i}.img'/>
      <target dev='vd${suffix(i)}' bus='virtio'/>${addr}
    </disk>`);
        break;
      case 2:
        out.push(`    <interface type='network'>
      <mac address='${mac(i)}'/>
      <source network='default'/>
      <model type='e1000'/>${addr}
    </interface>`);
        break;
      case 3:
        out.push(`    <serial type='pty'>
      <target type='isa-serial' port='${i}'>
        <model name='isa-serial'/>
      </target>
    </serial>`);
        break;
      case 4:
        out.push(`    <channel type='unix'>
      <target type='virtio' name='org.bench.${i}'/>
      <address type='virtio-serial' controller='0' bus='0' port='${(i % 30) + 1}'/>
    </channel>`);
        break;
      case 5:
        out.push(`    <input type='tablet' bus='usb'>
      <address type='usb' bus='0' port='${(i % 8) + 1}'/>
    </input>`);
        break;
      case 6:
        out.push(`    <rng model='virtio'>
      <backend model='random'>/dev/urandom</backend>${addr}
    </rng>`);
        break;
      default:
        out.push(`    <controller type='virtio-serial' index='${i}'>${addr}
    </controller>`);
    }
  }
  return out.join('\n');
}

const head = (name, uuid, os) => `<domain type='kvm'>
  <name>${name}</name>
  <uuid>${uuid}</uuid>
  <memory unit='KiB'>4194304</memory>
  <currentMemory unit='KiB'>4194304</currentMemory>
  <vcpu placement='static'>2</vcpu>
${os}
  <features>
    <acpi/>
    <apic/>
  </features>
  <cpu mode='host-passthrough' check='none' migratable='on'/>
  <clock offset='utc'>
    <timer name='rtc' tickpolicy='catchup'/>
    <timer name='pit' tickpolicy='delay'/>
    <timer name='hpet' present='no'/>
  </clock>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
`;

/** A BIOS i440fx domain with `n` generated devices (input of the Q35/UEFI rewrite). */
export function i440fxDomain({ name, uuid, n }) {
  const os = `  <os>
    <type arch='x86_64' machine='pc-i440fx-7.2'>hvm</type>
    <boot dev='hd'/>
  </os>`;
  return `${head(name, uuid, os)}  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
${devices(n)}
    <controller type='usb' index='0' model='piix3-uhci'>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x01' function='0x2'/>
    </controller>
    <controller type='pci' index='0' model='pci-root'/>
    <controller type='ide' index='0'>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x01' function='0x1'/>
    </controller>
    <sound model='ich6'>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x04' function='0x0'/>
    </sound>
    <video>
      <model type='cirrus' vram='16384' heads='1' primary='yes'/>
      <address type='pci' domain='0x0000' bus='0x00' slot='0x02' function='0x0'/>
    </video>
  </devices>
</domain>
`;
}

/** A Q35 UEFI domain (manual firmware form) with `n` generated devices. */
export function uefiDomain({ name, uuid, n, loader, template, nvram }) {
  const os = `  <os>
    <type arch='x86_64' machine='pc-q35-7.2'>hvm</type>
    <loader readonly='yes' type='pflash'>${loader}</loader>
    <nvram template='${template}'>${nvram}</nvram>
    <boot dev='hd'/>
  </os>`;
  return `${head(name, uuid, os)}  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
${devices(n, { pciAddresses: false })}
    <controller type='pci' index='0' model='pcie-root'/>
  </devices>
</domain>
`;
}

/** Generation metadata as src/io/archive.ts writes it. */
export function generationMeta({ generation, data, vmName, kind = 'archive', time = '2025-01-01T00:00:00.000Z' }) {
  return {
    generation,
    sha256: createHash('sha256').update(data).digest('hex'),
    size: data.length,
    host: 'bench',
    hostId: 'bench-host',
    time,
    reason: 'release (-)',
    kind,
    vmName,
    basedOn: null,
  };
}

/** Write one committed generation into `<root>/<uuid>/` (directories 0700, files 0600). */
export function writeGeneration(root, uuid, meta, data) {
  const dir = join(root, uuid);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const base = `gen-${String(meta.generation).padStart(6, '0')}`;
  writeFileSync(join(dir, `${base}.fd`), data, { mode: 0o600 });
  writeFileSync(join(dir, `${base}.json`), `${JSON.stringify(meta, null, 2)}\n`, { mode: 0o600 });
}

/**
 * Fill an archive with `count` filler VMs (one small generation each), so that a `prepare` of
 * another VM can show whether it depends on the archive's size.
 */
export function fillArchive(root, count) {
  const data = Buffer.alloc(64, 0xa5);
  for (let i = 0; i < count; i++) {
    const uuid = benchUuid('filler', i);
    writeGeneration(root, uuid, generationMeta({ generation: 1, data, vmName: `filler-${i}` }), data);
  }
}
