"""The shape of pipeline/: no import circle (imports inside functions included), no module over
1,000 lines, no class over 500. Drawn from the source with ast, without importing anything."""

from __future__ import annotations

import ast
from pathlib import Path

PIPELINE = Path(__file__).resolve().parent.parent / "pipeline"
MAX_MODULE_LINES = 1000
MAX_CLASS_LINES = 500


def _name(path: Path) -> str:
    parts = path.relative_to(PIPELINE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {_name(p): p for p in sorted(PIPELINE.rglob("*.py"))}


def import_graph() -> dict[str, set[str]]:
    """Each pipeline module and the pipeline modules it imports, anywhere in its body."""
    known = modules()
    graph: dict[str, set[str]] = {}
    for name, path in known.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                deps |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")
                    anchor = anchor[: len(anchor) - node.level + 1]
                    base = ".".join([*anchor, *([base] if base else [])])
                for a in node.names:
                    deps.add(f"{base}.{a.name}" if f"{base}.{a.name}" in known else base)
        graph[name] = {d for d in deps if d in known and d != name}
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every import circle, each as the path that closes it."""
    found: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                found.append([*path[path.index(dep) :], dep])
            elif dep not in state:
                visit(dep, [*path, dep])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return found


def test_the_graph_sees_imports_inside_functions() -> None:
    graph = import_graph()
    assert "pipeline.web" in graph["pipeline.schedule"]  # imported inside Scheduler._collect
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]


def test_no_import_circle_in_pipeline() -> None:
    assert circles(import_graph()) == []


def _too_long(limit: int, kinds: tuple[type[ast.AST], ...]) -> list[str]:
    out = []
    for name, path in modules().items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        if ast.Module in kinds and len(path.read_text(encoding="utf-8").splitlines()) > limit:
            out.append(name)
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and ast.ClassDef in kinds:
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > limit:
                    out.append(f"{name}.{node.name} ({lines} lines)")
    return out


def test_no_module_over_1000_lines() -> None:
    assert _too_long(MAX_MODULE_LINES, (ast.Module,)) == []


def test_no_class_over_500_lines() -> None:
    assert _too_long(MAX_CLASS_LINES, (ast.ClassDef,)) == []
