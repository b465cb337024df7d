"""Every stage of every recipe reads only the params groups it declares (`Stage.params`), the
groups that make its cache key.

Two guards hold this. At run time `ctx.params` (recipes.api.StageParams, handed out by the
worker and by `recipes.testing.stage_params`) raises UndeclaredParam on any other group, so every
recipe test that runs a stage checks the paths it takes. Here, a static read of each stage
function's code (and of the recipe's own helpers it hands `ctx` or `ctx.params` to) checks the
paths no test takes, for every stage of every registered recipe, so a new stage is covered the
day it is declared."""

from __future__ import annotations

import ast
import builtins
import inspect
import textwrap
from types import FunctionType

import pytest

from fairtrial.recipes import registry
from fairtrial.recipes.api import StageParams, UndeclaredParam

MAPPING_METHODS = {"get", "keys", "items", "values"}


def _recipes():
    return [registry.get(n) for n in registry.names(include_internal=True)]


def _cases():
    return [pytest.param(r, s, id=f"{r.name}.{s.name}") for r in _recipes() for s in r.stages]


class _Reads(ast.NodeVisitor):
    """The params groups a function reads through its argument `ctx_name` (a context) or
    `params_name` (ctx.params itself), following calls into fairtrial.recipes functions."""

    def __init__(self, fn: FunctionType, ctx_name: str | None, params_name: str | None,
                 seen: set, problems: list[str]):
        self.fn, self.seen, self.problems = fn, seen, problems
        self.ctx_names = {ctx_name} if ctx_name else set()
        self.params_names = {params_name} if params_name else set()
        self.reads: set[str] = set()
        self.loops: dict[str, tuple[str, ...]] = {}

    # what an expression is: the context, its params, or neither
    def _is_ctx(self, node) -> bool:
        return isinstance(node, ast.Name) and node.id in self.ctx_names

    def _is_params(self, node) -> bool:
        return (isinstance(node, ast.Name) and node.id in self.params_names) or (
            isinstance(node, ast.Attribute) and node.attr == "params" and self._is_ctx(node.value))

    def visit_Assign(self, node: ast.Assign) -> None:
        if self._is_params(node.value):
            self.params_names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        elif self._is_ctx(node.value):
            self.ctx_names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        self.generic_visit(node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if self._is_params(node.value) and node.attr not in MAPPING_METHODS:
            self.reads.add(node.attr)
        self.generic_visit(node)

    def visit_Subscript(self, node: ast.Subscript) -> None:
        if self._is_params(node.value):
            if isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str):
                self.reads.add(node.slice.value)
            elif isinstance(node.slice, ast.Name) and node.slice.id in self.loops:
                self.reads |= set(self.loops[node.slice.id])
            else:
                self._problem(node, "reads ctx.params with a computed key")
        self.generic_visit(node)

    def _bind_loop(self, target, it) -> None:
        """`for k in NAMES` over a module-level tuple of strings: params[k] reads each of them."""
        if isinstance(target, ast.Name) and isinstance(it, ast.Name):
            values = self.fn.__globals__.get(it.id)
            if isinstance(values, (tuple, list, frozenset)) and all(isinstance(v, str) for v in values):
                self.loops[target.id] = tuple(values)

    def visit_For(self, node: ast.For) -> None:
        self._bind_loop(node.target, node.iter)
        self.generic_visit(node)

    def visit_comprehension(self, node: ast.comprehension) -> None:
        self._bind_loop(node.target, node.iter)
        self.generic_visit(node)

    def _visit_comp(self, node) -> None:
        for g in node.generators:  # bind the loop names before the element that uses them
            self.visit(g)
        for field in ("key", "value", "elt"):
            if getattr(node, field, None) is not None:
                self.visit(getattr(node, field))

    visit_DictComp = visit_ListComp = visit_SetComp = visit_GeneratorExp = _visit_comp

    def visit_Call(self, node: ast.Call) -> None:
        f = node.func
        if isinstance(f, ast.Attribute) and self._is_params(f.value) and f.attr in MAPPING_METHODS:
            if f.attr == "get" and node.args and isinstance(node.args[0], ast.Constant):
                self.reads.add(node.args[0].value)
            else:
                self._problem(node, f"calls ctx.params.{f.attr}(...), whose groups cannot be read "
                                    "from the code")
        for i, arg in enumerate(node.args):
            if self._is_ctx(arg) or self._is_params(arg):
                self._follow(node, i, as_ctx=self._is_ctx(arg))
        for kw in node.keywords:
            if kw.value is not None and (self._is_ctx(kw.value) or self._is_params(kw.value)):
                self._problem(node, "hands ctx or ctx.params on as a keyword argument")
        self.generic_visit(node)

    def _problem(self, node, what: str) -> None:
        self.problems.append(f"{self.fn.__module__}.{self.fn.__qualname__} line "
                             f"{self.fn.__code__.co_firstlineno + node.lineno - 1}: {what}")

    def _follow(self, call: ast.Call, index: int, as_ctx: bool) -> None:
        """The callee, when it is a function of a recipe module: its reads count as ours."""
        target = _resolve(call.func, self.fn)
        if target is None:
            if isinstance(call.func, ast.Attribute) and self._is_ctx(call.func.value):
                return  # a method of the context itself (ctx.progress(...))
            name = ast.unparse(call.func)
            if name in dir(builtins):
                if as_ctx and name != "getattr":
                    return  # isinstance(ctx, ...), print(ctx), ...
                const = call.args[1] if name == "getattr" and len(call.args) > 1 else None
                if as_ctx and isinstance(const, ast.Constant) and const.value != "params":
                    return  # getattr(ctx, "key", ...): a context field, not a param
                if not as_ctx and name in ("isinstance", "repr", "len"):
                    return
                self._problem(call, f"reads {'ctx' if as_ctx else 'ctx.params'} through "
                                    f"{name}(...), whose groups cannot be read from the code")
                return
            self._problem(call, f"hands {'ctx' if as_ctx else 'ctx.params'} to {name}(...), "
                                "which the guard cannot follow (not a function of a recipe)")
            return
        params = list(inspect.signature(target).parameters)
        if index >= len(params):
            return
        key = (target, index, as_ctx)
        if key in self.seen:
            return
        self.seen.add(key)
        sub = _reads_of(target, ctx_name=params[index] if as_ctx else None,
                        params_name=None if as_ctx else params[index],
                        seen=self.seen, problems=self.problems)
        self.reads |= sub


def _resolve(func: ast.expr, fn: FunctionType):
    """The function object a call names, when it is a plain function of a fairtrial.recipes
    module (a name in the caller's globals, or module.name)."""
    obj = None
    if isinstance(func, ast.Name):
        obj = fn.__globals__.get(func.id)
    elif isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
        mod = fn.__globals__.get(func.value.id)
        obj = getattr(mod, func.attr, None) if mod is not None else None
    if isinstance(obj, FunctionType) and obj.__module__.startswith("fairtrial.recipes"):
        return obj
    return None


def _reads_of(fn: FunctionType, ctx_name: str | None, params_name: str | None, seen: set,
              problems: list[str]) -> set[str]:
    tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
    visitor = _Reads(fn, ctx_name, params_name, seen, problems)
    visitor.visit(tree.body[0])
    return visitor.reads


@pytest.mark.parametrize("recipe, stage", _cases())
def test_the_stage_reads_only_the_params_groups_it_declares(recipe, stage):
    fn = stage.fn
    first = next(iter(inspect.signature(fn).parameters))
    problems: list[str] = []
    reads = _reads_of(fn, ctx_name=first, params_name=None, seen=set(), problems=problems)
    assert not problems, "\n".join(problems)
    declared = {n.split(".")[0] for n in stage.params}
    undeclared = sorted(reads - declared)
    assert not undeclared, (f"recipe {recipe.name}, stage {stage.name} reads params "
                            f"{', '.join(undeclared)}, which it does not declare "
                            f"(declared: {', '.join(sorted(declared)) or 'none'})")


def test_the_static_guard_finds_an_undeclared_read():
    """The check above can fail: a stage reading a group it does not declare, directly, through
    an alias, or in a helper it hands ctx to, is found."""
    def helper(c):
        return c.params["dedup"]

    def stage(ctx):
        p = ctx.params
        return p.quality, ctx.params.get("select"), helper(ctx)

    helper.__module__ = stage.__module__ = "fairtrial.recipes.fake"
    stage.__globals__["helper"] = helper
    try:
        assert _reads_of(stage, "ctx", None, set(), []) == {"quality", "select", "dedup"}
    finally:
        del stage.__globals__["helper"]


def test_reading_an_undeclared_group_raises_naming_stage_and_group():
    """The run-time guard: the typed view of the curate recipe's dedup stage."""
    recipe = registry.get("curate")
    view = StageParams({"dedup": None}, "dedup", ("dedup",), recipe.params)
    assert view.dedup.num_perm == 128          # validated, the model's default filled in
    assert view["dedup"] is view.dedup
    for read in (lambda: view.quality, lambda: view["quality"], lambda: view.get("quality")):
        with pytest.raises(UndeclaredParam, match=r"stage dedup reads param 'quality'.*declared: dedup"):
            read()
    with pytest.raises(TypeError, match="read-only"):
        view.dedup = None


def test_a_declared_group_is_validated_with_the_recipes_own_rules():
    from fairtrial.recipes.api import StageError

    lvm = registry.get("lvm")
    view = StageParams({"data": "onestopenglish", "split": None}, "prepare", ("data", "split"),
                       lvm.params)
    assert view.data.source == "onestopenglish"   # the model's field validator (a shorthand)
    with pytest.raises(StageError, match=r"stage prepare: params\.data\.nope: Extra inputs"):
        StageParams({"data": {"source": "x", "nope": 1}, "split": None}, "prepare",
                    ("data", "split"), lvm.params)
