"""The architecture's rules, checked: no import cycle between the package's modules, no
module reaching into another's private names, no module too long to read (see
docs/architecture.md, which names the layers and what each module holds)."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import casare_workers

PACKAGE = Path(casare_workers.__file__).resolve().parent


def _modules() -> dict[str, ast.Module]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = ast.parse(path.read_text(encoding="utf-8"))
    return found


def _is_package(name: str) -> bool:
    return PACKAGE.parent.joinpath(*name.split("."), "__init__.py").exists()


def imports_of(name: str, tree: ast.Module, known: set[str]) -> set[str]:
    """Every casare_workers module ``name`` imports, wherever the import statement is
    (module level, inside functions, under ``TYPE_CHECKING``)."""
    here = name if _is_package(name) else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = here.split(".")[: len(here.split(".")) - node.level + 1]
            target = ".".join([*base, *([node.module] if node.module else [])])
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in known else target)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("casare_workers"):
            found.add(node.module or "")
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("casare_workers."))
    return {m for m in found if m in known and m != name}


def import_cycles() -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    modules = _modules()
    graph = {name: imports_of(name, tree, set(modules)) for name, tree in modules.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return cycles


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _defined_private_names(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                names.add(node.attr)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            names.add(node.value)  # __slots__ entries
    return {n for n in names if _private(n)}


def private_accesses() -> dict[str, list[str]]:
    """Uses, in one module, of a private name that another module of the package defines.

    Counted: ``obj._name`` (``obj`` not ``self``/``cls``) and ``from .m import _name``,
    where ``_name`` is defined (a function, class, module global, ``self._name``
    assignment or ``__slots__`` entry) in another casare_workers module and not in the
    module using it.  Private names of the standard library (``os._exit``) are not counted.
    """
    modules = _modules()
    defined = {name: _defined_private_names(tree) for name, tree in modules.items()}
    everywhere: dict[str, set[str]] = defaultdict(set)
    for name, names in defined.items():
        for private in names:
            everywhere[private].add(name)
    found: dict[str, list[str]] = defaultdict(list)
    for name, tree in modules.items():
        for node in ast.walk(tree):
            used: list[str] = []
            if isinstance(node, ast.Attribute) and _private(node.attr):
                if not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):
                    used.append(node.attr)
            elif isinstance(node, ast.ImportFrom) and node.level:
                used.extend(a.name for a in node.names if _private(a.name))
            for private in used:
                if private not in defined[name] and everywhere[private] - {name}:
                    found[name].append(private)
    return dict(found)


def module_lines() -> dict[str, int]:
    return {
        str(path.relative_to(PACKAGE.parent)): len(path.read_text(encoding="utf-8").splitlines())
        for path in sorted(PACKAGE.rglob("*.py"))
    }


#: Over this many lines a module is split (400 is the aim, see docs/architecture.md).
MAX_LINES = 600


def test_no_import_cycles() -> None:
    # Imports anywhere count: module level, inside functions, under TYPE_CHECKING.
    assert import_cycles() == []


def test_no_module_uses_another_modules_private_names() -> None:
    assert private_accesses() == {}


def test_no_module_is_too_long_to_read() -> None:
    too_long = {path: n for path, n in module_lines().items() if n > MAX_LINES}
    assert too_long == {}


def test_the_checks_see_what_they_look_for() -> None:
    # The checks above pass on empty input too: prove they find real imports and names.
    modules = _modules()
    handle = imports_of(
        "casare_workers._core._handle", modules["casare_workers._core._handle"], set(modules)
    )
    assert "casare_workers._core._delivery" in handle
    assert "_fire" in _defined_private_names(modules["casare_workers._signals"])
    assert len(module_lines()) > 40
