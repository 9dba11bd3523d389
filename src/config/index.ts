export * from './config';
export { configPath, loadConfig, loadConfigAsync, MAX_CONFIG_BYTES, parseQemuConfOwner, qemuOwnerNames, resolveIds, hostIdentity } from './load';
