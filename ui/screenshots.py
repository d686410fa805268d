"""Render the app's main states to PNGs: `python -m ui.screenshots docs/screenshots`.

Uses the real engine and bundled models on a small generated document set, plus real
documents from the shared corpus when it is there. The data dir is a fresh temporary one,
so the first screenshot is a true first run; the window layout is not the user's either.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, cast

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from PySide6.QtCore import (
    QEventLoop,
    QSettings,
    QTimer,
    SignalInstance,
)
from PySide6.QtWidgets import QWidget

if TYPE_CHECKING:
    from ui.chat import AnswerCard
    from ui.main_window import MainWindow

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO.parent / "shared" / "corpus"
QUESTION = "What exception is raised when a COM call fails?"
SEARCH = "backup schedule and retention"
COMPARE_QUESTION = "When do backups run and how many copies are kept?"
EVAL_QUESTIONS = "".join(
    json.dumps(q) + "\n"
    for q in (
        {"id": "backup", "question": "When do backups run?",
         "doc": "home-server-handbook.md", "answer": "02:00"},
        {"id": "router", "question": "Which addresses does the router hand out?",
         "doc": "network-notes.txt", "answer": "192.168.1.100"},
        {"id": "nas", "question": "When is the old NAS retired?",
         "doc": "meeting-2024-03-12.md", "answer": "April"},
        {"id": "restore", "question": "How do I restore a file from a backup?",
         "doc": "home-server-handbook.md", "answer": "Restore"},
    )
)  # fmt: skip
SAMPLES = {
    "home-server-handbook.md": """# Home server handbook

## Backups
Backups run every night at 02:00 and keep seven daily and four weekly copies.
The backup schedule can be changed under System > Backups. Retention follows the
grandfather-father-son scheme, so old weekly copies are pruned automatically.

## Restoring
To restore a file, open the backup archive, pick the date and choose Restore.
""",
    "network-notes.txt": """Network notes

The router hands out addresses from 192.168.1.100 to 192.168.1.200.
The server has the fixed address 192.168.1.10 and answers as homeserver.local.
Port forwarding for HTTPS (443) goes to the server; SSH stays closed from outside.
""",
    "meeting-2024-03-12.md": """# Meeting notes, 12 March 2024

Decisions: the backup retention stays at four weekly copies; the old NAS is retired
in April; Alice writes the restore checklist. Next meeting: 9 April.
""",
}


def sample_documents(folder: Path) -> list[Path]:
    """A few small notes, plus a real PDF and HTML pages from the shared corpus."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in SAMPLES.items():
        (folder / name).write_text(text, encoding="utf-8")
        paths.append(folder / name)
    for name in ("camlidl-1.04.doc.pdf", "freedombox-manual/Backups.part.html"):
        source = CORPUS / name
        if source.is_file():
            shutil.copy(source, folder / source.name)
            paths.append(folder / source.name)
    return paths


class Recorder:
    """Keeps every emission of the signals it watches, so none is missed between waits.

    (A QEventLoop quit by one signal still delivers the events already queued, so waiting
    for signals one after the other can miss one that came in the same batch.)
    """

    def __init__(self, **signals: SignalInstance) -> None:
        self.seen: dict[str, list[tuple]] = {name: [] for name in signals}
        for name, signal in signals.items():
            signal.connect(functools.partial(self._record, name))

    def _record(self, name: str, *args: object) -> None:
        self.seen[name].append(args)

    def wait(self, name: str, timeout_ms: int = 120_000, count: int = 1) -> tuple:
        """Run the event loop until `name` was emitted `count` times; its latest arguments."""
        loop = QEventLoop()
        check = QTimer(interval=20)

        def check_seen() -> None:
            if len(self.seen[name]) >= count:
                loop.quit()

        check.timeout.connect(check_seen)
        check.start()
        QTimer.singleShot(timeout_ms, loop.quit)
        if len(self.seen[name]) < count:
            loop.exec()
        check.stop()
        if len(self.seen[name]) < count:
            raise TimeoutError(f"{name} was not emitted within {timeout_ms} ms")
        return self.seen[name][-1]


def wait_for(signal: SignalInstance, timeout_ms: int = 120_000) -> tuple:
    """Run the event loop until `signal` fires once from now; return its arguments."""
    return Recorder(signal=signal).wait("signal", timeout_ms)


def pause(ms: int) -> None:
    loop = QEventLoop()
    QTimer.singleShot(ms, loop.quit)
    loop.exec()


def save(widget: QWidget, out: Path, name: str) -> None:
    pause(150)  # let layouts settle
    path = out / name
    widget.grab().save(str(path))
    print(f"wrote {path}")


def render_all(out: Path, work: Path) -> None:
    from ui.main_window import MainWindow

    window = MainWindow(work / "data", preload=False)  # 01 shows the window as it opens
    window.resize(1440, 900)
    bridge = window.bridge
    events = Recorder(
        status=bridge.status_changed,
        progress=bridge.ingest_progressed,
        ingested=bridge.ingest_finished,
        listed=bridge.documents_listed,
        searched=window.search.searched,
        answered=window.chat.answer_finished,
    )
    window.show()
    events.wait("status", 30_000)
    save(window, out, "01-first-run.png")

    window.tabs.setCurrentWidget(window.library)
    window.library.add_paths([str(p) for p in sample_documents(work / "documents")])
    while not events.seen["ingested"]:  # a moment with a few files done, some to go
        events.wait("progress", 600_000, count=len(events.seen["progress"]) + 1)
        if events.seen["progress"][-1][0].chunks_done >= 30:
            save(window, out, "02-library-indexing.png")
            break
    events.wait("ingested", 600_000)
    pause(300)

    render_results(window, events, out, work)
    render_models(window, out)
    window.close()


def render_results(window: MainWindow, events: Recorder, out: Path, work: Path) -> None:
    """Search results, an answer with sources (and its quote), the PDF at a cited page,
    the quote in the reader, the settings."""
    from ui.settings_dialog import SettingsDialog

    window.tabs.setCurrentWidget(window.search)
    window.search.query.setText(SEARCH)
    events.wait("searched")
    save(window, out, "03-search.png")

    window.tabs.setCurrentWidget(window.chat)
    window.chat.max_tokens = 60
    window.chat.ask(QUESTION, window.chat.mode.currentData())  # the default: Hybrid
    answer = events.wait("answered", 300_000)[0]
    save(window, out, "04-answer-with-sources.png")

    cited = next((s for s in answer.sources if s.page), None)
    if cited is not None:
        window.open_source(cited)
        pause(2500)  # QtPdf renders pages in its own threads
        save(window, out, "05-pdf-at-cited-page.png")
    if answer.quote is not None:  # the reader's quote, opened from the answer at its sentence
        item = window.chat.items.itemAt(window.chat.items.count() - 2)
        card = cast("AnswerCard", item.widget() if item else None)
        card.quote_block.opened.emit()
        pause(2500)
        save(window, out, "14-quote-in-document.png")

    dialog = SettingsDialog(window.settings, window)
    dialog.show()
    save(dialog, out, "06-settings.png")
    dialog.close()
    window.reader.hide()
    render_lab(window, out, work)


def render_lab(window: MainWindow, out: Path, work: Path) -> None:
    """The four modes side by side (with the bundled grounding adapter), the adapter
    dialog, an evaluation run, and a fine-tuning run."""
    from engine.paths import models_dir
    from models.bundled import ensure_llm
    from tests.factory import write_gemma_peft

    window.tabs.setCurrentWidget(window.compare)
    window.compare.max_tokens = 60
    window.compare.question.setPlainText(COMPARE_QUESTION)
    window.compare.compare()
    wait_for(window.compare.comparison_finished, 600_000)
    save(window, out, "07-compare.png")

    dialog = window.open_adapter()
    events = Recorder(adapter=dialog.applied, failed=dialog.failed)
    peft = write_gemma_peft(work / "style-adapter", ensure_llm(models_dir(work / "data")))
    dialog.scale.setValue(0.8)
    dialog.import_folder(str(peft))
    events.wait("adapter", 120_000)
    save(dialog, out, "09-adapter.png")
    dialog.switch_off()  # back to the grounding adapter
    events.wait("adapter", 120_000, count=2)
    dialog.close()

    questions = work / "questions.jsonl"
    questions.write_text(EVAL_QUESTIONS, encoding="utf-8")
    page = window.evaluate
    window.tabs.setCurrentWidget(page)
    page.path.setText(str(questions))
    page.retrieval_only.setChecked(True)
    page.start()
    wait_for(page.evaluation_finished, 300_000)
    save(window, out, "08-evaluate.png")
    render_finetune(window, out, work)


def render_finetune(window: MainWindow, out: Path, work: Path) -> None:
    """A real (short) training run in the Fine-tune tab, finished, with its card."""
    from tests.engine.test_training import BAD_LINES, write_examples

    view = window.finetune
    window.tabs.setCurrentWidget(view)
    view.path.setText(str(write_examples(work / "answer-format.jsonl", BAD_LINES[:2])))
    view.check()
    wait_until(lambda: view.process is None, 120_000)
    view.epochs.setValue(6)
    view.rank.setValue(8)
    view.start()
    wait_until(lambda: view.process is None, 900_000)
    save(window, out, "10-finetune.png")


def free_port(wanted: int) -> int:
    """`wanted` when nothing listens there (the address a user would see), else any."""
    import socket

    for port in (wanted, 0):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(probe.getsockname()[1])
    raise OSError("no free port")


def render_models(window: MainWindow, out: Path) -> None:
    """The Models window connected to a model server (llama-cpp-python's own, with the
    bundled model, where the llama.cpp preset looks), and this Quire serving too."""
    import subprocess

    from engine.paths import models_dir
    from models.bundled import ensure_llm
    from ui.serving import DEFAULT_PORT

    port = free_port(8080)
    server = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model",
         str(ensure_llm(models_dir(window.data_dir))), "--model_alias", "gemma-3-270m-it",
         "--host", "127.0.0.1", "--port", str(port), "--chat_format", "gemma"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        dialog = window.open_models()
        panel = dialog.server
        panel.url.setText(f"http://127.0.0.1:{port}/v1")
        for _ in range(60):  # until the server has loaded its model
            panel.test()
            wait_until(panel.test_button.isEnabled, 15_000)
            if panel.model.count():
                break
            pause(500)
        panel.connect_server()
        wait_for(window.bridge.status_changed)
        dialog.serve.port.setValue(free_port(DEFAULT_PORT))
        dialog.serve.switch.click()
        wait_for(window.serve.serving, 120_000)
        save(dialog, out, "15-model-server.png")
        window.serve.stop()
        dialog.close()
    finally:
        server.terminate()
        server.wait(20)


def wait_until(done: Callable[[], bool], timeout_ms: int) -> None:
    waited = 0
    while not done() and waited < timeout_ms:
        pause(200)
        waited += 200


def render_models_only(out: Path, work: Path) -> None:
    """`python -m ui.screenshots OUT models`: the model-server screenshots alone."""
    from ui.main_window import MainWindow

    window = MainWindow(work / "data", preload=False)
    window.resize(1440, 900)
    window.show()
    wait_for(window.bridge.status_changed, 30_000)
    render_models(window, out)
    window.close()


def main(argv: list[str]) -> int:
    out = Path(argv[0] if argv else "docs/screenshots").resolve()
    only_models = argv[1:] == ["models"]
    out.mkdir(parents=True, exist_ok=True)
    if "QUIRE_MODELS_DIR" not in os.environ and (REPO / ".cache" / "models").is_dir():
        os.environ["QUIRE_MODELS_DIR"] = str(REPO / ".cache" / "models")
    from ui.app import create_app

    app = create_app()
    with tempfile.TemporaryDirectory(prefix="quire-shots-") as tmp:
        QSettings.setDefaultFormat(QSettings.Format.IniFormat)
        QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, tmp)
        (render_models_only if only_models else render_all)(out, Path(tmp))
    app.processEvents()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
