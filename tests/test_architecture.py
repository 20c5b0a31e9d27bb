"""The package's import graph, built from the source: no cycle, and imports only along the pipeline's layers.

Layers (docs/architecture.md): ``_version``, ``errors``, ``model`` <- ``io`` <- ``geometry`` <- ``correlation``
<- ``stats`` / ``viz`` <- ``pipeline``, ``report`` <- ``cluster`` <- ``cohort`` <- ``cli`` / ``review`` / ``demo``
/ ``export``; ``data`` (the shipped example case) sits beside ``io``; ``synth``
(the synthetic generator) may use ``io`` and ``geometry``. The package's ``__init__`` (the public API) sits on top.
Function-level imports count as much as module-level ones.
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx
import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "neckmatch"

# Each group may import its own members and every group with a lower rank; equal ranks of different groups may
# not import each other (stats and viz are siblings; so are cli, review and demo).
RANKS: dict[str, int] = {
    "_version": 0, "errors": 0, "model": 0, "progress": 0,
    "io": 1, "data": 1,
    "geometry": 2,
    "synth": 3, "correlation": 3,
    "stats": 4, "viz": 4,
    "pipeline": 5, "report": 5, "calibrate": 5,
    "cluster": 6, "cohort": 7,
    "demo": 8, "review": 8, "export": 8, "clierrors": 8, "cli": 9,
    "__init__": 10,
}
# Deliberate exceptions: (importer group, imported group).
ALLOWED = {
    ("synth", "io"), ("synth", "geometry"),  # below correlation on purpose: the generator knows no matching
}


def _group(module: str) -> str:
    """``neckmatch.io.case`` -> ``io``; ``neckmatch`` -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path, module: str) -> set[str]:
    """Every neckmatch module ``path`` imports, anywhere in the file (module level, functions, TYPE_CHECKING)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "neckmatch")
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            if target.split(".")[0] != "neckmatch":
                continue
            found.add(target)
            found.update(f"{target}.{a.name}" for a in node.names if _is_module(f"{target}.{a.name}"))
    return found


def _is_module(name: str) -> bool:
    rel = Path(*name.split(".")[1:])
    return (PACKAGE / rel).with_suffix(".py").is_file() or (PACKAGE / rel / "__init__.py").is_file()


def import_graph() -> nx.DiGraph:
    graph = nx.DiGraph()
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module_name(path)
        graph.add_node(module)
        for target in _imports(path, module):
            while not _is_module(target) and "." in target:
                target = target.rpartition(".")[0]  # `from neckmatch.x import name`: the module x
            if target != module:
                graph.add_edge(module, target)
    return graph


def test_the_graph_sees_function_level_imports() -> None:
    """The builder must see an import inside a function (cohort imports the report lazily)."""
    assert import_graph().has_edge("neckmatch.cohort", "neckmatch.report")


def test_no_import_cycle() -> None:
    graph = import_graph()
    cycles = list(nx.simple_cycles(graph))
    assert cycles == [], f"import cycles: {cycles[:5]}"


def test_every_module_belongs_to_a_layer() -> None:
    unknown = sorted({_group(m) for m in import_graph()} - set(RANKS))
    assert unknown == [], f"modules outside the layer table of tests/test_architecture.py: {unknown}"


def test_imports_follow_the_layers() -> None:
    bad = []
    for src, dst in import_graph().edges:
        a, b = _group(src), _group(dst)
        if a == b or (a, b) in ALLOWED:
            continue
        if RANKS[b] >= RANKS[a]:
            bad.append(f"{src} -> {dst}")
    assert bad == [], "imports against the layer order:\n" + "\n".join(bad)


def test_stats_never_reaches_into_the_engine() -> None:
    graph = import_graph()
    reach = {d for m in graph if _group(m) == "stats" for d in nx.descendants(graph, m)}
    assert not {m for m in reach if _group(m) in {"correlation", "geometry", "pipeline", "viz"}}


@pytest.mark.parametrize(("src", "dst"), [("report", "cohort"), ("viz", "stats"), ("stats", "viz")])
def test_forbidden_pairs_are_caught(src: str, dst: str) -> None:
    """The rule itself: a hand-made edge against the order is reported."""
    assert RANKS[dst] >= RANKS[src]


def test_public_api_names_resolve() -> None:
    """Every name of ``neckmatch.__all__`` resolves, and the lazy table names exactly the lazy ones."""
    import neckmatch as nm

    assert set(nm._LAZY) <= set(nm.__all__)
    for name in nm.__all__:
        assert getattr(nm, name) is not None, name
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        nm.nope  # noqa: B018
