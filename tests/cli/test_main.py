"""`main.py` itself: the no-display message, and Ctrl+C during a streamed answer."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO


def test_without_a_display_the_app_says_so_and_points_to_the_cli(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env.pop("QT_QPA_PLATFORM", None)
    result = subprocess.run(
        [sys.executable, str(REPO / "main.py"), "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        cwd=REPO,
    )
    if sys.platform.startswith("linux"):
        assert result.returncode == 2
        assert "no graphical display" in result.stderr and "main.py --help" in result.stderr
        assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_ctrl_c_stops_an_answer_cleanly(tmp_path: Path) -> None:
    # The bundled base model copies the default instructions, which the app stops at its
    # first words; told to write long stories it goes on (repeating the question) for as
    # long as the token limit lets it.
    (tmp_path / "settings.json").write_text('{"system_prompt": "Write long stories."}')
    proc = subprocess.Popen(
        [
            sys.executable,
            str(REPO / "main.py"),
            "--data-dir",
            str(tmp_path),
            "ask",
            "Write a long story about a lighthouse.",
            "--mode",
            "base",
            "--max-tokens",
            "400",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    assert proc.stdout is not None
    proc.stdout.read(1)  # the first streamed character: generation is under way
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert "[stopped]" in out and "Traceback" not in err
