"""Render the app's main states to PNGs: `python -m ui.screenshots docs/screenshots`.

Uses the real engine and bundled models on a small generated document set, plus real
documents from the shared corpus when it is there. The data dir is a fresh temporary one,
so the first screenshot is a true first run; the window layout is not the user's either.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from PySide6.QtCore import QEventLoop, QSettings, QTimer, SignalInstance  # noqa: E402
from PySide6.QtWidgets import QWidget  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO.parent / "shared" / "corpus"
QUESTION = "How do I mark a char* parameter as a string in an IDL file?"
SEARCH = "backup schedule and retention"
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


def wait_for(signal: SignalInstance, timeout_ms: int = 120_000) -> list:
    """Run the event loop until `signal` fires; return its arguments."""
    loop = QEventLoop()
    got: list = []

    def done(*args: object) -> None:
        got.extend(args)
        loop.quit()

    signal.connect(done)
    QTimer.singleShot(timeout_ms, loop.quit)
    loop.exec()
    signal.disconnect(done)
    if not got and signal is not None:
        print(f"warning: timed out waiting for {signal}", file=sys.stderr)
    return got


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
    from ui.settings_dialog import SettingsDialog

    window = MainWindow(work / "data")
    window.resize(1440, 900)
    window.show()
    worker = window.bridge
    wait_for(worker.status_changed, 30_000)
    save(window, out, "01-first-run.png")

    window.tabs.setCurrentWidget(window.library)
    window.library.add_paths([str(p) for p in sample_documents(work / "documents")])
    while (args := wait_for(worker.ingest_progressed)) and args[0].files_done < 2:
        pass
    save(window, out, "02-library-indexing.png")
    wait_for(worker.ingest_finished, 600_000)
    wait_for(worker.documents_listed, 10_000)

    window.tabs.setCurrentWidget(window.search)
    window.search.query.setText(SEARCH)
    wait_for(worker.search_finished)
    save(window, out, "03-search.png")

    window.tabs.setCurrentWidget(window.chat)
    window.chat.max_tokens = 60
    window.chat.ask(QUESTION, "rag")
    answer = wait_for(worker.answer_finished, 300_000)[0]
    save(window, out, "04-answer-with-sources.png")

    cited = next((s for s in answer.sources if s.page), None)
    if cited is not None:
        window.open_source(cited)
        pause(2500)  # QtPdf renders pages in its own threads
        save(window, out, "05-pdf-at-cited-page.png")

    dialog = SettingsDialog(window.settings, window)
    dialog.show()
    save(dialog, out, "06-settings.png")
    dialog.close()
    window.close()


def main(argv: list[str]) -> int:
    out = Path(argv[0] if argv else "docs/screenshots").resolve()
    out.mkdir(parents=True, exist_ok=True)
    if "QUIRE_MODELS_DIR" not in os.environ and (REPO / ".cache" / "models").is_dir():
        os.environ["QUIRE_MODELS_DIR"] = str(REPO / ".cache" / "models")
    from ui.app import create_app

    app = create_app()
    with tempfile.TemporaryDirectory(prefix="quire-shots-") as tmp:
        QSettings.setDefaultFormat(QSettings.Format.IniFormat)
        QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, tmp)
        render_all(out, Path(tmp))
    app.processEvents()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
