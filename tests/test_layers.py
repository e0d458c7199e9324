"""The rooms of the house and what each may import (the README's architecture table).

Every ``import`` and ``from ... import`` in the project's sources is read (function-local
ones included) and held against the rule; a room that imports one above it, or two modules
that import each other in a circle, fails here.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ROOMS = ("booking", "workflows", "activities", "worker", "api", "bench", "cli")
MAY_IMPORT: dict[str, set[str]] = {
    "booking": set(),
    "workflows": {"booking"},
    "activities": {"booking"},
    "worker": {"booking", "workflows", "activities"},
    "api": {"booking", "workflows"},
    "bench": {"booking", "workflows", "worker"},
    "cli": {"booking", "workflows", "activities", "worker", "api", "bench"},
}


def _sources() -> Iterator[tuple[str, Path]]:
    yield "worker", ROOT / "worker.py"
    for room in ROOMS:
        folder = ROOT / room
        if folder.is_dir():
            for path in sorted(folder.rglob("*.py")):
                yield room, path


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> Iterator[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            submodules = [f"{node.module}.{alias.name}" for alias in node.names]
            found = [name for name in submodules if _is_module(name)]
            # "from api import web" imports the module api.web, not names of api/__init__.
            yield from found if found else [node.module]


def _is_module(name: str) -> bool:
    base = ROOT.joinpath(*name.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def _project_modules() -> dict[str, tuple[str, Path]]:
    return {_module(path): (room, path) for room, path in _sources()}


def test_every_room_imports_only_the_rooms_below_it() -> None:
    wrong = []
    for room, path in _sources():
        for name in _imports(path):
            top = name.split(".")[0]
            if top in MAY_IMPORT and top != room and top not in MAY_IMPORT[room]:
                wrong.append(f"{path.relative_to(ROOT)} imports {name} ({room} -> {top})")
    assert wrong == []


def test_no_modules_import_each_other_in_a_circle() -> None:
    modules = _project_modules()
    edges: dict[str, set[str]] = {name: set() for name in modules}
    for name, (_room, path) in modules.items():
        for imported in _imports(path):
            if imported in modules and imported != name:
                edges[name].add(imported)
    # Depth-first search for a back edge.
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                cycles.append([*trail[trail.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = 2

    for start in sorted(modules):
        if start not in state:
            visit(start, [start])
    assert cycles == []


def test_the_rule_knows_every_room() -> None:
    assert set(MAY_IMPORT) == set(ROOMS)
    assert all(deps <= set(ROOMS) for deps in MAY_IMPORT.values())
