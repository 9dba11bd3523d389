#!/usr/bin/env bash
# The Debian 13 (trixie) lane: the real-libvirt suites against trixie's libvirt 11.3, QEMU 10.0,
# OVMF 2025.02 and Node 20.19, on a Debian 12 host, without touching the host's libvirtd.
#   sudo bash scripts/debian13-lane.sh [TEST_FILE...]      (default: the files in LANE_FILES below)
#   --rebuild   build the trixie root again even if the cached one is complete
#   DEBIAN13_LANE_EXEC='CMD' runs CMD (bash, in /src of the root, daemons up) instead of the tests
#
# 1. Root: `debootstrap --variant=minbase trixie` from deb.debian.org + the packages below, cached in
#    $DEBIAN13_CACHE/root (default /var/cache/ovmf-hook-trixie) and reused while its marker matches
#    this script's package list and layout version.
# 2. Run, in a private mount namespace: the cached root is the lower layer of an overlay (the upper
#    layer is a tmpfs, so every run starts from the same root and leaves nothing in it) with its own
#    proc, sys (read-only), /dev (a tmpfs: null zero full random urandom tty, devpts with
#    ptmxmode=666; no kvm: the tests use TCG), /run, /tmp, and a copy of this checkout at /src (not
#    the checkout itself: `npm ci` there would replace node_modules under everyone who uses it).
#    `npm ci` + build with trixie's node (chroot, the host's network and CA bundle); then, in new
#    network (lo only) + PID namespaces, pivot_root into the root (see ns_tests: a chroot is not
#    enough for libvirtd), virtlogd + libvirtd -d, the libvirt test project, the summary line
#    `debian13: N passed, N failed, N skipped`, the daemons stopped; every process of the lane
#    ends with its PID namespace.
# Nothing is mounted in the host's namespace; the host's libvirtd, /etc and /dev are not touched
# (checked after the run: /dev/ptmx must still be a device node). Exit 0 only when the tests ran
# and none failed.
set -euo pipefail

readonly SUITE=trixie
readonly MIRROR="${DEBIAN13_MIRROR:-http://deb.debian.org/debian}"
readonly SECURITY_MIRROR="${DEBIAN13_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
readonly CACHE="${DEBIAN13_CACHE:-/var/cache/ovmf-hook-trixie}"
readonly PACKAGES=(libvirt-daemon-system libvirt-clients qemu-system-x86 qemu-utils ovmf libxml2-utils nodejs npm
  ca-certificates swtpm swtpm-tools dosfstools mtools strace procps openssl sbsigntool systemd-boot-efi)
readonly LAYOUT=1 # bump when the root's preparation below changes: the cache is rebuilt
# The real-libvirt suites of this lane. Not here: test/cluster/*.libvirt.test.ts need two libvirtd
# hosts and a GlusterFS volume (scripts/cluster-testbed.sh), which this one-root lane does not build.
readonly LANE_FILES=(test/hook/hook.libvirt.test.ts test/cli/convert.libvirt.test.ts test/support/harness.libvirt.test.ts
  test/reliability/soak.libvirt.test.ts test/cli/tpm.libvirt.test.ts test/install/deb.libvirt.test.ts
  test/keys/enroll.libvirt.test.ts test/keys/convert-secure-boot.libvirt.test.ts test/keys/boot.libvirt.test.ts
  test/keys/template.libvirt.test.ts test/keys/policy.libvirt.test.ts test/keys/certs.libvirt.test.ts)
readonly WAIT_SEC="${LIBVIRT_WAIT_SEC:-120}"
readonly IN_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

log() { printf 'debian13: %s\n' "$*" >&2; }
die() { printf 'debian13: error: %s\n' "$*" >&2; exit 1; }

REPO=$(cd "$(dirname "$0")/.." && pwd)
SELF="$REPO/scripts/debian13-lane.sh"
ROOT="$CACHE/root"      # the cached trixie root (read-only lower layer during runs)
MNT="$CACHE/mnt"        # empty on the host; a tmpfs holding the overlay inside a lane's namespace
NPM_CACHE="$CACHE/npm"  # npm's cache, kept between runs (bind-mounted at /root/.npm)
MARKER="$CACHE/root.complete"
fingerprint() { printf 'layout=%s suite=%s mirror=%s packages=%s\n' "$LAYOUT" "$SUITE" "$MIRROR" "${PACKAGES[*]}"; }

# ---------------------------------------------------------------------------------------------
# Inside a private mount namespace only (these mount over paths of the trixie root, never the host's)

# Refuse to mount anything unless this process is in a mount namespace other than the host's.
assert_private_ns() {
  [[ -n "${LANE_HOST_MNTNS:-}" && "$(readlink /proc/self/ns/mnt)" != "$LANE_HOST_MNTNS" ]] ||
    die "internal: not in a private mount namespace; refusing to mount"
}

# private_dev R: a tmpfs /dev for the root R with only what QEMU, libvirt and node need.
private_dev() {
  local r="$1" d
  assert_private_ns
  [[ -n "$r" && "$r" != / && -d "$r/dev" ]] || die "internal: bad root '$r' for /dev"
  d="$r/dev"
  mount -t tmpfs -o mode=0755,nosuid,size=16m lane-dev "$d"
  mknod -m 666 "$d/null" c 1 3
  mknod -m 666 "$d/zero" c 1 5
  mknod -m 666 "$d/full" c 1 7
  mknod -m 666 "$d/random" c 1 8
  mknod -m 666 "$d/urandom" c 1 9
  mknod -m 666 "$d/tty" c 5 0
  mkdir -m 0755 "$d/pts"
  mkdir -m 1777 "$d/shm"
  mount -t devpts -o newinstance,ptmxmode=666,mode=620,gid=5 lane-devpts "$d/pts"
  ln -s pts/ptmx "$d/ptmx" # inside the tmpfs just mounted, never the host's /dev
  mount -t tmpfs -o mode=1777,nosuid,nodev lane-shm "$d/shm"
  ln -s /proc/self/fd "$d/fd"
  ln -s /proc/self/fd/0 "$d/stdin"
  ln -s /proc/self/fd/1 "$d/stdout"
  ln -s /proc/self/fd/2 "$d/stderr"
}

# base_mounts R: proc, sys (read-only), the private /dev, /run and /tmp for the root R.
base_mounts() {
  local r="$1"
  assert_private_ns
  mount -t proc lane-proc "$r/proc"
  mount -t sysfs -o ro lane-sys "$r/sys"
  private_dev "$r"
  mount -t tmpfs -o mode=0755,nosuid,nodev lane-run "$r/run"
  mount -t tmpfs -o mode=1777,nosuid,nodev lane-tmp "$r/tmp"
}

in_root() { # R CMD... : run CMD in the root R with a clean environment
  local r="$1"
  shift
  chroot "$r" /usr/bin/env -i PATH="$IN_PATH" HOME=/root LANG=C.UTF-8 TERM="${TERM:-dumb}" "$@"
}

# __build DIR: debootstrap + packages + lane configuration into DIR (runs in its own namespace)
ns_build() {
  local dir="$1"
  assert_private_ns
  mount --make-rprivate /
  log "debootstrap --variant=minbase $SUITE $dir $MIRROR"
  local build_log="$CACHE/build.log"
  debootstrap --variant=minbase --components=main "$SUITE" "$dir" "$MIRROR" >"$build_log" 2>&1 ||
    { tail -n 30 "$build_log" >&2; die "debootstrap failed (log: $build_log)"; }
  mount --rbind "$dir" "$dir" # a mount point of its own
  mount --make-rprivate "$dir"
  # debootstrap's own proc/sys mounts are gone with its exit; ours:
  base_mounts "$dir"
  cat >"$dir/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $MIRROR
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $SECURITY_MIRROR
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  rm -f "$dir/etc/apt/sources.list"
  printf '#!/bin/sh\n# no daemon starts while packages install into the lane root\nexit 101\n' >"$dir/usr/sbin/policy-rc.d"
  chmod 755 "$dir/usr/sbin/policy-rc.d"
  log "apt-get install ${PACKAGES[*]}"
  in_root "$dir" apt-get -q update >>"$build_log" 2>&1 ||
    { tail -n 30 "$build_log" >&2; die "apt-get update failed in the trixie root (log: $build_log)"; }
  in_root "$dir" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${PACKAGES[@]}" >>"$build_log" 2>&1 ||
    { tail -n 40 "$build_log" >&2; die "apt-get install failed in the trixie root (log: $build_log)"; }
  in_root "$dir" apt-get clean
  # The lane's daemons: no cgroups (they would be made in the host's hierarchy next to the host
  # libvirtd's), no default network (the lane runs in an empty network namespace anyway).
  printf '\n# ovmf-hook Debian 13 lane\ncgroup_controllers = [ ]\n' >>"$dir/etc/libvirt/qemu.conf"
  rm -f "$dir/etc/libvirt/qemu/networks/autostart/default.xml"
  [[ -s "$dir/etc/machine-id" ]] || od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >"$dir/etc/machine-id"
  mkdir -p "$dir/src" "$dir/root/.npm"
}

# __run: in a private mount namespace (host network still there, for npm ci)
ns_run() {
  assert_private_ns
  mount --make-rprivate /
  local r="$MNT/root" t0
  # the overlay: cached root below, a tmpfs above (every run starts clean, nothing is written back)
  mount -t tmpfs -o mode=0755 lane-overlay "$MNT"
  mkdir -p "$MNT/upper" "$MNT/work" "$r"
  mount -t overlay -o "lowerdir=$ROOT,upperdir=$MNT/upper,workdir=$MNT/work" lane-root "$r"
  mount --rbind "$r" "$r"
  mount --make-rprivate "$r"
  base_mounts "$r"
  mount -t tmpfs -o mode=0755 lane-src "$r/src"
  mount --bind "$NPM_CACHE" "$r/root/.npm"
  cp -L /etc/resolv.conf "$r/etc/resolv.conf" 2>/dev/null || true
  mkdir -p "$r/run/lane"
  # npm (TLS through this host's egress) needs the host's CA bundle
  [[ -r /etc/ssl/certs/ca-certificates.crt ]] && cp /etc/ssl/certs/ca-certificates.crt "$r/run/lane/host-ca.crt"

  # a copy of the checkout as it is now (uncommitted edits included), without node_modules/dist/.git
  tar -C "$REPO" --exclude=./node_modules --exclude=./dist --exclude=./.git --exclude=./coverage -cf - . | tar -C "$r/src" -xf -

  t0=$SECONDS
  local ca=()
  [[ -r "$r/run/lane/host-ca.crt" ]] && ca=(NODE_EXTRA_CA_CERTS=/run/lane/host-ca.crt npm_config_cafile=/run/lane/host-ca.crt)
  local proxy=()
  for v in HTTP_PROXY HTTPS_PROXY NO_PROXY http_proxy https_proxy no_proxy; do [[ -n "${!v:-}" ]] && proxy+=("$v=${!v}"); done
  in_root "$r" env "${ca[@]}" "${proxy[@]}" bash -c 'cd /src && node -e "
      const [a, b] = process.versions.node.split(\".\").map(Number);
      if (a < 20 || (a === 20 && b < 19)) { console.error(\"debian13: node \" + process.version + \" < 20.19: vitest 4 / vite 8 need Node >= 20.19\"); process.exit(1); }" &&
    npm ci --no-audit --no-fund --prefer-offline --loglevel=error && npm run --silent build' ||
    { echo "debian13: not run (npm ci / build with trixie's node failed)"; exit 1; }
  log "npm ci + build with node $(in_root "$r" node --version): $((SECONDS - t0)) s"

  # daemons and tests: also a new network namespace (lo only) and a new PID namespace (when its
  # first process ends, every daemon and QEMU of the lane ends with it)
  unshare -n -p --fork --kill-child --mount-proc="$r/proc" --propagation private \
    env LANE_HOST_MNTNS="$LANE_HOST_MNTNS" LANE_ROOT_MNT="$r" bash "$SELF" __tests "$@"
}

# __tests FILE...: PID 1 of the lane's PID namespace, in its network namespace and a mount namespace
# of its own. pivot_root makes the trixie root the root of that mount namespace and drops the host's
# tree from it. A chroot is not enough: libvirt enters QEMU's mount namespace with setns() to create
# device nodes there (qemu_namespace.c), and setns() resets the root to the namespace's root; with
# the host's tree still in the namespace that lands in the host's devtmpfs (a chroot lane left a
# `/dev/ptmx -> /dev/pts/ptmx` symlink there once, breaking PTYs for every VM on the machine).
ns_tests() {
  assert_private_ns
  local r="$LANE_ROOT_MNT"
  ip link set lo up 2>/dev/null || log "warning: could not bring up lo in the lane's network namespace"
  mount -t sysfs -o ro lane-sys "$r/sys" # this network namespace's view
  mkdir -p "$r/.lane-oldroot"
  cd "$r"
  pivot_root . .lane-oldroot
  cd /
  umount -l /.lane-oldroot
  rmdir /.lane-oldroot
  # from here on only trixie's files exist; the rest runs from the copy of this script in /src
  exec /usr/bin/env -i PATH="$IN_PATH" HOME=/root LANG=C.UTF-8 TERM="${TERM:-dumb}" \
    DEBIAN13_LANE_EXEC="${DEBIAN13_LANE_EXEC:-}" /bin/bash /src/scripts/debian13-lane.sh __inside "$@"
}

stop_daemons() {
  local name pid i
  for name in libvirtd virtlogd; do
    pid=$(cat "/run/$name.pid" 2>/dev/null || true)
    [[ "$pid" =~ ^[0-9]+$ ]] || continue
    kill -TERM "$pid" 2>/dev/null || continue
    for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$pid" 2>/dev/null && { log "$name (pid $pid) still running after 20 s; killing it"; kill -KILL "$pid" 2>/dev/null || true; }
  done
  return 0
}

# __inside FILE...: in the pivoted trixie root (PID 1 of the lane): daemons, tests, summary
ns_inside() {
  local t0 status=0 results=/run/lane/vitest.json
  [[ -e /etc/debian_version && "$(cut -d. -f1 /etc/debian_version)" == 13 ]] || die "internal: not in the trixie root"
  trap stop_daemons EXIT
  virtlogd -d
  libvirtd -d
  t0=$SECONDS
  until timeout 10 virsh -c qemu:///system version >/dev/null 2>&1; do
    ((SECONDS - t0 < WAIT_SEC)) || { echo "debian13: not run (libvirtd did not answer within ${WAIT_SEC} s)"; exit 1; }
    sleep 1
  done
  log "libvirtd answers after $((SECONDS - t0)) s: $(virsh -c qemu:///system version | tr -s ' \n' ' ')"
  log "debian $(cat /etc/debian_version), ovmf $(dpkg-query -W -f='${Version}' ovmf), node $(node --version), files: $*"
  cd /src
  if [[ -n "${DEBIAN13_LANE_EXEC:-}" ]]; then # debugging: a command instead of the tests
    env CI=1 bash -c "$DEBIAN13_LANE_EXEC" || status=$?
    return "$status"
  fi
  t0=$SECONDS
  env CI=1 npx vitest run --project libvirt --reporter=default --reporter=json --outputFile="$results" "$@" || status=$?
  log "tests: $((SECONDS - t0)) s (vitest exit $status)"
  # the summary line, then what was skipped (and why: the titles say it)
  if ! node -e 'const r=JSON.parse(require("fs").readFileSync(process.argv[1],"utf8"));
      console.log(`debian13: ${r.numPassedTests} passed, ${r.numFailedTests} failed, ${r.numPendingTests+r.numTodoTests} skipped`);
      for (const f of r.testResults) for (const t of f.assertionResults) if (t.status === "pending" || t.status === "skipped" || t.status === "todo") console.log(`debian13: skipped: ${f.name.replace("/src/", "")}: ${t.title}`);' "$results"; then
    echo "debian13: not run (vitest wrote no results, exit $status)"
    ((status != 0)) || status=1
  fi
  return "$status"
}

# ---------------------------------------------------------------------------------------------
# On the host (no mounts here)

# assert_unmounted DIR: nothing of the host's namespace is mounted at or under DIR
assert_unmounted() {
  local d
  d=$(realpath -m "$1")
  if awk -v d="$d" '$5 == d || index($5, d "/") == 1 { found = 1 } END { exit !found }' /proc/self/mountinfo; then
    die "something is mounted under $d in the host's namespace; not removing it"
  fi
}

remove_tree() {
  local d="$1"
  [[ "$d" == "$CACHE"/* ]] || die "internal: refusing to remove $d (not under $CACHE)"
  [[ -e "$d" ]] || return 0
  assert_unmounted "$d"
  rm -rf --one-file-system "$d"
}

ensure_root() {
  local rebuild="$1" t0
  if [[ "$rebuild" == 0 && -d "$ROOT" && -r "$MARKER" && "$(head -n1 "$MARKER")" == "$(fingerprint)" ]]; then
    log "cached root: $ROOT (built $(sed -n 2p "$MARKER"))"
    return 0
  fi
  command -v debootstrap >/dev/null || {
    log "installing debootstrap"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends debootstrap >/dev/null ||
      { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends debootstrap >/dev/null; }
  }
  [[ -s /usr/share/debootstrap/scripts/$SUITE ]] || die "this debootstrap does not know $SUITE"
  t0=$SECONDS
  log "building the $SUITE root (no complete cache at $ROOT)"
  rm -f "$MARKER"
  remove_tree "$ROOT.new"
  mkdir -p "$ROOT.new"
  unshare -m --propagation private env LANE_HOST_MNTNS="$(readlink /proc/self/ns/mnt)" bash "$SELF" __build "$ROOT.new" ||
    die "building the $SUITE root failed; the partial root stays at $ROOT.new (removed by the next run)"
  remove_tree "$ROOT"
  mv "$ROOT.new" "$ROOT"
  { fingerprint; date -u +%FT%TZ; } >"$MARKER"
  log "root built in $((SECONDS - t0)) s ($(du -sh "$ROOT" | cut -f1))"
}

host_dev() { find /dev -maxdepth 1 -printf '%y %p\n' | sort; }

main() {
  local rebuild=0 files=() t0=$SECONDS status=0
  for a in "$@"; do
    case "$a" in
      --rebuild) rebuild=1 ;;
      -h | --help) sed -n '2,/^set -euo/p' "$SELF" | sed '$d'; exit 0 ;;
      -*) die "unknown option $a" ;;
      *) files+=("$a") ;;
    esac
  done
  ((${#files[@]})) || files=("${LANE_FILES[@]}")
  [[ $EUID -eq 0 ]] || die "run as root (debootstrap, namespaces, mounts)"
  command -v unshare >/dev/null && command -v chroot >/dev/null || die "needs unshare and chroot (util-linux, coreutils)"
  mkdir -p "$CACHE" "$MNT" "$NPM_CACHE"
  exec 9>"$CACHE/lock"
  flock -w 3600 9 || die "$CACHE/lock is held by another lane for an hour"
  log "cluster suites skipped: test/cluster/*.libvirt.test.ts need two libvirtd hosts and a GlusterFS volume (scripts/cluster-testbed.sh)"
  (ensure_root "$rebuild") || { echo "debian13: not run (building the $SUITE root failed)"; exit 1; }
  assert_unmounted "$MNT"
  local dev_before out="$CACHE/last-run.out"
  dev_before=$(host_dev)
  unshare -m --propagation private env LANE_HOST_MNTNS="$(readlink /proc/self/ns/mnt)" bash "$SELF" __run "${files[@]}" | tee "$out" || status=$?
  grep -qE '^debian13: ([0-9]+ passed|not run)' "$out" || echo "debian13: not run (the lane failed before its tests, exit $status)"
  # the lane must leave the host's /dev as it was (see ns_tests)
  if [[ ! -c /dev/ptmx ]]; then
    echo "debian13: error: the host's /dev/ptmx is no longer a device node ($(stat -c %N /dev/ptmx 2>&1)); QEMU PTYs on this host are broken until it is one again"
    status=1
  fi
  [[ "$(host_dev)" == "$dev_before" ]] || log "warning: entries of the host's /dev changed while the lane ran (another process?): $(diff <(echo "$dev_before") <(host_dev) | grep '^[<>]' | tr '\n' ' ')"
  log "lane: $((SECONDS - t0)) s, exit $status"
  return "$status"
}

case "${1:-}" in
  __build) shift; ns_build "$@" ;;
  __run) shift; ns_run "$@" ;;
  __tests) shift; ns_tests "$@" ;;
  __inside) shift; ns_inside "$@" ;;
  *) main "$@" ;;
esac
