"""Faults in Quire's own state found by probing (issue 22): settings of the wrong type,
bad training data, a damaged history, a data folder that is a file, who may read the data
folder, interrupted training installs, and the models folder."""

from __future__ import annotations

import json
from pathlib import Path

from tests.test_faults import quire


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
