"""The import graph: layers in one direction, no cycles, Qt only where windows are.

models (model files, downloads, adapter conversion) is the bottom layer, engine (index,
search, answers, training) sits on it, cli (the headless commands and `serve`) on both, and
ui (the Qt windows) on top. "No Qt" is a folder rule: nothing under cli/ loads PySide6.
Every import between Quire's modules is read from the source, lazy ones inside functions
included, so a new edge that breaks the order fails here rather than in a newcomer's head.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("models", "engine", "cli", "ui")
ALLOWED = {
    "models": {"models"},
    "engine": {"models", "engine"},
    "cli": {"models", "engine", "cli"},
    "ui": {"models", "engine", "ui"},  # what the window shares with the CLI is in engine
}
NO_QT = ("cli.main", "cli.eval", "cli.train", "cli.reader")  # the headless CLI never loads Qt
# Threads and processes in ui/: only the runner starts them (issue 23, "one road").
CONCURRENCY_MODULES = {"threading", "_thread", "subprocess", "multiprocessing", "concurrent"}
CONCURRENCY_QT = {"QThread", "QThreadPool", "QRunnable", "QProcess", "QtConcurrent"}
CONCURRENCY_ALLOWED = {
    "ui.runner": "the lanes and run_child: the one road",
    "ui.app": "threading.excepthook only: a bug on any thread reaches the log and the dialog",
    "ui.desktop": "update-desktop-database when the launcher is installed (no window)",
    "ui.screenshots": "the README's screenshots start a model server (a developer tool)",
}


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    found = {module_name(p): p for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py")}
    assert len(found) > 40, "the package folders moved: this test reads nothing"
    return found


def imports(path: Path, known: dict[str, Path]) -> set[str]:
    """Quire modules `path` imports anywhere in it (TYPE_CHECKING blocks too: a type
    annotation that needs an upper layer is a layering smell as well)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from engine.answer import modes` names a module; `from engine.core import X` not.
            names = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
        else:
            continue
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name.split(".")[0] in PACKAGES:
                found.add(name)
    return found


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(path, known) - {name} for name, path in known.items()}


def concurrency(path: Path) -> set[str]:
    """The thread and process APIs `path` imports (lazy imports too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] in CONCURRENCY_MODULES}
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module.split(".")[0] in CONCURRENCY_MODULES:
                found.add(node.module)
            elif node.module.startswith("PySide6"):
                found |= {a.name for a in node.names if a.name in CONCURRENCY_QT}
    return found


def test_only_the_runner_starts_threads_and_processes_in_the_window() -> None:
    """Engine calls, history writes, downloads, server tests and child processes all go
    through ui/runner.py: one stop, one progress and one failure path for all of them."""
    found = {
        name: sorted(apis)
        for name, path in modules().items()
        if name.startswith("ui") and (apis := concurrency(path))
    }
    assert found["ui.runner"] and found["ui.app"] == ["threading"]
    assert {name: apis for name, apis in found.items() if name not in CONCURRENCY_ALLOWED} == {}


def test_the_concurrency_reader_sees_qt_and_lazy_imports(tmp_path: Path) -> None:
    src = tmp_path / "m.py"
    src.write_text(
        "from PySide6.QtCore import QObject, QProcess\n"
        "def f():\n    import threading\n    from concurrent.futures import Executor\n"
    )
    assert concurrency(src) == {"QProcess", "threading", "concurrent.futures"}


def test_layers_point_one_way() -> None:
    wrong = [
        f"{name} imports {target}"
        for name, targets in graph().items()
        for target in sorted(targets)
        if target.split(".")[0] not in ALLOWED[name.split(".")[0]]
    ]
    assert wrong == []


def test_module_import_graph_has_no_cycles() -> None:
    edges = graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for start in sorted(edges):
        if start not in state:
            visit(start, [start])
    assert cycles == []


def test_the_checker_sees_a_wrong_edge(tmp_path: Path) -> None:
    """The reader finds lazy and `from package import module` imports (the test can fail)."""
    known = {"engine.core": tmp_path / "a.py", "ui.chat": tmp_path / "b.py"}
    src = tmp_path / "m.py"
    src.write_text("def f():\n    from ui import chat\n    import engine.core\n")
    assert imports(src, known) == {"ui.chat", "engine.core"}


@pytest.mark.parametrize(
    "module",
    [
        "engine.core",
        "engine.ingest.pipeline",
        "models.registry",
        "models.bundled",
        "models.lora",
        *NO_QT,
    ],
)
def test_headless_modules_never_load_qt(module: str) -> None:
    code = f"import sys, {module}; sys.exit('PySide6' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO).returncode == 0


def test_the_engine_thread_plumbing_has_a_handful_of_signals() -> None:
    """One runner and one bridge carry every request: not a signal per operation."""
    declared = sum(
        (REPO / "ui" / name).read_text(encoding="utf-8").count(" = Signal(")
        for name in ("runner.py", "bridge.py")
    )
    assert 0 < declared <= 8
