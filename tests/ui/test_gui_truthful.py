"""Say what is queued and what is true (issue 24): the window's counts, adapter names,
notes and columns agree with the engine, and work waiting behind indexing says so where
the user pressed. Offscreen, real engine, bundled models, real SQLite."""
# ruff: noqa: F811 - the window fixtures are imported from test_gui_app

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("PySide6")

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox

from tests.ui.test_gui_app import app, indexed_dir, open_window, settle, write_notes  # noqa: F401
from tests.ui.test_gui_lab import adapter  # noqa: F401

pytestmark = pytest.mark.gui
TOMATOES = {
    "garden.md": "# Garden\n\nThe tomatoes are watered every morning at seven o'clock.\n",
    "greenhouse.md": "# Greenhouse\n\nIn the greenhouse the tomatoes are watered twice a week.\n",
    "balcony.txt": "The balcony tomatoes are watered in the evening during the summer.\n",
}


def start_long_ingest(window, qtbot, folder: Path) -> None:
    """Index 43 files (long enough to ask things meanwhile); returns once it reports."""
    paths = [str(p) for p in write_notes(folder, extra=40)]
    with qtbot.waitSignal(window.bridge.ingest_progressed, timeout=120_000):
        window.library.add_paths(paths)


def cancel_ingest(window, qtbot) -> None:
    with qtbot.waitSignal(window.bridge.ingest_finished, timeout=120_000):
        window.library.cancel()


def test_the_status_count_rises_as_each_file_is_stored(open_window, qtbot, tmp_path: Path):
    """Before: '0 documents' in the status bar through a whole first indexing run."""
    window = open_window(tmp_path / "data")
    assert window.status.documents == 0
    seen: list[tuple[int, bool, str]] = []
    window.bridge.status_changed.connect(
        lambda s: seen.append((s.documents, window.library.indexing, window.index_label.text()))
    )
    docs = tmp_path / "docs"
    docs.mkdir()
    for name in ("one.txt", "two.txt"):
        (docs / name).write_text(f"The {name} notes: the pump runs at noon.\n")
    with qtbot.waitSignal(window.bridge.ingest_finished, timeout=60_000):
        window.library.add_paths([str(docs / "one.txt"), str(docs / "two.txt")])
    during = [documents for documents, indexing, _label in seen if indexing]
    assert 1 in during and 2 in during, seen  # each file, while the run still went on
    settle(window, qtbot)
    assert window.index_label.text().startswith("Index: 2 documents")


def test_adapter_dialog_and_status_agree_after_back_to_default(
    open_window, qtbot, tmp_path: Path, adapter: Path
):
    """Before: the dialog said 'No adapter' while the status bar said 'grounded answers'."""
    window = open_window(tmp_path / "data")  # the bundled model: the grounding adapter
    grounded = window.adapter_label.text()
    assert "grounded" in grounded
    dialog = window.open_adapter()
    assert dialog.current.text() == grounded
    dialog.path.setText(str(adapter))
    with qtbot.waitSignal(dialog.applied, timeout=30_000):
        qtbot.mouseClick(dialog.apply_button, Qt.MouseButton.LeftButton)
    assert dialog.current.text() == window.adapter_label.text() == "Adapter: style ×1"
    with qtbot.waitSignal(dialog.applied, timeout=30_000) as off:
        qtbot.mouseClick(dialog.off_button, Qt.MouseButton.LeftButton)
    assert off.args[0] is None
    assert dialog.current.text() == window.adapter_label.text() == grounded
    assert dialog.message.text() == "Back to the default."


def test_an_adapter_chosen_while_indexing_says_it_is_queued(
    open_window, qtbot, tmp_path: Path, adapter: Path
):
    """Before: 'Use this adapter' during indexing took effect 8 minutes later, no sign."""
    window = open_window(tmp_path / "data")
    start_long_ingest(window, qtbot, tmp_path / "docs")
    dialog = window.open_adapter()
    dialog.path.setText(str(adapter))
    qtbot.mouseClick(dialog.apply_button, Qt.MouseButton.LeftButton)
    assert dialog.message.text().startswith("Queued: takes effect after indexing"), (
        dialog.message.text()
    )
    window._on_use_adapter(str(adapter))  # the Fine-tune tab's "Use this adapter"
    assert window.finetune.use_state.text().startswith("Queued: takes effect after indexing")
    cancel_ingest(window, qtbot)
    qtbot.waitUntil(lambda: window.finetune.use_state.text().startswith("In use"), timeout=30_000)
    assert dialog.message.text() == "Applied."
    assert window.adapter_label.text() == "Adapter: style ×1"


def test_compare_columns_are_neutral_until_a_question_is_asked(open_window, qtbot, tmp_path: Path):
    """Before: 'Waiting for its turn…' before anything was asked."""
    window = open_window(tmp_path / "data")
    compare = window.compare
    window.tabs.setCurrentWidget(compare)
    settle(window, qtbot)

    def hints() -> dict[str, str]:
        return {mode: column.hint.text() for mode, column in compare.columns.items()}

    assert hints() == dict.fromkeys(compare.columns, "")
    compare.set_modes({"lora": "no adapter", "hybrid": "no adapter"})
    assert hints()["lora"] == "Not available: no adapter" and hints()["base"] == ""
    compare.set_modes({})  # the adapter is back: the columns say nothing again
    assert hints() == dict.fromkeys(compare.columns, "")
    assert all(column.body.toPlainText() == "" for column in compare.columns.values())
    window.grab().save(str(tmp_path / "compare-before-asking.png"))

    start_long_ingest(window, qtbot, tmp_path / "docs")  # asked now, it waits: it says so
    compare.question.setPlainText("When are the tomatoes watered?")
    compare.compare()
    assert all(h.startswith("Waiting for indexing to finish") for h in hints().values())
    assert compare._request is not None
    compare._request.stop()
    cancel_ingest(window, qtbot)
    qtbot.waitUntil(lambda: not compare.busy, timeout=30_000)


def test_a_base_answer_with_no_sources_does_not_point_at_them(qtbot) -> None:
    """Before: a Base answer ended 'The sources above are what your documents actually
    say.' with no source shown."""
    from engine.types import SearchResult
    from ui.chat import BASE_MODEL_NOTE, SOURCES_NOTE, AnswerCard

    bare = AnswerCard("base", BASE_MODEL_NOTE)
    qtbot.addWidget(bare)
    bare.set_sources([], "What is Quire?")
    bare.finish("Quire is an app.", False, {"total_s": 1.0, "tokens": 5})
    assert "tiny base model" in bare.meta.text() and SOURCES_NOTE not in bare.meta.text()
    source = SearchResult(1, "a.md", "/d/a.md", None, None, 0.5, "Quire reads files.")
    cited = AnswerCard("rag", BASE_MODEL_NOTE)
    qtbot.addWidget(cited)
    cited.set_sources([source], "What is Quire?")
    cited.finish("Quire reads files [1].", False, {"total_s": 1.0, "tokens": 5})
    assert SOURCES_NOTE in cited.meta.text()


def test_source_cards_are_best_first_with_and_without_the_grounding_adapter(
    tmp_path: Path, qtbot
) -> None:
    """The grounding adapter reads the best source last; the cards show it first anyway,
    numbered as the model cited them."""
    from engine.core import AnswerFinished, AskOptions, Engine
    from ui.sources import SourceList

    docs = tmp_path / "docs"
    docs.mkdir()
    for name, text in TOMATOES.items():
        (docs / name).write_text(text, encoding="utf-8")
    engine = Engine(tmp_path / "data")
    engine.ingest([docs])
    try:
        order = {}
        for mode in ("rag", "hybrid"):
            events = engine.ask("When are the tomatoes watered?", mode, AskOptions(max_tokens=4))
            answer = next(e.answer for e in events if isinstance(e, AnswerFinished))
            assert len(answer.sources) >= 2
            order[mode] = [s.rank for s in answer.sources]
            cards = SourceList()
            qtbot.addWidget(cards)
            cards.set_sources(answer.sources, answer.question)
            shown = [card.source.rank for card in cards.cards]
            assert shown == sorted(shown) and shown[0] == min(order[mode])
            best = cards.cards[0]
            assert answer.sources[best.number - 1] is best.source  # its number: the model's
            with qtbot.waitSignal(cards.source_opened) as opened:
                cards.open_number(best.number)
            assert opened.args[0] is best.source
    finally:
        engine.close()
    assert order["rag"] == sorted(order["rag"])  # the model reads the best first...
    assert order["hybrid"] == sorted(order["hybrid"], reverse=True)  # ...or, grounded, last


def test_the_result_card_warns_when_answers_after_training_repeat(open_window, tmp_path: Path):
    window = open_window(tmp_path / "data")
    view = window.finetune
    window.tabs.setCurrentWidget(view)
    sample = {"prompt": "Name a colour.", "expected": "ZEBRA-7: red.", "before": "Red."}
    payload = {
        "steps": 40, "examples": 8, "seconds": 60.0, "tokens_per_s": 900.0, "device": "cpu",
        "train_loss": 0.1, "val_loss": 0.2, "adapter": "/m/adapters/zebra.gguf",
        "samples": [
            {**sample, "after": "ZEBRA-7: red."},
            {**sample, "after": "ZEBRA-7: red. ZEBRA-7: red. ZEBRA-7: red. ZEBRA-7: red."},
        ],
    }  # fmt: skip
    view.show_result(payload)
    assert view.warning.isVisibleTo(window)
    assert "repeat themselves in 1 of 2 samples" in view.warning.text()
    assert "⟲ repeats" in view.result.toPlainText().split("Prompt:")[2]
    payload["samples"] = [{**sample, "after": "ZEBRA-7: red."}]
    view.show_result(payload)
    assert not view.warning.isVisibleTo(window) and "⟲" not in view.result.toPlainText()


def test_training_under_an_existing_name_asks_first(
    open_window, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    window = open_window(tmp_path / "data")
    view = window.finetune
    existing = view.models_dir / "adapters" / "gui-taken.gguf"
    existing.parent.mkdir(parents=True, exist_ok=True)
    existing.write_bytes(b"GGUF")
    asked: list[str] = []
    answers = [QMessageBox.StandardButton.No, QMessageBox.StandardButton.Yes]

    def question(_parent, _title, text, *_args):
        asked.append(text)
        return answers.pop(0)

    monkeypatch.setattr(QMessageBox, "question", question)
    runs: list[list[str]] = []
    monkeypatch.setattr(view, "_run", lambda args, done: runs.append(args))
    try:
        view.path.setText(str(tmp_path / "examples.jsonl"))
        view.name.setText("gui-taken")
        view.start()
        assert len(asked) == 1 and str(existing) in asked[0] and runs == []
        assert view.status.text().startswith("Not started")
        view.start()  # Yes: it runs, and the child may replace the file
        assert len(asked) == 2 and runs and "--overwrite" in runs[0]
        view.name.setText("gui-free-name")
        view.start()  # no adapter of that name: no question
        assert len(asked) == 2 and len(runs) == 2
    finally:
        existing.unlink()
