"""QApplication setup: names for QSettings, the icon, the look; `run(data_dir)` opens the window."""

from __future__ import annotations

import logging
import sys
import threading
from logging.handlers import RotatingFileHandler
from pathlib import Path
from types import TracebackType
from typing import Any

from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QApplication, QMessageBox

from engine.paths import ensure_data_dir, private_opener

ICON = Path(__file__).resolve().parent / "resources" / "quire.svg"

STYLE = """
QMainWindow, QWidget#transcript { background: #f8fafc; }
QToolBar#mainToolbar { background: #ffffff; border-bottom: 1px solid #e2e8f0; spacing: 6px;
    padding: 4px; }
QTabBar::tab { padding: 7px 18px; font-weight: 600; color: #475569; }
QTabBar::tab:selected { color: #3730a3; border-bottom: 2px solid #4f46e5; }
QLabel#muted, QLabel#score { color: #64748b; }
QLabel#sectionTitle { color: #4338ca; font-weight: 700; font-size: 11px;
    text-transform: uppercase; letter-spacing: 1px; }
QLabel#emptyHint { background: #ffffff; border: 1px dashed #a5b4fc; border-radius: 12px;
    padding: 18px 24px; color: #334155; font-size: 14px; }
QLabel#question { background: #4f46e5; color: #ffffff; border-radius: 12px;
    padding: 10px 14px; font-size: 14px; margin-left: 80px; }
QFrame#answerCard { background: #ffffff; border: 1px solid #e2e8f0; border-radius: 12px; }
QFrame#answerCard[error="true"] { border-color: #fca5a5; }
QTextBrowser#answerBody { font-size: 14px; color: #0f172a; background: transparent; }
QFrame#sourceCard { background: #f8fafc; border: 1px solid #e2e8f0; border-left: 4px solid #818cf8;
    border-radius: 8px; }
QFrame#sourceCard:hover { background: #eef2ff; border-color: #a5b4fc; }
QFrame#sourceCard[selected="true"] { background: #eef2ff; border-left-color: #f59e0b; }
QLabel#badge { color: #4338ca; font-weight: 700; }
QLabel#passage { color: #334155; }
QFrame#inputBar { background: #ffffff; border-top: 1px solid #e2e8f0; }
QPushButton { padding: 5px 12px; border-radius: 6px; border: 1px solid #cbd5e1;
    background: #ffffff; }
QPushButton:hover { background: #f1f5f9; }
QPushButton#primary { background: #4f46e5; color: #ffffff; border-color: #4338ca;
    font-weight: 600; }
QPushButton#primary:hover { background: #4338ca; }
QFrame#banner { background: #fef2f2; border-bottom: 1px solid #fca5a5; color: #991b1b; }
QFrame#progressBox { background: #eef2ff; border: 1px solid #c7d2fe; border-radius: 8px; }
QProgressBar { border: 1px solid #c7d2fe; border-radius: 5px; background: #ffffff;
    text-align: center; height: 16px; }
QProgressBar::chunk { background: #6366f1; border-radius: 4px; }
QWidget#readerBar { background: #ffffff; border-bottom: 1px solid #e2e8f0; }
QListWidget#historyList { border: none; background: transparent; }
QListWidget#historyList::item { padding: 6px; border-radius: 6px; }
QListWidget#historyList::item:selected { background: #e0e7ff; color: #1e1b4b; }
"""


def create_app(argv: list[str] | None = None) -> QApplication:
    """The one QApplication, named so QSettings finds the saved window layout."""
    app = QApplication.instance()
    if not isinstance(app, QApplication):
        app = QApplication(argv if argv is not None else sys.argv[:1])
    app.setApplicationName("Quire")
    app.setOrganizationName("Quire")
    app.setApplicationDisplayName("Quire")
    app.setDesktopFileName("quire")
    app.setWindowIcon(QIcon(str(ICON)))
    app.setStyle("Fusion")
    app.setStyleSheet(STYLE)
    return app


LOG_BYTES = 1_000_000  # per file; 3 older ones are kept: quire.log.1 .. .3


class _PrivateLog(RotatingFileHandler):
    """The log file, and each new one after a rotation, readable by the user alone."""

    def _open(self) -> Any:
        return open(self.baseFilename, self.mode, encoding=self.encoding, opener=private_opener)


def setup_logging(data_dir: Path) -> Path:
    """Log to stderr and to a rotating file (0600) in the data folder; returns the file."""
    folder = ensure_data_dir(data_dir) / "logs"
    folder.mkdir(mode=0o700, exist_ok=True)
    path = folder / "quire.log"
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    handlers: list[logging.Handler] = [
        _PrivateLog(path, maxBytes=LOG_BYTES, backupCount=3),
        logging.StreamHandler(),
    ]
    for handler in handlers:
        handler.setFormatter(formatter)
        root.addHandler(handler)
    return path


def install_exception_hook(log_file: Path) -> None:
    """A bug anywhere (a slot, a thread) is logged with its traceback and told to the user
    in one sentence that says where the details are; the app keeps running."""
    log = logging.getLogger("quire")
    shown: set[str] = set()

    def report(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        log.error("unexpected error", exc_info=(kind, exc, tb))
        summary = f"{kind.__name__}: {exc}"[:300]
        app = QApplication.instance()
        if summary in shown or not isinstance(app, QApplication):
            return  # said once per kind of failure, not once per repeat
        shown.add(summary)
        QMessageBox.warning(
            app.activeWindow(),
            "Quire hit a bug",
            f"Something went wrong inside Quire ({summary}). Your documents and "
            f"conversations are safe. The details are in {log_file}.",
        )

    def thread_report(args: threading.ExceptHookArgs) -> None:
        log.error(
            "unexpected error in thread %s",
            args.thread.name if args.thread else "?",
            exc_info=(args.exc_type, args.exc_value or args.exc_type(), args.exc_traceback),
        )

    sys.excepthook = report
    threading.excepthook = thread_report


def run(data_dir: Path | None = None) -> int:
    """Open the main window and run the event loop until it closes."""
    from engine.paths import default_data_dir

    log_file = setup_logging(data_dir or default_data_dir())
    app = create_app()
    install_exception_hook(log_file)
    from ui.main_window import MainWindow

    window = MainWindow(data_dir)
    window.show()
    return app.exec()
