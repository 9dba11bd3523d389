#!/bin/sh
# Run Debian 12's own Node 18 (what a Debian 12 host without NodeSource has as /usr/bin/node) on
# this host without installing it, to check that the product runs on the oldest node it supports:
#
#   scripts/node18.sh dist/cli.cjs --help
#   scripts/node18.sh dist/hooks/qemu VM prepare begin - < domain.xml
#
# Arguments go to node as they are. Needs root (a mount namespace and a bind mount).
#
# The first run unpacks the packages (apt-get download + dpkg -x, nothing is installed) into
# $OVMF_HOOK_NODE18_DIR (default /var/cache/ovmf-hook-node18); later runs reuse them. Debian's
# node looks for its externalised builtins (acorn, cjs-module-lexer, undici) at the absolute path
# /usr/share/nodejs, so node runs in a private mount namespace with the unpacked directory bound
# there; the host's mounts do not change. If /usr/share/nodejs does not exist, it is created once
# as the mount point (an empty directory).
set -eu

VERSION=18.20.4+dfsg-1~deb12u3
CACHE=${OVMF_HOOK_NODE18_DIR:-/var/cache/ovmf-hook-node18}
ROOT=$CACHE/root

die() { echo "node18.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root (it needs unshare -m and a bind mount)"

if [ ! -x "$ROOT/usr/bin/node" ] || [ ! -d "$ROOT/usr/share/nodejs" ]; then
  { command -v apt-get && command -v dpkg; } >/dev/null || die "needs apt-get and dpkg (Debian)"
  mkdir -p "$CACHE"
  tmp=$(mktemp -d "$CACHE/unpack.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && apt-get download -q "nodejs=$VERSION" "libnode108=$VERSION" libc-ares2 node-acorn node-cjs-module-lexer node-undici >&2) ||
    die "apt-get download failed (needs Debian 12's main and security sources in apt)"
  for deb in "$tmp"/*.deb; do dpkg -x "$deb" "$tmp/root"; done
  [ -x "$tmp/root/usr/bin/node" ] || die "the packages hold no usr/bin/node"
  rm -rf "$ROOT" # a half-unpacked tree of an earlier run
  mv -T "$tmp/root" "$ROOT"
  rm -rf "$tmp"
  trap - EXIT
fi

[ -d /usr/share/nodejs ] || mkdir -p /usr/share/nodejs
# shellcheck disable=SC2016 # expanded by the inner shell
exec unshare -m sh -c '
  root=$1; shift
  mount --bind "$root/usr/share/nodejs" /usr/share/nodejs || exit 1
  LD_LIBRARY_PATH="$root/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" exec "$root/usr/bin/node" "$@"
' node18 "$ROOT" "$@"
