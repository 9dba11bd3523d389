/**
 * The only way rules edit a domain: each helper performs one edit through the faithful XML
 * document and returns the Change that reports it (none when the edit changed nothing).
 */
import type { Domain, XmlElement } from '../domain';
import type { Change } from './types';

/** An element in one line, for change details (`<sound model='ich9'/>`); long ones are cut after the start tag. */
export function describe(el: XmlElement): string {
  const attrs = el.attrNames().map((n) => ` ${n}='${el.attr(n)}'`).join('');
  const kids = el.elements();
  const text = kids.length === 0 ? el.text().trim() : '';
  const inner = kids.length > 0 ? kids.map(describe).join('') : text;
  const full = inner === '' ? `<${el.name}${attrs}/>` : `<${el.name}${attrs}>${inner}</${el.name}>`;
  return full.length <= 200 ? full : `<${el.name}${attrs}>…`;
}

/** Set an attribute. */
export function setAttr(rule: string, el: XmlElement, name: string, value: string): Change[] {
  const old = el.attr(name);
  if (!el.setAttr(name, value)) return [];
  return [{ rule, path: `${el.path()}/@${name}`, action: 'set', detail: `${name} ${old === undefined ? '(none)' : `'${old}'`} → '${value}'` }];
}

/** Remove an attribute. */
export function removeAttr(rule: string, el: XmlElement, name: string): Change[] {
  const old = el.attr(name);
  const path = `${el.path()}/@${name}`;
  if (!el.removeAttr(name)) return [];
  return [{ rule, path, action: 'remove', detail: `${name}='${old}'` }];
}

/** Remove an element (with its line). */
export function remove(rule: string, el: XmlElement): Change {
  const path = el.path();
  const detail = describe(el);
  el.remove();
  return { rule, path, action: 'remove', detail };
}

/** Report an element that was just inserted. */
export function added(rule: string, el: XmlElement): Change {
  return { rule, path: el.path(), action: 'add', detail: describe(el) };
}

/** Device kinds in the order libvirt writes them (virDomainDefFormat). */
const DEVICE_ORDER = [
  'emulator', 'disk', 'controller', 'lease', 'filesystem', 'interface', 'smartcard', 'serial', 'parallel',
  'console', 'channel', 'input', 'tpm', 'graphics', 'sound', 'audio', 'video', 'hostdev', 'redirdev',
  'redirfilter', 'hub', 'watchdog', 'memballoon', 'rng', 'panic', 'shmem', 'memory', 'iommu', 'vsock', 'crypto',
];

/**
 * Insert a new device where libvirt would write it: after the last device of the same kind or of
 * a kind libvirt writes before it; first in `<devices>` when there is none.
 */
export function insertDevice(d: Domain, dev: XmlElement): XmlElement {
  const devices = d.ensureDevices();
  const rank = DEVICE_ORDER.indexOf(dev.name);
  const before = devices.elements().filter((e) => {
    const r = DEVICE_ORDER.indexOf(e.name);
    return r >= 0 && r <= rank;
  });
  const anchor = before.at(-1);
  return anchor ? devices.insertAfter(anchor, dev) : devices.prepend(dev);
}
