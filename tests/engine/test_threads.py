"""engine.threads: answers take the cores other programs leave free (issue 11).

The figures behind it (a loaded 2-core machine: 2 threads 7.6 tokens/s, 1 thread 15.4)
are in benchmarks/threads.py and docs/benchmarks.md; here the choice itself is checked
against real CPU-bound processes and against /proc/loadavg lines written by hand.
"""

from __future__ import annotations

import multiprocessing
import sys
import time
from pathlib import Path

import pytest

from engine import threads
from engine.threads import answer_threads, busy_elsewhere, cores

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/loadavg")


def _spin(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


def test_a_fixed_count_is_kept_within_the_cores() -> None:
    assert answer_threads(1) == 1
    assert answer_threads(10_000) == cores()


@linux_only
def test_runnable_tasks_of_other_programs_take_cores_away(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loadavg = tmp_path / "loadavg"
    monkeypatch.setattr(threads, "LOADAVG", loadavg)
    monkeypatch.setattr(threads, "_own_running", lambda: 1)
    monkeypatch.setattr(threads, "cores", lambda: 8)
    loadavg.write_text("0.50 0.40 0.30 1/300 4242\n")  # only the reader runs
    assert busy_elsewhere() == 0 and answer_threads() == 8
    loadavg.write_text("3.00 2.00 1.00 4/300 4242\n")
    assert busy_elsewhere() == 3 and answer_threads() == 5
    loadavg.write_text("12.0 9.00 5.00 13/300 4242\n")
    assert answer_threads() == 1  # never fewer than one
    loadavg.write_text("garbage\n")
    assert busy_elsewhere() is None and answer_threads() == 8  # no figure: all cores


@linux_only
def test_cpu_bound_processes_beside_it_leave_one_thread() -> None:
    hogs = [multiprocessing.Process(target=_spin, args=(20.0,)) for _ in range(cores() + 1)]
    for hog in hogs:
        hog.start()
    try:
        time.sleep(0.5)
        assert answer_threads() == 1
    finally:
        for hog in hogs:
            hog.terminate()
            hog.join()


@pytest.mark.slow  # llama.cpp's own thread count: the real model
def test_the_generator_uses_the_choice(data_dir: Path, models_dir: Path) -> None:
    from engine.core import Engine

    engine = Engine(data_dir)
    try:
        generator = engine.generator
        generator.fixed_threads = 1
        "".join(generator.stream([{"role": "user", "content": "Hi"}], max_tokens=2))
        assert generator.threads == 1
        generator.fixed_threads = None
        "".join(generator.stream([{"role": "user", "content": "Hi"}], max_tokens=2))
        assert 1 <= generator.threads <= cores()
    finally:
        engine.close()
