"""Faults of the environment found by probing (issue 10): parallel processes on one data
dir, full and read-only disks, unwritable folders, broken settings and question files."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import REPO

OPEN_STORE = """
import sys, time
from pathlib import Path
from engine.store import Store
go = Path(sys.argv[2])
Path(sys.argv[3]).touch()  # imported, ready to race
while not go.exists():
    time.sleep(0.001)
with Store(Path(sys.argv[1])) as store:
    print(store.schema_version)
"""


def test_two_processes_opening_a_new_data_dir_at_once_both_succeed(tmp_path: Path) -> None:
    """Before the fix, 10 of 10 rounds failed with "table meta already exists"."""
    for round_ in range(10):
        folder = tmp_path / f"round{round_}"
        folder.mkdir()
        index, go = folder / "index.sqlite3", folder / "go"
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", OPEN_STORE, str(index), str(go), str(folder / str(n))],
                cwd=REPO,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for n in range(2)
        ]
        deadline = time.monotonic() + 60
        while not all((folder / str(n)).exists() for n in range(2)):
            assert time.monotonic() < deadline, "the processes did not start"
            time.sleep(0.01)
        go.touch()
        for proc in procs:
            out, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, f"round {round_}: {err[-1500:]}"
            assert out.strip() == "1"
