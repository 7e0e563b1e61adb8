"""House rules of the ``vctcore`` package, checked on its source with ``ast`` (nothing is imported or run).

- No module over ``MAX_MODULE_LINES`` lines and no function over ``MAX_FUNCTION_LINES`` lines (from its
  ``def`` line to its last line, docstring and nested functions included), except the few named in
  ``LONG_FUNCTIONS`` with a reason; an exception that is no longer needed fails too, so the list only
  shrinks.
- No import cycle between vctcore modules. Every ``import`` and ``from ... import`` counts, at module
  level and inside functions alike, except those under ``if TYPE_CHECKING:`` (never run). An import
  names the deepest vctcore module it reaches: ``import vctcore.a.b`` and ``from vctcore.a.b import f``
  -> ``vctcore.a.b``; ``from vctcore.a import b`` -> ``vctcore.a.b`` when ``b`` is a module, else
  ``vctcore.a`` (the package's ``__init__``); relative imports are resolved the same way. The parent
  packages Python runs first are not edges of their own, so a package ``__init__`` that imports its
  submodules is no cycle unless a submodule imports a name from that ``__init__``. The strongly
  connected components of this graph (Tarjan) must all be single modules, except those in
  ``CYCLES``, each with a reason.
- ``vctcore`` never imports streamlit (the UI lives in ``app.py`` and ``views/``).
"""
from __future__ import annotations

import ast
import functools
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "vctcore"
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80

#: "path/inside/vctcore.py:function" -> why it is still long
LONG_FUNCTIONS: dict[str, str] = {
}
#: import cycles (each a set of module names) still allowed -> why
CYCLES: dict[frozenset[str], str] = {
}


@functools.cache
def _modules() -> dict[str, tuple[Path, ast.Module]]:
    """Dotted module name -> (file, parsed tree) for every ``.py`` file of the package."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = (path, ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
    return out


def _type_checking_nodes(tree: ast.Module) -> set[int]:
    """ids of every node under an ``if TYPE_CHECKING:`` (or ``typing.TYPE_CHECKING``) block."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return skip


def _imported(name: str, tree: ast.Module, is_package: bool) -> list[str]:
    """Dotted names each import of module ``name`` reaches (``pkg.mod`` or ``pkg.mod.attr``)."""
    skip = _type_checking_nodes(tree)
    out = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[:len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            out += [f"{source}.{a.name}" for a in node.names]
    return out


def _graph() -> dict[str, set[str]]:
    """vctcore module -> the vctcore modules it imports (the deepest module each import reaches)."""
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for name, (path, tree) in mods.items():
        for dotted in _imported(name, tree, path.name == "__init__.py"):
            parts = dotted.split(".")
            hits = [".".join(parts[:i]) for i in range(len(parts), 0, -1) if ".".join(parts[:i]) in mods]
            if hits and hits[0] != name:
                graph[name].add(hits[0])
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            v, children = work[-1]
            for w in children:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = set()
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        comp.add(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        found.append(frozenset(comp))
    return found


def test_no_module_is_over_the_line_limit():
    long = {str(path.relative_to(PACKAGE)): n for path, _ in _modules().values()
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES}
    assert not long, f"modules over {MAX_MODULE_LINES} lines (split them by job): {long}"


def test_no_function_is_over_the_line_limit_but_the_named_exceptions():
    long = {}
    for path, tree in _modules().values():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long[f"{path.relative_to(PACKAGE).as_posix()}:{node.name}"] = n
    new = {k: n for k, n in long.items() if k not in LONG_FUNCTIONS}
    assert not new, f"functions over {MAX_FUNCTION_LINES} lines (split them into named helpers): {new}"
    fixed = sorted(set(LONG_FUNCTIONS) - set(long))
    assert not fixed, f"no longer over {MAX_FUNCTION_LINES} lines: take them out of LONG_FUNCTIONS: {fixed}"


def test_no_import_cycle_between_vctcore_modules():
    graph = _graph()
    assert graph["vctcore.fidelity.suite"] >= {"vctcore.fidelity.metrics", "vctcore.checkers.segmenter"}  # sanity
    cycles = _cycles(graph)
    new = [sorted(c) for c in cycles if c not in CYCLES]
    detail = [{m: sorted(graph[m] & set(c)) for m in c} for c in new]
    assert not new, f"import cycles (module -> the modules of its cycle it imports): {detail}"
    gone = [sorted(c) for c in CYCLES if c not in cycles]
    assert not gone, f"these cycles are gone: take them out of CYCLES: {gone}"


def test_cycle_finder_finds_a_cycle_through_a_function_level_import():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [frozenset({"a", "b", "c"})]
    tree = ast.parse("def f():\n    from vctcore.x import y\nif TYPE_CHECKING:\n    from vctcore.z import w\n")
    assert _imported("vctcore.m", tree, False) == ["vctcore.x.y"]


def test_vctcore_never_imports_streamlit():
    found = sorted(name for name, (path, tree) in _modules().items()
                   for dotted in _imported(name, tree, path.name == "__init__.py")
                   if dotted.split(".")[0] == "streamlit")
    assert not found, f"vctcore modules importing streamlit: {found}"
