"""The import graph (DESIGN §5): data flows training -> checkpoint -> export -> service, model/ imports none of
them, service/ never imports training/, and no two of our modules import each other, even lazily."""

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
