import { defineConfig } from 'vitest/config';

// Two projects: `unit` (pure, fast, no libvirt) and `libvirt` (real libvirtd + QEMU + OVMF,
// run one file at a time because they share one daemon). `npm test` runs both.
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
