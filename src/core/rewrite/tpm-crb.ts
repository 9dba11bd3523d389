/** R22: an emulated TPM 2.0 on the CRB interface, when asked for and the domain has no TPM. */
import { element } from '../domain';
import { added, insertDevice } from './change';
import type { Rule } from './types';

export const tpmCrb: Rule = {
  id: 'tpm-crb',
  why: 'Windows 11 needs TPM 2.0; tpm-crb with the swtpm emulator is what virt-manager adds to UEFI domains',
  applies: (d, o) => o.tpm && d.isX86Qemu && d.devices('tpm').length === 0,
  apply: (d) => [
    added('tpm-crb', insertDevice(d, element('tpm', { model: 'tpm-crb' }, element('backend', { type: 'emulator', version: '2.0' })))),
  ],
};
