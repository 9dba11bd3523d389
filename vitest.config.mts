import { defineConfig } from 'vitest/config';

// Three projects: `unit` (pure, fast, no libvirt); `unit-sync-io`, the NVRAM layer's tests again
// with the synchronous file API that the hook uses on local disks (src/io/fs-api.ts; its setup file
// makes the tests' helpers pass that API down; the `unit` run covers fs.promises, the API of network
// filesystems); and `libvirt` (real libvirtd + QEMU + OVMF, run one file at a time because they
// share one daemon). `npm test` runs all three.
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          include: ['test/**/*.test.ts'],
          exclude: ['test/**/*.libvirt.test.ts', 'node_modules/**'],
          testTimeout: 20_000,
        },
      },
      {
        test: {
          name: 'unit-sync-io',
          include: ['test/nvram/*.test.ts'],
          setupFiles: ['test/support/sync-io.ts'],
          testTimeout: 20_000,
        },
      },
      {
        test: {
          name: 'libvirt',
          include: ['test/**/*.libvirt.test.ts'],
          fileParallelism: false,
          testTimeout: 300_000,
          hookTimeout: 300_000,
        },
      },
    ],
  },
});
