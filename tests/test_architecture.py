"""The package layout follows the data flow (docs/architecture.md): stage packages, no module
over 300 lines, no import cycles, and the evaluation and the reports free of torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "bids_tspo"
STAGES = ("app", "io", "preprocess", "model", "evaluation", "reports", "phantom")


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _imports(name: str, path: Path) -> set[str]:
    """Package modules that ``name`` imports, at module level or inside functions."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            out.add(target)
            out.update(f"{target}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return {m for m in out if m.startswith("bids_tspo")}


def test_top_level_holds_only_the_package_face():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert top == ["__init__.py", "__main__.py", "errors.py"]
    assert {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()} \
        == set(STAGES)


def test_no_module_over_300_lines():
    long = {n: len(p.read_text().splitlines()) for n, p in _modules().items()
            if len(p.read_text().splitlines()) > 300}
    assert not long


def test_no_import_cycles():
    modules = _modules()
    graph = {n: {m for m in _imports(n, p) if m in modules and m != n}
             for n, p in modules.items()}
    # a package's __init__ importing its own modules is the package face, not a cycle
    graph = {n: {m for m in deps if not m.startswith(n + ".")} for n, deps in graph.items()}
    state: dict[str, int] = {}

    def visit(node, path):
        state[node] = 1
        for dep in graph[node]:
            if state.get(dep) == 1:
                pytest.fail("import cycle: " + " -> ".join(path + [node, dep]))
            if dep not in state:
                visit(dep, path + [node])
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node, [])


@pytest.mark.parametrize("package", ["evaluation", "reports", "io", "preprocess"])
def test_stage_imports_no_torch(package):
    names = sorted(n for n in _modules() if n.startswith(f"bids_tspo.{package}"))
    code = ("import sys\n" + "".join(f"import {n}\n" for n in names)
            + "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False", f"importing bids_tspo.{package} imports torch"
