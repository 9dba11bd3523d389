#!/usr/bin/env bash
# Make the running libvirtd re-scan /etc/libvirt/hooks (the hook list is read at daemon start and on
# SIGHUP reload only): send SIGHUP to the daemon named by /run/libvirtd.pid, then wait until
# `virsh -c qemu:///system version` answers again. Equivalent of `systemctl reload libvirtd`
# on machines without systemd. Exit 1 if libvirtd is not running or does not answer in time.
set -euo pipefail

readonly PIDFILE="${LIBVIRTD_PIDFILE:-/run/libvirtd.pid}"
readonly URI='qemu:///system'
readonly WAIT_SEC="${LIBVIRT_WAIT_SEC:-60}"

die() { printf 'libvirt-reload: error: %s\n' "$*" >&2; exit 1; }

SUDO=()
[[ $EUID -eq 0 ]] || SUDO=(sudo -n)

[[ -r "$PIDFILE" ]] || die "no pidfile $PIDFILE; is libvirtd running? start it with scripts/ci-setup.sh"
pid="$(cat "$PIDFILE")"
[[ "$pid" =~ ^[0-9]+$ ]] || die "pidfile $PIDFILE does not hold a pid"
"${SUDO[@]}" kill -0 "$pid" 2>/dev/null || die "libvirtd (pid $pid from $PIDFILE) is not running; start it with scripts/ci-setup.sh"

"${SUDO[@]}" kill -HUP "$pid"
deadline=$((SECONDS + WAIT_SEC))
# Give the daemon a moment to enter its reload handler before probing.
sleep 0.2
until timeout 10 virsh -c "$URI" version >/dev/null 2>&1; do
  ((SECONDS < deadline)) || die "libvirtd (pid $pid) did not answer within ${WAIT_SEC}s after SIGHUP"
  sleep 0.5
done
printf 'libvirt-reload: libvirtd (pid %s) reloaded\n' "$pid"
