#!/usr/bin/env bash
# Prepare a Debian 12 machine (CI runner or container, no systemd needed) for the *.libvirt.test.ts
# suite: install libvirt + QEMU + OVMF, give /dev/kvm its udev permissions, start virtlogd and
# libvirtd if they are not running, wait until the daemon answers, print versions.
# Idempotent: every step checks before it acts. Run as root (or with passwordless sudo).
# Not its job: npm ci, building, running the tests.
set -euo pipefail

# swtpm: TPM domains; sbsigntool, dosfstools, mtools, systemd-boot-efi: test/keys/enroll.libvirt.test.ts
# signs systemd-boot's EFI binary and boots it from a FAT image (Debian 12 has no efi-shell-x64 package)
readonly PACKAGES=(libvirt-daemon-system libvirt-clients qemu-system-x86 qemu-utils ovmf libxml2-utils virtinst swtpm swtpm-tools sbsigntool dosfstools mtools systemd-boot-efi)
readonly URI='qemu:///system'
readonly WAIT_SEC="${LIBVIRT_WAIT_SEC:-60}"

log() { printf 'ci-setup: %s\n' "$*"; }
die() { printf 'ci-setup: error: %s\n' "$*" >&2; exit 1; }

SUDO=()
if [[ $EUID -ne 0 ]]; then
  command -v sudo >/dev/null || die "run as root (or install sudo): package install and daemon start need root"
  SUDO=(sudo -n)
fi

# --- 1. packages ---------------------------------------------------------------------------------
missing=()
for p in "${PACKAGES[@]}"; do
  status="$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)"
  [[ "$status" == 'install ok installed' ]] || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  log "packages: all present (${PACKAGES[*]})"
else
  log "packages: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  "${SUDO[@]}" apt-get update -q
  "${SUDO[@]}" apt-get install -y -q --no-install-recommends "${PACKAGES[@]}"
fi

# --- 2. /dev/kvm permissions (what udev would do; root-only 0600 makes libvirtd 9.0 re-probe QEMU
#        forever and `virsh define` hang) ---------------------------------------------------------
if [[ -e /dev/kvm ]]; then
  if getent group kvm >/dev/null; then
    "${SUDO[@]}" chgrp kvm /dev/kvm
    "${SUDO[@]}" chmod 660 /dev/kvm
    log "/dev/kvm: $(stat -c '%A %U:%G' /dev/kvm)"
  else
    log "/dev/kvm: present but no 'kvm' group; leaving permissions as they are"
  fi
else
  log "/dev/kvm: absent (tests use TCG, <domain type='qemu'>)"
fi

# --- 2b. swtpm's local CA belongs to the swtpm user ----------------------------------------------
# libvirt runs swtpm_setup as qemu.conf's swtpm_user (default tss) — but as root when libvirtd was
# started before swtpm-tools created tss. Files that a root run left in /var/lib/swtpm-localca
# (its lock file, certserial) then make every later TPM domain fail to start once libvirtd runs
# as tss ("Need read/write rights on …/.lock.swtpm-localca for user tss"). The package makes the
# directory tss:root; give the files inside the same owner.
readonly LOCALCA=/var/lib/swtpm-localca
if [[ -d "$LOCALCA" ]] && getent passwd tss >/dev/null; then
  if [[ -n "$("${SUDO[@]}" find "$LOCALCA" ! -user tss -print -quit)" ]]; then
    "${SUDO[@]}" chown -R tss:root "$LOCALCA"
    log "swtpm: $LOCALCA given back to tss (a root run of swtpm_setup had left files there)"
  fi
fi

# --- 3. daemons --------------------------------------------------------------------------------
# running NAME PIDFILE: true if the pidfile names a live process, or a process of that exact name runs.
running() {
  local name="$1" pidfile="$2" pid
  if [[ -r "$pidfile" ]]; then
    pid="$(cat "$pidfile" 2>/dev/null || true)"
    if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then return 0; fi
  fi
  pgrep -x "$name" >/dev/null
}

start_daemon() {
  local name="$1"
  if running "$name" "/run/$name.pid"; then
    log "$name: already running"
  elif [[ -d /run/systemd/system ]]; then
    log "$name: starting (systemctl)"
    "${SUDO[@]}" systemctl start "$name"
  else
    log "$name: starting ($name -d)"
    "${SUDO[@]}" "$name" -d
  fi
}

start_daemon virtlogd
start_daemon libvirtd

# --- 4. wait until the daemon answers ------------------------------------------------------------
deadline=$((SECONDS + WAIT_SEC))
until "${SUDO[@]}" timeout 10 virsh -c "$URI" version >/dev/null 2>&1; do
  ((SECONDS < deadline)) || die "libvirtd did not answer 'virsh -c $URI version' within ${WAIT_SEC}s"
  sleep 1
done
log "libvirtd answers on $URI"
"${SUDO[@]}" timeout 10 virsh -c "$URI" version
if [[ $EUID -ne 0 ]] && ! timeout 10 virsh -c "$URI" version >/dev/null 2>&1; then
  log "warning: user $(id -un) cannot reach $URI; run the libvirt tests as root or add the user to group 'libvirt'"
fi
log "ovmf: $(dpkg-query -W -f='${Version}' ovmf)"
log "done"
