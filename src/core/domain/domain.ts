/**
 * Typed view of a libvirt domain over the faithful XML document: one property, one path
 * (in the spirit of virt-manager's virtinst). Reading never changes the document; the
 * editing helpers used by rewrite rules go through XmlElement's splice-preserving edits.
 */
import { XmlInputError } from '../errors';
import { element, parseXml, serialize, type ParseOptions, type XmlDocument, type XmlElement } from '../xml';

export const POLICY_NS = 'urn:ovmf-hook:policy:1';

export interface Loader {
  path?: string;
  type?: string; // rom | pflash
  readonly?: string; // yes | no
  secure?: string; // yes | no
  stateless?: string;
  format?: string;
}

export interface Nvram {
  /** local file path (text content, or <source file=…> for type='file') */
  path?: string;
  template?: string;
  /** file (default) | block | network */
  type: string;
  format?: string;
}

export class Domain {
  constructor(readonly doc: XmlDocument) {}

  get root(): XmlElement {
    return this.doc.root;
  }

  get name(): string {
    return this.root.find('name')?.text().trim() ?? '';
  }
  get uuid(): string | undefined {
    return this.root.find('uuid')?.text().trim().toLowerCase();
  }
  /** hypervisor driver: qemu | kvm | xen | lxc … */
  get virtType(): string | undefined {
    return this.root.attr('type');
  }
  get os(): XmlElement | undefined {
    return this.root.find('os');
  }
  get osType(): XmlElement | undefined {
    return this.root.find('os/type');
  }
  get arch(): string | undefined {
    return this.osType?.attr('arch');
  }
  get machine(): string | undefined {
    return this.osType?.attr('machine');
  }
  /** `<os firmware='efi|bios'>` (auto-selection) */
  get firmwareAuto(): string | undefined {
    return this.os?.attr('firmware');
  }
  get loaderElement(): XmlElement | undefined {
    return this.root.find('os/loader');
  }
  get nvramElement(): XmlElement | undefined {
    return this.root.find('os/nvram');
  }
  get devicesElement(): XmlElement | undefined {
    return this.root.find('devices');
  }
  get featuresElement(): XmlElement | undefined {
    return this.root.find('features');
  }

  get loader(): Loader | undefined {
    const l = this.loaderElement;
    if (!l) return undefined;
    const path = l.text().trim();
    return {
      path: path || undefined,
      type: l.attr('type'),
      readonly: l.attr('readonly'),
      secure: l.attr('secure'),
      stateless: l.attr('stateless'),
      format: l.attr('format'),
    };
  }

  get nvram(): Nvram | undefined {
    const n = this.nvramElement;
    if (!n) return undefined;
    const type = n.attr('type') ?? 'file';
    const path = type === 'file' ? n.find('source')?.attr('file') ?? (n.text().trim() || undefined) : undefined;
    return { path, template: n.attr('template'), type, format: n.attr('format') };
  }

  /** machine type is some Q35 variant (`q35`, `pc-q35-7.2`) */
  get isQ35(): boolean {
    return /q35/.test(this.machine ?? '');
  }

  /** the domain boots UEFI: `<os firmware='efi'>` or a pflash loader (rulebook R3) */
  get isUefi(): boolean {
    return this.firmwareAuto === 'efi' || this.loader?.type === 'pflash';
  }

  /** x86_64 hvm domain of the qemu/kvm driver: the only kind the rewrite touches */
  get isX86Qemu(): boolean {
    const vt = this.virtType;
    const arch = this.arch ?? 'x86_64';
    return (vt === 'qemu' || vt === 'kvm') && (this.osType?.text().trim() ?? 'hvm') === 'hvm' && arch === 'x86_64';
  }

  feature(name: string): XmlElement | undefined {
    return this.featuresElement?.elements(name)[0];
  }

  /** Devices of one kind (`disk`, `controller`, `interface` …) in document order. */
  devices(kind: string): XmlElement[] {
    return this.devicesElement?.elements(kind) ?? [];
  }

  /** All device elements. */
  allDevices(): XmlElement[] {
    return this.devicesElement?.elements() ?? [];
  }

  /** The `<ovmf:policy>` element of `<metadata>` (any prefix bound to POLICY_NS). */
  policyElement(): XmlElement | undefined {
    const md = this.root.find('metadata');
    if (!md) return undefined;
    for (const e of md.elements()) {
      const [prefix, local] = e.name.includes(':') ? e.name.split(':', 2) : [undefined, e.name];
      if (local !== 'policy') continue;
      const ns = e.attr(prefix ? `xmlns:${prefix}` : 'xmlns') ?? (prefix ? md.attr(`xmlns:${prefix}`) ?? this.root.attr(`xmlns:${prefix}`) : undefined);
      if (ns === POLICY_NS) return e;
    }
    return undefined;
  }

  // ---- editing helpers used by rules ------------------------------------------------------

  /** `<features>`, created after `<os>` … when missing. */
  ensureFeatures(): XmlElement {
    const f = this.featuresElement;
    if (f) return f;
    const anchor = this.root.find('os') ?? this.root.find('vcpu') ?? this.root.find('name')!;
    return this.root.insertAfter(anchor, element('features'));
  }

  /** `<devices>`, created at the end when missing. */
  ensureDevices(): XmlElement {
    return this.devicesElement ?? this.root.append(element('devices'));
  }

  toXml(): string {
    return serialize(this.doc);
  }
}

/** Parse a libvirt domain. Throws XmlInputError for anything that is not a sane `<domain>`. */
export function parseDomain(xml: string, opts: ParseOptions = {}): Domain {
  const d = new Domain(parseXml(xml, { ...opts, rootName: 'domain' }));
  if (!d.root.find('name')) throw new XmlInputError('domain XML has no <name>');
  return d;
}
