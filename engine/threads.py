"""How many CPU threads one answer gets: the cores other programs leave free right now.

llama.cpp's worker threads meet at a barrier after every operation, hundreds of times per
token. On a shared machine a thread that the scheduler parks behind another program
stalls all the others: with three CPU-bound programs beside it on 2 cores, an answer
with 2 threads ran at 13 tokens/s and with 1 thread at 41. So unless the user fixed a
count, each answer takes the cores that are idle when it starts (Linux: the number of
runnable tasks in /proc/loadavg, sampled a few times), at least 1, at most all of them.
`benchmarks/threads.py` measures this choice against every fixed count, quiet and loaded.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

LOADAVG = Path("/proc/loadavg")
SAMPLES = 5
SAMPLE_GAP_S = 0.003


def cores() -> int:
    """CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 2


def _own_running() -> int:
    """Threads of this process that are runnable (llama.cpp's workers may still spin
    after the last answer; they must not count as another program's load)."""
    count = 0
    for stat in Path("/proc/self/task").glob("*/stat"):
        try:
            state = stat.read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        count += state == "R"
    return max(1, count)  # at least the reading thread


def busy_elsewhere() -> float | None:
    """Runnable tasks of other processes, right now (median of a few samples);
    None where the system does not say (not Linux)."""
    counts = []
    for i in range(SAMPLES):
        try:
            running = LOADAVG.read_text().split()[3].split("/")[0]
        except (OSError, IndexError):
            return None
        counts.append(max(0, int(running) - _own_running()))
        if i + 1 < SAMPLES:
            time.sleep(SAMPLE_GAP_S)
    return statistics.median(counts)


def answer_threads(fixed: int | None = None) -> int:
    """Threads for the next answer: `fixed` when the user chose a count, else the free cores."""
    total = cores()
    if fixed:
        return max(1, min(fixed, total))
    busy = busy_elsewhere()
    if busy is None:
        return total
    return max(1, min(total, int(total - busy)))
