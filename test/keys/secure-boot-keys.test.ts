/**
 * enrollSecureBootKeys (src/core/varstore/secure-boot-keys.ts): the NVRAM of a VM that booted UEFI
 * without Secure Boot gets the Microsoft-keys template's PK/KEK/db/dbx and Microsoft's 2023
 * certificates, and keeps everything else. On the booted-VM fixture (a plain OVMF_CODE_4M.fd VM)
 * and Debian's templates.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { RefusedError, VarstoreError } from '../../src/core/errors';
import {
  editVarstore,
  EFI_CERT_X509,
  EFI_GLOBAL_VARIABLE,
  EFI_IMAGE_SECURITY_DATABASE,
  enrollSecureBootKeys,
  microsoft2023Entries,
  parseVarstore,
  readSignatureLists,
  SECURE_BOOT_DB_ATTRIBUTES,
  type Variable,
} from '../../src/core/varstore';

const BOOTED = readFileSync(join(__dirname, '..', 'nvram', 'varstore', 'fixtures', 'booted-4m.fd'));
const MS = '/usr/share/OVMF/OVMF_VARS_4M.ms.fd';
const BLANK = '/usr/share/OVMF/OVMF_VARS_4M.fd';
const MS_2M = '/usr/share/OVMF/OVMF_VARS.ms.fd';
const SB_ENABLE = 'f0a30bc7-af08-4556-99c4-001009c93a44';
const VENDOR_KEYS = '9073e4e0-60ec-4b6e-9903-4c223c260f3c';
const haveOvmf = [MS, BLANK].every(existsSync);

const key = (v: Variable) => `${v.vendorGuid}/${v.name}`;
const byKey = (vars: readonly Variable[]) => new Map(vars.map((v) => [key(v), v]));
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const x509 = (v: Variable | undefined) => (v ? readSignatureLists(v.data).flatMap((l) => (l.type === EFI_CERT_X509 ? l.entries.map((e) => hex(e.data)) : [])) : []);
const extra = () => microsoft2023Entries('test');

describe.skipIf(!haveOvmf)('enrollSecureBootKeys', () => {
  const template = readFileSync(MS);
  const tpl = byKey(parseVarstore(template).variables);

  it("a booted VM without keys: the template's PK/KEK/db/dbx (data, attributes, timestamps), the 2023 certificates, SecureBootEnable and VendorKeysNv; every other variable byte for byte", () => {
    const r = enrollSecureBootKeys(BOOTED, template, { templateName: MS, extra: extra() });
    expect(r.status).toBe('enrolled');
    expect(r.changed).toBe(true);
    expect(r.data.length).toBe(BOOTED.length);
    expect(r.secureBootEnable).toBe('copied');
    expect(r.items.map((i) => [i.variable, i.name, i.status])).toEqual([
      ['KEK', 'Microsoft Corporation KEK 2K CA 2023', 'added'],
      ['db', 'Windows UEFI CA 2023', 'added'],
      ['db', 'Microsoft UEFI CA 2023', 'added'],
      ['db', 'Microsoft Option ROM UEFI CA 2023', 'added'],
    ]);
    const before = byKey(parseVarstore(BOOTED).variables);
    const after = byKey(parseVarstore(r.data).variables);
    // PK and dbx exactly the template's
    for (const k of [`${EFI_GLOBAL_VARIABLE}/PK`, `${EFI_IMAGE_SECURITY_DATABASE}/dbx`]) {
      const [a, t] = [after.get(k)!, tpl.get(k)!];
      expect([hex(a.data), a.attributes.value, a.timestamp]).toEqual([hex(t.data), t.attributes.value, t.timestamp]);
    }
    // KEK and db: the template's certificates, then the 2023 ones; the template's timestamp (later than every notBefore)
    for (const k of [`${EFI_GLOBAL_VARIABLE}/KEK`, `${EFI_IMAGE_SECURITY_DATABASE}/db`]) {
      const [a, t] = [after.get(k)!, tpl.get(k)!];
      expect(hex(a.data).startsWith(hex(t.data))).toBe(true);
      expect(a.attributes.value).toBe(SECURE_BOOT_DB_ATTRIBUTES);
      expect(a.timestamp).toBe(t.timestamp);
    }
    expect(r.summary.subjects.pk).toEqual(['Debian UEFI Secure Boot (PK/KEK key)']);
    expect(r.summary.subjects.kek).toEqual(['Debian UEFI Secure Boot (PK/KEK key)', 'Microsoft Corporation KEK CA 2011', 'Microsoft Corporation KEK 2K CA 2023']);
    expect(r.summary.subjects.db).toEqual([
      'Microsoft Windows Production PCA 2011',
      'Microsoft Corporation UEFI CA 2011',
      'Windows UEFI CA 2023',
      'Microsoft UEFI CA 2023',
      'Microsoft Option ROM UEFI CA 2023',
    ]);
    expect([r.summary.effective, r.summary.setupMode, r.summary.secureBootEnable]).toEqual(['on', 'user', 'on']);
    expect(hex(after.get(`${SB_ENABLE}/SecureBootEnable`)!.data)).toBe('01');
    expect(hex(after.get(`${VENDOR_KEYS}/VendorKeysNv`)!.data)).toBe(hex(tpl.get(`${VENDOR_KEYS}/VendorKeysNv`)!.data));
    // everything else as it was: every Boot####, BootOrder, the rest
    const touched = new Set(['PK', 'KEK', 'db', 'dbx', 'SecureBootEnable', 'VendorKeysNv']);
    const others = [...before.values()].filter((v) => !touched.has(v.name));
    expect(others.length).toBeGreaterThan(20);
    for (const v of others) expect([key(v), hex(after.get(key(v))!.data), after.get(key(v))!.attributes.value]).toEqual([key(v), hex(v.data), v.attributes.value]);
    expect([...after.keys()].filter((k) => !before.has(k)).map((k) => k.split('/')[1]).sort()).toEqual(['KEK', 'PK', 'SecureBootEnable', 'db', 'dbx']);
    expect([...r.bootVariables].sort()).toEqual(['Boot0000', 'Boot0001', 'Boot0002', 'Boot0003', 'Boot0004', 'Boot0005', 'Boot0006', 'BootOrder']);
    // the input is untouched
    expect(parseVarstore(BOOTED).variables.some((v) => v.name === 'PK')).toBe(false);
  });

  it('again on its own result: the keys are there, nothing changes', () => {
    const once = enrollSecureBootKeys(BOOTED, template, { extra: extra() });
    const twice = enrollSecureBootKeys(once.data, template, { extra: extra() });
    expect([twice.status, twice.changed, twice.secureBootEnable]).toEqual(['present', false, 'kept']);
    expect(twice.data.equals(once.data)).toBe(true);
  });

  it('a store with its own PK keeps its keys; only a SecureBootEnable of 0 is turned on', () => {
    const ed = editVarstore(readFileSync(MS));
    ed.set('SecureBootEnable', SB_ENABLE, 3, new Uint8Array([0]));
    const off = ed.toBuffer();
    const r = enrollSecureBootKeys(off, readFileSync(BLANK.replace('_4M.fd', '_4M.ms.fd')), { extra: extra() });
    expect([r.status, r.secureBootEnable, r.changed]).toEqual(['present', 'turned on', true]);
    expect(r.items).toEqual([]);
    const after = byKey(parseVarstore(r.data).variables);
    expect(hex(after.get(`${SB_ENABLE}/SecureBootEnable`)!.data)).toBe('01');
    expect(x509(after.get(`${EFI_GLOBAL_VARIABLE}/KEK`))).toEqual(x509(tpl.get(`${EFI_GLOBAL_VARIABLE}/KEK`)));
  });

  it('db entries a store without PK holds (setup mode) stay next to the template ones; a SecureBootEnable of 0 is replaced by the template one', () => {
    const pk = tpl.get(`${EFI_GLOBAL_VARIABLE}/PK`)!.data; // a certificate list whose certificate is not in the template's db
    const own = readSignatureLists(pk)[0].entries[0].data;
    const ed = editVarstore(BOOTED);
    ed.appendSignatures('db', EFI_IMAGE_SECURITY_DATABASE, pk);
    ed.set('SecureBootEnable', SB_ENABLE, 3, new Uint8Array([0]));
    const r = enrollSecureBootKeys(ed.toBuffer(), template);
    const db = x509(byKey(parseVarstore(r.data).variables).get(`${EFI_IMAGE_SECURITY_DATABASE}/db`));
    expect(db).toEqual([...x509(tpl.get(`${EFI_IMAGE_SECURITY_DATABASE}/db`)), hex(own)]);
    expect(r.secureBootEnable).toBe('copied');
    expect(r.summary.effective).toBe('on');
  });

  it('a template without SecureBootEnable: a SecureBootEnable of 0 in the store is deleted (the firmware creates it as 1 in user mode)', () => {
    const noEnable = editVarstore(template);
    noEnable.delete('SecureBootEnable', SB_ENABLE);
    const ed = editVarstore(BOOTED);
    ed.set('SecureBootEnable', SB_ENABLE, 3, new Uint8Array([0]));
    const r = enrollSecureBootKeys(ed.toBuffer(), noEnable.toBuffer());
    expect(r.secureBootEnable).toBe('deleted');
    expect(parseVarstore(r.data).variables.some((v) => v.name === 'SecureBootEnable')).toBe(false);
    expect(r.summary.effective).toBe('on');
  });

  it.skipIf(!existsSync(MS_2M))('a 2 MB store gets the 2 MB template keys within its per-variable limits', () => {
    const blank2m = readFileSync('/usr/share/OVMF/OVMF_VARS.fd');
    const r = enrollSecureBootKeys(blank2m, readFileSync(MS_2M), { extra: extra() });
    expect([r.status, r.summary.effective, r.summary.kek.x509, r.summary.db.x509]).toEqual(['enrolled', 'on', 3, 5]);
  });

  it('refuses in one line: a template without keys, a store that is not a VARS volume, a full store', () => {
    expect(() => enrollSecureBootKeys(BOOTED, readFileSync(BLANK), { templateName: BLANK })).toThrow(
      new RefusedError(`${BLANK} has no PK: it is not a template with Secure Boot keys enrolled (Debian: /usr/share/OVMF/OVMF_VARS_4M.ms.fd)`),
    );
    expect(() => enrollSecureBootKeys(Buffer.concat([BOOTED, Buffer.alloc(4096)]), template)).toThrow(VarstoreError);
    expect(() => enrollSecureBootKeys(BOOTED, Buffer.alloc(4096), { templateName: 'x.fd' })).toThrow(/^x\.fd: /);
    // fill the store so that the keys do not fit
    const ed = editVarstore(BOOTED);
    for (let i = 0; ed.usage().free > 0x1000; i++) ed.set(`Filler${i}`, EFI_GLOBAL_VARIABLE, 7, new Uint8Array(Math.min(0x7000, ed.usage().free - 0x800)));
    expect(() => enrollSecureBootKeys(ed.toBuffer(), template, { extra: extra() })).toThrow(/the variable store is full/);
  });
});
