#!/usr/bin/env python3
"""Fails when two modules of the crate depend on each other, directly or
through others: a circle makes neither understandable (or movable into its
own crate) without the other. A module depends on another when its code
(comments and `#[cfg(test)]` parts aside) names it by a `crate::`,
`super::` or `self::` path, in a `use` or inline. A module's own parents
and children do not count. Prints each circle with its edges.

    scripts/check-module-cycles.py [SRC_DIR]    (default: src)
"""
import os
import re
import sys

PATH = re.compile(r"\b((?:crate|super|self)(?:::(?:super|[A-Za-z_][A-Za-z0-9_]*))+)")
GROUP = re.compile(r"use\s+(crate|super)((?:::super)*)::\{([^}]*)\}")


def modules(src):
    mods = {}
    for dirpath, _, files in os.walk(src):
        for f in files:
            if not f.endswith(".rs"):
                continue
            path = os.path.join(dirpath, f)
            parts = os.path.relpath(path, src)[:-3].split(os.sep)
            if parts[-1] in ("mod", "lib", "main"):
                parts = parts[:-1]
            if "tests" in parts:
                continue
            mods["::".join(parts)] = path
    return mods


def resolve(mods, current, segments):
    if segments[0] == "crate":
        base, rest = [], segments[1:]
    elif segments[0] == "super":
        base, rest = current[:-1], segments[1:]
        while rest and rest[0] == "super":
            base, rest = base[:-1], rest[1:]
    elif segments[0] == "self":
        base, rest = current, segments[1:]
    else:
        return None
    for i in range(len(rest), 0, -1):
        candidate = "::".join(base + rest[:i])
        if candidate in mods:
            return candidate
    return None


def related(a, b):
    return a == b or a.startswith(b + "::") or b.startswith(a + "::") or not a or not b


def edges_of(mods):
    edges = {m: set() for m in mods}
    for m, path in mods.items():
        with open(path, encoding="utf-8") as fh:
            code = fh.read().split("#[cfg(test)]")[0]
        code = "\n".join(line for line in code.split("\n") if not line.strip().startswith("//"))
        current = m.split("::") if m else []
        refs = [p.group(1).split("::") for p in PATH.finditer(code)]
        for g in GROUP.finditer(code):
            prefix = [g.group(1)] + [s for s in g.group(2).split("::") if s]
            for item in g.group(3).split(","):
                name = item.strip().split("::")[0].split(" ")[0]
                if name and name != "self":
                    refs.append(prefix + [name])
        for segments in refs:
            target = resolve(mods, current, segments)
            if target is not None and not related(m, target):
                edges[m].add(target)
    return edges


def circles(edges):
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]
    sys.setrecursionlimit(10_000)

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges[v]):
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
                found.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def main():
    src = sys.argv[1] if len(sys.argv) > 1 else "src"
    edges = edges_of(modules(src))
    found = circles(edges)
    for comp in found:
        print("check-module-cycles: these modules depend on each other: " + ", ".join(comp), file=sys.stderr)
        for a in comp:
            for b in sorted(edges[a]):
                if b in comp:
                    print(f"  {a} -> {b}", file=sys.stderr)
    if found:
        sys.exit(1)
    print(f"check-module-cycles: {len(edges)} modules, no circle")


if __name__ == "__main__":
    main()
