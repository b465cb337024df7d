"""Spec -> DAG of stage runs. A pure function: the only I/O is through the `digest` callable that
reads content digests of input files (cached by the store).

Cache key of a stage run = sha256 of the canonical JSON of (recipe, stage, stage version, the params
the stage consumes, the keys of its upstream stage runs, the digests of its input files, and the
replicate seed when the stage is seeded). Upstream runs enter by key (input-addressed, as in Nix),
which lets the whole graph be planned before anything runs; the manifest of each artifact then
records the output digests of the inputs it actually read. Identical keys collapse into one node,
which is how one data split serves every arm and a cached run serves another study.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from fairtrial.base.digests import digest_of
from fairtrial.recipes.api import Recipe, Resources, declared_params


@dataclass
class Node:
    key: str
    recipe: str
    stage: str
    version: str
    params: dict[str, Any]
    seed: int | None
    needs: dict[str, str]
    """upstream stage name -> key"""
    input_files: dict[str, str]
    """path -> content digest"""
    resources: Resources
    cells: list[tuple[str, int]] = field(default_factory=list)
    """(arm, replicate) pairs this node serves"""

    @property
    def shared(self) -> bool:
        return len({a for a, _ in self.cells}) > 1 or len(self.cells) > 1

    def to_record(self) -> dict[str, Any]:
        return {"key": self.key, "recipe": self.recipe, "stage": self.stage,
                "version": self.version, "params": self.params, "seed": self.seed,
                "needs": self.needs, "input_files": self.input_files}


@dataclass
class Plan:
    nodes: dict[str, Node]
    """key -> node, in a topological order (upstream first)"""
    cells: dict[tuple[str, int, str], str]
    """(arm, replicate, stage) -> key"""
    stages: list[str]

    def order(self) -> list[Node]:
        return list(self.nodes.values())

    def downstream(self, key: str) -> set[str]:
        out: set[str] = set()
        frontier = {key}
        while frontier:
            nxt = {n.key for n in self.nodes.values() if set(n.needs.values()) & frontier}
            nxt -= out
            out |= nxt
            frontier = nxt
        return out


def make_plan(recipe: Recipe, arms: list[tuple[str, dict[str, Any]]], replicates: list[int],
              resources: dict[str, Resources] | None = None,
              digest: Callable[[Path], str] | None = None,
              external: list[tuple[str, dict[str, Any]]] = ()) -> Plan:
    """arms: (name, resolved params). Stages run in the recipe's declared order; `needs` must name
    earlier stages. external: (name, resolved params) of external arms, which get the recipe's
    `external_stages` only, run once (a seeded one with the first replicate's seed) and serving
    every replicate: an external arm is one fixed system, as its imported scores are."""
    resources = resources or {}
    nodes: dict[str, Node] = {}
    cells: dict[tuple[str, int, str], str] = {}
    names = [s.name for s in recipe.stages]
    for s in recipe.stages:
        for n in s.needs:
            if n not in names or names.index(n) >= names.index(s.name):
                raise ValueError(f"recipe {recipe.name}: stage {s.name} needs {n}, "
                                 "which is not an earlier stage")

    def plan_arm(arm: str, params: dict[str, Any], stages, runs: list[tuple[int, list[int]]]) -> None:
        """runs: (seed, the replicates that run serves)."""
        files: dict[str, dict[str, str]] = {}
        for seed, serves in runs:
            keys: dict[str, str] = {}
            for s in stages:
                if s.name not in files:
                    paths = s.input_files(params) if s.input_files else []
                    files[s.name] = {str(p): (digest(Path(p)) if digest else "") for p in paths}
                picked = declared_params(params, s.params)
                needs = {n: keys[n] for n in s.needs}
                node_seed = seed if s.seeded else None
                key = digest_of({"recipe": recipe.name, "stage": s.name, "version": s.version,
                                 "params": picked, "needs": needs, "inputs": files[s.name],
                                 "seed": node_seed})
                keys[s.name] = key
                if key not in nodes:
                    nodes[key] = Node(key=key, recipe=recipe.name, stage=s.name,
                                      version=s.version, params=picked, seed=node_seed,
                                      needs=needs, input_files=files[s.name],
                                      resources=resources.get(s.name, s.resources))
                for rep in serves:
                    nodes[key].cells.append((arm, rep))
                    cells[(arm, rep, s.name)] = key

    for arm, params in arms:
        plan_arm(arm, params, recipe.stages, [(seed, [seed]) for seed in replicates])
    if external and recipe.external_stages and replicates:
        # the closure under needs is checked when the recipe is built (Recipe.__post_init__)
        ext_stages = [s for s in recipe.stages if s.name in recipe.external_stages]
        for arm, params in external:
            plan_arm(arm, params, ext_stages, [(replicates[0], list(replicates))])
    # stages in declared order and needs pointing backwards: insertion order is topological
    # per arm, but a node first created for a later arm may need one created earlier: fine, since
    # every need of a node was inserted before the node itself.
    return Plan(nodes=nodes, cells=cells, stages=names)


def plan_for(spec, digest: Callable[[Path], str] | None = None) -> Plan:
    """The study's plan: every trained arm x replicate x stage, and the recipe's external stages
    for each external arm (`Spec.planned_external_arms`, with `Spec.external_params`)."""
    external = [(a, spec.external_params) for a in spec.planned_external_arms]
    return make_plan(spec.recipe, [(a.name, a.params) for a in spec.arms], spec.replicates,
                     {k: v for k, v in spec.resources.items()}, digest, external=external)
