"""Faults in Quire's own state found by probing (issue 22): settings of the wrong type,
bad training data, a damaged history, a data folder that is a file, who may read the data
folder, interrupted training installs, and the models folder."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from engine.testset import add_question
from engine.types import SearchResult
from tests.test_faults import assert_one_line_error, quire


def test_settings_of_the_wrong_type_fall_back_with_one_warning_each(tmp_path: Path) -> None:
    """Before the fix: a TypeError traceback from `search`."""
    library = tmp_path / "library"
    library.mkdir()
    (library / "tides.txt").write_text("The lighthouse keeper logs the weather at dawn.")
    data = tmp_path / "data"
    assert quire(data, "ingest", str(library)).returncode == 0
    (data / "settings.json").write_text(json.dumps({"top_k": "five", "min_score": [0.1]}))
    result = quire(data, "search", "lighthouse", "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout)["results"][0]["document"] == "tides.txt"
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2, result.stderr
    assert lines[0].startswith("quire: ") and "top_k must be a whole number" in lines[0]
    assert "min_score must be a number" in lines[1] and "default (0.3)" in lines[1]


def test_deeply_nested_settings_are_kept_aside(tmp_path: Path) -> None:
    """Before the fix: a RecursionError traceback."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "settings.json").write_text("[" * 100_000)
    result = quire(data, "docs")
    assert result.returncode == 0, result.stderr[-2000:]
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("quire: ") and "settings.json.bad" in line
    assert (data / "settings.json.bad").stat().st_size == 100_000


# -- bad training data --------------------------------------------------------------------


def train(data_dir: Path, data: Path, base: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return quire(data_dir, "train", str(data), "--base", str(base), *args)


def test_training_data_with_no_good_line_names_the_first_bad_ones(
    tmp_path: Path, llm_path: Path
) -> None:
    """Before the fix: "no usable training examples (5 lines left out)", no line named."""
    data = tmp_path / "bad.jsonl"
    data.write_text('oops\n{"prompt": "x"}\n[1]\n\n{"messages": []}\n', encoding="utf-8")
    result = train(tmp_path / "data", data, llm_path, "--max-steps", "1")
    line = assert_one_line_error(result, str(data), "line 1: not JSON", "line 2: ", "line 3: ")
    assert "2 more" in line and "--check" in line
    checked = train(tmp_path / "data", data, llm_path, "--check")
    assert checked.returncode == 1
    assert [n for n in range(1, 6) if f"skipped line {n}: " in checked.stderr] == [1, 2, 3, 4, 5]


def test_hostile_training_lines_are_reported_by_number_and_fast(
    tmp_path: Path, llm_path: Path
) -> None:
    """Before the fix: RecursionError and UnicodeEncodeError tracebacks; a 10 MB line took
    11 s and 857 MB to refuse (50 MB: 195 s, 2.45 GB); now 50 MB: 0.9 s, 113 MB."""
    good = json.dumps({"prompt": "Name a colour.", "completion": "red"})
    lines = [
        good,
        json.dumps({"prompt": "word " * 4_000_000, "completion": "x"}),  # 20 MB
        "[" * 100_000,
        '{"prompt": "\\ud800 half a character", "completion": "x"}',
        '{"messages": [{"role": "user", "content": "hi"}, '
        '{"role": "assistant", "content": "\\udfff"}]}',
        good,
    ]
    data = tmp_path / "hostile.jsonl"
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    started = time.monotonic()
    result = train(tmp_path / "data", data, llm_path, "--check", "--json")
    assert time.monotonic() - started < 20
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-2000:]
    payload = json.loads(result.stdout)
    assert payload["examples"] == 2
    problems = payload["problems"]
    assert [p.split(":")[0] for p in problems] == ["line 2", "line 3", "line 4", "line 5"]
    assert "20.0 MB long" in problems[0] and "nested too deeply" in problems[1]
    assert "surrogate" in problems[2] and "surrogate" in problems[3]


def test_a_test_set_with_a_hostile_line_still_takes_new_questions(data_dir: Path) -> None:
    """Before the fix: RecursionError from the app's "add to test set"."""
    (data_dir / "test-questions.jsonl").write_text("[" * 100_000 + "\n", encoding="utf-8")
    gold = SearchResult(1, "a.txt", "/docs/a.txt", 2, None, 0.9, "text")
    row = add_question(data_dir, "Which page?", gold)
    assert row == {"id": "mine-001", "question": "Which page?", "doc": "a.txt", "pages": [2]}
