#!/usr/bin/env bash
# ovmf-hook installer. Idempotent; run as root from a checkout:
#   sudo ./install.sh              install or upgrade
#   sudo ./install.sh --uninstall  remove the hook (config and NVRAM archive are kept)
# Options: --prefix DIR (default /usr/local/lib/ovmf-hook), --hooks-dir DIR (default /etc/libvirt/hooks),
#          --no-reload (do not signal libvirtd/virtqemud), --no-build (use the existing dist/).
set -euo pipefail

PREFIX=/usr/local/lib/ovmf-hook
HOOKS_DIR=/etc/libvirt/hooks
CONF_DIR=/etc/ovmf-hook
STATE_LIB=/var/lib/ovmf-hook
BIN_LINK=/usr/local/bin/ovmf-hook
RELOAD=1
BUILD=1
ACTION=install
MARKER='ovmf-hook: libvirt QEMU hook'

while [ $# -gt 0 ]; do
  case "$1" in
    --uninstall) ACTION=uninstall ;;
    --prefix) PREFIX=$2; shift ;;
    --hooks-dir) HOOKS_DIR=$2; shift ;;
    --no-reload) RELOAD=0 ;;
    --no-build) BUILD=0 ;;
    -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

say() { echo "ovmf-hook install: $*"; }
die() { echo "ovmf-hook install: $*" >&2; exit 1; }
log() { command -v logger >/dev/null 2>&1 && logger -t ovmf-hook -p daemon.info -- "$*" 2>/dev/null || true; }

[ "$(id -u)" = 0 ] || die "run as root (sudo $0)"
SRC=$(cd "$(dirname "$0")" && pwd)
HOOK="$HOOKS_DIR/qemu"
SAVED="$HOOKS_DIR/qemu.d/00-original-qemu"   # a foreign hook we moved aside
STATE_FILE="$CONF_DIR/install-state"

is_ours() { [ -f "$1" ] && head -c 4096 "$1" | grep -q "$MARKER"; }

reload_daemons() {
  [ "$RELOAD" = 1 ] || { say "not reloading libvirt (--no-reload): run 'systemctl reload libvirtd' (or virtqemud)"; return; }
  local done=0 unit pidfile
  if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    for unit in libvirtd virtqemud; do
      if systemctl is-active --quiet "$unit"; then systemctl reload "$unit" && say "reloaded $unit" && done=1; fi
    done
  fi
  if [ "$done" = 0 ]; then
    for pidfile in /run/libvirtd.pid /run/virtqemud.pid; do
      if [ -s "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
        kill -HUP "$(cat "$pidfile")" && say "sent SIGHUP to $(basename "$pidfile" .pid) (hooks are rescanned on reload)" && done=1
      fi
    done
  fi
  [ "$done" = 1 ] || say "no running libvirtd/virtqemud found; the hook is picked up when the daemon starts"
}

if [ "$ACTION" = uninstall ]; then
  if is_ours "$HOOK"; then rm -f "$HOOK"; say "removed $HOOK"; fi
  if [ -f "$STATE_FILE" ] && grep -q '^moved_foreign_hook=1' "$STATE_FILE" && [ -e "$SAVED" ] && [ ! -e "$HOOK" ]; then
    mv "$SAVED" "$HOOK"; say "restored the previous hook to $HOOK"
    rmdir "$HOOKS_DIR/qemu.d" 2>/dev/null || true
  fi
  rm -f "$BIN_LINK" "$STATE_FILE"
  rm -rf "$PREFIX"
  reload_daemons
  log "uninstalled"
  say "uninstalled; kept $CONF_DIR and the NVRAM archive in $STATE_LIB"
  exit 0
fi

# --- refuse early, before anything is written, when a foreign hook cannot be moved aside
if [ -e "$HOOK" ] && ! is_ours "$HOOK" && [ -e "$SAVED" ]; then
  die "$HOOK is not ours and $SAVED already exists; move one of them away and retry"
fi

# --- node: the hook runs in libvirt's bare environment, so its interpreter path is fixed now
NODE=$(command -v node || true)
[ -n "$NODE" ] || die "node (>= 20) not found; install Node.js 20+ (e.g. from NodeSource) and retry"
NODE=$(readlink -f "$NODE")
NODE_MAJOR=$("$NODE" -p 'process.versions.node.split(".")[0]')
[ "$NODE_MAJOR" -ge 20 ] || die "node $("$NODE" --version) is too old; ovmf-hook needs Node.js >= 20"
[ -x /usr/bin/node ] && [ "$(readlink -f /usr/bin/node)" = "$NODE" ] && NODE=/usr/bin/node
case "$NODE" in
  /usr/bin/*|/bin/*) ;;
  *) say "warning: node is $NODE; AppArmor's libvirtd profile only lets hooks exec interpreters from /usr/bin or /bin" ;;
esac

# --- build
if [ "$BUILD" = 1 ]; then
  (cd "$SRC" && npm ci --no-audit --no-fund --loglevel=error && OVMF_HOOK_NODE="$NODE" npm run --silent build)
fi
[ -x "$SRC/dist/hooks/qemu" ] && [ -f "$SRC/dist/cli.cjs" ] || die "dist/ is missing; run without --no-build"

# --- files under one prefix
install -d -m 0755 "$PREFIX/dist/hooks"
install -m 0755 "$SRC/dist/cli.cjs" "$PREFIX/dist/cli.cjs"
rm -f "$PREFIX/dist/cli.mjs" # the CLI of installs before it became CommonJS
{ echo "#!$NODE"; tail -n +2 "$SRC/dist/hooks/qemu"; } > "$PREFIX/dist/hooks/qemu.new"
chmod 0755 "$PREFIX/dist/hooks/qemu.new" && mv -f "$PREFIX/dist/hooks/qemu.new" "$PREFIX/dist/hooks/qemu"
install -m 0644 "$SRC/package.json" "$PREFIX/package.json"
sed -i "1s|^#!.*|#!$NODE|" "$PREFIX/dist/cli.cjs"
ln -sfn "$PREFIX/dist/cli.cjs" "$BIN_LINK"

# --- config and state directories (never overwrite an edited config)
install -d -m 0755 "$CONF_DIR"
if [ ! -e "$CONF_DIR/config.json" ]; then
  cat > "$CONF_DIR/config.json" <<'JSON'
{
  "mode": "warn",
  "policy": { "uefi": "yes", "secure-boot": "no", "tpm": "no", "archive": "yes" },
  "archiveDir": "/var/lib/ovmf-hook/archive",
  "keepGenerations": 10,
  "archiveUnavailable": "allow"
}
JSON
  chmod 0644 "$CONF_DIR/config.json"
  say "wrote $CONF_DIR/config.json"
else
  say "kept existing $CONF_DIR/config.json"
fi
install -d -m 0700 "$STATE_LIB" "$STATE_LIB/archive" "$STATE_LIB/state"

# --- the hook itself; a foreign hook keeps working from qemu.d (libvirt >= 6.5 runs those after ours)
install -d -m 0755 "$HOOKS_DIR"
if [ -e "$HOOK" ] && ! is_ours "$HOOK"; then
  [ -e "$SAVED" ] && die "$HOOK is not ours and $SAVED already exists; move one of them away and retry"
  install -d -m 0755 "$HOOKS_DIR/qemu.d"
  mv "$HOOK" "$SAVED"
  echo "moved_foreign_hook=1" > "$STATE_FILE"
  say "moved the existing hook to $SAVED (it still runs after ours); --uninstall puts it back"
fi
install -m 0755 "$PREFIX/dist/hooks/qemu" "$HOOK.ovmf-hook-new"
mv -f "$HOOK.ovmf-hook-new" "$HOOK"
command -v restorecon >/dev/null 2>&1 && restorecon -R "$HOOKS_DIR" 2>/dev/null || true
say "installed $HOOK (node: $NODE) and $BIN_LINK"

reload_daemons
log "installed $(cd "$SRC" && git describe --always 2>/dev/null || echo)"
"$BIN_LINK" doctor || say "doctor reported problems (see above)"
