"""The package reads as the pipeline: records and io at the bottom, the stages in pipeline order,
training and commands on top. Read from the code's own imports (``ast``, function-level imports
included), so a shortcut that runs back up or closes a circle fails here, not in a code review."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "incdet"

# Lowest first. A module may import only modules of its own layer or of layers below it.
LAYERS: list[tuple[str, ...]] = [
    ("incdet.errors", "incdet.structures", "incdet.io", "incdet.boxes", "incdet.transforms", "incdet.devices",
     "incdet.model_file", "incdet.weights"),  # records and io
    ("incdet.data",),  # ground truth in every format
    ("incdet.nets",),  # the Inception networks the learned stages are built from
    ("incdet.proposals",),  # stage 1: selective search, the proposal store
    ("incdet.multibox",),  # stage 1: the learned proposals
    ("incdet.regions",),  # stage 2
    ("incdet.classify",),  # stage 3
    ("incdet.postprocess",),  # stage 4
    ("incdet.evaluate",),  # stage 5
    ("incdet.pipeline", "incdet.bundle", "incdet.engine"),  # stages 1-4 as one call, a whole detector in one folder, the batch engines
    ("incdet.train",),  # stage 6
    ("incdet.commands", "incdet.cli"),  # the command line
]


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    module = _module_name(path)
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import
                base = module.split(".")[: len(module.split(".")) - node.level + (path.name == "__init__.py")]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names.add(target)
            names |= {f"{target}.{alias.name}" for alias in node.names}  # `from incdet.data import voc`
    return {n for n in names if n == "incdet" or n.startswith("incdet.")}


def _graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: {t for t in _imports(path) if t in files and t != name} for name, path in files.items()}


def _layer(module: str) -> int | None:
    for index, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return index
    return None


def test_every_module_has_a_layer() -> None:
    unplaced = sorted(m for m in _graph() if m != "incdet" and _layer(m) is None)
    assert not unplaced, f"modules outside the stated layers: {unplaced}"


def _back_arrows(graph: dict[str, set[str]]) -> list[str]:
    return [
        f"{source} (layer {_layer(source)}) imports {target} (layer {_layer(target)})"
        for source, targets in graph.items() if source != "incdet"
        for target in targets if target != "incdet" and _layer(target) > _layer(source)
    ]


def _circles(graph: dict[str, set[str]]) -> list[str]:
    # A package's __init__ that re-exports its modules is not a circle with them.
    graph = {m: {t for t in ts if not m.startswith(t + ".")} for m, ts in graph.items()}
    state: dict[str, int] = {}
    circles = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                circles.append(" -> ".join(stack[stack.index(target):] + [target]))
            elif target not in state:
                visit(target, stack + [target])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return circles


def test_no_import_runs_back_up_the_layers() -> None:
    wrong = _back_arrows(_graph())
    assert not wrong, "\n".join(wrong)


def test_no_import_circles() -> None:
    circles = _circles(_graph())
    assert not circles, "\n".join(circles)


def test_the_checks_find_a_back_arrow_and_a_circle() -> None:
    """The two checks above can fail: stage 1 importing stage 3, and two data modules importing each other."""
    graph = _graph()
    graph["incdet.proposals.store"] = graph["incdet.proposals.store"] | {"incdet.classify.ensemble"}
    graph["incdet.data.records"] = graph["incdet.data.records"] | {"incdet.data.dataset"}
    assert _back_arrows(graph) == ["incdet.proposals.store (layer 3) imports incdet.classify.ensemble (layer 6)"]
    assert any("incdet.data.records" in c and "incdet.data.dataset" in c for c in _circles(graph))
