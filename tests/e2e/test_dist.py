"""The app folder `make dist` builds (dist/quire/) runs with no Python, no virtual
environment and no variables set: the CLI indexes and searches on the models inside it,
training says it is not there, the window opens, the menu entry points at it."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import REPO

APP = REPO / "dist" / "quire"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (APP / "quire").is_file(), reason=f"{APP} has not been built (run `make dist`)"
    ),
]


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """What `env -i PATH=/usr/bin:/bin HOME=...` leaves: no venv, no QUIRE_MODELS_DIR."""
    home.mkdir(exist_ok=True)
    return {"PATH": "/usr/bin:/bin", "HOME": str(home), **extra}


def cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(APP / "quire-cli"), *args],
        env=clean_env(home),
        cwd=home,
        capture_output=True,
        text=True,
        timeout=300,
    )


def search(home: Path, data: Path, query: str) -> dict:
    result = cli(home, "--data-dir", str(data), "search", query, "--k", "1", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["results"][0]


def test_the_built_cli_indexes_and_searches_with_its_own_models(tmp_path: Path) -> None:
    from tests.factory import write_pdf

    docs, data, home = tmp_path / "docs", tmp_path / "data", tmp_path / "home"
    docs.mkdir()
    (docs / "kettle.md").write_text(
        "# Kettles\n\nThe blue kettle boils water in ninety seconds when filled to the line.\n",
        encoding="utf-8",
    )
    # A PDF is read in spawn worker processes: the frozen executable must run them.
    write_pdf(docs / "garden.pdf", [["The greenhouse keeps tomatoes warm in winter."]])

    ingest = cli(home, "--data-dir", str(data), "ingest", str(docs))
    assert ingest.returncode == 0, ingest.stderr
    assert "Indexed 2 files" in ingest.stderr and "failed 0" in ingest.stderr

    kettle = search(home, data, "how fast does the kettle boil")
    assert kettle["document"] == "kettle.md" and "ninety seconds" in kettle["text"]
    garden = search(home, data, "tomatoes in the cold season")
    assert (garden["document"], garden["page"]) == ("garden.pdf", 1)
    assert (data / "models" / "all-MiniLM-L6-v2-int8" / "model.onnx").is_file()


def test_training_says_it_needs_the_developer_install(tmp_path: Path) -> None:
    examples = tmp_path / "examples.jsonl"
    examples.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n', encoding="utf-8")
    result = cli(tmp_path / "home", "--data-dir", str(tmp_path / "data"), "train", str(examples))
    assert result.returncode == 1
    assert "training is not in this build of Quire" in result.stderr
    assert "developer install" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_built_app_opens_its_window(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = clean_env(home, QT_QPA_PLATFORM="offscreen")
    proc = subprocess.Popen(
        [str(APP / "quire")], env=env, cwd=home, stderr=subprocess.PIPE, text=True
    )
    index = home / ".local" / "share" / "quire" / "index.sqlite3"  # the window's engine
    try:
        deadline = time.monotonic() + 60
        while not index.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)  # past start-up: still running its event loop
        assert proc.poll() is None, proc.communicate()[1]
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGTERM
    assert "Traceback" not in stderr


def test_quire_desktop_adds_a_menu_entry_for_the_folder(tmp_path: Path) -> None:
    env = clean_env(tmp_path / "home", XDG_DATA_HOME=str(tmp_path / "share"))
    result = subprocess.run(
        [str(APP / "quire-desktop"), "install"], env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    entry = (tmp_path / "share" / "applications" / "quire.desktop").read_text(encoding="utf-8")
    assert f"Exec={APP / 'quire'}\n" in entry
    assert (tmp_path / "share" / "icons" / "hicolor" / "scalable" / "apps" / "quire.svg").is_file()
