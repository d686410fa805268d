"""The window itself: collections through the toolbar, remembered geometry, preloading."""
# ruff: noqa: F811 - the window fixtures are imported from test_gui_app

from __future__ import annotations

import pytest

pytest.importorskip("PySide6")

from PySide6.QtCore import QEvent
from PySide6.QtWidgets import QApplication, QInputDialog, QMessageBox

from tests.ui.test_gui_app import app, indexed_dir, open_window  # noqa: F401

pytestmark = pytest.mark.gui


def collection_names(window) -> list[str]:
    return [window.collections.itemData(i) for i in range(window.collections.count())]


def test_collections_are_created_renamed_and_deleted(open_window, qtbot, tmp_path, monkeypatch):
    window = open_window(tmp_path / "data")
    status = window.bridge.status_changed
    answers = iter([("Recipes", True), ("Cooking", True)])
    monkeypatch.setattr(QInputDialog, "getText", lambda *a, **k: next(answers))
    with qtbot.waitSignal(status, timeout=30_000):
        window.new_collection()
    qtbot.waitUntil(lambda: "Recipes" in collection_names(window), timeout=30_000)
    assert window.windowTitle() == "Recipes"

    # the list is refilled from the status, which follows the settings
    with qtbot.waitSignals([window.bridge.settings_applied, status], timeout=30_000):
        window.rename_collection()
    qtbot.waitUntil(lambda: window.windowTitle() == "Cooking", timeout=30_000)
    qtbot.waitUntil(lambda: "Recipes" not in collection_names(window), timeout=30_000)
    assert "Cooking" in collection_names(window)

    yes = QMessageBox.StandardButton.Yes
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: yes)
    with qtbot.waitSignals([window.bridge.settings_applied, status], timeout=30_000):
        window.delete_collection()
    qtbot.waitUntil(lambda: window.windowTitle() == "default", timeout=30_000)
    qtbot.waitUntil(lambda: "Cooking" not in collection_names(window), timeout=30_000)


def test_window_geometry_and_tab_survive_a_restart(open_window, qtbot, tmp_path):
    window = open_window(tmp_path / "data")
    size = (window.minimumSizeHint().width(), 640)  # the offscreen screen is 800 px high
    window.resize(*size)
    window.tabs.setCurrentWidget(window.compare)
    window.close()
    again = open_window(tmp_path / "data")
    assert (again.width(), again.height()) == size
    assert again.tabs.currentWidget() is again.compare


def test_models_preload_after_the_first_status(open_window, qtbot, tmp_path):
    window = open_window(tmp_path / "data", preload=True)

    def loaded() -> bool:
        engine = window.bridge.runner.engine
        return engine is not None and engine.llms.loaded() and engine.parts.embedder_loaded

    qtbot.waitUntil(loaded, timeout=60_000)
    assert not window.banner.isVisibleTo(window)


def test_a_long_file_name_is_elided_in_the_reader(open_window, tmp_path):
    from engine.types import SearchResult

    window = open_window(tmp_path / "data")
    name = "a-very-long-file-name-" * 8 + ".md"
    path = tmp_path / name[:200]
    path.write_text("Short text about kites.\n", encoding="utf-8")
    source = SearchResult(1, path.name, str(path), None, None, 1.0, "kites", 1, "default")
    window.resize(900, 700)
    window.open_source(source)
    title = window.reader.title
    assert title.text() != path.name and "…" in title.text()
    assert path.name in title.toolTip()


def test_menu_bar_has_file_edit_view_help_with_their_shortcuts(open_window, qtbot, tmp_path):
    window = open_window(tmp_path / "data")
    menus = {a.text().replace("&", ""): a.menu() for a in window.menuBar().actions()}
    assert list(menus) == ["File", "Edit", "View", "Help"]
    keys = {
        a.text().replace("&", ""): a.shortcut().toString()
        for menu in menus.values()
        for a in menu.actions()
        if not a.isSeparator()
    }
    assert keys["Quit"] == "Ctrl+Q" and keys["Add documents…"] == "Ctrl+O"
    assert keys["Settings…"] == "Ctrl+," and keys["Find in documents"] == "Ctrl+F"
    assert "About Quire" in keys and keys["Keyboard shortcuts"] == "F1"
    view = [a for a in menus["View"].actions() if a.shortcut().toString().startswith("Ctrl+")]
    view[2].trigger()  # Ctrl+3: the Search page
    assert window.tabs.currentWidget() is window.search
    sidebar = next(a for a in menus["View"].actions() if "Conversations" in a.text())
    sidebar.trigger()
    assert not window.history_view.isVisible()
    sidebar.trigger()
    assert window.history_view.isVisible()


def test_the_welcome_card_says_what_is_indexed(open_window, indexed_dir, qtbot, tmp_path):
    import shutil

    empty = open_window(tmp_path / "empty")
    qtbot.waitUntil(lambda: "Nothing is indexed" in empty.chat.empty.text(), timeout=5_000)
    assert "Gemma 3 270M" in empty.chat.empty.text()
    data_dir = tmp_path / "data"
    shutil.copytree(indexed_dir, data_dir)
    full = open_window(data_dir)
    qtbot.waitUntil(lambda: "3 documents" in full.chat.empty.text(), timeout=5_000)
    assert "indexed in “default”" in full.chat.empty.text()


def test_the_reader_marks_every_line_of_a_pdf_passage_and_zooms(open_window, qtbot, tmp_path):
    from PySide6.QtCore import QPoint, QPointF, Qt
    from PySide6.QtGui import QWheelEvent

    from engine.types import SearchResult
    from tests.factory import write_pdf

    filler = [f"Filler line {i} of the first page." for i in range(30)]
    cited = [
        "The pump must be primed before the first start.",
        "Open the bleed screw until water comes out,",
        "then close it and run the pump for two minutes.",
    ]
    pdf = write_pdf(tmp_path / "pump-manual.pdf", [filler, filler[:20] + cited + filler[:5]])
    window = open_window(tmp_path / "data")
    window.resize(1700, 900)  # room for the tabs' minimum width (777 px) and the reader
    source = SearchResult(1, pdf.name, str(pdf), 2, None, 0.9, " ".join(cited), 1, "default")
    QApplication.processEvents()
    sidebar = window.splitter.sizes()[0]
    window.open_source(source)
    reader = window.reader
    qtbot.waitUntil(lambda: bool(reader.pdf_view.marks.get(1)), timeout=5_000)
    assert window.splitter.sizes()[0] == sidebar  # the reader takes from the tabs only
    boxes = [p.boundingRect() for p in reader.pdf_view.marks[1]]
    lines = {round(b.top()) for b in boxes}
    assert len(lines) == 3  # all three lines of the passage, not its first words
    assert reader.windowTitle() == "pump-manual.pdf"
    assert reader.current_page() == 1
    qtbot.waitUntil(lambda: reader.zoom_label.text().endswith("(fit)"), timeout=5_000)
    fit = reader.zoom()
    qtbot.mouseClick(reader.zoom_in_button, Qt.MouseButton.LeftButton)
    assert reader.zoom() == pytest.approx(fit * 1.2, rel=0.02)
    assert reader.current_page() == 1  # zooming keeps the page
    wheel = QWheelEvent(
        QPointF(50, 50), QPointF(50, 50), QPoint(0, 0), QPoint(0, -120),
        Qt.MouseButton.NoButton, Qt.KeyboardModifier.ControlModifier,
        Qt.ScrollPhase.NoScrollPhase, False,
    )  # fmt: skip
    QApplication.sendEvent(reader.pdf_view.viewport(), wheel)
    assert reader.zoom() == pytest.approx(fit, rel=0.02)
    reader.fit_width()
    qtbot.waitUntil(lambda: reader.zoom_label.text().endswith("(fit)"), timeout=5_000)
    image = reader.pdf_view.viewport().grab().toImage()
    top = reader.pdf_view.mark_top(1) - reader.pdf_view.verticalScrollBar().value()
    left = (
        reader.pdf_view.page_rects()[1].left() + 60 - reader.pdf_view.horizontalScrollBar().value()
    )
    color = image.pixelColor(int(left), int(top) + 4)
    assert color.blue() < color.red() - 30  # painted amber over the white page
    window.close_reader()
    QApplication.processEvents()
    assert reader.isHidden() and abs(window.splitter.sizes()[0] - sidebar) <= 2  # a handle


def test_models_window_finds_ggufs_in_place_and_downloads_only_on_click(
    open_window, qtbot, tmp_path, monkeypatch
):
    import threading

    from PySide6.QtCore import Qt

    from models import hub
    from models.catalog import CURATED
    from tests.models.test_registry import write_gguf
    from ui.models_dialog import ModelsDialog

    home = tmp_path / "home"
    studio = home / ".lmstudio" / "models" / "someone" / "tiny"
    studio.mkdir(parents=True)
    write_gguf(studio / "tiny-q4.gguf")
    write_gguf(studio / "style-lora.gguf", adapter=True)  # an adapter is not offered
    calls: list[tuple] = []
    release = threading.Event()

    def fake_download(repo, filename, models_dir, progress=None, revision=None):
        calls.append((repo, filename))
        for done in range(0, 50_000_000, 100_000):  # until Cancel raises from progress
            progress(done, 50_000_000)  # (up to 25 s: a loaded machine clicks late)
            release.wait(0.05)
        raise AssertionError("never cancelled")

    monkeypatch.setattr(hub, "download", fake_download)
    window = open_window(tmp_path / "data")
    dialog = ModelsDialog(window.bridge.runner, window.data_dir / "models", None, 45.0, window,
                          home=home)  # fmt: skip
    qtbot.addWidget(dialog)
    rows = [dialog.local.topLevelItem(i) for i in range(dialog.local.topLevelItemCount())]
    assert [r.text(1) for r in rows if "tiny-q4" in r.text(0)] == ["LM Studio"]
    assert not any("style-lora" in r.text(0) for r in rows)
    assert dialog.offers.topLevelItemCount() == len(CURATED)
    assert all("tokens/s" in dialog.offers.topLevelItem(i).text(2) for i in range(len(CURATED)))
    assert calls == []  # opening the window downloads nothing
    chosen = []
    dialog.model_chosen.connect(chosen.append)
    dialog.local.setCurrentItem(next(r for r in rows if "tiny-q4" in r.text(0)))
    qtbot.mouseClick(dialog.use_button, Qt.MouseButton.LeftButton)
    assert chosen == [str(studio / "tiny-q4.gguf")]
    dialog.offers.setCurrentItem(dialog.offers.topLevelItem(0))
    qtbot.mouseClick(dialog.download_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: dialog.progress.value() > 0, timeout=5_000)
    assert calls == [(CURATED[0].repo, CURATED[0].filename)]
    qtbot.mouseClick(dialog.cancel_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: dialog.status.text().startswith("Stopped."), timeout=5_000)
    assert dialog.download_button.isEnabled()


def test_the_window_reads_the_index_again_when_it_comes_back(open_window, qtbot, tmp_path):
    """A CLI ingest into the same data folder while the app is open: the status bar's
    counts were stale until restart; coming back to the window reads them again."""
    from engine.core import Engine

    window = open_window(tmp_path / "data")
    assert window.status.documents == 0
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "a.md").write_text("# A\n\nSomething to index.\n")
    other = Engine(tmp_path / "data")  # another process, as far as the window knows
    other.ingest([notes])
    other.close()
    window.changeEvent(QEvent(QEvent.Type.ActivationChange))  # a refresh may be in flight
    qtbot.waitUntil(lambda: window.status.documents == 1, timeout=30_000)
    assert "1 documents" in window.index_label.text()


def test_the_window_shows_the_engines_settings_and_reads_none_itself(
    open_window, qtbot, tmp_path, monkeypatch
):
    """One owner: the engine reads settings.json, once; the window shows its snapshot
    (collection, watched folders) and changes them through the bridge."""
    import sys

    from engine.settings import Settings

    data, notes = tmp_path / "data", tmp_path / "notes"
    data.mkdir()
    notes.mkdir()
    Settings(collection="work", watched_folders=[str(notes)]).save(data)
    readers = []  # the module of each caller of Settings.load
    load = Settings.load.__func__

    def counted(cls, folder):
        readers.append(sys._getframe(1).f_globals["__name__"])
        return load(cls, folder)

    monkeypatch.setattr(Settings, "load", classmethod(counted))
    window = open_window(data)
    qtbot.waitUntil(lambda: window.windowTitle() == "work", timeout=10_000)
    assert window.library.watched_folders() == [str(notes)]
    assert window.watcher.folders == [str(notes.resolve())]
    assert readers.count("engine.core") == 1 and "ui.main_window" not in readers, readers
    with qtbot.waitSignal(window.bridge.settings_applied, timeout=30_000):
        window._on_watched_list_changed([])
    assert load(Settings, data).watched_folders is None and window.settings.watched_folders is None
    assert readers.count("engine.core") == 1, readers
