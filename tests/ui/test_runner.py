"""The runner: one Engine, requests in order, callbacks in the GUI thread, one stop per
request, failures to the request that failed; history writes, long jobs and child
processes on lanes of their own with the same stop, progress and failure path. Real
Engine, real History, real QThreads (offscreen), real child processes."""
# ruff: noqa: F811 - the window fixtures are imported from test_gui_app

from __future__ import annotations

import logging
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("PySide6")

from engine.core import Engine
from engine.types import UserError
from tests.ui.test_gui_app import app, open_window  # noqa: F401
from ui.runner import Finished, Request, Runner, child_command, main_script, run_child

pytestmark = pytest.mark.gui


@pytest.fixture
def runner(app, tmp_path: Path):
    runner = Runner(tmp_path / "data")
    runner.start()
    yield runner
    runner.close()


def test_results_and_posts_arrive_in_order_in_the_gui_thread(runner, qtbot) -> None:
    seen: list[tuple[str, object, bool]] = []
    gui = threading.current_thread()

    def record(kind: str):
        return lambda value: seen.append((kind, value, threading.current_thread() is gui))

    def work(engine: Engine, request: Request) -> str:
        assert threading.current_thread() is not gui
        for i in range(3):
            request.post(record("post"), i)
        return engine.data_dir.name

    runner.submit(work, record("done"), record("failed"))
    runner.submit(lambda engine, r: id(engine), record("second"))
    qtbot.waitUntil(lambda: len(seen) == 5, timeout=30_000)
    expected = [("post", 0), ("post", 1), ("post", 2), ("done", "data")]
    assert [(kind, value) for kind, value, _ in seen[:4]] == expected
    assert all(in_gui for _, _, in_gui in seen)
    assert seen[4][1] == id(runner.engine)  # one Engine for every request


def test_a_failure_reaches_only_its_own_request(runner, qtbot, caplog) -> None:
    got: dict[str, list] = {"a": [], "b": [], "c": []}

    def user_error(engine: Engine, request: Request) -> None:
        raise UserError("notes.pdf: the disk is full")

    def bug(engine: Engine, request: Request) -> None:
        raise KeyError("oops")

    with caplog.at_level(logging.ERROR):
        runner.submit(user_error, got["a"].append, got["a"].append)
        runner.submit(bug, got["b"].append, got["b"].append)
        runner.submit(lambda e, r: "fine", got["c"].append, got["c"].append)
        qtbot.waitUntil(lambda: all(got.values()), timeout=30_000)
    assert got["a"] == ["notes.pdf: the disk is full"]
    assert got["b"][0].startswith("Unexpected error: KeyError: 'oops'")
    assert got["c"] == ["fine"]  # the engine thread lives on after a bug
    assert "Traceback" in caplog.text and "KeyError" in caplog.text


def test_an_os_error_is_worded_by_the_engine_classifier(runner, qtbot) -> None:
    import errno

    failed: list[str] = []

    def full(engine: Engine, request: Request) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", "/data/index.sqlite3")

    runner.submit(full, None, failed.append)
    qtbot.waitUntil(lambda: bool(failed), timeout=30_000)
    assert failed == ["/data/index.sqlite3: the disk is full; free some space, then try again"]


def test_a_stop_before_the_request_runs_is_seen_by_it(runner, qtbot) -> None:
    gate = threading.Event()
    seen: list[bool] = []
    runner.submit(lambda e, r: gate.wait(30))  # holds the engine thread
    waiting = runner.submit(lambda e, r: r.cancel.is_set(), seen.append)
    waiting.stop()
    gate.set()
    qtbot.waitUntil(lambda: bool(seen), timeout=30_000)
    assert seen == [True]


def test_close_runs_what_is_queued_then_closes_the_engine(app, tmp_path, qtbot) -> None:
    runner = Runner(tmp_path / "data")
    runner.start()
    ran: list[str] = []
    runner.submit(lambda e, r: ran.append("queued"))
    runner.close()
    assert ran == ["queued"]
    assert runner.engine is None and not runner.engine_thread.isRunning()
    runner.close()  # twice is harmless


# -- the other lanes: history writes, long jobs, child processes ----------------------------


def fill_history(runner: Runner, qtbot) -> None:
    """The history lane's database may grow no more: SQLite's own "database or disk is
    full" on the next write that needs a page (what a full disk gives)."""
    done: list[int] = []

    def cap(history, _request) -> int:
        pages = history.conn.execute("PRAGMA page_count").fetchone()[0]
        history.conn.execute(f"PRAGMA max_page_count = {pages}")
        return pages

    runner.write_history(cap, done.append)
    qtbot.waitUntil(lambda: bool(done), timeout=30_000)


def test_history_writes_have_their_own_lane_and_the_same_failure_path(runner, qtbot) -> None:
    from engine.history import Message

    gate = threading.Event()
    runner.submit(lambda e, r: gate.wait(30))  # the engine lane is busy
    saved: list[int] = []
    runner.write_history(lambda h, r: h.add(h.create(), Message("user", "hi")), saved.append)
    qtbot.waitUntil(lambda: bool(saved), timeout=30_000)  # not behind the engine
    gate.set()

    fill_history(runner, qtbot)
    failed: list[str] = []
    runner.write_history(lambda h, r: h.add(h.create(), Message("user", "x" * 50_000)), None,
                         failed.append)  # fmt: skip
    qtbot.waitUntil(lambda: bool(failed), timeout=30_000)
    path = runner.data_dir / "history.sqlite3"
    assert failed == [f"{path}: the disk is full; free some space and run the command again "
                      "(the conversations before are kept)"]  # fmt: skip


def test_a_job_runs_beside_the_engine_and_closing_stops_it(app, tmp_path, qtbot) -> None:
    runner = Runner(tmp_path / "data")
    runner.start()
    gate = threading.Event()
    runner.submit(lambda e, r: gate.wait(30))
    posted: list[str] = []

    def job(request: Request) -> bool:
        request.post(posted.append, "started")
        return request.cancel.wait(30)  # until stopped

    runner.run_job("download", job)
    qtbot.waitUntil(lambda: posted == ["started"], timeout=10_000)  # the engine is busy
    gate.set()
    started = time.monotonic()
    runner.close()  # stops the job, runs the engine's queue, ends every lane
    assert time.monotonic() - started < 10
    assert all(not thread.isRunning() for thread, _ in runner._lanes.values())
    late = runner.run_job("download", job)
    assert late.cancel.is_set()  # after close nothing runs


def test_a_child_process_prints_its_result_and_its_error_line(runner, qtbot, tmp_path) -> None:
    data = str(tmp_path / "child-data")
    ended: list[Finished] = []
    lines: list[str] = []
    runner.run_job("child", lambda r: run_child(r, ["--data-dir", data, "docs", "--json"]),
                   ended.append)  # fmt: skip
    runner.run_job(
        "child", lambda r: run_child(r, ["--data-dir", data, "remove", "nowhere.md"], lines.append),
        ended.append,
    )  # fmt: skip
    qtbot.waitUntil(lambda: len(ended) == 2, timeout=120_000)
    docs, remove = ended
    assert docs.code == 0 and docs.payload() is not None and docs.error() == ""
    assert remove.code == 1 and "nowhere.md" in remove.error(), remove.lines
    assert any(line.startswith("quire:") for line in lines)  # posted as they came


def test_child_command_is_the_app_itself_when_frozen(monkeypatch) -> None:
    assert child_command("serve") == (sys.executable, [main_script(), "serve"])
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    assert child_command("serve", "--port", "1") == (sys.executable, ["serve", "--port", "1"])


def test_a_full_disk_during_a_history_write_is_one_line_in_the_window(
    open_window, qtbot, tmp_path, monkeypatch
) -> None:
    """Before: the write ran in the slot and a full disk showed "Quire hit a bug"."""
    from PySide6.QtWidgets import QInputDialog, QMessageBox

    window = open_window(tmp_path / "data")
    warnings: list[str] = []
    monkeypatch.setattr(QMessageBox, "warning", lambda *args: warnings.append(args[1]))
    number = window.history.create("Tomatoes")
    window.history_view.refresh(number)
    fill_history(window.bridge.runner, qtbot)
    monkeypatch.setattr(QInputDialog, "getText", lambda *a, **k: ("Garden " * 8000, True))
    window.history_view.rename_selected()
    qtbot.waitUntil(lambda: window.banner.isVisibleTo(window), timeout=30_000)
    path = window.data_dir / "history.sqlite3"
    assert (
        window.banner.label.text() == f"Could not save the chat: {path}: the disk is full; "
        "free some space and run the command again (the conversations before are kept)"
    )
    assert warnings == [] and window.history.conversation(number).title == "Tomatoes"


def test_exports_run_on_the_history_lane_and_fail_as_one_line(
    open_window, qtbot, tmp_path, monkeypatch
) -> None:
    """File > Export training examples and a conversation's Export to Markdown write on
    the history lane; a write that cannot happen is one line, not "Quire hit a bug"."""
    from PySide6.QtWidgets import QMessageBox

    from engine.history import Message

    window = open_window(tmp_path / "data")
    warnings: list[str] = []
    monkeypatch.setattr(QMessageBox, "warning", lambda *args: warnings.append(args[2]))
    number = window.history.create("Pumps")
    window.history.add(number, Message("user", "How do I prime the pump?"))
    window.history_view.refresh(number)

    examples = tmp_path / "examples.jsonl"
    window.export_training_to(examples)
    qtbot.waitUntil(lambda: window.finetune.path.text() == str(examples), timeout=30_000)
    assert examples.is_file() and "Exported 0 training example(s)" in (
        window.statusBar().currentMessage()
    )

    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    window.export_training_to(blocked / "examples.jsonl")  # a folder that is a file
    qtbot.waitUntil(lambda: window.banner.isVisibleTo(window), timeout=30_000)
    text = window.banner.label.text()
    assert text.startswith("Could not export the training examples: ") and "\n" not in text
    assert text.endswith("examples.jsonl: Not a directory; choose another place")

    markdown = tmp_path / "pumps.md"
    window.history_view.export_selected(str(markdown))
    qtbot.waitUntil(markdown.is_file, timeout=30_000)
    assert "How do I prime the pump?" in markdown.read_text(encoding="utf-8")
    window.history_view.export_selected(str(blocked / "pumps.md"))
    qtbot.waitUntil(lambda: bool(warnings), timeout=30_000)
    assert str(blocked) in warnings[0] and "\n" not in warnings[0]
    assert warnings == [f"{blocked / 'pumps.md'}: Not a directory; choose another place"]
