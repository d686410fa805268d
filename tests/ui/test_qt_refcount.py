"""Quitting the app never crashes: Qt bindings that lose references to True, and 10 real closes.

PySide6 6.12.0's `Signal.emit()` returns True without taking a reference, so every emit
in Quire (one per streamed token) took one of Python's references to True; when they
ran out the process died with "Fatal Python error: bool_dealloc", mostly at exit.
pyproject.toml keeps PySide6 below 6.12; these tests fail on a version with that bug.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("PySide6")

from PySide6.QtCore import QObject, Signal

REPO = Path(__file__).resolve().parents[2]
CLOSES = 10  # the emit test above catches the cause itself; these catch a crash at exit

# The real main window on a real data dir: ask one question (a streamed answer: many
# emits), close the window when it is done, leave through app.exec() as main.py does.
DRIVER = """
import sys
from pathlib import Path
from PySide6.QtCore import QTimer
from ui.app import create_app
app = create_app()
from ui.main_window import MainWindow
window = MainWindow(Path(sys.argv[1]))
window.show()
window.chat.answer_finished.connect(lambda answer: QTimer.singleShot(0, window.close))
QTimer.singleShot(300, lambda: window.chat.ask("When are the tomatoes watered?", "rag"))
QTimer.singleShot(60_000, window.close)  # never hang the test
sys.exit(app.exec())
"""


class _Emitter(QObject):
    fired = Signal(object)


def test_signal_emits_keep_their_references_to_true() -> None:
    emitter = _Emitter()
    received: list[object] = []
    emitter.fired.connect(received.append)
    before = sys.getrefcount(True)
    for i in range(200):
        emitter.fired.emit(i)
    assert len(received) == 200
    lost = before - sys.getrefcount(True)
    assert lost < 20, f"{lost} references to True lost in 200 emits (a PySide6 refcount bug)"


@pytest.fixture(scope="module")
def display() -> Iterator[dict[str, str]]:
    """An X server (Xvfb) when the machine has one, else Qt's offscreen platform."""
    env = {k: v for k, v in os.environ.items() if k not in ("QT_QPA_PLATFORM", "DISPLAY")}
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        env["QT_QPA_PLATFORM"] = "offscreen"
        yield env
        return
    number = 90 + os.getpid() % 100
    server = subprocess.Popen(
        [xvfb, f":{number}", "-screen", "0", "1280x800x24", "-nolisten", "tcp"],
    )
    time.sleep(1.0)
    env["DISPLAY"] = f":{number}"
    try:
        yield env
    finally:
        server.terminate()
        server.wait(10)


@pytest.mark.gui
@pytest.mark.slow
def test_the_real_app_closes_cleanly_ten_times(
    tmp_path: Path, models_dir: Path, display: dict[str, str]
) -> None:
    from engine.core import Engine

    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "garden.md").write_text("# Garden\n\nTomatoes are watered at seven o'clock.\n")
    data = tmp_path / "data"
    engine = Engine(data)
    engine.ingest([notes])
    engine.settings.max_tokens = 16  # a short answer still streams a signal per token
    engine.settings.save(data)
    engine.close()
    env = {**display, "XDG_CONFIG_HOME": str(tmp_path / "config")}
    failures = []
    for run in range(CLOSES):
        done = subprocess.run(
            [sys.executable, "-c", DRIVER, str(data)],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if done.returncode != 0 or "Fatal Python error" in done.stderr:
            failures.append(f"close {run + 1}: rc {done.returncode}\n{done.stderr[-2000:]}")
    assert not failures, "\n".join(failures)
