#!/bin/sh
# Regenerates packaging/uturnd.1 and uturnctl.1 from their option declarations with
# swift-argument-parser's generate-manual plugin. Run it after changing an
# option or the help text, and commit the result (CMake installs the
# committed page, so building the package needs no plugin run).
#
#   packaging/generate-manual.sh [scratch-path]     (default .build)
set -eu
cd "$(dirname "$0")/.."
scratch=${1:-.build}
date=$(git log -1 --format=%cs 2>/dev/null || date +%F)
swift package --scratch-path "$scratch" plugin generate-manual --date "$date" \
    --authors "the uturn authors"
cp "$scratch/plugins/GenerateManual/outputs/uturnd/uturnd.1" packaging/uturnd.1
cp "$scratch/plugins/GenerateManual/outputs/uturnctl/uturnctl.1" packaging/uturnctl.1
echo "packaging/uturnd.1 and packaging/uturnctl.1 updated (uturnadmin.1 is written by hand)"
