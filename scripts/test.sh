#!/bin/sh
# Builds consultd with warnings as errors and runs every test; then builds
# again with AddressSanitizer and UBSan and runs the unit tests under them.
# Ends with one line: "N passed, N failed".
set -u
cd "$(dirname "$0")/.."
scripts/deps.sh test || exit 1
scripts/check-deps.sh test || exit 1
status=0
# Browser tests: playwright-core from npm drives Debian's chromium (no browser
# is downloaded); the recording store's tests run s3rver, an S3 server.
if [ ! -d tests/browser/node_modules/playwright-core ] || [ ! -d tests/browser/node_modules/s3rver ]; then
  (cd tests/browser && npm ci --no-audit --no-fund) || exit 1
fi
if [ ! -f build-test/build.ninja ]; then
  meson setup build-test -Dwerror=true --buildtype=debugoptimized || exit 1
fi
ninja -C build-test || exit 1
meson test -C build-test --print-errorlogs --num-processes 2 "$@" || status=1

if [ ! -f build-asan/build.ninja ]; then
  meson setup build-asan -Db_sanitize=address,undefined -Db_lundef=false \
    --buildtype=debug || exit 1
fi
ninja -C build-asan || exit 1
UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
  meson test -C build-asan --suite unit --print-errorlogs || status=1

python3 scripts/test-summary.py build-test/meson-logs/testlog.json \
  build-asan/meson-logs/testlog.json || status=1
exit $status
