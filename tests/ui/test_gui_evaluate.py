"""The Evaluate tab, offscreen: runs on the window's worker Engine, table, stop, errors."""
# ruff: noqa: F811 - fixtures are imported from other test modules

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from engine.eval.evaluation import EvalReport
from tests.engine.test_evaluation import library  # noqa: F401 - the indexed library fixture
from tests.ui.test_gui_app import app, open_window  # noqa: F401

pytestmark = pytest.mark.gui


def evaluate_tab(open_window, data: Path, tmp_path: Path):
    data_dir = tmp_path / "data"
    shutil.copytree(data, data_dir)
    window = open_window(data_dir)
    window.tabs.setCurrentWidget(window.evaluate)
    return window, window.evaluate


def test_a_retrieval_only_run_fills_the_table_and_chart(
    open_window, qtbot, library, tmp_path
) -> None:
    data, questions = library
    window, page = evaluate_tab(open_window, data, tmp_path)
    page.path.setText(str(questions))
    page.retrieval_only.setChecked(True)
    with qtbot.waitSignal(page.evaluation_finished, timeout=120_000) as finished:
        qtbot.mouseClick(page.run_button, Qt.MouseButton.LeftButton)
    report: EvalReport = finished.args[0]
    assert report.retrieval["hybrid"]["hit_at_1"] == 1.0
    labels = [page.table.verticalHeaderItem(r).text() for r in range(page.table.rowCount())]
    assert labels == [  # the modes default to the app's own (hybrid: the grounding adapter)
        "search: hybrid", "search: vector", "search: keyword", "search: reader", "mode: hybrid"
    ]  # fmt: skip
    assert report.retrieval["reader"]["n"] == report.retrieval["hybrid"]["n"]
    assert page.table.item(0, 1).text() == "1.00"  # hybrid hit@1
    assert page.chart.rows and page.progress.value() == page.progress.maximum()
    assert page.run_button.isEnabled() and not page.stop_button.isEnabled()
    assert not window.bridge.runner.engine.llms.loaded()  # no model, and no second Engine


def test_stop_ends_the_run_and_says_it_can_resume(open_window, qtbot, library, tmp_path) -> None:
    data, questions = library
    _, page = evaluate_tab(open_window, data, tmp_path)
    page.path.setText(str(questions))
    page.mode_boxes["rag"].setChecked(False)
    page.max_tokens.setValue(8)
    with qtbot.waitSignal(page.evaluation_progressed, timeout=60_000):
        page.start()
    with qtbot.waitSignal(page.evaluation_finished, timeout=120_000) as finished:
        qtbot.mouseClick(page.stop_button, Qt.MouseButton.LeftButton)
    assert not finished.args[0].complete
    assert "press Run to resume" in page.status.text()
    assert page.run_button.isEnabled()


def test_stop_cuts_the_answer_being_generated(open_window, qtbot, library, tmp_path) -> None:
    """Stop does not wait for the current answer: the generator stops mid-answer."""
    data, questions = library
    window, page = evaluate_tab(open_window, data, tmp_path)
    page.path.setText(str(questions))
    page.mode_boxes["hybrid"].setChecked(False)
    page.mode_boxes["base"].setChecked(True)
    page.max_tokens.setValue(400)  # the base model rambles on: long answers
    seen = []
    page.evaluation_progressed.connect(seen.append)
    page.start()

    def generating() -> bool:
        engine = window.bridge.runner.engine
        generator = engine.llms.base if engine is not None else None
        return generator is not None and generator.last_timings.tokens >= 5

    qtbot.waitUntil(generating, timeout=180_000)
    generator = window.bridge.runner.engine.llms.base
    with qtbot.waitSignal(page.evaluation_finished, timeout=60_000) as finished:
        qtbot.mouseClick(page.stop_button, Qt.MouseButton.LeftButton)
    assert 5 <= generator.last_timings.tokens < 400  # cut, not run to its end
    report = finished.args[0]
    assert not report.complete
    fractions = [p.fraction for p in seen]
    assert fractions == sorted(fractions) and 0 < fractions[-1] < 1
    assert "press Run to resume" in page.status.text()


def test_a_broken_question_file_is_reported_on_the_page(open_window, qtbot, tmp_path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a"}\n', encoding="utf-8")
    window = open_window(tmp_path / "data")
    page = window.evaluate
    page.path.setText(str(bad))
    with qtbot.waitSignal(page.evaluation_failed, timeout=30_000) as failed:
        page.start()
    assert "bad.jsonl:1: 'question' must be a non-empty string" in failed.args[0]
    assert page.run_button.isEnabled()
    assert page.error.isVisibleTo(page) and "bad.jsonl:1" in page.error.text()  # in red, on top


def test_the_last_file_and_modes_are_remembered(open_window, qtbot, tmp_path) -> None:
    questions = tmp_path / "q.jsonl"
    questions.write_text('{"question": "no id needed?"}\n', encoding="utf-8")
    window = open_window(tmp_path / "data")
    page = window.evaluate
    page.path.setText(str(questions))
    page.mode_boxes["base"].setChecked(True)
    page.retrieval_only.setChecked(True)
    with qtbot.waitSignal(page.evaluation_finished, timeout=120_000):
        page.start()
    chosen = [m for m, box in page.mode_boxes.items() if box.isChecked()]
    window.close()
    again = open_window(tmp_path / "data").evaluate
    assert again.path.text() == str(questions)
    assert [m for m, box in again.mode_boxes.items() if box.isChecked()] == chosen


@pytest.mark.parametrize("width", [380, 640, 1100])
def test_chart_labels_never_overlap(qtbot, width: int) -> None:
    from ui.evaluate import CHART_METRICS, BarChart

    chart = BarChart()
    qtbot.addWidget(chart)
    names = ["search: vector", "search: keyword", "search: hybrid", "mode: hybrid", "mode: rag",
             "mode: lora", "mode: base"]  # fmt: skip
    values = [0.62, 0.65, 0.71, 0.19, 0.25, 0.01, 1.0]
    rows = [(n, {key: v for _, key in CHART_METRICS}) for n, v in zip(names, values, strict=True)]
    chart.set_rows(rows)
    chart.resize(width, 300)
    chart.grab()  # paints
    boxes = chart.drawn_text
    assert len(boxes) >= len(names) + len(CHART_METRICS)  # legend and group labels at least
    overlaps = [(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1 :] if a.intersects(b)]
    assert not overlaps, overlaps[:3]
    assert all(chart.rect().toRectF().contains(b) for b in boxes)
