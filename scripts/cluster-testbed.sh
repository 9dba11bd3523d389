#!/usr/bin/env bash
# Two libvirt hosts on one machine plus a real GlusterFS volume for the shared NVRAM archive
# (issue 7). Used by test/cluster/*.libvirt.test.ts; idempotent; run as root.
#
#   scripts/cluster-testbed.sh up [--build] [--lockd]
#                                             bring everything up (re-running re-installs the hook);
#                                             --lockd: also host C, and B and C with libvirt's lock
#                                             manager (virtlockd, lockspace on the GlusterFS volume)
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
# Lock-manager mode (--lockd): host C = a third libvirtd in its own namespace, built like B
# (qemu+tcp://127.0.0.1:16511/system, firmware in $ROOT/c-ovmf), and B and C both run virtlockd with
# lock_manager = "lockd" in qemu.conf and qemu-lockd.conf's file_lockspace_dir on the GlusterFS
# volume ($ROOT/archive-mnt/lockspace), so their disk locks are cluster-wide. Host A (the machine's
# own libvirtd, shared with other tests) never gets a lock manager. `up` without --lockd stops C and
# brings B back without one.
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
C_HOST_ID=ovmfhook-host-c
LOCKSPACE=$MNT/lockspace
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
virsh_a() { timeout "${VIRSH_TIMEOUT:-30}" virsh -c "$A_URI" "$@"; }
# The namespaced hosts (B, and C in lock-manager mode) share their functions below; host_vars
# selects one: H (its directory), H_NAME, H_LABEL, H_PORT, H_URI, H_OVMF, H_HOST_ID, H_MIG (ports).
host_vars() {
  H_NAME=$1 H=$ROOT/$1 H_OVMF=$ROOT/$1-ovmf H_LABEL=${1^^}
  case $1 in
    b) H_PORT=$B_PORT H_HOST_ID=$B_HOST_ID H_MIG=49300 ;;
    c) H_PORT=16511 H_HOST_ID=$C_HOST_ID H_MIG=49400 ;;
    *) die "no host $1" ;;
  esac
  H_URI="qemu+tcp://127.0.0.1:$H_PORT/system"
}
host_vars b
virsh_b() { timeout "${VIRSH_TIMEOUT:-30}" virsh -c "$H_URI" "$@"; }
anchor_pid() { pidof_file "$H/anchor.pid"; }
in_b() { nsenter -t "$(anchor_pid)" -m -- "$@"; }
# lock-manager mode of this `up` (and of the namespaced hosts already running: $H/mode)
want_mode() { if marked lockd; then echo lockd; else echo plain; fi; }

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
# Hosts B and C (namespaced; see host_vars)

b_running() { alive "$(anchor_pid)" && alive "$(pidof_file "$H/libvirtd.pid")" && virsh_b version >/dev/null 2>&1 && [ "$(cat "$H/mode" 2>/dev/null)" = "$(want_mode)" ]; }

b_prepare_dirs() {
  rm -rf "$H"
  install -d -m 0755 "$H" "$H_OVMF"
  want_mode > "$H/mode"
  # B's own /etc: a copy of A's (a private copy, so host A's packages or other tests replacing
  # /etc/ovmf-hook cannot pull mounts out from under B). B is a fresh host: no domains, NVRAM,
  # hooks, networks, ovmf-hook config.
  cp -a /etc "$H/etc"
  rm -rf "$H/etc/libvirt/hooks" "$H/etc/ovmf-hook" "$H/etc/qemu/firmware" "$H/etc/libvirt/qemu/autostart" "$H/etc/libvirt/qemu/networks/autostart"
  install -d -m 0755 "$H/etc/libvirt/hooks" "$H/etc/ovmf-hook" "$H/etc/qemu/firmware"
  find "$H/etc/libvirt/qemu" -maxdepth 1 -name '*.xml' -delete
  # B's /var/lib: an overlay over A's, with its own libvirt and ovmf-hook directories bound on top
  install -d -m 0755 "$H/var-lib-upper" "$H/var-lib-work"
  tar -C /var/lib -cpf - --exclude='libvirt/images/*' --exclude='libvirt/qemu/nvram/*' \
    --exclude='libvirt/qemu/domain-*' --exclude='libvirt/qemu/save/*' --exclude='libvirt/qemu/snapshot/*' libvirt |
    tar -C "$H" -xpf - && mv "$H/libvirt" "$H/var-lib-libvirt"
  install -d -m 0700 "$H/var-lib-ovmf-hook"
  if [ -d /var/cache/libvirt ]; then cp -a /var/cache/libvirt "$H/cache-libvirt"; else install -d "$H/cache-libvirt"; fi
  install -d -m 0755 "$H/run-libvirt" "$H/log-libvirt" "$H/log-libvirt/qemu" "$H/empty-ovmf" "$H/ovmf-store"
  cat >> "$H/etc/libvirt/libvirtd.conf" <<CONF

# --- ovmf-hook cluster testbed: host $H_LABEL
listen_tls = 0
listen_tcp = 1
tcp_port = "$H_PORT"
listen_addr = "127.0.0.1"
auth_tcp = "none"
host_uuid = "$(cat /proc/sys/kernel/random/uuid)"
log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
CONF
  cat >> "$H/etc/libvirt/qemu.conf" <<CONF

# --- ovmf-hook cluster testbed: host $H_LABEL
migration_port_min = $H_MIG
migration_port_max = $((H_MIG + 50))
# both daemons would name their VMs' cgroups qemu-<id>-<name>; B's ids collide with A's
cgroup_controllers = [ ]
CONF
  if [ "$(want_mode)" = lockd ]; then
    # libvirt's lock manager: virtlockd holds an fcntl() lock per disk in a lockspace on the GlusterFS
    # volume, which every host's client sees (docs/CLUSTER.md: the probe shows such locks are
    # exclusive across clients and dropped when their holder dies)
    echo 'lock_manager = "lockd"' >> "$H/etc/libvirt/qemu.conf"
    cat >> "$H/etc/libvirt/qemu-lockd.conf" <<CONF

# --- ovmf-hook cluster testbed: host $H_LABEL (lock-manager mode)
auto_disk_leases = 1
require_lease_for_disks = 1
file_lockspace_dir = "$LOCKSPACE"
CONF
  fi
  # B's firmware: a copy of the OVMF build under another directory (visible on B only), described
  # by B's own descriptors (same file names as /usr/share/qemu/firmware's, so they override those)
  local f
  for f in /usr/share/OVMF/*_4M*.fd; do cp -L "$f" "$H/ovmf-store/"; done
  chmod 0755 "$H/ovmf-store" && chmod 0644 "$H/ovmf-store"/*
  for f in /usr/share/qemu/firmware/*.json; do
    sed "s|/usr/share/OVMF/|$H_OVMF/|g" "$f" > "$H/etc/qemu/firmware/$(basename "$f")"
  done
  cat > "$H/ns-init.sh" <<SH
#!/usr/bin/env bash
# Runs in host B's new mount namespace (started by cluster-testbed.sh through unshare -m).
set -euo pipefail
mount --make-rprivate /
bind() { mount --bind "\$1" "\$2"; }
bind "$H/etc" /etc
mount -t overlay ovmfhook-$H_NAME-var-lib -o "lowerdir=/var/lib,upperdir=$H/var-lib-upper,workdir=$H/var-lib-work" /var/lib
bind "$H/var-lib-libvirt" /var/lib/libvirt
mkdir -p /var/lib/ovmf-hook
bind "$H/var-lib-ovmf-hook" /var/lib/ovmf-hook
bind "$H/run-libvirt" /run/libvirt
bind "$H/log-libvirt" /var/log/libvirt
bind "$H/cache-libvirt" /var/cache/libvirt
bind "$H/empty-ovmf" /usr/share/OVMF
bind "$H/ovmf-store" "$H_OVMF"
# B's own GlusterFS client (a second FUSE mount of the same volume)
umount "$MNT"
mount -t glusterfs "$(hostname):/$VOL" "$MNT"
# keeps the namespace alive for nsenter while the daemons come and go
setsid sleep infinity </dev/null >/dev/null 2>&1 &
echo \$! > "$H/anchor.pid"
virtlogd -d -p "$H/virtlogd.pid"
if [ "\$(cat "$H/mode")" = lockd ]; then virtlockd -d -p "$H/virtlockd.pid"; fi
libvirtd --listen -d -p "$H/libvirtd.pid"
SH
  chmod 0755 "$H/ns-init.sh"
}

b_up() {
  if b_running; then
    say "host $H_LABEL: already running"
  else
    b_down_quiet
    b_prepare_dirs
    unshare -m --propagation private -- "$H/ns-init.sh"
    wait_for 60 "host $H_LABEL's libvirtd answering on $H_URI" virsh_b version
    say "host $H_LABEL: libvirtd (pid $(pidof_file "$H/libvirtd.pid")) answers on $H_URI"
  fi
  in_b env -C "$REPO" ./install.sh --no-build --no-reload >/dev/null
  write_config "$H/etc/ovmf-hook/config.json" "$H_HOST_ID" /var/lib/ovmf-hook/state "$H/hook.log"
  kill -HUP "$(pidof_file "$H/libvirtd.pid")"
  sleep 0.3
  wait_for 60 "host $H_LABEL answering after SIGHUP" virsh_b version
  say "host $H_LABEL: hook installed (config $H/etc/ovmf-hook/config.json, host id $H_HOST_ID)"
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
  if alive "$(pidof_file "$H/libvirtd.pid")" && virsh_b version >/dev/null 2>&1; then
    for d in $(VIRSH_TIMEOUT=10 virsh_b list --name 2>/dev/null); do VIRSH_TIMEOUT=20 virsh_b destroy "$d" >/dev/null 2>&1 || true; done
  fi
  local pids=()
  for f in libvirtd virtlogd virtlockd; do
    pid=$(pidof_file "$H/$f.pid")
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
  rm -f "$H/anchor.pid" "$H/libvirtd.pid" "$H/virtlogd.pid" "$H/virtlockd.pid"
}

# ------------------------------------------------------------------------------------------------

up() {
  [ "$(id -u)" = 0 ] || die "run as root"
  install -d -m 0755 "$ROOT" "$BOOK"
  local build=0 lockd=0 a
  for a in "$@"; do
    case $a in --build) build=1 ;; --lockd) lockd=1 ;; *) die "unknown option $a" ;; esac
  done
  if [ "$build" = 1 ] || [ ! -x "$REPO/dist/hooks/qemu" ]; then
    (cd "$REPO" && node scripts/build.mjs >/dev/null) || die "build failed (node scripts/build.mjs)"
  fi
  if [ "$lockd" = 1 ]; then mark lockd; else rm -f "$BOOK/lockd"; fi
  local t0=$SECONDS
  gluster_up
  a_up
  if [ "$lockd" = 1 ]; then install -d -m 0700 "$LOCKSPACE"; fi
  host_vars b; b_up
  if [ "$lockd" = 1 ]; then host_vars c; b_up; else host_vars c; b_down_quiet; rm -rf "$H"; fi
  say "up in $((SECONDS - t0)) s: A=$A_URI B=$B_URI$([ "$lockd" = 1 ] && echo " C=qemu+tcp://127.0.0.1:16511/system (B and C: lock_manager lockd)") archive=$ARCHIVE"
}

down() {
  [ "$(id -u)" = 0 ] || die "run as root"
  [ -d "$ROOT" ] || { say "nothing to tear down"; return 0; }
  host_vars c; b_down_quiet
  host_vars b; b_down_quiet
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
  if b_running; then say "host B: running (libvirtd pid $(pidof_file "$B/libvirtd.pid"), $(want_mode))"; else say "host B: not running"; ok=1; fi
  if marked lockd; then
    host_vars c
    if b_running; then say "host C: running (libvirtd pid $(pidof_file "$H/libvirtd.pid"), lockd)"; else say "host C: not running"; ok=1; fi
  fi
  return $ok
}

case "${1:-}" in
  up) shift; up "$@" ;;
  down) down ;;
  status) status ;;
  *) echo "usage: $0 up [--build] [--lockd] | down | status" >&2; exit 2 ;;
esac
