"""The layering (docs/design.md, "Layout"): data flows training -> checkpoint -> export -> engine -> service;
model/ imports none of ours; engine/ imports model/ only; service/ imports engine/ and model/, never training/
or export/; viz/, raybatch/ and tools/ import down only, and nothing below them imports them; no two of our
modules import each other, even lazily. And no function of ours is longer than 60 lines."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("model", "training", "export", "engine", "service", "viz", "raybatch", "tools", "bench", "experiments")
TOP_MODULES = ("tzn",)
OURS = (*PACKAGES, *TOP_MODULES, "tests")


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def our_modules() -> dict[str, Path]:
    files = [REPO / f"{name}.py" for name in TOP_MODULES]
    for package in PACKAGES:
        files += sorted((REPO / package).rglob("*.py"))
    return {module_name(path): path for path in files}


def imports_of(path: Path, modules: dict[str, Path]) -> set[str]:
    """Our modules that `path` imports anywhere (top level, inside functions, under TYPE_CHECKING)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        else:
            continue
        for name in names:
            if name.split(".")[0] not in OURS:
                continue
            while name and name not in modules:  # `from package import module` or `from module import name`
                name = name.rpartition(".")[0]
            if name:
                found.add(name)
    found.discard(module_name(path))
    return found


def import_graph() -> dict[str, set[str]]:
    modules = our_modules()
    return {name: imports_of(path, modules) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every cycle found by a depth-first search (one per back edge)."""
    found, state = [], {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                found.append(path[path.index(target) :] + [target])
            elif target not in state:
                visit(target, [*path, target])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return found


def test_the_import_graph_has_no_cycle():
    assert cycles(import_graph()) == []


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]


# What each package may import of ours (besides itself). bench/, experiments/ and tests/ may import anything.
ALLOWED = {
    "model": set(),
    "training": {"model"},
    "export": {"model"},
    "engine": {"model"},
    "service": {"model", "engine"},
    "viz": set(),
    "raybatch": {"model", "engine", "service"},
    "tools": {"model", "training", "export", "engine", "service", "tzn"},
}


def wrong_imports(graph: dict[str, set[str]], package: str) -> dict[str, list[str]]:
    allowed = ALLOWED[package] | {package}
    wrong = {m: sorted(i for i in imports if i.split(".")[0] not in allowed) for m, imports in graph.items()}
    return {m: i for m, i in wrong.items() if m.split(".")[0] == package and i}


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_each_package_imports_only_the_layers_below_it(package):
    assert wrong_imports(import_graph(), package) == {}


def test_the_layering_check_catches_an_engine_module_that_imports_the_service():
    graph = {"engine.localizer": {"model.tzn", "service.settings"}, "service.app": {"engine.localizer"}}
    assert wrong_imports(graph, "engine") == {"engine.localizer": ["service.settings"]}
    assert wrong_imports(graph, "service") == {}


def test_the_engine_imports_without_fastapi():
    code = "import sys, engine.localizer, engine.commands; sys.exit('fastapi' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO).returncode == 0


def test_nothing_outside_the_tests_imports_the_tests():
    assert {m: sorted(i) for m, i in import_graph().items() if any(x.startswith("tests") for x in i)} == {}


# Function length: a function that does not fit on a screen does more than one thing (STYLE.md).

MAX_FUNCTION_LINES = 60
LENGTH_CHECKED_PACKAGES = PACKAGES


def long_functions(source: str, path: str, limit: int = MAX_FUNCTION_LINES) -> dict[str, str]:
    """{"path::name": "line L, N lines"} for every function or method of `source` longer than `limit` lines,
    counted from its `def` line (decorators excluded) to its last line."""
    found = {}
    for node in ast.walk(ast.parse(source, path)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            lines = node.end_lineno - node.lineno + 1
            if lines > limit:
                found[f"{path}::{node.name}"] = f"line {node.lineno}, {lines} lines"
    return found


def length_checked_files() -> list[Path]:
    """tzn.py and every .py file of the packages that exist (the tests excluded)."""
    files = [REPO / f"{name}.py" for name in TOP_MODULES]
    for package in LENGTH_CHECKED_PACKAGES:
        if (REPO / package).is_dir():
            files += sorted((REPO / package).rglob("*.py"))
    return files


def our_long_functions() -> dict[str, str]:
    found = {}
    for path in length_checked_files():
        found.update(long_functions(path.read_text(), path.relative_to(REPO).as_posix()))
    return found


def test_no_function_is_longer_than_60_lines():
    assert our_long_functions() == {}


def test_the_length_check_finds_a_61_line_method_but_not_a_decorated_60_line_function():
    statements = [f"x{i} = {i}" for i in range(58)]
    short = "@decorator\ndef short():\n" + "".join(f"    {s}\n" for s in statements) + "    return 0\n"
    long = (
        "class A:\n    def long(self):\n"
        + "".join(f"        {s}\n" for s in statements)
        + "        y = 1\n        return y\n"
    )
    assert long_functions(short + long, "m.py") == {"m.py::long": "line 63, 61 lines"}
