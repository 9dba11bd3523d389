#!/usr/bin/env bash
# Build the Debian package ovmf-hook_<version>_all.deb from this checkout's built dist/ (`npm run build`
# first), with dpkg-deb only. No npm, network or build happens on the target: the hook and the CLI are
# single self-contained files (esbuild bundles; they require only Node's builtins).
#   bash scripts/package-deb.sh [--out DIR] [--version V] [--maintainer 'Name <mail>']
#     --out DIR       where the .deb goes (default: the current directory)
#     --version V     the package version (default: "version" of package.json)
#     --maintainer M  the Maintainer field (default: $DEB_MAINTAINER, else 'ovmf-hook maintainers <root@localhost>')
# Prints the path of the .deb. Needs: dpkg-deb, gzip, md5sum and node (>= 18, to render the man page from
# the CLI's --help and to read package-lock.json for the copyright file). SOURCE_DATE_EPOCH (default: the
# last commit's time) fixes every timestamp, so the same checkout gives the same .deb.
#
# What the package holds:
#   /usr/lib/ovmf-hook/dist/hooks/qemu, dist/cli.cjs  the hook and the CLI, #!/usr/bin/node (Depends: nodejs)
#   /usr/lib/ovmf-hook/install.sh, package.json       install.sh of this checkout: the maintainer scripts run it
#   /usr/bin/ovmf-hook -> ../lib/ovmf-hook/dist/cli.cjs
#   /usr/share/doc/ovmf-hook/                         README, docs/, copyright, changelog.Debian.gz
#   /usr/share/man/man8/ovmf-hook.8.gz                every command's --help
# and packaging/deb/{postinst,prerm,postrm}, which install and remove the hook with
# `install.sh --from-package` (the same steps as `./install.sh` / `./install.sh --uninstall` from a checkout).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=$PWD
VERSION=
MAINTAINER=${DEB_MAINTAINER:-'ovmf-hook maintainers <root@localhost>'}
MARKER='ovmf-hook: libvirt QEMU hook'

die() { echo "package-deb: $*" >&2; exit 1; }
need_arg() { { [ $# -ge 2 ] && [ -n "$2" ]; } || { echo "package-deb: $1 needs a value (see --help)" >&2; exit 2; }; }
while [ $# -gt 0 ]; do
  case "$1" in
    --out) need_arg "$@"; OUT=$2; shift ;;
    --version) need_arg "$@"; VERSION=$2; shift ;;
    --maintainer) need_arg "$@"; MAINTAINER=$2; shift ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "package-deb: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

for tool in dpkg-deb gzip md5sum; do command -v "$tool" >/dev/null 2>&1 || die "$tool not found (Debian: apt-get install dpkg gzip coreutils)"; done
NODE=$(command -v node || true)
[ -n "$NODE" ] || die "node not found: it renders the man page from the CLI's --help (the checkout that built dist/ has one)"
HOOK="$ROOT/dist/hooks/qemu"
CLI="$ROOT/dist/cli.cjs"
{ [ -f "$HOOK" ] && [ -f "$CLI" ]; } || die "$ROOT/dist/ is not built: run 'npm ci && npm run build' there first"
head -c 4096 "$HOOK" | grep -q "$MARKER" || die "$HOOK is not ovmf-hook's hook"
if [ -n "$(find "$ROOT/src" "$ROOT/hooks" "$ROOT/scripts/build.mjs" -newer "$CLI" -type f -print -quit 2>/dev/null)" ]; then
  echo "package-deb: warning: sources changed after dist/ was built; run 'npm run build' for a current package" >&2
fi

[ -n "$VERSION" ] || VERSION=$("$NODE" -p "require(process.argv[1]).version" "$ROOT/package.json")
[[ "$VERSION" =~ ^[0-9][A-Za-z0-9.+~-]*$ ]] || die "'$VERSION' is not a Debian version"
case "$MAINTAINER" in *'<'*'@'*'>') ;; *) die "--maintainer must look like 'Name <mail>'" ;; esac
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
DEB="$OUT/ovmf-hook_${VERSION}_all.deb"
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$ROOT" log -1 --format=%ct 2>/dev/null || stat -c %Y "$ROOT/package.json")}
DATE=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%d)
COMMIT=$(git -C "$ROOT" rev-parse --short=12 HEAD 2>/dev/null || echo 'an unversioned checkout')

umask 022
WORK=$(mktemp -d "${TMPDIR:-/tmp}/ovmf-hook-deb.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
chmod 0755 "$WORK"
P="$WORK/root"
LIB="$P/usr/lib/ovmf-hook"
DOC="$P/usr/share/doc/ovmf-hook"
install -d "$P/DEBIAN" "$LIB/dist/hooks" "$P/usr/bin" "$DOC/docs" "$P/usr/share/man/man8"

# the hook and the CLI run the distro's node: libvirt gives hooks a bare PATH, and AppArmor's libvirtd
# profile lets them exec interpreters from /usr/bin only
{ echo '#!/usr/bin/node'; tail -n +2 "$HOOK"; } > "$LIB/dist/hooks/qemu"
{ echo '#!/usr/bin/node'; tail -n +2 "$CLI"; } > "$LIB/dist/cli.cjs"
chmod 0755 "$LIB/dist/hooks/qemu" "$LIB/dist/cli.cjs"
install -m 0755 "$ROOT/install.sh" "$LIB/install.sh"
install -m 0644 "$ROOT/package.json" "$LIB/package.json"
ln -s ../lib/ovmf-hook/dist/cli.cjs "$P/usr/bin/ovmf-hook"

# documentation (compressed as Debian's policy asks: all but copyright)
gzip -9nc "$ROOT/README.md" > "$DOC/README.md.gz"
for f in "$ROOT"/docs/*.md; do gzip -9nc "$f" > "$DOC/docs/$(basename "$f").gz"; done
"$NODE" "$ROOT/scripts/package-deb-docs.mjs" copyright "$ROOT" > "$DOC/copyright"
# the man page is rendered by the staged CLI, in a bare environment: proves it loads without node_modules
"$NODE" "$ROOT/scripts/package-deb-docs.mjs" man "$LIB/dist/cli.cjs" "$VERSION" "$DATE" > "$WORK/ovmf-hook.8"
gzip -9nc "$WORK/ovmf-hook.8" > "$P/usr/share/man/man8/ovmf-hook.8.gz"
# Debian's policy wants a changelog.Debian in every binary package: one entry, this build
printf '%s\n' "ovmf-hook ($VERSION) unstable; urgency=medium" '' "  * Built from ovmf-hook $COMMIT with scripts/package-deb.sh." '' \
  " -- $MAINTAINER  $(date -u -R -d "@$SOURCE_DATE_EPOCH")" | gzip -9n > "$DOC/changelog.Debian.gz"
chmod 0644 "$DOC/copyright" "$DOC"/*.gz "$DOC"/docs/*.gz "$P/usr/share/man/man8/ovmf-hook.8.gz"

for s in postinst prerm postrm; do install -m 0755 "$ROOT/packaging/deb/$s" "$P/DEBIAN/$s"; done
(cd "$P" && find usr -type f -print0 | LC_ALL=C sort -z | xargs -0 md5sum) > "$P/DEBIAN/md5sums"
chmod 0644 "$P/DEBIAN/md5sums"
SIZE=$(du -sk --apparent-size "$P/usr" | cut -f1)
cat > "$P/DEBIAN/control" <<EOF
Package: ovmf-hook
Version: $VERSION
Architecture: all
Maintainer: $MAINTAINER
Installed-Size: $SIZE
Depends: nodejs (>= 18)
Recommends: ovmf, swtpm
Enhances: libvirt-daemon-system
Section: admin
Priority: optional
Description: libvirt QEMU hook: UEFI (OVMF) VMs with an NVRAM that follows them
 A libvirt QEMU hook that gives libvirt VMs UEFI firmware (OVMF), the Q35 chipset
 and Secure Boot, and makes each VM's UEFI variable store (NVRAM: boot entries,
 enrolled keys, BitLocker sealing) follow the VM: provisioned from the OVMF VARS
 template, archived as a new generation when the VM stops, restored when it
 starts again, on any host that shares the archive directory.
 .
 Installing the package installs the hook as /etc/libvirt/hooks/qemu (a hook
 that was there keeps running from qemu.d/ and comes back when the package is
 removed), writes /etc/ovmf-hook/config.json once (mode "warn": existing BIOS
 VMs keep starting) and reloads libvirtd. The ovmf-hook command converts
 domains (Q35, UEFI, Secure Boot, TPM), manages the NVRAM archive, enrols the
 Microsoft 2023 Secure Boot certificates and checks the host (ovmf-hook doctor).
 The NVRAM archive in /var/lib/ovmf-hook is kept even when the package is purged.
EOF
chmod 0644 "$P/DEBIAN/control"
find "$P" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +

dpkg-deb --root-owner-group -Zxz --build "$P" "$DEB" >/dev/null
echo "$DEB"
