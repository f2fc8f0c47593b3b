"""The PostgreSQL adapter package has no import cycle: every store module
imports only modules below it, and none imports the package itself (whose
__init__ imports them all)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = "chalicelib.adapters.postgres"
ROOT = Path(__file__).resolve().parents[2]
DIRECTORY = ROOT / "chalicelib" / "adapters" / "postgres"


def module_name(path: Path) -> str:
    return PACKAGE if path.name == "__init__.py" else f"{PACKAGE}.{path.stem}"


def imported(path: Path, modules: set[str]) -> set[str]:
    """The package's modules `path` imports, at module level or inside a
    function (TYPE_CHECKING blocks included): `from P import name` counts as
    P.name when that is a module of the package, else as P."""
    found: set[str] = set()
    here = module_name(path)
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name in modules}
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolved against this module's package
                base = PACKAGE.rsplit(".", node.level - 1)[0] if node.level > 1 else PACKAGE
                source = f"{base}.{node.module}" if node.module else base
            else:
                source = node.module or ""
            for alias in node.names:
                if f"{source}.{alias.name}" in modules:
                    found.add(f"{source}.{alias.name}")
                elif source in modules:
                    found.add(source)
    return found - {here}


def graph() -> dict[str, set[str]]:
    paths = sorted(DIRECTORY.glob("*.py"))
    modules = {module_name(p) for p in paths}
    return {module_name(p): imported(p, modules) for p in paths}


def cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (as the path that closes it), or None."""
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        stack.append(node)
        for target in sorted(edges.get(node, ())):
            if state.get(target) == "open":
                return [*stack[stack.index(target):], target]
            if target not in state:
                found = visit(target)
                if found:
                    return found
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(edges):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_cycle_finder_finds_a_cycle_and_accepts_a_tree() -> None:
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_the_postgres_package_has_no_import_cycle() -> None:
    edges = graph()
    assert f"{PACKAGE}.database" in edges[PACKAGE]  # the graph is read, not empty
    assert f"{PACKAGE}.sql" in edges[f"{PACKAGE}.invoices"]
    assert cycle(edges) is None, " -> ".join(cycle(edges) or [])


def test_no_store_module_imports_the_package_itself() -> None:
    importers = sorted(m for m, targets in graph().items() if PACKAGE in targets)
    assert importers == []
