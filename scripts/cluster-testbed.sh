#!/usr/bin/env bash
# Two libvirt hosts on one machine plus a real GlusterFS volume for the shared NVRAM archive
# (issue 7). Used by test/cluster/*.libvirt.test.ts; idempotent; run as root.
#
#   scripts/cluster-testbed.sh up [--build]   bring everything up (re-running re-installs the hook)
#   scripts/cluster-testbed.sh down           tear everything down, restore host A as it was found
#   scripts/cluster-testbed.sh status         what is up (exit 0 only when all of it is)
#
# Host A = the normal libvirtd (qemu:///system). Host B = a second libvirtd in its own mount
# namespace (qemu+tcp://127.0.0.1:16510/system): a private copy of /etc (its own libvirt config,
# hooks, /etc/ovmf-hook, /etc/qemu/firmware), an overlay on /var/lib with its own /var/lib/libvirt
# and /var/lib/ovmf-hook, its own /run/libvirt, /var/log/libvirt, /var/cache/libvirt, and a
# *different* OVMF path: /usr/share/OVMF is empty there, its firmware lives in $ROOT/b-ovmf (visible
# on B only, described by B's /etc/qemu/firmware), so the `migrate begin` filter has to map paths.
# GlusterFS volume "ovmfhook" (one brick): mounted at $ROOT/archive-mnt on A by one FUSE client and
# again inside B's namespace by a second client, so the hosts really are two gluster clients.
# Both hosts' hook configs point archiveDir at $ROOT/archive-mnt/archive. Only VMs whose metadata
# says <ovmf:policy archive="yes"/> are archived (the tests' VMs); the guard is off (mode "off").
# Details and findings: docs/CLUSTER.md.
set -euo pipefail

ROOT=${OVMFHOOK_CLUSTER_DIR:-/srv/ovmfhook-cluster}
BRICK=${OVMFHOOK_CLUSTER_BRICK:-/srv/ovmfhook-brick}
VOL=ovmfhook
MNT=$ROOT/archive-mnt
ARCHIVE=$MNT/archive
A=$ROOT/a
B=$ROOT/b
BOVMF=$ROOT/b-ovmf
BOOK=$ROOT/testbed            # bookkeeping: what we created, backups of host A
B_PORT=16510
B_URI="qemu+tcp://127.0.0.1:$B_PORT/system"
A_URI=qemu:///system
A_HOST_ID=ovmfhook-host-a
B_HOST_ID=ovmfhook-host-b
REPO=$(cd "$(dirname "$0")/.." && pwd)
GLUSTER_PKGS=(glusterfs-server glusterfs-client)
# Client-side caches that serve another client's replaced or deleted file for up to a second
# (measured: 198 of 200 renames read stale on the other host with the defaults); see docs/CLUSTER.md
VOLUME_OPTIONS=(performance.stat-prefetch=off performance.quick-read=off performance.open-behind=off)
# host A paths install.sh touches (backed up at the first `up`, restored by `down`)
A_PATHS=(/etc/libvirt/hooks /etc/ovmf-hook /usr/local/lib/ovmf-hook /usr/local/bin/ovmf-hook /var/lib/ovmf-hook)

say() { printf 'cluster-testbed: %s\n' "$*"; }
die() { printf 'cluster-testbed: error: %s\n' "$*" >&2; exit 1; }
alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }
pidof_file() { [ -s "$1" ] && cat "$1" || true; }
mark() { mkdir -p "$BOOK"; touch "$BOOK/$1"; }
marked() { [ -e "$BOOK/$1" ]; }
wait_for() { # SECONDS DESCRIPTION CMD...
  local t=$1 what=$2; shift 2
  local end=$((SECONDS + t))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < end)) || die "$what did not happen within ${t}s"
    sleep 0.2
  done
}
virsh_b() { timeout "${VIRSH_TIMEOUT:-30}" virsh -c "$B_URI" "$@"; }
virsh_a() { timeout "${VIRSH_TIMEOUT:-30}" virsh -c "$A_URI" "$@"; }
anchor_pid() { pidof_file "$B/anchor.pid"; }
in_b() { nsenter -t "$(anchor_pid)" -m -- "$@"; }

# ------------------------------------------------------------------------------------------------
# GlusterFS

gluster_cli() { timeout 60 gluster --mode=script "$@"; }

gluster_up() {
  if ! command -v glusterd >/dev/null || ! command -v mount.glusterfs >/dev/null; then
    say "installing ${GLUSTER_PKGS[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends "${GLUSTER_PKGS[@]}" >/dev/null
  fi
  [ -e /dev/fuse ] || die "/dev/fuse is missing: GlusterFS mounts need FUSE"
  if ! gluster_cli volume list >/dev/null 2>&1; then
    say "starting glusterd"
    glusterd -p "$BOOK/glusterd.pid"
    mark glusterd-ours
    wait_for 30 "glusterd answering" gluster_cli volume list
  fi
  if ! gluster_cli volume info "$VOL" >/dev/null 2>&1; then
    rm -rf "$BRICK" # a brick dir of a deleted volume keeps its volume-id xattr
    mkdir -p "$BRICK"
    gluster_cli volume create "$VOL" "$(hostname):$BRICK" force >/dev/null
    mark volume-ours
    local kv
    for kv in "${VOLUME_OPTIONS[@]}"; do gluster_cli volume set "$VOL" "${kv%%=*}" "${kv#*=}" >/dev/null; done
    say "created volume $VOL on $(hostname):$BRICK (${VOLUME_OPTIONS[*]})"
  fi
  if ! gluster_cli volume info "$VOL" | grep -q '^Status: Started'; then
    gluster_cli volume start "$VOL" >/dev/null
    say "started volume $VOL"
  fi
  if ! mountpoint -q "$MNT"; then
    # an immutable mount point: while the volume is not mounted nobody can create the archive
    # on the local disk underneath (the hook then sees "archive unavailable")
    mkdir -p "$MNT"
    chattr +i "$MNT" || say "warning: cannot make $MNT immutable; an unmounted archive would be written to the local disk"
    mount -t glusterfs "$(hostname):/$VOL" "$MNT"
    say "mounted $(hostname):/$VOL at $MNT (host A's client)"
  fi
  wait_for 30 "the gluster mount answering" stat "$MNT/."
  install -d -m 0700 "$ARCHIVE"
}

# ------------------------------------------------------------------------------------------------
# Host A

backup_a() {
  marked a-backup-done && return 0
  mkdir -p "$BOOK/a-backup"
  local p
  local keep=()
  for p in "${A_PATHS[@]}"; do if [ -e "$p" ] || [ -L "$p" ]; then keep+=("${p#/}"); fi; done
  if ((${#keep[@]})); then tar -C / -cpf "$BOOK/a-backup/a.tar" "${keep[@]}"; fi
  mark a-backup-done
  say "backed up host A's ${keep[*]:-(nothing: none of ${A_PATHS[*]} existed)}"
}

restore_a() {
  marked a-backup-done || return 0
  # Someone else (another test run) reinstalled the hook on host A since `up`: restoring the
  # backup now would undo their work (or bring back what they have cleaned up meanwhile).
  if ! grep -qs "\"$A_HOST_ID\"" /etc/ovmf-hook/config.json; then
    say "host A's hook config was replaced by someone else since 'up': left as it is (backup in $BOOK/a-backup is dropped)"
    return 0
  fi
  local p
  for p in "${A_PATHS[@]}"; do rm -rf "$p"; done
  if [ -s "$BOOK/a-backup/a.tar" ]; then tar -C / -xpf "$BOOK/a-backup/a.tar"; fi
  reload_a
  say "restored host A's hook, config and ovmf-hook directories as they were"
}

reload_a() {
  local pid
  pid=$(pidof_file /run/libvirtd.pid)
  alive "$pid" || return 0
  kill -HUP "$pid"
  sleep 0.3
  wait_for 60 "host A answering after SIGHUP" virsh_a version
}

write_config() { # FILE HOST_ID STATE_DIR LOG_FILE
  cat > "$1" <<JSON
{
  "mode": "off",
  "policy": { "uefi": "no", "archive": "no" },
  "archiveDir": "$ARCHIVE",
  "stateDir": "$3",
  "hostId": "$2",
  "logFile": "$4",
  "archiveUnavailable": "refuse",
  "claimLeaseSeconds": 0,
  "keepGenerations": 100,
  "firmwareDirs": ["/usr/share/qemu/firmware", "/etc/qemu/firmware"]
}
JSON
  chmod 0644 "$1"
}

a_up() {
  backup_a
  install -d -m 0755 "$A"
  install -d -m 0700 "$A/state"
  # only our hook runs on A while the testbed is up: other hooks (qemu.d, or a foreign hook that
  # install.sh moves there) are in the backup, and `down` restores them
  rm -rf /etc/libvirt/hooks/qemu.d
  (cd "$REPO" && ./install.sh --no-build --no-reload >/dev/null)
  rm -rf /etc/libvirt/hooks/qemu.d
  write_config /etc/ovmf-hook/config.json "$A_HOST_ID" "$A/state" "$A/hook.log"
  reload_a
  say "host A: hook installed (config /etc/ovmf-hook/config.json, host id $A_HOST_ID)"
}

# ------------------------------------------------------------------------------------------------
# Host B

b_running() { alive "$(anchor_pid)" && alive "$(pidof_file "$B/libvirtd.pid")" && virsh_b version >/dev/null 2>&1; }

b_prepare_dirs() {
  rm -rf "$B"
  install -d -m 0755 "$B" "$BOVMF"
  # B's own /etc: a copy of A's (a private copy, so host A's packages or other tests replacing
  # /etc/ovmf-hook cannot pull mounts out from under B). B is a fresh host: no domains, NVRAM,
  # hooks, networks, ovmf-hook config.
  cp -a /etc "$B/etc"
  rm -rf "$B/etc/libvirt/hooks" "$B/etc/ovmf-hook" "$B/etc/qemu/firmware" "$B/etc/libvirt/qemu/autostart" "$B/etc/libvirt/qemu/networks/autostart"
  install -d -m 0755 "$B/etc/libvirt/hooks" "$B/etc/ovmf-hook" "$B/etc/qemu/firmware"
  find "$B/etc/libvirt/qemu" -maxdepth 1 -name '*.xml' -delete
  # B's /var/lib: an overlay over A's, with its own libvirt and ovmf-hook directories bound on top
  install -d -m 0755 "$B/var-lib-upper" "$B/var-lib-work"
  tar -C /var/lib -cpf - --exclude='libvirt/images/*' --exclude='libvirt/qemu/nvram/*' \
    --exclude='libvirt/qemu/domain-*' --exclude='libvirt/qemu/save/*' --exclude='libvirt/qemu/snapshot/*' libvirt |
    tar -C "$B" -xpf - && mv "$B/libvirt" "$B/var-lib-libvirt"
  install -d -m 0700 "$B/var-lib-ovmf-hook"
  if [ -d /var/cache/libvirt ]; then cp -a /var/cache/libvirt "$B/cache-libvirt"; else install -d "$B/cache-libvirt"; fi
  install -d -m 0755 "$B/run-libvirt" "$B/log-libvirt" "$B/log-libvirt/qemu" "$B/empty-ovmf" "$B/ovmf-store"
  cat >> "$B/etc/libvirt/libvirtd.conf" <<CONF

# --- ovmf-hook cluster testbed: host B
listen_tls = 0
listen_tcp = 1
tcp_port = "$B_PORT"
listen_addr = "127.0.0.1"
auth_tcp = "none"
host_uuid = "$(cat /proc/sys/kernel/random/uuid)"
log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
CONF
  cat >> "$B/etc/libvirt/qemu.conf" <<CONF

# --- ovmf-hook cluster testbed: host B
migration_port_min = 49300
migration_port_max = 49350
# both daemons would name their VMs' cgroups qemu-<id>-<name>; B's ids collide with A's
cgroup_controllers = [ ]
CONF
  # B's firmware: a copy of the OVMF build under another directory (visible on B only), described
  # by B's own descriptors (same file names as /usr/share/qemu/firmware's, so they override those)
  local f
  for f in /usr/share/OVMF/*_4M*.fd; do cp -L "$f" "$B/ovmf-store/"; done
  chmod 0755 "$B/ovmf-store" && chmod 0644 "$B/ovmf-store"/*
  for f in /usr/share/qemu/firmware/*.json; do
    sed "s|/usr/share/OVMF/|$BOVMF/|g" "$f" > "$B/etc/qemu/firmware/$(basename "$f")"
  done
  cat > "$B/ns-init.sh" <<SH
#!/usr/bin/env bash
# Runs in host B's new mount namespace (started by cluster-testbed.sh through unshare -m).
set -euo pipefail
mount --make-rprivate /
bind() { mount --bind "\$1" "\$2"; }
bind "$B/etc" /etc
mount -t overlay ovmfhook-b-var-lib -o "lowerdir=/var/lib,upperdir=$B/var-lib-upper,workdir=$B/var-lib-work" /var/lib
bind "$B/var-lib-libvirt" /var/lib/libvirt
mkdir -p /var/lib/ovmf-hook
bind "$B/var-lib-ovmf-hook" /var/lib/ovmf-hook
bind "$B/run-libvirt" /run/libvirt
bind "$B/log-libvirt" /var/log/libvirt
bind "$B/cache-libvirt" /var/cache/libvirt
bind "$B/empty-ovmf" /usr/share/OVMF
bind "$B/ovmf-store" "$BOVMF"
# B's own GlusterFS client (a second FUSE mount of the same volume)
umount "$MNT"
mount -t glusterfs "$(hostname):/$VOL" "$MNT"
# keeps the namespace alive for nsenter while the daemons come and go
setsid sleep infinity </dev/null >/dev/null 2>&1 &
echo \$! > "$B/anchor.pid"
virtlogd -d -p "$B/virtlogd.pid"
libvirtd --listen -d -p "$B/libvirtd.pid"
SH
  chmod 0755 "$B/ns-init.sh"
}

b_up() {
  if b_running; then
    say "host B: already running"
  else
    b_down_quiet
    b_prepare_dirs
    unshare -m --propagation private -- "$B/ns-init.sh"
    wait_for 60 "host B's libvirtd answering on $B_URI" virsh_b version
    say "host B: libvirtd (pid $(pidof_file "$B/libvirtd.pid")) answers on $B_URI"
  fi
  in_b env -C "$REPO" ./install.sh --no-build --no-reload >/dev/null
  write_config "$B/etc/ovmf-hook/config.json" "$B_HOST_ID" /var/lib/ovmf-hook/state "$B/hook.log"
  kill -HUP "$(pidof_file "$B/libvirtd.pid")"
  sleep 0.3
  wait_for 60 "host B answering after SIGHUP" virsh_b version
  say "host B: hook installed (config $B/etc/ovmf-hook/config.json, host id $B_HOST_ID)"
}

# pids of processes living in host B's mount namespace (ours: all were started by b_up or by tests)
b_ns_pids() {
  local anchor=$(anchor_pid) ns p
  alive "$anchor" || return 0
  ns=$(readlink "/proc/$anchor/ns/mnt")
  for p in /proc/[0-9]*; do
    [ "$(readlink "$p/ns/mnt" 2>/dev/null)" = "$ns" ] && echo "${p#/proc/}"
  done
  return 0
}

b_down_quiet() {
  local pid anchor
  if alive "$(pidof_file "$B/libvirtd.pid")" && virsh_b version >/dev/null 2>&1; then
    for d in $(VIRSH_TIMEOUT=10 virsh_b list --name 2>/dev/null); do VIRSH_TIMEOUT=20 virsh_b destroy "$d" >/dev/null 2>&1 || true; done
  fi
  local pids=()
  for f in libvirtd virtlogd; do
    pid=$(pidof_file "$B/$f.pid")
    if alive "$pid"; then kill "$pid"; pids+=("$pid"); fi
  done
  for pid in "${pids[@]}"; do
    for _ in $(seq 50); do alive "$pid" || break; sleep 0.1; done
    alive "$pid" && kill -9 "$pid"
  done
  anchor=$(anchor_pid)
  if alive "$anchor"; then
    in_b umount "$MNT" 2>/dev/null || in_b umount -l "$MNT" 2>/dev/null || true
    for pid in $(b_ns_pids); do [ "$pid" = "$anchor" ] || kill -9 "$pid" 2>/dev/null || true; done
    kill -9 "$anchor" 2>/dev/null || true
  fi
  rm -f "$B/anchor.pid" "$B/libvirtd.pid" "$B/virtlogd.pid"
}

# ------------------------------------------------------------------------------------------------

up() {
  [ "$(id -u)" = 0 ] || die "run as root"
  install -d -m 0755 "$ROOT" "$BOOK"
  if [ "${1:-}" = --build ] || [ ! -x "$REPO/dist/hooks/qemu" ]; then
    (cd "$REPO" && node scripts/build.mjs >/dev/null) || die "build failed (node scripts/build.mjs)"
  fi
  local t0=$SECONDS
  gluster_up
  a_up
  b_up
  say "up in $((SECONDS - t0)) s: A=$A_URI B=$B_URI archive=$ARCHIVE"
}

down() {
  [ "$(id -u)" = 0 ] || die "run as root"
  [ -d "$ROOT" ] || { say "nothing to tear down"; return 0; }
  b_down_quiet
  # test VMs a failed run may have left on host A (transient: destroy removes them)
  if virsh_a version >/dev/null 2>&1; then
    for d in $(virsh_a list --name 2>/dev/null | grep '^ovmfhook-t-cl' || true); do virsh_a destroy "$d" >/dev/null 2>&1 || true; done
  fi
  if mountpoint -q "$MNT"; then umount "$MNT" 2>/dev/null || umount -l "$MNT"; fi
  [ -d "$MNT" ] && ! mountpoint -q "$MNT" && chattr -i "$MNT" 2>/dev/null || true
  if command -v gluster >/dev/null && marked volume-ours; then
    gluster_cli volume stop "$VOL" force >/dev/null 2>&1 || true
    gluster_cli volume delete "$VOL" >/dev/null 2>&1 || true
    rm -rf "$BRICK"
  fi
  local pid
  pid=$(pidof_file "$BOOK/glusterd.pid")
  if marked glusterd-ours && alive "$pid"; then
    kill "$pid"; for _ in $(seq 50); do alive "$pid" || break; sleep 0.1; done; alive "$pid" && kill -9 "$pid"
  fi
  restore_a
  rm -rf "$ROOT"
  say "down"
}

status() {
  local ok=0
  if gluster_cli volume info "$VOL" 2>/dev/null | grep -q '^Status: Started'; then say "gluster volume $VOL: started"; else say "gluster volume $VOL: not started"; ok=1; fi
  if mountpoint -q "$MNT"; then say "archive mount $MNT: mounted"; else say "archive mount $MNT: not mounted"; ok=1; fi
  if grep -qs "$A_HOST_ID" /etc/ovmf-hook/config.json && [ -x /etc/libvirt/hooks/qemu ]; then say "host A: hook installed"; else say "host A: hook not installed"; ok=1; fi
  if b_running; then say "host B: running (libvirtd pid $(pidof_file "$B/libvirtd.pid"))"; else say "host B: not running"; ok=1; fi
  return $ok
}

case "${1:-}" in
  up) shift; up "$@" ;;
  down) down ;;
  status) status ;;
  *) echo "usage: $0 up [--build] | down | status" >&2; exit 2 ;;
esac
