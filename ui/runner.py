"""The one road from the window to work that must not run on the GUI thread.

The window never calls the engine, writes the history or runs a child process itself: it
submits a request, `work(..., request) -> result`, with callbacks for its result, its
failure and anything it reports on the way; the callbacks run in the GUI thread (Anki's
`run_in_background` + `run_on_main`). Requests go to lanes, each one thread that runs
its requests one at a time in the order sent:

- `submit`: the engine lane, one `Engine` opened there on first use;
- `write_history`: the history lane, a `History` of its own (SQLite in WAL mode, so the
  window's own connection reads what it wrote), for history and test-set writes;
- `run_job(lane, ...)`: a named lane for long work that needs neither (a download, a
  server test, a child process: `run_child`), so it holds up nothing else.

Every request carries its own stop event (`request.stop()`, any time, also before it has
started), posts progress with `request.post(fn, *args)`, and a failure reaches only its
own `failed` callback as one line: an environment fault (full disk, read-only folder,
damaged index or history) in words from `engine.errors`, a bug as its type and message
with the traceback in the log. Closing the runner stops the long lanes' requests and
lets the engine and history lanes finish what is queued.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import IO, Any

from PySide6.QtCore import QObject, QThread, Signal, Slot

from engine.core import INDEX_FILE, Engine
from engine.errors import describe
from engine.finetune.job import PROGRESS_PREFIX
from engine.history import History
from engine.paths import default_data_dir
from engine.types import UserError

log = logging.getLogger(__name__)
WORKER_NICE = int(os.environ.get("QUIRE_WORKER_NICE", "5"))  # the engine yields to the window
ENGINE, HISTORY = "engine", "history"  # the lanes whose queue runs to the end on close
POLL_S = 0.1  # how often a child's wait looks at its stop event

Work = Callable[[Engine, "Request"], Any]
HistoryWork = Callable[[History, "Request"], Any]
Job = Callable[["Request"], Any]


class Request:
    """One piece of work: what it does, where its outcome goes, and its own stop.

    `post(fn, *args)` (from the work, in its lane's thread) runs `fn(*args)` in the GUI
    thread, after everything posted before it.
    """

    def __init__(
        self,
        work: Callable[[Any, Request], Any],
        done: Callable[[Any], None] | None,
        failed: Callable[[str], None] | None,
        closing: bool = False,
    ) -> None:
        self.work, self.done, self.failed = work, done, failed
        self.closing = closing  # the last request: its lane closes after it
        self.cancel = threading.Event()
        self.ended = False  # set in the lane's thread once the work returned or raised
        self.post: Callable[..., None] = lambda fn, *args: None  # set when it is submitted

    def stop(self) -> None:
        """Ask the work to stop (any thread, any time); it keeps what it finished."""
        self.cancel.set()


def describe_error(exc: BaseException, data_dir: Path | None) -> str:
    """One line a user can act on; a bug keeps its traceback in the log."""
    known = describe(exc, (data_dir or default_data_dir()) / INDEX_FILE)
    if known is not None:
        return str(known)
    log.error("unexpected error on a worker thread:\n%s", traceback.format_exc())
    return f"Unexpected error: {type(exc).__name__}: {exc} (details in the log)"


def lower_thread_priority(step: int = WORKER_NICE) -> None:
    """Make the calling thread (and the threads and processes it starts) nicer.

    On Linux the nice value is per thread and inherited by llama.cpp's, onnxruntime's and
    the parser processes' threads, so the window gets the CPU first when it needs it and
    never waits behind generation or indexing. Elsewhere this is a no-op.
    """
    if not sys.platform.startswith("linux") or step <= 0:
        return
    tid = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + step)
    except OSError:
        log.info("could not lower the engine thread's priority")


class _Lane(QObject):
    """Lives in its lane's thread: opens what the lane owns, runs requests, posts back.

    `submitted` is emitted from the GUI thread and reaches `run` queued, in this thread.
    """

    submitted = Signal(object)  # a Request
    back = Signal(object)  # a callable for the GUI thread

    def __init__(self, name: str, data_dir: Path | None, opener: Callable[[], Any] | None) -> None:
        super().__init__()
        self.name, self.data_dir, self.opener = name, data_dir, opener
        self.owned: Any = None  # the Engine or History, opened on first use

    @Slot()
    def started(self) -> None:
        if self.name == ENGINE:
            lower_thread_priority()

    @Slot(object)
    def run(self, request: Request) -> None:
        if request.closing:
            self.close()
            return
        try:
            if self.owned is None and self.opener is not None:
                self.owned = self.opener()
            result = request.work(self.owned, request)
        except Exception as exc:  # noqa: BLE001 - reported to the request, never fatal
            request.ended = True
            message = describe_error(exc, self.data_dir)  # a bug: logged
            if request.failed is not None:
                self.back.emit(partial(request.failed, message))
            return
        request.ended = True
        if request.done is not None:
            self.back.emit(partial(request.done, result))

    def close(self) -> None:
        """The last request: close what the lane owns, then end the thread's event loop."""
        if self.owned is not None:
            self.owned.close()
            self.owned = None
        QThread.currentThread().quit()


class Runner(QObject):
    """The GUI thread's handle on the lanes (see the module docstring)."""

    def __init__(self, data_dir: Path | None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.data_dir = data_dir
        self.closed = self.started = False
        self._lanes: dict[str, tuple[QThread, _Lane]] = {}
        self._jobs: list[Request] = []  # long lanes' requests, stopped on close
        self.engine_thread, self.side = self._lane(ENGINE, lambda: Engine(data_dir))

    @property
    def engine(self) -> Engine | None:
        """The engine thread's Engine (None until the first operation opened it). For
        tests and thread-safe calls only: everything else goes through `submit`."""
        return self.side.owned

    def _lane(self, name: str, opener: Callable[[], Any] | None = None) -> tuple[QThread, _Lane]:
        if name not in self._lanes:
            thread = QThread()
            thread.setObjectName(f"quire-{name}")
            side = _Lane(name, self.data_dir, opener)
            side.moveToThread(thread)
            thread.started.connect(side.started)
            side.submitted.connect(side.run)  # queued: the side lives in its thread
            side.back.connect(self._call)  # queued back into the GUI thread
            self._lanes[name] = (thread, side)
            if self.started and not self.closed:
                thread.start()
        return self._lanes[name]

    def start(self) -> None:
        self.started = True
        for thread, _side in self._lanes.values():
            thread.start()

    def submit(
        self,
        work: Work,
        done: Callable[[Any], None] | None = None,
        failed: Callable[[str], None] | None = None,
    ) -> Request:
        """Queue `work(engine, request)` on the engine lane; `done(result)` or
        `failed(message)` follow in the GUI thread. Returns the request (`stop()`)."""
        return self._send(ENGINE, work, done, failed)

    def write_history(
        self,
        work: HistoryWork,
        done: Callable[[Any], None] | None = None,
        failed: Callable[[str], None] | None = None,
    ) -> Request:
        """Queue `work(history, request)` on the history lane (writes of the chat history
        and the test set), like `submit`."""
        data_dir = self.data_dir or default_data_dir()
        self._lane(HISTORY, lambda: History(data_dir))
        return self._send(HISTORY, work, done, failed)

    def run_job(
        self,
        lane: str,
        job: Job,
        done: Callable[[Any], None] | None = None,
        failed: Callable[[str], None] | None = None,
    ) -> Request:
        """Queue `job(request)` on the lane named `lane` (its own thread, made on first
        use), like `submit`; closing the runner stops it."""
        request = self._send(lane, lambda _owned, r: job(r), done, failed)
        self._jobs = [*(r for r in self._jobs if not r.ended), request]
        return request

    def _send(
        self,
        lane: str,
        work: Callable[[Any, Request], Any],
        done: Callable[[Any], None] | None,
        failed: Callable[[str], None] | None,
    ) -> Request:
        _thread, side = self._lane(lane)
        request = Request(work, done, failed)
        request.post = lambda fn, *args: side.back.emit(partial(fn, *args))
        if self.closed:
            request.stop()  # nothing runs it any more
        else:
            side.submitted.emit(request)
        return request

    @Slot(object)
    def _call(self, fn: Callable[[], None]) -> None:
        if not self.closed:  # after close, the views the callbacks update may be gone
            fn()

    def close(self) -> None:
        """Stop the long lanes' work, run what the engine and history lanes have queued
        (stop that first), close the Engine and the History in their threads, end them."""
        if self.closed:
            return
        self.closed = True
        for request in self._jobs:
            request.stop()
        for thread, side in self._lanes.values():
            if thread.isRunning():
                side.submitted.emit(Request(lambda _owned, _r: None, None, None, closing=True))
        for thread, _side in self._lanes.values():
            thread.wait()


# -- child processes ---------------------------------------------------------------------


def main_script() -> str:
    """main.py, which child processes run when Quire runs from source."""
    spec = importlib.util.find_spec("main")
    assert spec is not None and spec.origin is not None
    return spec.origin


def child_command(*args: str) -> tuple[str, list[str]]:
    """The program and arguments that run `quire ARGS...`: the frozen app is its own
    command line; from source it is this Python with main.py."""
    if getattr(sys, "frozen", False):
        return sys.executable, list(args)
    return sys.executable, [main_script(), *args]


@dataclass
class Finished:
    """A child process that ended: its exit code, what it printed on stdout, and its last
    stderr lines (the progress lines left out)."""

    code: int
    out: str
    lines: list[str] = field(default_factory=list)

    def payload(self) -> dict[str, Any] | None:
        """The JSON object it printed on stdout (`--json`), if any."""
        try:
            found = json.loads(self.out) if self.out.strip() else None
        except ValueError:
            return None
        return found if isinstance(found, dict) else None

    def error(self) -> str:
        """Its last `quire: ...` line, without the prefix ("" when it printed none)."""
        errors = [ln.removeprefix("quire:").strip() for ln in self.lines if ln.startswith("quire:")]
        return errors[-1] if errors else ""


def run_child(
    request: Request,
    args: list[str],
    on_line: Callable[[str], None] | None = None,
    env: dict[str, str] | None = None,
    stop_signal: int = signal.SIGINT,
    kill_after_s: float | None = None,
    started: Callable[[int], None] | None = None,
) -> Finished:
    """Run `quire ARGS...` (see `child_command`) from a job and wait for it to end.

    `started(pid)` and each stderr line (`on_line`) follow in the GUI thread; the
    request's stop sends the child `stop_signal` (SIGINT: finish the step and keep a
    checkpoint; SIGTERM: end), and `kill_after_s` later, if it still runs, kills it.
    """
    program, argv = child_command(*args)
    try:
        child = subprocess.Popen(
            [program, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})},
        )  # fmt: skip
    except OSError as exc:
        raise UserError(f"could not start {program}: {exc.strerror or exc}") from exc
    stdout, stderr = child.stdout, child.stderr
    assert stdout is not None and stderr is not None
    if started is not None:
        request.post(started, child.pid)
    out: list[bytes] = []
    lines: list[str] = []
    readers = [
        threading.Thread(target=lambda: out.append(stdout.read()), daemon=True),
        threading.Thread(target=_read_lines, args=(stderr, lines, request, on_line), daemon=True),
    ]
    for reader in readers:
        reader.start()
    _wait(child, request, stop_signal, kill_after_s)
    for reader in readers:
        reader.join()
    stdout.close()
    stderr.close()
    return Finished(child.returncode, b"".join(out).decode("utf-8", "replace"), lines)


def _read_lines(
    stream: IO[bytes],
    kept: list[str],
    request: Request,
    on_line: Callable[[str], None] | None,
) -> None:
    for raw in stream:
        line = raw.decode("utf-8", "replace").strip()
        if not line:
            continue
        if not line.startswith(PROGRESS_PREFIX):
            kept[:] = [*kept[-19:], line]
        if on_line is not None:
            request.post(on_line, line)


def _wait(
    child: subprocess.Popen[bytes], request: Request, stop_signal: int, kill_after_s: float | None
) -> None:
    """Wait for `child`, passing on the request's stop once (then a kill when it lingers)."""
    waited_after_stop: float | None = None
    while True:
        try:
            child.wait(POLL_S)
            return
        except subprocess.TimeoutExpired:
            pass
        if waited_after_stop is None and request.cancel.is_set():
            waited_after_stop = 0.0
            if sys.platform == "win32":
                child.terminate()
            else:
                child.send_signal(stop_signal)
        elif waited_after_stop is not None:
            waited_after_stop += POLL_S
            if kill_after_s is not None and waited_after_stop > kill_after_s:
                child.kill()
