"""Documents and answers never load the files or URLs they name (issue 22, item 1): an
HTML page or Markdown file with `<img src="/dev/zero">` once made the reader read
/dev/zero on the GUI thread (0.7 -> 8.3 GB in 30 s), and so did the same Markdown in an
answer. Peak memory is the child's own VmHWM (ru_maxrss would carry pytest's own peak
across exec). Each check runs the real widgets offscreen in a child process capped at 3 GB of data
memory, so a regression fails the test instead of exhausting the machine."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.gui

CAP = 3 * 1024**3


def run_capped(script: str) -> subprocess.CompletedProcess[str]:
    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_DATA, (CAP, CAP))

    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True, text=True, cwd=REPO, timeout=120, preexec_fn=cap,
        env={**os.environ, "QT_QPA_PLATFORM": "offscreen"},
    )  # fmt: skip


def test_the_reader_opens_a_page_that_names_dev_zero(tmp_path: Path) -> None:
    page = tmp_path / "page.html"
    page.write_text(
        '<html><head><link rel="stylesheet" href="/dev/zero"></head><body><h1>Kettle</h1>'
        '<img src="/dev/zero"><img src="file:///dev/zero"><p>Descale the kettle with vinegar.'
        "</p></body></html>"
    )
    notes = tmp_path / "notes.md"
    notes.write_text("# Notes\n\n![zero](/dev/zero)\n\nDescale the kettle with vinegar.\n")
    done = run_capped(f"""
        import resource, sys
        from PySide6.QtWidgets import QApplication
        app = QApplication([])
        from engine.types import SearchResult
        from ui.pdf_view import ReaderPanel
        panel = ReaderPanel()
        panel.failed.connect(lambda text: print(text, file=sys.stderr))
        panel.resize(800, 600)
        panel.show()
        for path in ({str(page)!r}, {str(notes)!r}):
            source = SearchResult(1, path.rsplit("/", 1)[1], path, None, None, 0.9,
                                  "Descale the kettle with vinegar.")
            assert panel.open_source(source)
            for _ in range(20):
                app.processEvents()
            panel.grab()
            assert "/dev/zero" in " ".join(panel.text_view.refused), panel.text_view.refused
            assert "Descale the kettle" in panel.text_view.toPlainText()
        status = open("/proc/self/status").read().split("VmHWM:")[1]
        print(int(status.split()[0]) // 1024)
    """)
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout.split()[-1]) < 1024  # MB: the whole app process, not 8 GB


def test_an_answer_that_names_dev_zero_loads_nothing() -> None:
    done = run_capped("""
        import resource
        from PySide6.QtWidgets import QApplication
        app = QApplication([])
        from ui.chat import MarkdownView
        view = MarkdownView()
        view.resize(600, 200)
        view.show()
        view.set_markdown("Boil it.\\n\\n![x](/dev/zero) <img src='/dev/zero'>\\n\\nDone.")
        for _ in range(20):
            app.processEvents()
        view.grab()
        assert view.refused and all("/dev/zero" in r for r in view.refused), view.refused
        status = open("/proc/self/status").read().split("VmHWM:")[1]
        print(int(status.split()[0]) // 1024)
    """)
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout.split()[-1]) < 1024
