"""The layering of ../shared/DESIGN.md, checked on the parsed imports rather than trusted.

Every import of every file in the six packages counts for the layering: module level, inside functions, under
`if TYPE_CHECKING`, absolute or relative. A package may import only the packages below it; serving never imports
torch; and no two files of the project import each other, directly or around a loop. A function-level import
closes a cycle as surely as a module-level one (it only runs later); an `if TYPE_CHECKING:` import never runs,
and is Python's way to name a type without a runtime edge, so it counts for the layering but not for cycles.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("inspection", "datasets", "models", "training", "serving", "cli")
# What each package may import besides itself; `cli` is the composition root.
ALLOWED: dict[str, frozenset[str]] = {
    "inspection": frozenset(),
    "datasets": frozenset({"inspection"}),
    "models": frozenset({"inspection"}),
    "training": frozenset({"datasets", "models", "inspection"}),
    "serving": frozenset({"models", "inspection"}),
    "cli": frozenset({"inspection", "datasets", "models", "training", "serving"}),
}
# Project folders that are not installed: an installed package importing them breaks outside a checkout.
NOT_INSTALLED = ("benchmarks", "tools", "tests")
# The serving path runs on onnxruntime, numpy and OpenCV only, so a replica starts fast and stays small.
FORBIDDEN_THIRD_PARTY = {"serving": frozenset({"torch", "torchvision", "timm"})}


@dataclass(frozen=True)
class Import:
    """One imported module as written in a file, resolved to an absolute dotted name."""

    line: int
    module: str  # as written, made absolute: "serving" for `from serving import app`, "serving.app" for `import`
    candidates: tuple[str, ...]  # what it may name, most specific first: "serving.app", "serving"
    type_only: bool  # inside `if TYPE_CHECKING:`: never executed, so never part of an import cycle


@dataclass(frozen=True)
class Violation:
    path: str  # relative to the checked root, posix
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


def module_name(root: Path, path: Path) -> str:
    """The dotted module name of a file under root (a package's `__init__.py` is the package)."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _package_of(root: Path, path: Path) -> list[str]:
    """The package a relative import starts from: the module's parent, or the package itself for `__init__.py`."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    parts.pop()  # `__init__` or the module's own name
    return parts


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(node: ast.AST, type_only: bool = False) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import statement under node, at any depth, with whether it sits in an `if TYPE_CHECKING:` body."""
    if isinstance(node, ast.Import | ast.ImportFrom):
        yield node, type_only
    elif isinstance(node, ast.If) and _is_type_checking(node.test):
        for statement in node.body:
            yield from _import_nodes(statement, True)
        for statement in node.orelse:
            yield from _import_nodes(statement, type_only)
    else:
        for child in ast.iter_child_nodes(node):
            yield from _import_nodes(child, type_only)


def parse_imports(root: Path, path: Path) -> Iterator[Import]:
    """Every import in the file, at any depth (functions, classes, `if` blocks), relative ones resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node, type_only in _import_nodes(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(node.lineno, alias.name, _prefixes(alias.name), type_only)
        else:
            if node.level:
                package = _package_of(root, path)
                base_parts = package[: len(package) - (node.level - 1)] if node.level > 1 else package
                base = ".".join([*base_parts, *([node.module] if node.module else [])])
            else:
                base = node.module or ""
            for alias in node.names:
                # `from pkg import name` imports the module pkg.name when there is one, else a name from pkg.
                full = f"{base}.{alias.name}" if alias.name != "*" else base
                candidates = (*(() if alias.name == "*" else (full,)), *_prefixes(base))
                yield Import(node.lineno, base, candidates, type_only)


def _prefixes(dotted: str) -> tuple[str, ...]:
    parts = dotted.split(".")
    return tuple(".".join(parts[:n]) for n in range(len(parts), 0, -1))


def _files(root: Path) -> Iterator[tuple[str, Path]]:
    for package in PACKAGES:
        if (root / package).is_dir():
            for path in sorted((root / package).rglob("*.py")):
                yield package, path


def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative so a deep import chain cannot hit the recursion limit."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            for successor in successors:
                if successor not in index:
                    index[successor] = low[successor] = len(index)
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(sorted(graph[successor]))))
                    break
                if successor in on_stack:
                    low[node] = min(low[node], index[successor])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component: list[str] = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    components.append(sorted(component))
    return components


def _layering_breach(package: str, module: str) -> str | None:
    """Why `package` may not import `module`, or None when it may."""
    top = module.split(".")[0]
    if top in PACKAGES and top != package and top not in ALLOWED[package]:
        return f"{package} may import " + (", ".join(sorted(ALLOWED[package])) or "nothing but itself")
    if top in NOT_INSTALLED:
        return f"{top}/ is not installed"
    if top in FORBIDDEN_THIRD_PARTY.get(package, ()):
        return f"the serving path never loads {top}"
    return None


def find_violations(root: Path) -> list[Violation]:
    """Layering breaches, torch in serving, and import cycles between the files of the packages under root."""
    files = list(_files(root))
    modules = {module_name(root, path): path for _, path in files}
    violations: list[Violation] = []
    graph: dict[str, set[str]] = {name: set() for name in modules}
    edge_lines: dict[tuple[str, str], int] = {}
    for package, path in files:
        relpath = path.relative_to(root).as_posix()
        source = module_name(root, path)
        for found in parse_imports(root, path):
            target = next((name for name in found.candidates if name in modules), None)
            reason = _layering_breach(package, found.module)
            if reason is not None:
                shown = target or found.module
                violation = Violation(relpath, found.line, f"{package} imports {shown} ({reason})")
                if violation not in violations:  # `from x import a, b` is one import to fix, not two
                    violations.append(violation)
            if target is not None and target != source and not found.type_only:
                graph[source].add(target)
                edge_lines.setdefault((source, target), found.line)
    for component in _strongly_connected(graph):
        if len(component) < 2:
            continue
        members = set(component)
        edges = [
            f"{modules[a].relative_to(root).as_posix()}:{edge_lines[a, b]} imports {b}"
            for a in component
            for b in sorted(graph[a] & members)
        ]
        first = modules[component[0]].relative_to(root).as_posix()
        names = ", ".join(modules[name].relative_to(root).as_posix() for name in component)
        line = edge_lines[component[0], min(graph[component[0]] & members)]
        violations.append(Violation(first, line, f"import cycle between {names}:\n    " + "\n    ".join(edges)))
    return violations


def test_the_packages_follow_the_layering_and_have_no_import_cycles() -> None:
    violations = find_violations(REPO)
    assert not violations, f"{len(violations)} import(s) against ../shared/DESIGN.md's layering:\n" + "\n".join(
        f"  {v}" for v in violations
    )


def _write(root: Path, files: dict[str, str]) -> None:
    for relpath, text in files.items():
        path = root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


TYPE_ONLY = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"


def test_the_checker_reports_each_kind_of_violation(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "inspection/__init__.py": "",
            "inspection/core.py": "import numpy\n",
            # Hidden inside a function: still an import the core must not make.
            "inspection/bad.py": "from inspection import core\n\n\ndef f():\n    import serving.app\n",
            "serving/__init__.py": "",
            "serving/app.py": "from models import kinds\nfrom . import engine, state\n",
            "serving/x.py": "from training import y\n",
            "serving/engine.py": f"{TYPE_ONLY}    import torch.nn\n",
            "training/__init__.py": "",
            "training/y.py": "from datasets.layout import scan\nfrom models.kinds import KINDS\nimport inspection\n",
            "datasets/__init__.py": "",
            "datasets/layout.py": "from benchmarks.run import main\n",
            "models/__init__.py": "",
            # A two-file cycle, one side relative and inside a function.
            "models/kinds.py": "from models import registry\n",
            "models/registry.py": "def load():\n    from .kinds import KINDS\n",
            # A type-only back-edge is no cycle: it never runs.
            "serving/metrics.py": f"{TYPE_ONLY}    from serving.app import X\n",
            "serving/state.py": "from serving import metrics\n",
            "cli/__init__.py": "",
            "cli/main.py": "import training.y, serving.app, datasets.layout, models.kinds, torch\n",
        },
    )
    found = {(v.path, v.line, v.message.splitlines()[0]) for v in find_violations(tmp_path)}
    assert found == {
        ("inspection/bad.py", 5, "inspection imports serving.app (inspection may import nothing but itself)"),
        ("serving/x.py", 1, "serving imports training.y (serving may import inspection, models)"),
        ("serving/engine.py", 3, "serving imports torch.nn (the serving path never loads torch)"),
        ("datasets/layout.py", 1, "datasets imports benchmarks.run (benchmarks/ is not installed)"),
        ("models/kinds.py", 1, "import cycle between models/kinds.py, models/registry.py:"),
    }
    cycle = next(v for v in find_violations(tmp_path) if "cycle" in v.message)
    assert "models/kinds.py:1 imports models.registry" in cycle.message
    assert "models/registry.py:2 imports models.kinds" in cycle.message


def test_relative_imports_and_from_imports_resolve_to_modules(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "serving/routes/__init__.py": "from . import inspect\nfrom .. import state\n",
            "serving/routes/inspect.py": "from ..state import State\nfrom ...models import kinds\n",
        },
    )
    init = [i.candidates for i in parse_imports(tmp_path, tmp_path / "serving/routes/__init__.py")]
    module = [i.candidates for i in parse_imports(tmp_path, tmp_path / "serving/routes/inspect.py")]
    assert init == [("serving.routes.inspect", "serving.routes", "serving"), ("serving.state", "serving")]
    assert module == [("serving.state.State", "serving.state", "serving"), ("models.kinds", "models")]


@pytest.mark.parametrize("module", ["serving.app", "serving.engine"])
def test_importing_the_serving_path_loads_no_torch(module: str) -> None:
    code = f"import {module}, sys; print(sorted(m for m in ('torch', 'torchvision', 'timm') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", f"importing {module} loaded {result.stdout.strip()}"
