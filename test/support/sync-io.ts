/**
 * Setup of the `unit-sync-io` project (vitest.config.mts): the NVRAM tests pass their helpers'
 * file API (test/nvram/helpers.ts, `io`) to everything they call, and this makes it the
 * synchronous one that the hook passes for directories on a local disk (src/io/fs-api.ts). The
 * `unit` project has no such setup: the same tests run with fs.promises, the API of network
 * filesystems.
 */
process.env.OVMF_HOOK_TEST_FS_API = 'sync';
