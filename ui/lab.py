"""Adapters, side-by-side comparison, evaluation and start-up preloading, on the worker thread.

`LabWorker` lives in the `Worker`'s thread and drives the same `Engine` (never a second
one: that would double the memory). `Lab` is the GUI thread's handle on it: request
methods, and the lab worker's signals re-emitted in the GUI thread. Failures arrive on the
`Bridge.failed` signal with the task names "adapter", "compare" and "evaluate".
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, QThread, Signal, Slot

from engine.core import AnswerFinished, AskOptions, Engine, SourcesFound, TokenReceived
from engine.evaluation import EvalConfig, Evaluation
from models.registry import adapters_dir

if TYPE_CHECKING:
    from ui.worker import Worker

log = logging.getLogger(__name__)


class LabWorker(QObject):
    """Slots that run in the worker thread, on the worker's Engine.

    Signals: adapter_changed(path or None, scale), compare_started(dict mode -> reason),
    compare_sources(mode, list), compare_token(mode, str), compare_answer(mode, Answer),
    compare_finished(), evaluation_progressed(EvalProgress),
    evaluation_finished(EvalReport), preloaded(seconds).
    """

    adapter_changed = Signal(object, float)
    compare_started = Signal(object)
    compare_sources = Signal(str, list)
    compare_token = Signal(str, str)
    compare_answer = Signal(str, object)
    compare_finished = Signal()
    evaluation_progressed = Signal(object)
    evaluation_finished = Signal(object)
    preloaded = Signal(float)

    def __init__(self, worker: Worker) -> None:
        super().__init__()
        self.worker = worker
        self.eval_cancel = threading.Event()

    @Slot()
    def preload(self) -> None:
        """Load the embedder, the vector index and the model so the first question is quick."""
        start = time.perf_counter()

        def work(engine: Engine) -> None:
            engine.embedder  # noqa: B018 - loads it
            load_index = getattr(engine.store, "load_index", None)
            if load_index is not None:
                load_index()
            engine.generator  # noqa: B018 - loads the GGUF

        self.worker._run("preload", work)
        self.preloaded.emit(time.perf_counter() - start)

    @Slot(str, float)
    def set_adapter(self, path: str, scale: float) -> None:
        """Check and switch to an adapter ("" switches it off); a mismatch changes nothing."""
        self.worker._run("adapter", lambda engine: self._set_adapter(engine, path, scale))

    def _set_adapter(self, engine: Engine, path: str, scale: float) -> None:
        info = engine.set_adapter(Path(path) if path else None, scale)
        engine.settings.lora_scale = float(scale)
        self.worker._save_settings(engine)
        self.adapter_changed.emit(str(info.path) if info else None, float(scale))

    @Slot(str, float)
    def import_peft(self, folder: str, scale: float) -> None:
        """Convert a PEFT folder for the loaded model into <models dir>/adapters, then load it."""

        def work(engine: Engine) -> None:
            from models.lora import convert_peft

            source = Path(folder)
            out = adapters_dir(engine.models_dir) / f"{source.name}.gguf"
            out.parent.mkdir(parents=True, exist_ok=True)
            convert_peft(source, out, engine.model_path())
            self._set_adapter(engine, str(out), scale)

        self.worker._run("adapter", work)

    @Slot(str, object)
    def compare(self, question: str, options: AskOptions) -> None:
        self.worker._run("compare", lambda engine: self._compare(engine, question, options))
        self.compare_finished.emit()

    def _compare(self, engine: Engine, question: str, options: AskOptions) -> None:
        self.compare_started.emit(engine.available_modes())
        stop = self.worker.answer_stop
        for mode, event in engine.compare(question, options):
            if stop.is_set():
                engine.cancel()  # also stops a mode that starts after the click
            if isinstance(event, TokenReceived):
                self.compare_token.emit(mode, event.text)
            elif isinstance(event, SourcesFound):
                self.compare_sources.emit(mode, event.sources)
            elif isinstance(event, AnswerFinished):
                self.compare_answer.emit(mode, event.answer)

    @Slot(str, object)
    def evaluate(self, path: str, config: EvalConfig) -> None:
        def work(engine: Engine) -> None:
            evaluation = Evaluation(engine, Path(path), config)
            report = evaluation.run(self.evaluation_progressed.emit, self.eval_cancel)
            self.evaluation_finished.emit(report)

        self.worker._run("evaluate", work)


RELAYED = (
    "adapter_changed",
    "compare_started",
    "compare_sources",
    "compare_token",
    "compare_answer",
    "compare_finished",
    "evaluation_progressed",
    "evaluation_finished",
    "preloaded",
)


class Lab(QObject):
    """The GUI thread's handle on `LabWorker`: requests, and its signals re-emitted here.

    Signals: those of `LabWorker`.
    """

    adapter_changed = Signal(object, float)
    compare_started = Signal(object)
    compare_sources = Signal(str, list)
    compare_token = Signal(str, str)
    compare_answer = Signal(str, object)
    compare_finished = Signal()
    evaluation_progressed = Signal(object)
    evaluation_finished = Signal(object)
    preloaded = Signal(float)

    _preload_requested = Signal()
    _adapter_requested = Signal(str, float)
    _import_requested = Signal(str, float)
    _compare_requested = Signal(str, object)
    _evaluate_requested = Signal(str, object)

    def __init__(self, worker: Worker, thread: QThread, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.worker = worker
        self.lab = LabWorker(worker)
        self.lab.moveToThread(thread)
        for signal, slot in (
            (self._preload_requested, self.lab.preload),
            (self._adapter_requested, self.lab.set_adapter),
            (self._import_requested, self.lab.import_peft),
            (self._compare_requested, self.lab.compare),
            (self._evaluate_requested, self.lab.evaluate),
        ):
            signal.connect(slot)
        for name in RELAYED:  # queued: this object lives in the GUI thread
            getattr(self.lab, name).connect(getattr(self, name))

    def preload(self) -> None:
        self._preload_requested.emit()

    def set_adapter(self, path: str | None, scale: float = 1.0) -> None:
        self._adapter_requested.emit(str(path or ""), float(scale))

    def import_peft(self, folder: str, scale: float = 1.0) -> None:
        self._import_requested.emit(str(folder), float(scale))

    def compare(self, question: str, options: AskOptions) -> None:
        """Answer in every mode that can run; `Bridge.stop_answer` stops it."""
        self.worker.answer_stop.clear()
        self._compare_requested.emit(question, copy.deepcopy(options))

    def evaluate(self, path: str, config: EvalConfig) -> None:
        self.lab.eval_cancel.clear()
        self._evaluate_requested.emit(str(path), config)

    def stop_evaluation(self) -> None:
        """Stop after the current answer (thread-safe); what is done is kept."""
        self.lab.eval_cancel.set()
