#!/bin/sh
# Fails when a C file of ours differs from what .clang-format makes of it.
# scripts/deps.sh test installs clang-format; check-deps.sh insists on it.
set -eu
root=${1:-$(dirname "$0")/..}
cd "$root"
cf=$(command -v clang-format-14 || command -v clang-format || true)
if [ -z "$cf" ]; then
    echo "clang-format is not installed (scripts/deps.sh test installs it)" >&2
    exit 1
fi
files=$(find common signaling media recorder storage tests/unit tests/fuzz tests/media \
    tests/impair -name '*.[ch]' -not -path '*/corpus/*' | sort)
if "$cf" --dry-run --Werror $files; then
    echo "format: $(echo "$files" | wc -l) files as .clang-format says"
else
    echo "format: run clang-format -i on the files above" >&2
    exit 1
fi
