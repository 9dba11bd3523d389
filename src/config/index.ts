export * from './config';
export { loadConfig, parseQemuConfOwner, qemuOwnerNames, resolveIds, hostIdentity } from './load';
