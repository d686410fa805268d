"""The Evaluate page, offscreen: run through signals, see the table, stop, errors."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from engine.evaluation import EvalConfig, EvalProgress, EvalReport, ProgressFn
from tests.test_evaluation import library  # noqa: F401 - the indexed library fixture
from ui.evaluate import EvaluatePage, engine_runner

pytestmark = pytest.mark.gui


def make_page(qtbot, runner) -> EvaluatePage:
    page = EvaluatePage(runner)
    qtbot.addWidget(page)
    page.resize(1100, 720)
    page.show()
    return page


def test_a_retrieval_only_run_fills_the_table_and_chart(qtbot, library) -> None:  # noqa: F811
    data, questions = library
    page = make_page(qtbot, engine_runner(data))
    page.path.setText(str(questions))
    page.retrieval_only.setChecked(True)
    with qtbot.waitSignal(page.evaluation_finished, timeout=120_000) as finished:
        qtbot.mouseClick(page.run_button, Qt.MouseButton.LeftButton)
    report: EvalReport = finished.args[0]
    assert report.retrieval["hybrid"]["hit_at_1"] == 1.0
    labels = [page.table.verticalHeaderItem(r).text() for r in range(page.table.rowCount())]
    assert labels == [
        "search: vector",
        "search: keyword",
        "search: hybrid",
        "mode: rag",
    ]  # fmt: skip  (base has nothing to show without generation)
    assert page.table.item(2, 1).text() == "1.00"  # hybrid hit@1
    assert page.chart.rows and page.progress.value() == page.progress.maximum()
    qtbot.waitUntil(page.run_button.isEnabled, timeout=5_000)
    assert not page.stop_button.isEnabled()


def test_stop_ends_the_run_and_says_it_can_resume(qtbot) -> None:
    calls: list[EvalConfig] = []

    def runner(
        path: Path, config: EvalConfig, progress: ProgressFn, cancel: threading.Event
    ) -> EvalReport:
        calls.append(config)
        progress(EvalProgress(1, 10, "base  q1", 0.5))
        assert cancel.wait(30), "Stop never reached the runner"
        return EvalReport(modes={}, retrieval={}, complete=False, computed=1)

    page = make_page(qtbot, runner)
    page.path.setText("questions.jsonl")
    page.mode_boxes["lora"].setChecked(True)
    with qtbot.waitSignal(page.evaluation_progressed, timeout=10_000):
        page.start()
    with qtbot.waitSignal(page.evaluation_finished, timeout=10_000):
        qtbot.mouseClick(page.stop_button, Qt.MouseButton.LeftButton)
    assert calls[0].modes == ("base", "rag", "lora")
    assert "press Run to resume" in page.status.text()


def test_a_broken_question_file_is_reported_on_the_page(qtbot, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a"}\n', encoding="utf-8")
    page = make_page(qtbot, engine_runner(tmp_path / "data"))
    page.path.setText(str(bad))
    with qtbot.waitSignal(page.evaluation_failed, timeout=30_000) as failed:
        page.start()
    assert "bad.jsonl:1: 'question' must be a non-empty string" in failed.args[0]
    qtbot.waitUntil(page.run_button.isEnabled, timeout=5_000)
