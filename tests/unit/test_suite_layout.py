"""The suite's own layout: no test module imports another. Shared builders
live in tests/builders.py, fakes in tests/fakes.py, HTTP helpers in
tests/integration/web.py, fixtures in tests/conftest.py; a test module
importing another would run (and collect) that module's tests twice and
hide where a helper lives."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def _is_test_module(dotted: str) -> bool:
    return any(part.startswith("test_") for part in dotted.split("."))


def imported_test_modules(source: str, package: str) -> list[str]:
    """Every test module (a module named test_*) that `source`, a module of
    `package`, imports, absolutely or relatively, at any depth of the file."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names if _is_test_module(alias.name)]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            if _is_test_module(module):
                found.append(module)
            else:  # `from tests.unit import test_x`
                found += [f"{module}.{alias.name}" for alias in node.names
                          if alias.name.startswith("test_")]
    return found


def test_no_test_module_imports_another() -> None:
    modules = sorted(TESTS.rglob("test_*.py"))
    assert len(modules) > 30  # the walk found the suite
    offenders = {}
    for path in modules:
        package = ".".join(path.relative_to(TESTS.parent).parent.parts)
        found = imported_test_modules(path.read_text(encoding="utf-8"), package)
        if found:
            offenders[str(path.relative_to(TESTS.parent))] = found
    assert offenders == {}, "move shared helpers to tests/builders.py or a support module"


def test_the_check_sees_every_form_of_import() -> None:
    package = "tests.integration"
    assert imported_test_modules("from tests.unit.test_merkle import leaf\n", package) == [
        "tests.unit.test_merkle"]
    assert imported_test_modules("import tests.integration.test_quotes\n", package) == [
        "tests.integration.test_quotes"]
    assert imported_test_modules("from .test_quotes import recent\n", package) == [
        "tests.integration.test_quotes"]
    assert imported_test_modules("from tests.unit import test_merkle\n", package) == [
        "tests.unit.test_merkle"]
    assert imported_test_modules("def f() -> None:\n    from ..unit.test_x import y\n",
                                 package) == ["tests.unit.test_x"]
    assert imported_test_modules("from tests.builders import invoice\n"
                                 "from tests.integration.web import login\n", package) == []
