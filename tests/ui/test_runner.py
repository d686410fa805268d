"""The engine thread: one Engine, requests in order, callbacks in the GUI thread, one stop
per request, failures to the request that failed. Real Engine, real QThread (offscreen)."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest

pytest.importorskip("PySide6")

from engine.core import Engine  # noqa: E402
from engine.types import UserError  # noqa: E402
from tests.ui.test_gui_app import app  # noqa: E402, F401
from ui.runner import Request, Runner  # noqa: E402

pytestmark = pytest.mark.gui


@pytest.fixture
def runner(app, tmp_path: Path):  # noqa: F811
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


def test_close_runs_what_is_queued_then_closes_the_engine(app, tmp_path, qtbot) -> None:  # noqa: F811
    runner = Runner(tmp_path / "data")
    runner.start()
    ran: list[str] = []
    runner.submit(lambda e, r: ran.append("queued"))
    runner.close()
    assert ran == ["queued"]
    assert runner.engine is None and not runner.thread.isRunning()
    runner.close()  # twice is harmless
