"""The desktop app, offscreen, through signals: real engine, bundled models, real SQLite."""

from __future__ import annotations

import itertools
import shutil
import time
from pathlib import Path

import pytest

pytest.importorskip("PySide6")

from PySide6.QtCore import QSettings, Qt, QTimer
from PySide6.QtWidgets import QApplication

from tests.fakes import FakeGenerator

pytestmark = pytest.mark.gui
# The longest the window may stand still while an answer runs (a 10 ms timer measures it).
STALL_S = 0.5

NOTES = {
    "garden.md": "# Garden\n\n## Tomatoes\nTomatoes are watered every morning at seven o'clock.\n",
    "bikes.txt": "The blue bicycle has a broken chain; the red one needs new brake pads.\n",
    "boats.md": "# Boats\n\nThe sailing boat is moored at pier four from May to October.\n",
}


def write_notes(folder: Path, extra: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in NOTES.items():
        (folder / name).write_text(text, encoding="utf-8")
        paths.append(folder / name)
    for i in range(extra):  # filler, to make an ingest long enough to cancel
        body = " ".join(
            f"Filler sentence {j} about topic {i} and its many details." for j in range(300)
        )
        (folder / f"filler-{i:03}.txt").write_text(body, encoding="utf-8")
        paths.append(folder / f"filler-{i:03}.txt")
    return paths


@pytest.fixture(scope="module")
def indexed_dir(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Path:
    """A data dir with the notes indexed once for the module, headless."""
    from engine.core import Engine

    root = tmp_path_factory.mktemp("gui")
    engine = Engine(root / "data")
    engine.ingest(write_notes(root / "notes"))
    engine.close()
    return root / "data"


@pytest.fixture
def app(qapp: QApplication, tmp_path: Path):
    from ui.app import create_app

    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(tmp_path / "qs"))
    return create_app()


@pytest.fixture
def open_window(app, qtbot):
    """Open a MainWindow on a data dir; wait until the worker reports the index status."""

    def open_(data_dir: Path, preload: bool = False):
        from ui.main_window import MainWindow

        window = MainWindow(data_dir, preload=preload)
        qtbot.addWidget(window)
        with qtbot.waitSignal(window.bridge.status_changed, timeout=30_000):
            window.show()
        window.activateWindow()  # shortcuts (Ctrl+Enter, Esc, Ctrl+F) need the active window
        qtbot.waitUntil(window.isActiveWindow, timeout=5_000)
        return window

    return open_


def settle(window, qtbot) -> None:
    """Wait until the engine thread has run everything sent before now and the window has
    run every callback those requests posted (a no-op request's `done` comes after them):
    what has not happened by then will not, so a 'nothing happened' check can follow."""
    done: list[object] = []
    window.bridge.runner.submit(lambda _engine, _request: None, done.append)
    qtbot.waitUntil(lambda: bool(done), timeout=30_000)


@pytest.mark.parametrize("llm", ["fake", pytest.param("gemma", marks=pytest.mark.slow)])
def test_ask_streams_keeps_gui_live_and_survives_restart(
    llm, open_window, indexed_dir, qtbot, tmp_path
):
    data_dir = tmp_path / "data"
    shutil.copytree(indexed_dir, data_dir)
    window = open_window(data_dir)
    assert window.windowTitle() == "default"
    tokens: list[str] = []
    window.chat.token_shown.connect(tokens.append)
    ticks = [time.perf_counter()]
    probe = QTimer(interval=10)
    probe.timeout.connect(lambda: ticks.append(time.perf_counter()))
    probe.start()
    window.chat.max_tokens = 16
    window.chat.input.setPlainText("When are the tomatoes watered?")
    with qtbot.waitSignal(window.chat.answer_finished, timeout=120_000) as finished:
        qtbot.keyClick(window.chat.input, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    ticks.append(time.perf_counter())
    probe.stop()
    answer = finished.args[0]
    assert tokens and "".join(tokens).strip() == answer.answer
    # Every token shown as it came (the first few arrive together: an answer's first words
    # are held until they cannot be a copy of the prompt, engine/answer/echo.py).
    assert answer.timings.tokens - 3 <= len(tokens) <= answer.timings.tokens
    assert answer.timings.first_token_s > 0
    # The GUI thread kept running timers while the worker searched and generated: no
    # stall (loading the model or embedding in the GUI thread would be one) over STALL_S.
    stall = max(later - earlier for earlier, later in itertools.pairwise(ticks))
    assert stall < STALL_S, f"the window stood still for {stall:.2f} s during the answer"
    fake = isinstance(window.bridge.runner.engine.llms.last, FakeGenerator)
    assert fake == (llm == "fake")  # the lane decides which model answers
    assert answer.sources[0].document == "garden.md"
    card = window.chat.items.itemAt(2).widget()  # hint, question, answer card, stretch
    assert card.sources.cards[0].source.document == "garden.md"
    assert not window.chat.busy and window.chat.send_button.isVisibleTo(window)

    # Clicking a source opens the document at the passage (and the reader's quote in it).
    qtbot.mouseClick(card.sources.cards[0], Qt.MouseButton.LeftButton)
    assert window.reader.isVisible()
    assert window.reader.stack.currentWidget() is window.reader.text_view
    passage, *quoted = window.reader.text_view.extraSelections()
    assert "watered" in passage.cursor.selectedText()
    assert len(quoted) == (answer.quote is not None and answer.quote.source == 1)

    window.close()
    again = open_window(data_dir)
    titles = [
        again.history_view.list.item(i).text() for i in range(again.history_view.list.count())
    ]
    assert titles and titles[0].startswith("When are the tomatoes watered?")
    again.history_view.list.setCurrentRow(0)
    again.history_view._on_item_activated(again.history_view.list.item(0))
    restored = again.chat.items.itemAt(2).widget()
    assert restored.sources.cards[0].source.document == "garden.md"
    assert restored.text == answer.answer


def test_escape_stops_an_answer(open_window, indexed_dir, qtbot, tmp_path):
    data_dir = tmp_path / "data"
    shutil.copytree(indexed_dir, data_dir)
    window = open_window(data_dir)
    window.chat.max_tokens = 400
    with qtbot.waitSignal(window.chat.token_shown, timeout=120_000):
        window.chat.ask("Tell me everything about boats.", "base")
    assert window.chat.stop_button.isVisibleTo(window)
    with qtbot.waitSignal(window.chat.answer_finished, timeout=30_000) as finished:
        qtbot.keyClick(window.chat.input, Qt.Key.Key_Escape)
    answer = finished.args[0]
    assert answer.cancelled
    assert answer.timings.tokens < 400
    assert not window.chat.busy


def test_add_documents_shows_progress_and_cancel_stops(open_window, qtbot, tmp_path):
    window = open_window(tmp_path / "data")
    worker = window.bridge
    library = window.library
    window.tabs.setCurrentWidget(library)
    paths = [str(p) for p in write_notes(tmp_path / "docs", extra=40)]
    with qtbot.waitSignal(worker.ingest_progressed, timeout=120_000):
        library.add_paths(paths)
    assert library.progress_box.isVisibleTo(window)
    qtbot.waitUntil(lambda: "of 43 files" in library.progress_label.text(), timeout=5_000)
    # Asked while indexing runs: both say why they wait, then are answered after it.
    window.search.query.setText("boats")
    window.search.run_search()
    assert window.search.summary.text().startswith("Waiting for indexing to finish (")
    window.chat.ask("Where is the sailing boat moored?", "rag")
    card = window.chat._card
    assert "Waiting for indexing to finish" in card.body.toPlainText()
    qtbot.waitUntil(lambda: "files" in library.progress_label.text(), timeout=5_000)
    with qtbot.waitSignal(worker.ingest_finished, timeout=120_000) as finished:
        qtbot.mouseClick(library.cancel_button, Qt.MouseButton.LeftButton)
    report = finished.args[0]
    assert report.cancelled
    assert len(report.indexed) < 43
    kept = {Path(p).name for p in report.indexed}  # committed as they finished
    qtbot.waitUntil(lambda: not window.chat.busy, timeout=90_000)  # answered after it
    assert "Waiting for indexing" not in card.body.toPlainText()
    qtbot.waitUntil(lambda: not window.search.summary.text().startswith("Waiting"), timeout=10_000)
    assert window.bridge.waiting_note() == ""
    assert not library.progress_box.isVisibleTo(window)
    assert library.summary.text().startswith("Stopped:")

    # What the cancelled run finished is in the index; adding again finishes the rest.
    qtbot.waitUntil(lambda: library.tree.topLevelItemCount() >= len(kept), timeout=10_000)
    with qtbot.waitSignal(worker.ingest_finished, timeout=300_000) as finished:
        library.add_paths(paths[:3])
    assert not finished.args[0].cancelled
    qtbot.waitUntil(lambda: library.tree.topLevelItemCount() >= 3, timeout=10_000)
    statuses = {
        library.tree.topLevelItem(i).text(1) for i in range(library.tree.topLevelItemCount())
    }
    assert statuses <= {"indexed", "unchanged"}


def test_search_without_the_model(open_window, indexed_dir, qtbot, tmp_path):
    data_dir = tmp_path / "data"
    shutil.copytree(indexed_dir, data_dir)
    window = open_window(data_dir)
    qtbot.keyClick(window, Qt.Key.Key_F, Qt.KeyboardModifier.ControlModifier)
    assert window.tabs.currentWidget() is window.search
    with qtbot.waitSignal(window.search.searched, timeout=30_000):
        window.search.query.setText("bicycle brakes")
    cards = window.search.results.cards
    assert cards and cards[0].source.document == "bikes.txt"
    assert not window.bridge.runner.engine.llms.loaded()  # no model was loaded


def test_a_model_that_will_not_load_is_reported(open_window, qtbot, tmp_path):
    window = open_window(tmp_path / "data")
    bogus = tmp_path / "not-a-model.gguf"
    bogus.write_bytes(b"this is not a model")
    settings = window.settings
    settings.model_path = str(bogus)
    window.bridge.apply_settings(settings, load_model=True)
    qtbot.waitUntil(lambda: window.banner.isVisibleTo(window), timeout=30_000)
    text = window.banner.label.text()
    assert "Could not apply the settings" in text, text
    assert "not-a-model.gguf is not a GGUF file" in text, text
    qtbot.waitUntil(lambda: window.settings.model_path is None, timeout=10_000)


def use_another_model(data_dir: Path, llm_path: Path) -> None:
    """Settings naming a model that is not the bundled one (so it has no default adapter)."""
    from engine.settings import Settings

    other = data_dir.parent / "another-model.gguf"
    if not other.exists():
        other.symlink_to(llm_path)
    Settings(model_path=str(other)).save(data_dir)


def test_bundled_model_starts_in_hybrid_with_grounded_answers(open_window, qtbot, tmp_path):
    window = open_window(tmp_path / "data")
    qtbot.waitUntil(lambda: window.chat.mode.currentData() == "hybrid", timeout=10_000)
    assert window.chat.mode.currentText() == "Hybrid · grounded answers"
    assert "grounded answers" in window.adapter_label.text()
    assert window.compare.columns["hybrid"].title.text() == "Hybrid · grounded answers"


def test_lora_modes_wait_for_an_adapter(open_window, tmp_path, llm_path):
    use_another_model(tmp_path / "data", llm_path)
    window = open_window(tmp_path / "data")
    model = window.chat.mode.model()
    assert not model.item(2).isEnabled() and not model.item(3).isEnabled()
    assert "LoRA adapter" in model.item(2).toolTip()
    window.chat.set_lora_available(True)
    assert model.item(3).isEnabled()


def test_citations_become_links_and_words_are_highlighted() -> None:
    from ui.chat import link_citations
    from ui.sources import highlight

    assert link_citations("Nightly [1][2], see [docs](http://x)") == (
        "Nightly [[1]](cite:1)[[2]](cite:2), see [docs](http://x)"
    )
    marked = highlight("Backups run <nightly> at two.", "when do backups run")
    assert "&lt;nightly&gt;" in marked
    assert marked.count("<span") == 2  # "Backups" and "run"; "when"/"do" are not marked


def test_watched_folder_is_reindexed_without_asking(open_window, qtbot, tmp_path):
    window = open_window(tmp_path / "data")
    folder = tmp_path / "watched"
    write_notes(folder)
    with qtbot.waitSignal(window.bridge.ingest_finished, timeout=120_000):
        window.library.set_watched([str(folder)])
        window.library.watched_changed.emit([str(folder)])
        window.library.add_paths([str(folder)])
    (folder / "kites.md").write_text("# Kites\n\nThe red kite flies best in autumn wind.\n")
    (folder / "bikes.txt").unlink()
    with qtbot.waitSignal(window.bridge.ingest_finished, timeout=120_000) as finished:
        pass  # the watcher's debounce fires on its own
    report = finished.args[0]
    assert [Path(p).name for p in report.indexed] == ["kites.md"]
    assert [Path(p).name for p in report.removed] == ["bikes.txt"]
    assert saved_watched_folders(window) == [str(folder)]


def saved_watched_folders(window) -> list[str]:
    from engine.settings import Settings

    return Settings.load(window.data_dir).watched_folders or []


def test_an_answer_becomes_a_test_question_for_evaluate(
    open_window, indexed_dir, qtbot, tmp_path, monkeypatch
):
    import json

    from PySide6.QtWidgets import QInputDialog

    from engine.eval.testset import test_set_path

    data_dir = tmp_path / "data"
    shutil.copytree(indexed_dir, data_dir)
    window = open_window(data_dir)
    window.chat.max_tokens = 8
    with qtbot.waitSignal(window.chat.answer_finished, timeout=120_000):
        window.chat.ask("When are the tomatoes watered?", "rag")
    card = window.chat.items.itemAt(window.chat.items.count() - 2).widget()
    bar = card.feedback
    assert bar is not None, "no feedback bar"
    assert not bar.test.isHidden()  # offered: a question, sources and a data dir
    picked = []

    def pick(parent, title, label, items, current, editable):
        picked.extend(items)
        return next(i for i in items if "garden.md" in i), True

    monkeypatch.setattr(QInputDialog, "getItem", pick)
    qtbot.mouseClick(bar.test, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "mine-001" in bar.state.text(), timeout=10_000)  # the history lane
    assert picked[0].startswith("[1] ")
    rows = [json.loads(line) for line in test_set_path(data_dir).read_text().splitlines()]
    assert rows == [
        {
            "id": "mine-001",
            "question": "When are the tomatoes watered?",
            "doc": "garden.md",
            "section": rows[0]["section"],
        }
    ]
    assert "mine-001" in bar.state.text()
    # Evaluate runs it with no file picked: the test set is the default.
    page = window.evaluate
    window.tabs.setCurrentWidget(page)
    page.retrieval_only.setChecked(True)
    with qtbot.waitSignal(page.evaluation_finished, timeout=120_000) as finished:
        page.start()
    assert finished.args[0].retrieval["hybrid"]["hit_at_1"] == 1.0
