"""The import graph (DESIGN §5): data flows training -> checkpoint -> export -> service, model/ imports none of
them, service/ never imports training/, and no two of our modules import each other, even lazily. And no
function of ours is longer than 60 lines."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("model", "training", "export", "service", "bench")
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


def test_model_imports_nothing_of_ours_but_model():
    wrong = {m: sorted(i for i in imports if not i.startswith("model")) for m, imports in import_graph().items()}
    assert {m: i for m, i in wrong.items() if m.startswith("model") and i} == {}


def test_service_does_not_import_training():
    graph = import_graph()
    wrong = {m: sorted(i for i in graph[m] if i.startswith("training")) for m in graph if m.startswith("service")}
    assert {m: i for m, i in wrong.items() if i} == {}


def test_export_imports_only_model_and_export():
    graph = import_graph()
    wrong = {m: sorted(i for i in graph[m] if i.split(".")[0] not in ("model", "export")) for m in graph}
    assert {m: i for m, i in wrong.items() if m.startswith("export") and i} == {}


def test_nothing_outside_the_tests_imports_the_tests():
    assert {m: sorted(i) for m, i in import_graph().items() if any(x.startswith("tests") for x in i)} == {}


# Function length: a function that does not fit on a screen does more than one thing (STYLE.md).

MAX_FUNCTION_LINES = 60
LENGTH_CHECKED_PACKAGES = ("model", "training", "export", "service", "engine", "viz", "tools", "bench")
# being split in issue 20's service refactor
KNOWN_LONG = {"service/jobs/api.py::install", "service/pipeline.py::localize"}


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
    assert {name: where for name, where in our_long_functions().items() if name not in KNOWN_LONG} == {}


def test_every_known_long_function_is_still_long():
    """An entry of KNOWN_LONG whose function was split (or moved) must go, or the exemption outlives the reason."""
    assert KNOWN_LONG - our_long_functions().keys() == set(), "split now: remove these from KNOWN_LONG"


def test_the_length_check_finds_a_61_line_method_but_not_a_decorated_60_line_function():
    statements = [f"x{i} = {i}" for i in range(58)]
    short = "@decorator\ndef short():\n" + "".join(f"    {s}\n" for s in statements) + "    return 0\n"
    long = (
        "class A:\n    def long(self):\n"
        + "".join(f"        {s}\n" for s in statements)
        + "        y = 1\n        return y\n"
    )
    assert long_functions(short + long, "m.py") == {"m.py::long": "line 63, 61 lines"}
