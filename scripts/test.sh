#!/usr/bin/env bash
# The whole test suite on a fresh Debian 12, as root: installs what the tests need (Debian packages,
# npm ci), starts virtlogd + libvirtd, builds, then runs unit + real-libvirt integration tests.
#   sudo bash scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ci-setup.sh
npm ci --no-audit --no-fund --loglevel=error
npm run --silent build
npx tsc --noEmit
npx vitest run
