#!/usr/bin/env bash
# CI's node18 lane (issue 13): the test suites that run the built hook and CLI, a second time under
# Debian 12's own Node 18.20 (scripts/node18.sh: unpacked, never installed; the machine's node stays
# as it is). As root, after `npm ci` (scripts/test.sh does it):
#   sudo bash scripts/test-node18.sh
# 1. prepares Node 18 (the first run unpacks Debian's packages into /var/cache/ovmf-hook-node18);
# 2. builds dist/ with OVMF_HOOK_NODE=scripts/node18.sh: the hook's shebang, so the tests that run
#    dist/hooks/qemu run it under Node 18, and the node that trains both code caches;
# 3. runs test/hook, test/reliability, test/cli, test/install, test/keys and test/firmware (project unit) with
#    OVMF_HOOK_TEST_NODE=scripts/node18.sh, the node every test that spawns the built CLI uses
#    (TEST_NODE in test/hook/harness.ts); vitest itself stays on the machine's node (it needs 20+).
#    test/cli/node18-parity.test.ts compares the CLI's output under both nodes;
# 4. prints "node18: N passed, N failed, N skipped" and, always (also when interrupted), rebuilds
#    dist/ normally, so later steps (the benchmark, an install) get the #!/usr/bin/node hook.
# Exits with vitest's status (1 also when Node 18 cannot be prepared or dist/ changed under the run).
set -euo pipefail
cd "$(dirname "$0")/.."
NODE18=$PWD/scripts/node18.sh
SUITES=(test/hook test/reliability test/cli test/install test/keys test/firmware)

if ! v18=$("$NODE18" --version); then
  echo "node18: not run (scripts/node18.sh could not prepare Debian 12's Node 18; see above)"
  exit 1
fi
results=$(mktemp /tmp/ovmf-hook-node18.XXXXXX.json)
# shellcheck disable=SC2317 # run by the EXIT trap
normal_build() {
  rm -f "$results"
  if npm run --silent build >/dev/null; then
    echo "node18 lane: dist/ rebuilt normally (hook: $(head -n 1 dist/hooks/qemu))"
  else
    echo "node18 lane: the normal rebuild of dist/ FAILED; run: npm run build" >&2
  fi
}
trap normal_build EXIT
trap 'exit 130' INT TERM

echo "node18 lane: Node $v18 via $NODE18; building dist/ for it"
OVMF_HOOK_NODE=$NODE18 npm run --silent build
[ "$(head -n 1 dist/hooks/qemu)" = "#!$NODE18" ] || { echo "node18: not run (dist/hooks/qemu does not start with #!$NODE18)"; exit 1; }

status=0
# OVMF_HOOK_NODE too: a test that finds dist/ stale rebuilds it (ensureBuilt) with the same hook node.
# --testTimeout: every run of the hook or CLI here costs two more execs and a bind mount (the wrapper)
# that a Debian 12 host does not pay; 100 hook calls at once on a busy 2-CPU runner took over the
# default 20 s. Tests with their own timeout keep it.
OVMF_HOOK_NODE=$NODE18 OVMF_HOOK_TEST_NODE=$NODE18 npx vitest run --project unit "${SUITES[@]}" --testTimeout=60000 \
  --reporter=default --reporter=json --outputFile="$results" || status=$?
shebang=$(head -n 1 dist/hooks/qemu)
if [ "$shebang" != "#!$NODE18" ]; then
  echo "node18 lane: dist/hooks/qemu was rebuilt by something else during the run (now $shebang): its hook tests may have run another node" >&2
  [ "$status" != 0 ] || status=1
fi
# shellcheck disable=SC2016 # JavaScript template literal
node -e 'const r=JSON.parse(require("fs").readFileSync(process.argv[1],"utf8"));console.log(`node18: ${r.numPassedTests} passed, ${r.numFailedTests} failed, ${r.numPendingTests+r.numTodoTests} skipped`)' "$results" ||
  echo "node18: no vitest report (exit $status)"
exit "$status"
