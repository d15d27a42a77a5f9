#!/usr/bin/env python3
"""Prints 'N passed, N failed' from meson testlog.json files.

TAP tests count each subtest ('ok N' / 'not ok N'); a TAP test that failed
without reporting a failing subtest (a crash, a timeout) counts one failure
more.  Other tests count once.  Exits 1 if anything failed or nothing ran.
"""
import json
import re
import sys

passed = failed = skipped = 0
for path in sys.argv[1:]:
    try:
        lines = open(path).read().splitlines()
    except OSError as e:
        print(f"test-summary: {e}", file=sys.stderr)
        failed += 1
        continue
    for line in lines:
        t = json.loads(line)
        out = t.get("stdout") or ""
        oks = len(re.findall(r"^ok \d+", out, re.M))
        skips = len(re.findall(r"^ok \d+.*# ?SKIP", out, re.M | re.I))
        bad = len(re.findall(r"^not ok \d+", out, re.M))
        ok_result = t["result"] in ("OK", "EXPECTEDFAIL")
        if oks or bad:
            passed += oks - skips
            skipped += skips
            failed += bad
            if not ok_result and bad == 0:
                failed += 1
        elif t["result"] == "SKIP":
            skipped += 1
        elif ok_result:
            passed += 1
        else:
            failed += 1
line = f"{passed} passed, {failed} failed"
if skipped:
    line += f", {skipped} skipped"
print(line)
sys.exit(1 if failed or passed == 0 else 0)
