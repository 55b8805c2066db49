#!/usr/bin/env python3
"""layers.py: check that src/'s modules call one way.

A module is a pair src/NAME.c + src/NAME.h. Module A depends on module B
when A's .c or .h includes B's header or names something B's header
declares (a function, a static inline helper, an extern object, a type or
constant B defines). Every module belongs to one layer below; a dependency
may go to its own layer or a lower one, never up, and the graph has no
cycle. Prints the edges that break either rule and exits 1, or prints one
line "ok: ..." and exits 0.

Usage: tests/layers.py [SRC_DIR] [--edges]   (--edges lists every edge)
"""
import os
import re
import sys

LAYERS = [
    ("process", "main master redisproc worker"),
    ("app", "routes api chat echo room store bus sentinel"),
    ("session", "front ws"),
    ("transport", "loop conn listen tls rlink"),
    ("codecs", "config http ws_frame deflate proxy proto apiproto auth utf8 www resp redisurl"),
    ("base", "log clock sbuf jbuf metrics addrlimit priv notify"),
]
# Headers that belong to a module but have no .c of their own.
PRIVATE_HEADERS = {"session": "ws"}

STRIP = re.compile(r'"(\\.|[^"\\\n])*"|/\*.*?\*/|//[^\n]*', re.S)
IDENT = re.compile(r"\b[A-Za-z_][A-Za-z0-9_]*\b")
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)\.h"', re.M)
# What a header declares: prototypes, inline helpers, externs, types, macros, enumerators.
DECL_FUNC = re.compile(r"(?:\b([A-Za-z_][A-Za-z0-9_]*)\s+|\*\s*)([A-Za-z_][A-Za-z0-9_]*)\s*\(")
DECL_TYPE = re.compile(r"\b(?:struct|enum|union)\s+([A-Za-z_][A-Za-z0-9_]*)\s*\{")
DECL_MACRO = re.compile(r"^\s*#\s*define\s+([A-Za-z_][A-Za-z0-9_]*)", re.M)
DECL_EXTERN = re.compile(r"\bextern\b[^;]*?\b([A-Za-z_][A-Za-z0-9_]*)\s*(?:\[\s*\])?\s*;")
ENUM_BODY = re.compile(r"\benum\b[^{;]*\{([^}]*)\}")
# Words before a "name(" that make it a call or a control statement, not a declaration.
NOT_DECL = set("if for while switch return sizeof defined __attribute__ typeof else case do".split())
# Words that are never a module's name for anything.
KEYWORDS = NOT_DECL | set("void int char long short unsigned signed const static inline extern typedef".split())
DECL_TYPEDEF = re.compile(r"\btypedef\b[^;]*?(?:\(\s*\*\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)|([A-Za-z_][A-Za-z0-9_]*)\s*;)")
# "struct X;" alone: the file only passes X around by pointer, it does not depend on X's module.
FORWARD = re.compile(r"^\s*struct\s+([A-Za-z_][A-Za-z0-9_]*)\s*;", re.M)


def read(path):
    with open(path, errors="replace") as f:
        return f.read()


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    src = args[0] if args else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
    show_edges = "--edges" in sys.argv
    layer_of = {}
    for rank, (name, mods) in enumerate(LAYERS):
        for m in mods.split():
            layer_of[m] = rank
    modules = sorted(f[:-2] for f in os.listdir(src) if f.endswith(".c"))
    problems = []
    unknown = [m for m in modules if m not in layer_of]
    if unknown:
        problems.append("modules in no layer (add them to LAYERS): " + ", ".join(unknown))
    gone = [m for m in layer_of if m not in modules]
    if gone:
        problems.append("LAYERS names modules that do not exist: " + ", ".join(gone))

    owner = {}
    headers = {m: [m] for m in modules}
    for h, m in PRIVATE_HEADERS.items():
        headers.setdefault(m, []).append(h)
    header_owner = {h: m for m, hs in headers.items() for h in hs}
    for m, hs in headers.items():
        for h in hs:
            path = os.path.join(src, h + ".h")
            if not os.path.exists(path):
                continue
            raw = read(path)
            text = STRIP.sub(" ", raw)
            names = set(DECL_MACRO.findall(raw)) - {f"ROOMD_{h.upper()}_H"}
            names |= {n for prev, n in DECL_FUNC.findall(text) if prev not in NOT_DECL and n not in KEYWORDS}
            names |= set(DECL_TYPE.findall(text)) | set(DECL_EXTERN.findall(text))
            names |= {a or b for a, b in DECL_TYPEDEF.findall(text)}
            for body in ENUM_BODY.findall(text):
                names |= {e.split("=")[0].strip() for e in body.split(",") if e.strip()}
            for n in names:
                owner.setdefault(n, m)

    edges = {m: set() for m in modules}
    for m in modules:
        files = [os.path.join(src, m + ".c")] + [os.path.join(src, h + ".h") for h in headers.get(m, [])]
        for path in files:
            if not os.path.exists(path):
                continue
            raw = read(path)
            for inc in INCLUDE.findall(raw):
                o = header_owner.get(os.path.basename(inc))
                if o is not None and o != m:
                    edges[m].add(o)
            text = STRIP.sub(" ", raw)
            opaque = set(FORWARD.findall(text))
            for w in set(IDENT.findall(text)) - opaque:
                o = owner.get(w)
                if o is not None and o != m:
                    edges[m].add(o)

    for a in modules:
        for b in sorted(edges[a]):
            if a in layer_of and b in layer_of and layer_of[b] < layer_of[a]:
                problems.append(f"{a} ({LAYERS[layer_of[a]][0]}) uses {b} ({LAYERS[layer_of[b]][0]}): "
                                "a lower layer must not name a higher one")

    # Cycles (Tarjan's strongly connected components).
    index, low, stack, on, sccs, counter = {}, {}, [], set(), [], [0]

    def strong(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                strong(w)
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
                sccs.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in modules:
        if v not in index:
            strong(v)
    for comp in sccs:
        problems.append("cycle among: " + ", ".join(comp))

    if show_edges:
        for a in modules:
            print(f"{a} -> {' '.join(sorted(edges[a]))}")
    if problems:
        for p in problems:
            print(p)
        return 1
    print(f"ok: {len(modules)} modules in {len(LAYERS)} layers, "
          f"{sum(len(e) for e in edges.values())} edges, all downward, no cycle")
    return 0


if __name__ == "__main__":
    sys.exit(main())
