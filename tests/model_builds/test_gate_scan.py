"""model_builds/gate_scan.py: what each refusal threshold, and each two-level gate, gives."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from tests.model_builds import build_script


def row(absent: bool, odds: float | None, best: float, contained: bool, gold: int) -> dict:
    return {"absent": absent, "odds": odds, "best_score": best, "contained": contained,
            "gold_cited": gold, "cited": 1}  # fmt: skip


def test_the_tables_from_saved_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [
        row(False, 0.30, 0.70, True, 1),  # hesitant, but its source is very close
        row(False, 0.10, 0.50, False, 0),  # answered at any threshold, wrongly
        row(True, 0.30, 0.66, False, 0),  # absent, yet a source came close
        row(True, None, 0.0, False, 0),  # absent, no source passed the cutoff
    ]
    answers = tmp_path / "answers.jsonl"
    answers.write_text("".join(json.dumps(r) + "\n" for r in rows))
    scan = build_script("gate_scan")
    card = dataclasses.replace(scan.grounding.read_card(), refusal=0.25)
    monkeypatch.setattr(scan.grounding, "read_card", lambda *_a: card)
    monkeypatch.setattr("sys.argv", ["gate_scan.py", "--answers", str(answers)])
    assert scan.main() == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "2 answerable, 2 absent"

    def numbers(prefix: str) -> list[float]:
        (line,) = [ln for ln in lines if ln.split()[: len(prefix.split())] == prefix.split()]
        return [float(x) for x in line.split()[len(prefix.split()) :]]

    # absent refused, false refusals, contained, citation precision
    assert numbers("0.25") == [1.0, 0.5, 0.0, 0.0]
    assert numbers("1.01") == [0.5, 0.0, 0.5, 0.5]
    assert numbers("0.65 0.40") == [0.5, 0.0, 0.5, 0.5]  # the close absent one answers too
    assert numbers("0.70 0.40") == [1.0, 0.0, 0.5, 0.5]  # only the answerable one is raised


@pytest.mark.slow
def test_a_live_scan_never_refuses_and_raises_the_shipped_bar(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The scan answers with the gate open whatever the shipped bars are, and its grid
    raises the shipped bar, not the open gate's."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "kettle.md").write_text(
        "# Kettle\n\nDescale the kettle monthly with white vinegar, then rinse twice.\n"
    )
    questions = tmp_path / "q.jsonl"
    questions.write_text(
        json.dumps({"id": "k1", "question": "How often should I descale the kettle?",
                    "doc": "kettle.md", "section": "Kettle", "answer": "monthly"}) + "\n"
    )  # fmt: skip
    scan = build_script("gate_scan")
    from engine.core import Engine

    indexer = Engine(tmp_path / "data")
    indexer.ingest([docs])
    indexer.close()
    shipped = scan.grounding.read_card()  # a card that would refuse everything:
    card = dataclasses.replace(shipped, refusal=0.0, refusal_close=0.0, refusal_sure=0.0)
    monkeypatch.setattr(scan.grounding, "read_card", lambda *_a: card)
    out = tmp_path / "answers.jsonl"
    argv = ["gate_scan.py", str(questions), "--data-dir", str(tmp_path / "data"), "--out"]
    monkeypatch.setattr("sys.argv", [*argv, str(out), "--max-tokens", "24"])
    assert scan.main() == 0
    (answer,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert answer["odds"] is not None and "do not say" not in answer["answer"], answer
    assert "\nat 0.0 (the card's refusal)" in capsys.readouterr().out
