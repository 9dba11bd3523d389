#!/usr/bin/env bash
# ovmf-hook installer. Idempotent; run as root from a checkout:
#   sudo ./install.sh              install or upgrade
#   sudo ./install.sh --uninstall  remove the hook (config and NVRAM archive are kept)
# Options: --hooks-dir DIR (default /etc/libvirt/hooks), --prefix DIR (default /usr/local/lib/ovmf-hook),
#          --bin-link PATH / --no-bin-link (the CLI link; default /usr/local/bin/ovmf-hook for the default
#            hooks dir and prefix, none otherwise), --config-dir DIR (config.json and the install records;
#            default /etc/ovmf-hook), --state-dir DIR (archive/ and state/; default /var/lib/ovmf-hook),
#          --no-reload (do not signal libvirtd/virtqemud), --no-build (use the existing dist/),
#          --from-package (the Debian package's maintainer scripts: the files under --prefix, default this
#            script's directory, and the --bin-link are the package's: nothing is built, copied or removed
#            there; the hook, the foreign hook, config, state, record and reload are handled as always).
# One install record per hooks dir: <config-dir>/installs/<hooks dir, as systemd-escape --path>. It keeps
# the prefix, the CLI link and the hook that was there before, so --uninstall needs only --hooks-dir.
set -euo pipefail

DEFAULT_PREFIX=/usr/local/lib/ovmf-hook
DEFAULT_HOOKS_DIR=/etc/libvirt/hooks
DEFAULT_BIN_LINK=/usr/local/bin/ovmf-hook
DEFAULT_STATE_LIB=/var/lib/ovmf-hook
PREFIX=$DEFAULT_PREFIX
HOOKS_DIR=$DEFAULT_HOOKS_DIR
CONF_DIR=/etc/ovmf-hook
STATE_LIB=$DEFAULT_STATE_LIB
BIN_LINK=
PREFIX_SET=0
BIN_LINK_SET=0
RELOAD=1
BUILD=1
FROM_PACKAGE=0
ACTION=install
MARKER='ovmf-hook: libvirt QEMU hook'

need_arg() { { [ $# -ge 2 ] && [ -n "$2" ]; } || { echo "install.sh: $1 needs a value (see --help)" >&2; exit 2; }; }
while [ $# -gt 0 ]; do
  case "$1" in
    --uninstall) ACTION=uninstall ;;
    --prefix) need_arg "$@"; PREFIX=$2; PREFIX_SET=1; shift ;;
    --hooks-dir) need_arg "$@"; HOOKS_DIR=$2; shift ;;
    --bin-link) need_arg "$@"; BIN_LINK=$2; BIN_LINK_SET=1; shift ;;
    --no-bin-link) BIN_LINK=; BIN_LINK_SET=1 ;;
    --config-dir) need_arg "$@"; CONF_DIR=$2; shift ;;
    --state-dir) need_arg "$@"; STATE_LIB=$2; shift ;;
    --no-reload) RELOAD=0 ;;
    --no-build) BUILD=0 ;;
    --from-package) FROM_PACKAGE=1; BUILD=0 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

say() { echo "ovmf-hook install: $*"; }
die() { echo "ovmf-hook install: $*" >&2; exit 1; }
log() { command -v logger >/dev/null 2>&1 && logger -t ovmf-hook -p daemon.info -- "$*" 2>/dev/null || true; }

[ "$(id -u)" = 0 ] || die "run as root (sudo $0)"
SRC=$(cd "$(dirname "$0")" && pwd)
# the package ships this script next to its files (/usr/lib/ovmf-hook/install.sh)
[ "$FROM_PACKAGE" = 0 ] || [ "$PREFIX_SET" = 1 ] || PREFIX=$SRC
# absolute and normalised (no symlinks resolved): the name libvirt and the admin use for it
abspath() { realpath -ms -- "$1"; }
HOOKS_DIR=$(abspath "$HOOKS_DIR")
PREFIX=$(abspath "$PREFIX")
CONF_DIR=$(abspath "$CONF_DIR")
STATE_LIB=$(abspath "$STATE_LIB")
[ -z "$BIN_LINK" ] || BIN_LINK=$(abspath "$BIN_LINK")
nl='
'
case "$HOOKS_DIR$PREFIX$CONF_DIR$STATE_LIB$BIN_LINK" in *"$nl"*) die "paths with a newline are not supported" ;; esac

HOOK="$HOOKS_DIR/qemu"
SAVED="$HOOKS_DIR/qemu.d/00-original-qemu"   # a foreign hook we moved aside
CLI="$PREFIX/dist/cli.cjs"
LEGACY_RECORD="$CONF_DIR/install-state"     # the one shared record of installers before per-hooks-dir records

# the record's file name: the hooks dir escaped like `systemd-escape --path` (/etc/libvirt/hooks → etc-libvirt-hooks)
escape_path() (
  LC_ALL=C
  p=${1#/} out='' i=0 c=''
  [ -n "$p" ] || { printf -- -; exit 0; }
  for ((i = 0; i < ${#p}; i++)); do
    c=${p:i:1}
    case "$c" in
      /) out+=- ;;
      [A-Za-z0-9:_]) out+=$c ;;
      .) if [ "$i" = 0 ]; then out+='\x2e'; else out+=.; fi ;;
      *) out+=$(printf '\\x%02x' "'$c") ;;
    esac
  done
  printf '%s' "$out"
)
RECORD="$CONF_DIR/installs/$(escape_path "$HOOKS_DIR")"

exists() { [ -e "$1" ] || [ -L "$1" ]; }   # a dangling symlink counts
is_ours() { [ -f "$1" ] && head -c 4096 "$1" | grep -q "$MARKER"; }
rec_get() { sed -n "s/^$1=//p" "$RECORD" | head -n 1; }
write_record() { # key=value lines; replaced atomically
  install -d -m 0755 "$CONF_DIR/installs"
  { echo "# ovmf-hook install record of $HOOKS_DIR (written by install.sh; --uninstall reads it)"; printf '%s\n' "$@"; } > "$RECORD.new"
  chmod 0644 "$RECORD.new" && mv -f "$RECORD.new" "$RECORD"
}
# prefix or CLI link another install still needs: named in another record, or the default link pointing into it
prefix_in_use() {
  local r
  for r in "$CONF_DIR"/installs/*; do
    [ -f "$r" ] && [ "$r" != "$RECORD" ] && grep -qxF "prefix=$1" "$r" && return 0
  done
  [ "$2" != "$DEFAULT_BIN_LINK" ] && [ "$(readlink "$DEFAULT_BIN_LINK" 2>/dev/null)" = "$1/dist/cli.cjs" ]
}

# Remove an install's files from a prefix (not the package's: dpkg owns those), unless another install uses it.
remove_prefix() { # prefix, the CLI link it goes with
  if prefix_in_use "$1" "$2"; then
    say "kept $1: another install uses it"
  elif [ -d "$1" ]; then
    rm -f "$1/dist/cli.cjs" "$1/dist/cli.mjs" "$1/dist/hooks/qemu" "$1/dist/hooks/qemu.new" "$1/package.json"
    rmdir "$1/dist/hooks" "$1/dist" "$1" 2>/dev/null || say "left $1: it holds other files"
  fi
}
# The version being installed, for the log: the package's, or the checkout's commit.
version() {
  if [ "$FROM_PACKAGE" = 1 ]; then echo "package $(sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' "$PREFIX/package.json" | head -n 1)"
  else (cd "$SRC" && git describe --always 2>/dev/null) || true; fi
}
PACKAGE_HINT='the ovmf-hook package (apt-get remove ovmf-hook puts back the previous hook)'
if [ "$FROM_PACKAGE" = 1 ]; then UNDO='removing the package'; else UNDO='--uninstall'; fi

# A reload leaves no trace in the daemon's process (its start time stays): note which daemon process
# was reloaded when, for `ovmf-hook doctor` (RELOAD_RECORDS, cleared at boot with /run).
RELOAD_RECORDS=${OVMF_HOOK_RUN_DIR:-/run/ovmf-hook}
note_reload() { # name pid
  install -d -m 0755 "$RELOAD_RECORDS" && printf 'pid=%s\ntime_ms=%s\n' "$2" "$(date +%s%3N)" > "$RELOAD_RECORDS/reload-$1" || true
}

reload_daemons() {
  [ "$RELOAD" = 1 ] || { say "not reloading libvirt (--no-reload): run 'systemctl reload libvirtd' (or virtqemud)"; return; }
  local done=0 unit pidfile pid
  if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    for unit in libvirtd virtqemud; do
      if systemctl is-active --quiet "$unit"; then
        systemctl reload "$unit" && say "reloaded $unit" && done=1 && note_reload "$unit" "$(systemctl show -p MainPID --value "$unit")"
      fi
    done
  fi
  if [ "$done" = 0 ]; then
    for pidfile in /run/libvirtd.pid /run/virtqemud.pid; do
      if [ -s "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
        pid=$(cat "$pidfile")
        kill -HUP "$pid" && say "sent SIGHUP to $(basename "$pidfile" .pid) (hooks are rescanned on reload)" && done=1 && note_reload "$(basename "$pidfile" .pid)" "$pid"
      fi
    done
  fi
  [ "$done" = 1 ] || say "no running libvirtd/virtqemud found; the hook is picked up when the daemon starts"
}

# A record written by an installer before per-hooks-dir records ("moved_foreign_hook=1" only) belongs to
# the default hooks dir when that one holds a moved-aside hook; anything else it may describe is left alone.
if [ ! -e "$RECORD" ] && [ -f "$LEGACY_RECORD" ] && [ "$HOOKS_DIR" = "$DEFAULT_HOOKS_DIR" ] && exists "$SAVED" \
  && grep -q '^moved_foreign_hook=1' "$LEGACY_RECORD"; then
  if [ -L "$SAVED" ]; then kind=(foreign_hook_kind=symlink "foreign_hook_link=$(readlink "$SAVED")"); else kind=(foreign_hook_kind=file); fi
  write_record "hooks_dir=$HOOKS_DIR" "prefix=$DEFAULT_PREFIX" "bin_link=$DEFAULT_BIN_LINK" moved_foreign_hook=1 "${kind[@]}"
  rm -f "$LEGACY_RECORD"
  say "moved the install record $LEGACY_RECORD to $RECORD"
fi
if [ -e "$RECORD" ] && [ "$(rec_get hooks_dir)" != "$HOOKS_DIR" ]; then
  die "$RECORD is the install record of hooks dir '$(rec_get hooks_dir)', not $HOOKS_DIR; kept it: check it by hand"
fi

if [ "$ACTION" = uninstall ]; then
  if [ -e "$RECORD" ] && [ "$FROM_PACKAGE" = 0 ] && [ "$(rec_get installed_by)" = package ]; then
    die "$HOOKS_DIR is installed by $PACKAGE_HINT; kept everything: remove that package instead"
  fi
  if [ -e "$RECORD" ] && [ "$FROM_PACKAGE" = 1 ] && [ "$(rec_get installed_by)" != package ]; then
    say "$HOOKS_DIR is installed from a checkout (install.sh), not by the package: left it (./install.sh --uninstall removes it)"
    exit 0
  fi
  if [ -e "$RECORD" ]; then
    rec_prefix=$(rec_get prefix)
    if [ "$PREFIX_SET" = 1 ] && [ "$PREFIX" != "$rec_prefix" ]; then
      die "$HOOKS_DIR was installed with --prefix $rec_prefix, not $PREFIX; kept everything: run without --prefix"
    fi
    PREFIX=$rec_prefix CLI="$rec_prefix/dist/cli.cjs" BIN_LINK=$(rec_get bin_link)
    if grep -q '^moved_foreign_hook=1' "$RECORD"; then
      # check that the previous hook can be put back before changing anything
      exists "$SAVED" || die "cannot put back the previous hook: $SAVED is gone; kept the install and $RECORD: put that hook back as $SAVED and retry, or delete $RECORD to uninstall without it"
      ! exists "$HOOK" || is_ours "$HOOK" || die "cannot put back the previous hook: $HOOK is not ours any more; kept the install and $RECORD: move $HOOK away and retry"
      if [ "$(rec_get foreign_hook_kind)" = symlink ] && [ -L "$SAVED" ]; then
        link=$(rec_get foreign_hook_link)
        rm -f "$HOOK.ovmf-hook-restore"
        ln -s -- "$link" "$HOOK.ovmf-hook-restore"
        mv -Tf "$HOOK.ovmf-hook-restore" "$HOOK"
        rm -f "$SAVED"
        say "restored the previous hook: $HOOK -> $link"
      else
        mv -Tf "$SAVED" "$HOOK"
        say "restored the previous hook to $HOOK"
      fi
    fi
  elif exists "$SAVED"; then
    say "no install record for $HOOKS_DIR: left $SAVED where it is (it runs from there)"
  fi
  if is_ours "$HOOK"; then rm -f "$HOOK"; say "removed $HOOK"; fi
  rmdir "$HOOKS_DIR/qemu.d" 2>/dev/null || true
  if [ "$FROM_PACKAGE" = 0 ]; then # the package's own files are dpkg's to remove
    if [ ! -e "$RECORD" ] && [ "$BIN_LINK_SET" = 0 ] && [ "$HOOKS_DIR" = "$DEFAULT_HOOKS_DIR" ] && [ "$PREFIX" = "$DEFAULT_PREFIX" ]; then
      BIN_LINK=$DEFAULT_BIN_LINK
    fi
    if [ -n "$BIN_LINK" ] && [ -L "$BIN_LINK" ]; then
      if [ "$(readlink "$BIN_LINK")" = "$CLI" ]; then rm -f "$BIN_LINK"; say "removed $BIN_LINK"; else say "left $BIN_LINK: it points elsewhere now"; fi
    fi
    remove_prefix "$PREFIX" "$BIN_LINK"
  fi
  rm -f "$RECORD"
  rmdir "$CONF_DIR/installs" 2>/dev/null || true
  reload_daemons
  log "uninstalled from $HOOKS_DIR"
  say "uninstalled from $HOOKS_DIR; kept $CONF_DIR and the NVRAM archive in $STATE_LIB"
  exit 0
fi

# --- the CLI link: only the default install owns /usr/local/bin/ovmf-hook; others get none unless told
if [ "$BIN_LINK_SET" = 0 ]; then
  if [ -e "$RECORD" ]; then BIN_LINK=$(rec_get bin_link)
  elif [ "$HOOKS_DIR" = "$DEFAULT_HOOKS_DIR" ] && [ "$PREFIX" = "$DEFAULT_PREFIX" ]; then BIN_LINK=$DEFAULT_BIN_LINK
  fi
fi

# --- refuse early, before anything is written
if [ -e "$RECORD" ] && [ "$FROM_PACKAGE" = 0 ] && [ "$(rec_get installed_by)" = package ]; then
  die "$HOOKS_DIR is installed by $PACKAGE_HINT; upgrade that package, or remove it before installing from a checkout"
fi
TAKEOVER_PREFIX='' TAKEOVER_LINK=''
if [ -e "$RECORD" ] && [ "$(rec_get prefix)" != "$PREFIX" ]; then
  if [ "$FROM_PACKAGE" = 1 ] && [ "$(rec_get installed_by)" != package ]; then
    # the package replaces an install from a checkout: it keeps that install's record of the foreign
    # hook and removes its files once the packaged hook is in place
    TAKEOVER_PREFIX=$(rec_get prefix) TAKEOVER_LINK=$(rec_get bin_link)
  else
    die "$HOOKS_DIR is installed with --prefix $(rec_get prefix); use that prefix, or run --uninstall --hooks-dir $HOOKS_DIR first"
  fi
fi
if exists "$HOOK" && ! is_ours "$HOOK" && exists "$SAVED"; then
  die "$HOOK is not ours and $SAVED already exists; move one of them away and retry"
fi

# --- node: the hook runs in libvirt's bare environment, so its interpreter path is fixed now (the
# package's files name the distro's /usr/bin/node, which its Depends: nodejs provides)
if [ "$FROM_PACKAGE" = 1 ]; then NODE=/usr/bin/node; else NODE=$(command -v node || true); fi
{ [ -n "$NODE" ] && [ -x "$NODE" ]; } || die "node (>= 18) not found${NODE:+ at $NODE}; install Node.js 18+ (Debian 12: apt install nodejs) and retry"
NODE=$(readlink -f "$NODE")
NODE_MAJOR=$("$NODE" -p 'process.versions.node.split(".")[0]')
[ "$NODE_MAJOR" -ge 18 ] || die "node $("$NODE" --version) is too old; ovmf-hook needs Node.js >= 18"
[ -x /usr/bin/node ] && [ "$(readlink -f /usr/bin/node)" = "$NODE" ] && NODE=/usr/bin/node
case "$NODE" in
  /usr/bin/*|/bin/*) ;;
  *) say "warning: node is $NODE; AppArmor's libvirtd profile only lets hooks exec interpreters from /usr/bin or /bin" ;;
esac

# --- build
if [ "$BUILD" = 1 ]; then
  (cd "$SRC" && npm ci --no-audit --no-fund --loglevel=error && OVMF_HOOK_NODE="$NODE" npm run --silent build)
fi
if [ "$FROM_PACKAGE" = 1 ]; then
  # the files are the package's, in place already (dpkg owns them: nothing is copied or rewritten)
  [ -x "$PREFIX/dist/hooks/qemu" ] && [ -f "$CLI" ] || die "$PREFIX/dist/ is missing: reinstall the ovmf-hook package"
else
  [ -x "$SRC/dist/hooks/qemu" ] && [ -f "$SRC/dist/cli.cjs" ] || die "dist/ is missing; run without --no-build"

  # files under one prefix
  install -d -m 0755 "$PREFIX/dist/hooks"
  install -m 0755 "$SRC/dist/cli.cjs" "$CLI"
  rm -f "$PREFIX/dist/cli.mjs" # the CLI of installs before it became CommonJS
  { echo "#!$NODE"; tail -n +2 "$SRC/dist/hooks/qemu"; } > "$PREFIX/dist/hooks/qemu.new"
  chmod 0755 "$PREFIX/dist/hooks/qemu.new" && mv -f "$PREFIX/dist/hooks/qemu.new" "$PREFIX/dist/hooks/qemu"
  install -m 0644 "$SRC/package.json" "$PREFIX/package.json"
  sed -i "1s|^#!.*|#!$NODE|" "$CLI"
  if [ -e "$RECORD" ]; then
    old_link=$(rec_get bin_link)
    if [ -n "$old_link" ] && [ "$old_link" != "$BIN_LINK" ] && [ "$(readlink "$old_link" 2>/dev/null)" = "$CLI" ]; then
      rm -f "$old_link"; say "removed $old_link"
    fi
  fi
  if [ -n "$BIN_LINK" ]; then install -d -m 0755 "$(dirname "$BIN_LINK")"; ln -sfn "$CLI" "$BIN_LINK"; fi
fi

# --- config and state directories (never overwrite an edited config)
json_str() { local s=${1//\\/\\\\}; printf '"%s"' "${s//\"/\\\"}"; }
install -d -m 0755 "$CONF_DIR"
if [ ! -e "$CONF_DIR/config.json" ]; then
  state_dir_line=
  [ "$STATE_LIB" = "$DEFAULT_STATE_LIB" ] || state_dir_line="
  \"stateDir\": $(json_str "$STATE_LIB/state"),"
  cat > "$CONF_DIR/config.json" <<JSON
{
  "mode": "warn",
  "policy": { "uefi": "yes", "secure-boot": "no", "tpm": "no", "archive": "yes" },
  "archiveDir": $(json_str "$STATE_LIB/archive"),$state_dir_line
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

# --- the config as the hook loads it: a bad one does not stop the install, but is shown with its fix
check_cmd="${BIN_LINK:-$CLI} config check"
[ "$CONF_DIR" = /etc/ovmf-hook ] || check_cmd+=" --file $CONF_DIR/config.json"
if check_out=$("$CLI" config check --file "$CONF_DIR/config.json" 2>&1); then
  say "config check: $check_out"
else
  check_rc=$?
  case "$check_rc" in
    2) effect="the hook refuses UEFI VM starts (BIOS ones and archive=\"no\" ones go ahead) until it is fixed" ;;
    1) effect="the hook runs, but will not write its log file" ;;
    *) effect="the check itself failed (exit $check_rc)" ;;
  esac
  {
    echo "ovmf-hook install: ******** CONFIG PROBLEM ********"
    check_out=${check_out//$nl/ }
    echo "ovmf-hook install: ${check_out#ovmf-hook: }"
    echo "ovmf-hook install: $effect; fix $CONF_DIR/config.json as the line above says, then run: $check_cmd"
    echo "ovmf-hook install: ********************************"
  } >&2
fi

# --- the hook itself; a foreign hook keeps working from qemu.d (libvirt >= 6.5 runs those after ours)
install -d -m 0755 "$HOOKS_DIR"
install -m 0755 "$PREFIX/dist/hooks/qemu" "$HOOK.ovmf-hook-new"
record=("hooks_dir=$HOOKS_DIR" "prefix=$PREFIX" "bin_link=$BIN_LINK")
[ "$FROM_PACKAGE" = 0 ] || record+=(installed_by=package)
if exists "$HOOK" && ! is_ours "$HOOK"; then
  exists "$SAVED" && { rm -f "$HOOK.ovmf-hook-new"; die "$HOOK is not ours and $SAVED already exists; move one of them away and retry"; }
  install -d -m 0755 "$HOOKS_DIR/qemu.d"
  if [ -L "$HOOK" ]; then
    # a symlink keeps its target: a relative one is rewritten for its new directory, and the record keeps
    # the original text for --uninstall; a dangling one is moved as it is
    link=$(readlink "$HOOK")
    case "$link" in *"$nl"*) rm -f "$HOOK.ovmf-hook-new"; die "$HOOK is a symlink whose target has a newline; move it away and retry" ;; esac
    moved=$link
    if target=$(readlink -e -- "$HOOK"); then
      case "$link" in
        /*) ;;
        *) if [ -L "$HOOKS_DIR/qemu.d" ]; then moved="$(cd "$HOOKS_DIR" && pwd -P)/$link"; else moved="../$link"; fi ;;
      esac
      (cd "$HOOKS_DIR/qemu.d" && [ "$(readlink -e -- "$moved")" = "$target" ]) \
        || { rm -f "$HOOK.ovmf-hook-new"; die "$HOOK -> $link cannot be moved to $SAVED keeping its target; move it away and retry"; }
      note="it still points at $target"
    else
      note="it is dangling ($link does not exist) and was moved as it is"
    fi
    write_record "${record[@]}" moved_foreign_hook=1 foreign_hook_kind=symlink "foreign_hook_link=$link"
    ln -s -- "$moved" "$SAVED"
    say "moved the existing hook link to $SAVED -> $moved ($note; it runs after ours); $UNDO puts back $HOOK -> $link"
  else
    write_record "${record[@]}" moved_foreign_hook=1 foreign_hook_kind=file
    mv "$HOOK" "$SAVED"
    say "moved the existing hook to $SAVED (it still runs after ours); $UNDO puts it back"
  fi
elif [ -e "$RECORD" ]; then
  # an upgrade: keep what the record says about the previous hook
  mapfile -t kept < <(grep -E '^(moved_foreign_hook|foreign_hook_kind|foreign_hook_link)=' "$RECORD" || true)
  write_record "${record[@]}" "${kept[@]}"
else
  write_record "${record[@]}" moved_foreign_hook=0
fi
mv -f "$HOOK.ovmf-hook-new" "$HOOK"
command -v restorecon >/dev/null 2>&1 && restorecon -R "$HOOKS_DIR" 2>/dev/null || true
say "installed $HOOK (node: $NODE)${BIN_LINK:+ and $BIN_LINK}; install record $RECORD"
if [ -n "$TAKEOVER_PREFIX" ]; then
  say "replaced the install from a checkout in $TAKEOVER_PREFIX"
  if [ -n "$TAKEOVER_LINK" ] && [ "$TAKEOVER_LINK" != "$BIN_LINK" ] && [ -L "$TAKEOVER_LINK" ] && [ "$(readlink "$TAKEOVER_LINK")" = "$TAKEOVER_PREFIX/dist/cli.cjs" ]; then
    rm -f "$TAKEOVER_LINK"; say "removed $TAKEOVER_LINK"
  fi
  remove_prefix "$TAKEOVER_PREFIX" "$TAKEOVER_LINK"
fi

reload_daemons
log "installed $(version) in $HOOKS_DIR"
if [ "$HOOKS_DIR" = "$DEFAULT_HOOKS_DIR" ]; then
  OVMF_HOOK_CONFIG="$CONF_DIR/config.json" "$CLI" doctor || say "doctor reported problems (see above)"
else
  say "skipped 'ovmf-hook doctor' (it checks $DEFAULT_HOOKS_DIR, not $HOOKS_DIR)"
fi
