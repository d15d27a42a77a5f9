#!/usr/bin/env python3
"""The house's include rules, checked over the `#include "..."` lines.

1. Layers in signaling/: a file includes only its own layer and the ones
   below it (core < http < workers < api < main.c).  See core/app.h.
2. No circles: the module graph (a module is X.c with X.h) of signaling/,
   storage/, media/, recorder/ and common/ has no cycle, direct or through
   others.
3. The process seams: signaling/ never includes GStreamer; media/ and
   recorder/ never include libmicrohttpd or jansson; only storage/ includes
   sqlite3 or libpq; common/ includes nothing of ours but itself.

Usage: check_includes.py [ROOT]       checks the tree at ROOT (default: ..)
       check_includes.py --self-test  also proves that an injected upward
                                      include and an injected circle fail
Exit status 0 when every rule holds, 1 with one line per violation.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile

FOLDERS = ["signaling", "storage", "media", "recorder", "common"]
LAYERS = {"core": 0, "http": 1, "workers": 2, "api": 3}
MAIN_LAYER = 4
GENERATED = {"build-config.h", "web-resources.h"}
INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^">]+)[">]', re.M)


def sources(root):
    for folder in FOLDERS:
        base = os.path.join(root, folder)
        for dirpath, _, files in os.walk(base):
            for f in sorted(files):
                if f.endswith((".c", ".h")):
                    yield os.path.relpath(os.path.join(dirpath, f), root)


def resolve(root, src, name):
    """The repository path NAME (from a quoted include in SRC) names, or None."""
    here = os.path.dirname(src)
    candidates = [os.path.join(here, name)]
    top = src.split(os.sep)[0]
    candidates.append(os.path.join(top, name))
    candidates += [os.path.join(f, name) for f in FOLDERS]
    for c in candidates:
        if os.path.isfile(os.path.join(root, c)):
            return os.path.normpath(c)
    return None


def module(path):
    """X.c and X.h are one module; X_private.h is X's private header."""
    m = os.path.splitext(path)[0]
    return m[:-len("_private")] if m.endswith("_private") else m


def layer(path):
    parts = path.split(os.sep)
    if parts[0] != "signaling":
        return None
    if len(parts) == 2:
        return MAIN_LAYER
    return LAYERS.get(parts[1])


def seam_violations(src, system, quoted):
    top = src.split(os.sep)[0]
    bad = []
    for name in system:
        if top == "signaling" and name.startswith("gst/"):
            bad.append("signaling/ includes GStreamer (<%s>)" % name)
        if top in ("media", "recorder") and (name.startswith("microhttpd") or
                                             name.startswith("jansson")):
            bad.append("%s/ includes <%s>" % (top, name))
        if top != "storage" and name in ("sqlite3.h", "libpq-fe.h"):
            bad.append("only storage/ may include <%s>" % name)
    if top == "common":
        for target in quoted:
            if target and not target.startswith("common" + os.sep):
                bad.append("common/ includes %s" % target)
    return bad


def check(root):
    errors = []
    graph = {}  # module -> set of modules
    for src in sources(root):
        text = open(os.path.join(root, src), encoding="utf-8").read()
        system, quoted = [], []
        for kind, name in INCLUDE.findall(text):
            if kind == "<":
                system.append(name)
                continue
            if name in GENERATED:
                continue
            target = resolve(root, src, name)
            if target is None:
                errors.append("%s: includes \"%s\", which is not in the tree" % (src, name))
                continue
            quoted.append(target)
            if target.split(os.sep)[0] == "signaling" and src.split(os.sep)[0] == "signaling":
                if name != os.path.relpath(target, "signaling"):
                    errors.append("%s: include \"%s\" as \"%s\" (its layer in the path)" %
                                  (src, name, os.path.relpath(target, "signaling")))
            ls, lt = layer(src), layer(target)
            if ls is not None and lt is not None and lt > ls:
                errors.append("%s: upward include of %s (layer %d above %d)" %
                              (src, target, lt, ls))
            if ls is not None and lt is None and target.split(os.sep)[0] == "signaling":
                errors.append("%s: %s is in no layer" % (src, target))
            if module(target) != module(src):
                graph.setdefault(module(src), set()).add(module(target))
        for e in seam_violations(src, system, quoted):
            errors.append("%s: %s" % (src, e))
    for cycle in cycles(graph):
        errors.append("include circle: " + " -> ".join(cycle + [cycle[0]]))
    return errors


def cycles(graph):
    """Every strongly connected component of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def self_test(root):
    """The check must fail on an upward include and on a circle."""
    injections = [
        ("signaling/core/metrics.h", '#include "api/routes.h"\n', "upward include"),
        ("storage/store_private.h", '#include "store_events.h"\n', "include circle"),
    ]
    for path, line, expect in injections:
        with tempfile.TemporaryDirectory() as tmp:
            for folder in FOLDERS:
                if os.path.isdir(os.path.join(root, folder)):
                    shutil.copytree(os.path.join(root, folder), os.path.join(tmp, folder))
            with open(os.path.join(tmp, path), "a", encoding="utf-8") as f:
                f.write(line)
            errs = check(tmp)
            if not any(expect in e for e in errs):
                print("self-test: injecting %s into %s did not fail the check (%s)" %
                      (line.strip(), path, errs))
                return False
    return True


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    root = args[0] if args else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    errors = check(root)
    for e in errors:
        print(e)
    ok = not errors
    if "--self-test" in sys.argv and not self_test(root):
        ok = False
    if ok:
        print("includes: layers, no circles, seams: ok")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
