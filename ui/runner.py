"""One engine thread, and operations sent to it.

The window never calls the engine itself: it submits an operation, `work(engine,
request) -> result`, with callbacks for its result, its failure and anything it reports
on the way; the callbacks run in the GUI thread (Anki's `run_in_background` +
`run_on_main`). Operations run one at a time, in the order submitted, on one `Engine`
that the thread opens on first use. Each request carries its own stop event, which the
window may set at any time, also before the operation has started.

A failure reaches only the request's own `failed` callback, as one line: an environment
fault (full disk, read-only folder, damaged index) in words from `engine.errors`, a bug
as its type and message with the traceback in the log.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import traceback
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QThread, Signal, Slot

from engine.core import INDEX_FILE, Engine
from engine.errors import describe
from engine.paths import default_data_dir

log = logging.getLogger(__name__)
WORKER_NICE = int(os.environ.get("QUIRE_WORKER_NICE", "5"))  # the engine yields to the window

Work = Callable[[Engine, "Request"], Any]


class Request:
    """One operation: what it does, where its outcome goes, and its own stop.

    `post(fn, *args)` (from the operation, in the engine thread) runs `fn(*args)` in the
    GUI thread, after everything posted before it.
    """

    def __init__(
        self,
        work: Work,
        done: Callable[[Any], None] | None,
        failed: Callable[[str], None] | None,
        closing: bool = False,
    ) -> None:
        self.work, self.done, self.failed = work, done, failed
        self.closing = closing  # the last request: the engine thread closes after it
        self.cancel = threading.Event()
        self.post: Callable[..., None] = lambda fn, *args: None  # set when it is submitted

    def stop(self) -> None:
        """Ask the operation to stop (any thread, any time); it keeps what it finished."""
        self.cancel.set()


def describe_error(exc: BaseException, data_dir: Path | None) -> str:
    """One line a user can act on; a bug keeps its traceback in the log."""
    known = describe(exc, (data_dir or default_data_dir()) / INDEX_FILE)
    if known is not None:
        return str(known)
    log.error("unexpected error on the engine thread:\n%s", traceback.format_exc())
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


class _EngineSide(QObject):
    """Lives in the engine thread: opens the Engine, runs requests, posts callbacks back."""

    back = Signal(object)  # a callable for the GUI thread

    def __init__(self, data_dir: Path | None) -> None:
        super().__init__()
        self.data_dir = data_dir
        self.engine: Engine | None = None

    @Slot()
    def started(self) -> None:
        lower_thread_priority()

    @Slot(object)
    def run(self, request: Request) -> None:
        if request.closing:
            self.close()
            return
        try:
            if self.engine is None:
                self.engine = Engine(self.data_dir)
            result = request.work(self.engine, request)
        except Exception as exc:  # noqa: BLE001 - reported to the request, never fatal
            if request.failed is not None:
                self.back.emit(partial(request.failed, describe_error(exc, self.data_dir)))
            else:
                describe_error(exc, self.data_dir)  # logged
            return
        if request.done is not None:
            self.back.emit(partial(request.done, result))

    def close(self) -> None:
        """The last operation: close the Engine, then end the thread's event loop."""
        if self.engine is not None:
            self.engine.close()
            self.engine = None
        QThread.currentThread().quit()


class Runner(QObject):
    """The GUI thread's handle on the engine thread."""

    _submitted = Signal(object)

    def __init__(self, data_dir: Path | None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.data_dir = data_dir
        self.thread = QThread()
        self.thread.setObjectName("quire-engine")
        self.side = _EngineSide(data_dir)
        self.side.moveToThread(self.thread)
        self.thread.started.connect(self.side.started)
        self._submitted.connect(self.side.run)  # queued: the side lives in the engine thread
        self.side.back.connect(self._call)  # queued back into the GUI thread
        self.closed = False

    @property
    def engine(self) -> Engine | None:
        """The engine thread's Engine (None until the first operation opened it). For
        tests and thread-safe calls only: everything else goes through `submit`."""
        return self.side.engine

    def start(self) -> None:
        self.thread.start()

    def submit(
        self,
        work: Work,
        done: Callable[[Any], None] | None = None,
        failed: Callable[[str], None] | None = None,
    ) -> Request:
        """Queue `work(engine, request)`; `done(result)` or `failed(message)` follow in the
        GUI thread. Returns the request, whose `stop()` asks it to stop."""
        request = Request(work, done, failed)
        request.post = lambda fn, *args: self.side.back.emit(partial(fn, *args))
        self._submitted.emit(request)
        return request

    @Slot(object)
    def _call(self, fn: Callable[[], None]) -> None:
        if not self.closed:  # after close, the views the callbacks update may be gone
            fn()

    def close(self) -> None:
        """Run what is queued (stop it first), close the Engine in its thread, end it."""
        if self.closed:
            return
        self.closed = True
        if self.thread.isRunning():
            self._submitted.emit(Request(lambda _engine, _r: None, None, None, closing=True))
            self.thread.wait()
