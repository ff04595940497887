#!/usr/bin/env bash
# The Containerfile's build stage, as a script CI can run on a plain Debian
# host (no Docker needed) to check that the image's build still works:
# installs the build packages, builds uturnd in release with the Swift
# runtime linked statically, and copies it to $1 (default ./out/uturnd).
# Run from anywhere inside the repository.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-out/uturnd}

SUDO=""
if [[ $(id -u) != 0 ]]; then SUDO="sudo"; fi
need=()
for pkg in liburing-dev libssl-dev libbpf-dev libsqlite3-dev libpq-dev libhiredis-dev; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if ((${#need[@]})); then
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# --static-swift-stdlib: the runtime image then needs only liburing, libssl,
# libbpf and the database clients (libsqlite3, libpq, hiredis) from Debian,
# not a Swift toolchain. uturnadmin goes next to uturnd.
swift build -c release --product uturnd --static-swift-stdlib
swift build -c release --product uturnadmin --static-swift-stdlib
mkdir -p "$(dirname "$out")"
cp "$(swift build -c release --show-bin-path)/uturnd" "$out"
cp "$(swift build -c release --show-bin-path)/uturnadmin" "$(dirname "$out")/uturnadmin"
# What the binary still loads (checked by the image's run stage packages).
ldd "$out" | awk '{print "  " $1}'
echo "build-stage: $out"
