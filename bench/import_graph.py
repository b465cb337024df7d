"""The import graph of src/fairtrial in figures: modules, internal import edges, cycles, upward
imports and broken border rules (the import contracts in pyproject.toml, ../shared/DESIGN.md's
borders). Run on demand to re-measure:

    .venv/bin/python bench/import_graph.py           # figures
    .venv/bin/python bench/import_graph.py --edges   # ... and every upward or cyclic edge

"Upward" is read from the `layers` contract: an import from a top-level module or package to one
listed above it (or to an independent sibling of its own level). Cycles and upward imports are
also counted without the contracts' listed exceptions (`ignore_imports`); "broken rules" is
counted with those exceptions removed (what the code really does) and as the test suite checks. Imports inside functions and under TYPE_CHECKING count: they
are dependencies all the same.
"""

from __future__ import annotations

import copy
import sys
from collections import defaultdict

import grimp
from importlinter import configuration
from importlinter.application import use_cases
from importlinter.application.user_options import UserOptions

ROOT = "fairtrial"


def unit(module: str) -> str:
    """The top-level module or package a module belongs to (`fairtrial` for the root)."""
    return ".".join(module.split(".")[:2])


def strongly_connected(nodes, succ) -> list[list[str]]:
    """Tarjan's algorithm, iterative; components with more than one node (the cycles)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on, stack, out = set(), [], []
    counter = 0
    for start in sorted(nodes):
        if start in index:
            continue
        work = [(start, iter(sorted(succ.get(start, ()))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on.add(start)
        while work:
            v, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(succ.get(w, ())))))
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
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
    return out


def layer_rank(options: UserOptions) -> dict[str, tuple[int, bool]]:
    """unit -> (level from the top, independent siblings?) from the `layers` contract."""
    (layers,) = [c for c in options.contracts_options if c.get("type") == "layers"]
    rank = {}
    for i, raw in enumerate(layers["layers"]):
        sep = "|" if "|" in raw else ":"
        for name in raw.split(sep):
            rank[f"{ROOT}.{name.strip().strip('()')}"] = (i, sep == "|")
    return rank


def broken(options: UserOptions) -> list[str]:
    report = use_cases.create_report(options, cache_dir=None)
    return [c.name for c, check in report.get_contracts_and_checks() if not check.kept]


def main(show_edges: bool = False) -> int:
    configuration.configure()
    use_cases._register_built_in_contract_types()  # what lint_imports does before create_report
    options = use_cases.read_user_options("pyproject.toml")
    graph = grimp.build_graph(ROOT, cache_dir=None)
    mods = sorted(m for m in graph.modules if m == ROOT or m.startswith(ROOT + "."))
    packages = [m for m in mods if graph.find_children(m)]
    succ = {m: {t for t in graph.find_modules_directly_imported_by(m) if t in mods} for m in mods}
    edges = sum(len(v) for v in succ.values())

    units = sorted({unit(m) for m in mods})
    usucc: dict[str, set[str]] = defaultdict(set)
    weight: dict[tuple[str, str], int] = defaultdict(int)
    for m, ts in succ.items():
        for t in ts:
            if unit(m) != unit(t):
                usucc[unit(m)].add(unit(t))
                weight[unit(m), unit(t)] += 1
    uedges = sum(len(v) for v in usucc.values())

    mod_cycles = strongly_connected(mods, succ)
    unit_cycles = strongly_connected(units, usucc)
    # the same with the contracts' listed exceptions left out (plain "a -> b" lines only)
    listed = {tuple(x.strip() for x in line.split("->"))
              for c in options.contracts_options for line in c.get("ignore_imports", ())}
    rest: dict[str, set[str]] = defaultdict(set)
    for m, ts in succ.items():
        for t in ts:
            if unit(m) != unit(t) and (m, t) not in listed:
                rest[unit(m)].add(unit(t))
    unit_cycles_rest = strongly_connected(units, rest)

    rank = layer_rank(options)

    def is_upward(a: str, b: str) -> bool:
        if a not in rank or b not in rank:
            return False
        (ra, independent), (rb, _) = rank[a], rank[b]
        return ra > rb or (ra == rb and independent)

    upward = [(a, b, n) for (a, b), n in sorted(weight.items()) if is_upward(a, b)]
    upward_rest = {(unit(m), unit(t)) for m, ts in succ.items() for t in ts
                   if unit(m) != unit(t) and (m, t) not in listed
                   and is_upward(unit(m), unit(t))}

    raw = copy.deepcopy(options)
    for c in raw.contracts_options:
        c.pop("ignore_imports", None)
    broken_raw, broken_checked = broken(raw), broken(options)
    exceptions = sum(len(c.get("ignore_imports", ())) for c in options.contracts_options)

    top_modules = [u for u in units if u != ROOT and not graph.find_children(u)]
    print(f"modules (incl. packages):          {len(mods)} ({len(packages)} packages)")
    print(f"top-level modules and packages:    {len(units) - 1} ({len(top_modules)} loose modules)")
    print(f"internal import edges (module):    {edges}")
    print(f"internal import edges (top-level): {uedges}")
    print(f"import cycles (module level):      {len(mod_cycles)}"
          + "".join(f"\n    {' <-> '.join(c)}" for c in mod_cycles))
    print(f"import cycles (top level):         {len(unit_cycles)}"
          + "".join(f"\n    {' <-> '.join(c)}" for c in unit_cycles))
    print(f"  ... without the listed exceptions: {len(unit_cycles_rest)}")
    print(f"upward imports (top-level pairs):  {len(upward)} "
          f"({sum(n for *_, n in upward)} module edges)")
    print(f"  ... without the listed exceptions: {len(upward_rest)}")
    if show_edges:
        for a, b, n in upward:
            print(f"    {a} -> {b} ({n})")
    print(f"contracts:                         {len(options.contracts_options)}")
    print(f"broken rules, exceptions removed:  {len(broken_raw)}"
          + "".join(f"\n    {n}" for n in broken_raw))
    print(f"broken rules as checked:           {len(broken_checked)} "
          f"({exceptions} listed exceptions)")
    return 0


if __name__ == "__main__":
    sys.exit(main("--edges" in sys.argv))
