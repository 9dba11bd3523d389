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
results=$(mktemp /tmp/ovmf-hook-vitest.XXXXXX.json)
status=0
npx vitest run --reporter=default --reporter=json --outputFile="$results" || status=$?
# a plain closing line for CI readers that do not parse vitest's summary
node -e 'const r=JSON.parse(require("fs").readFileSync(process.argv[1],"utf8"));console.log(`vitest: ${r.numPassedTests} passed, ${r.numFailedTests} failed, ${r.numPendingTests+r.numTodoTests} skipped`)' "$results" || true
rm -f "$results"
exit "$status"
