"""Architecture guard: no import cycle between earlyia's top-level parts, no earlyia import hidden
in a function.

Each exception is listed with its reason; remove it from the list when its reason goes away (the
tests fail on a listed exception that no longer exists, so the lists only shrink).
"""

from __future__ import annotations

import ast
from pathlib import Path

import grimp
import pytest

import earlyia

SRC = Path(earlyia.__file__).parent

#: Imports between top-level parts allowed to close a cycle: (importer, imported) -> why. None
#: today; an entry needs a reason and the test fails once it is no longer needed.
ALLOWED_CYCLE_EDGES: dict[tuple[str, str], str] = {}

#: Library modules allowed to import earlyia inside functions: path -> why. None today (same rules).
ALLOWED_FUNCTION_IMPORTS: dict[str, str] = {}


def _top(module: str) -> str:
    return ".".join(module.split(".")[:2])


@pytest.fixture(scope="module")
def graph():
    return grimp.build_graph("earlyia", cache_dir=None)


def _top_level_edges(graph) -> dict[tuple[str, str], list[str]]:
    edges: dict[tuple[str, str], list[str]] = {}
    for importer in graph.modules:
        for imported in graph.find_modules_directly_imported_by(importer):
            a, b = _top(importer), _top(imported)
            if a != b and "earlyia" not in (a, b):
                edges.setdefault((a, b), []).append(f"{importer} -> {imported}")
    return edges


def _cycles(edges) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan)."""
    succ: dict[str, set[str]] = {}
    for a, b in edges:
        succ.setdefault(a, set()).add(b)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(succ.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(succ):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle_between_top_level_parts(graph):
    edges = _top_level_edges(graph)
    kept = {e: how for e, how in edges.items() if e not in ALLOWED_CYCLE_EDGES}
    cycles = _cycles(kept)
    detail = [
        f"{a} -> {b}: {kept[(a, b)][:3]}"
        for comp in cycles
        for a in comp
        for b in comp
        if (a, b) in kept
    ]
    assert cycles == [], "import cycles between top-level parts:\n" + "\n".join(detail)
    stale = [
        e
        for e in ALLOWED_CYCLE_EDGES
        if e not in edges or not any(e[0] in c and e[1] in c for c in _cycles(edges))
    ]
    assert stale == [], f"allowed cycle edges that no longer close a cycle (remove them): {stale}"


def _function_imports(path: Path) -> list[int]:
    lines: list[int] = []

    class Visitor(ast.NodeVisitor):
        depth = 0

        def visit_FunctionDef(self, node):
            self.depth += 1
            self.generic_visit(node)
            self.depth -= 1

        visit_AsyncFunctionDef = visit_FunctionDef  # noqa: N815 (the ast visitor protocol)

        def visit_Import(self, node):
            if self.depth and any(a.name.split(".")[0] == "earlyia" for a in node.names):
                lines.append(node.lineno)

        def visit_ImportFrom(self, node):
            if self.depth and (node.level > 0 or (node.module or "").split(".")[0] == "earlyia"):
                lines.append(node.lineno)

    Visitor().visit(ast.parse(path.read_text(), filename=str(path)))
    return lines


def test_library_modules_import_earlyia_at_module_level():
    """Imports of earlyia inside functions hide the real dependencies (and the cycles); only the
    command line (earlyia.cli, lazy for start-up) and the listed modules may. Heavy optional
    third-party packages may be lazy."""
    offenders, clean = {}, []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        if rel.startswith("cli/"):
            continue
        found = _function_imports(path)
        if found and rel not in ALLOWED_FUNCTION_IMPORTS:
            offenders[rel] = found
        if not found and rel in ALLOWED_FUNCTION_IMPORTS:
            clean.append(rel)
    assert offenders == {}, f"earlyia imported inside functions (file: lines): {offenders}"
    assert clean == [], (
        "allowed modules without function-level imports any more (remove them from the "
        f"list): {clean}"
    )


def test_the_library_never_imports_the_command_line(graph):
    importers = {
        m
        for m in graph.modules
        if not m.startswith("earlyia.cli")
        for d in graph.find_modules_directly_imported_by(m)
        if d.startswith("earlyia.cli")
    }
    assert importers == set()
