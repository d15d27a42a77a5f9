#!/usr/bin/env python3
"""Self cost (instructions) of a callgrind dump, per library and per function.

  bench/callgrind-summary.py FILE [SECONDS] [TOP]

callgrind_annotate attributes this dump to clone() as a whole (the counters
were zeroed while threads ran), so the records are summed here directly:
each cost line counts for the function of the last fn= line, except the
line that follows a calls= line, which is an inclusive call cost.
"""
import collections
import re
import sys

path = sys.argv[1]
secs = float(sys.argv[2]) if len(sys.argv) > 2 else 0
top = int(sys.argv[3]) if len(sys.argv) > 3 else 25
names, objs = {}, {}
by_fn, by_obj = collections.Counter(), collections.Counter()
ob = fn = None
after_call = False
cost_line = re.compile(r"^(?:[+-]?\d+|\*) (\d+)$")
for line in open(path):
    line = line.rstrip("\n")
    m = re.match(r"^(c?)(ob|fn|fl|fi|fe)=\((\d+)\)(?: (.*))?$", line)
    if m:
        call, kind, idx, name = m.groups()
        table = objs if kind == "ob" else names
        if name:
            table[idx] = name.rsplit("/", 1)[-1] if kind == "ob" else name
        if not call and kind == "ob":
            ob = objs.get(idx)
        elif not call and kind == "fn":
            fn = (ob, names.get(idx))
            after_call = False
        continue
    if line.startswith("calls="):
        after_call = True
        continue
    m = cost_line.match(line)
    if m:
        if after_call:
            after_call = False
            continue
        by_fn[fn] += int(m.group(1))
        by_obj[fn[0]] += int(m.group(1))
total = sum(by_fn.values())
print(f"{total:,} instructions" + (f", {total / secs / 1e6:.1f} M a second" if secs else ""))
print("-- per library")
for o, v in by_obj.most_common(top):
    print(f"{100 * v / total:5.1f} %  {o}")
print("-- per function")
for (o, f), v in by_fn.most_common(top):
    print(f"{100 * v / total:5.1f} %  {f}  ({o})")
