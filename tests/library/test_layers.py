"""The layers of README.md's architecture: imports run downwards only, no cycles, small modules.

Every ``import cvkit...`` / ``from cvkit... import`` in every module (at the top or inside a
function) is read from the source; an import of a higher layer, a cycle, a module over 400 lines
or a module-level ``__getattr__`` (exports resolved behind the reader's back) fails the test.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO

PACKAGE = REPO / "cvkit"

# Lowest first. A module may import its own layer or any layer below it.
LAYERS: list[tuple[str, ...]] = [
    ("cvkit", "cvkit.errors", "cvkit.progress", "cvkit.device"),
    ("cvkit.files", "cvkit.plots"),
    ("cvkit.data", "cvkit.models", "cvkit.transforms"),
    ("cvkit.tasks",),
    ("cvkit.runtime",),
    ("cvkit.train", "cvkit.evaluate", "cvkit.predict", "cvkit.normalize", "cvkit.crossval", "cvkit.augment", "cvkit.explain", "cvkit.retrieve",
     "cvkit.convolutionalize", "cvkit.inspect", "cvkit.export", "cvkit.report"),
    ("cvkit.cli", "cvkit.__main__"),
]
MAX_LINES = 400


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer_of(name: str) -> int:
    best, found = -1, None
    for i, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (name == prefix or name.startswith(prefix + ".")) and len(prefix) > best:
                best, found = len(prefix), i
    assert found is not None, f"{name} is in no layer of tests/library/test_layers.py: add it there and to README.md"
    return found


def imports_of(name: str) -> set[str]:
    """The cvkit modules ``name`` imports (a name imported from a package resolves to its submodule)."""
    tree = ast.parse(MODULES[name].read_text())
    package = name if MODULES[name].name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "cvkit"}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            if base.split(".")[0] != "cvkit":
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in MODULES else base)
    found.discard(name)
    return {m for m in found if m in MODULES}


GRAPH = {name: imports_of(name) for name in MODULES}


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_run_down_the_layers(name):
    mine = layer_of(name)
    upward = sorted(m for m in GRAPH[name] if layer_of(m) > mine)
    assert not upward, f"{name} (layer {mine}) imports {upward} from a higher layer"


def test_no_import_cycles():
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(GRAPH[node]):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt):] + [nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for name in sorted(GRAPH):
        if name not in state:
            visit(name)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_modules_are_small_and_export_plainly(name):
    source = MODULES[name].read_text()
    assert source.count("\n") <= MAX_LINES, f"{name} has {source.count(chr(10))} lines; split it"
    tree = ast.parse(source)
    assert not any(isinstance(n, ast.FunctionDef) and n.name == "__getattr__" for n in tree.body), \
        f"{name} resolves exports through a module __getattr__"


def test_the_checker_sees_an_upward_import():
    """The test above would catch ``cvkit.files`` importing ``cvkit.train`` (and does resolve names)."""
    assert layer_of("cvkit.files.run") < layer_of("cvkit.train.fit")
    assert "cvkit.files.config" in GRAPH["cvkit.cli.train"]
    assert "cvkit.train.trainer" in GRAPH["cvkit.train.fit"]
