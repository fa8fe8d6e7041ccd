#!/usr/bin/env python3
"""Module import graph of src/: every `crate::a::b` / `super::x` path in a file is an edge from
the file's module to the module it names. Prints the edges and any cycles (strongly connected
components with more than one module), at two depths: top-level modules, and second-level
modules inside the given packages. Exit status 1 when a cycle exists.

Usage: tools/modgraph.py [src-dir] [--deep routing,providers,providers::http,telemetry]
"""
import os, re, sys

src = sys.argv[1] if len(sys.argv) > 1 and not sys.argv[1].startswith('--') else 'src'
deep = ['routing', 'providers', 'providers::http', 'telemetry']
if '--deep' in sys.argv:
    deep = sys.argv[sys.argv.index('--deep') + 1].split(',')

def module_of(path):
    rel = os.path.relpath(path, src)[:-3].split(os.sep)
    if rel[-1] in ('mod', 'lib', 'main'):
        rel = rel[:-1]
    return rel

files = {}
for root, _, names in os.walk(src):
    for n in names:
        if n.endswith('.rs'):
            p = os.path.join(root, n)
            files[p] = module_of(p)
mods = {'::'.join(m) for m in files.values() if m}

def resolve(parts):
    """Longest known module prefix of a path."""
    for k in range(len(parts), 0, -1):
        cand = '::'.join(parts[:k])
        if cand in mods:
            return cand
    return None

edges = set()
for p, m in files.items():
    text = open(p).read()
    # Drop `#[cfg(test)] mod tests { ... }` (tests may reach anywhere) and comments.
    text = re.split(r'#\[cfg\(test\)\]\s*mod tests', text)[0]
    text = re.sub(r'//[^\n]*', '', text)
    here = '::'.join(m)
    is_mod_file = os.path.basename(p) in ('mod.rs', 'lib.rs', 'main.rs')
    for mt in re.finditer(r'\b(crate|super)((?:::\w+)+)', text):
        parts = mt.group(2).strip(':').split('::')
        if mt.group(1) == 'super':
            base = m if is_mod_file else m[:-1]
            ups = 1
            while parts and parts[0] == 'super':
                parts = parts[1:]; ups += 1
            base = base[:len(base) - ups + 1] if ups > 1 else base
            parts = base + parts if not is_mod_file else m[:-1] + parts
        # group list/brace imports: `crate::a::{b, c}` is caught as `crate::a`
        target = resolve(parts)
        if target and here:
            edges.add((here, target))

def collapse(name, depth_pkgs):
    parts = name.split('::')
    for pkg in sorted(depth_pkgs, key=lambda x: -len(x)):
        pp = pkg.split('::')
        if parts[:len(pp)] == pp and len(parts) > len(pp):
            return '::'.join(parts[:len(pp) + 1])
    return parts[0]

def sccs(nodes, adj):
    index, low, stack, on, out, i = {}, {}, [], set(), [], [0]
    def strong(v):
        index[v] = low[v] = i[0]; i[0] += 1; stack.append(v); on.add(v)
        for w in adj.get(v, ()):
            if w not in index:
                strong(w); low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop(); on.discard(w); comp.append(w)
                if w == v: break
            out.append(sorted(comp))
    sys.setrecursionlimit(10000)
    for v in sorted(nodes):
        if v not in index:
            strong(v)
    return [c for c in out if len(c) > 1]

bad = False
for title, pkgs in [('top-level modules', []), ('inside ' + ', '.join(deep), deep)]:
    g = {}
    nodes = set()
    for a, b in edges:
        ca, cb = collapse(a, pkgs), collapse(b, pkgs)
        if pkgs:
            # only edges between siblings inside one of the packages
            pa = next((k for k in sorted(pkgs, key=lambda x: -len(x)) if ca.startswith(k + '::')), None)
            if pa is None or not cb.startswith(pa + '::') or cb.count('::') != ca.count('::'):
                continue
        if ca != cb:
            g.setdefault(ca, set()).add(cb); nodes |= {ca, cb}
    print(f'== {title}: {sum(len(v) for v in g.values())} edges')
    for a in sorted(g):
        print(f'  {a} -> {", ".join(sorted(g[a]))}')
    cyc = sccs(nodes, g)
    for c in cyc:
        print('  CYCLE:', ' <-> '.join(c))
    if not cyc:
        print('  no cycles')
    bad |= bool(cyc)
sys.exit(1 if bad else 0)
