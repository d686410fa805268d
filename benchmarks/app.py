"""App: launch to a shown window, peak memory while indexing, idle memory with models loaded.

Each figure comes from a fresh child process, as a user would start it:
- launch: `ui.app.create_app` + `MainWindow` under QT_QPA_PLATFORM=offscreen, timed from
  before the interpreter starts to the window being exposed, and to the first status
  (index opened) from the engine's worker thread;
- indexing: `main.py ingest` on the corpus, RSS of the process tree sampled every 50 ms
  (parse workers included) and the kernel's peak for the largest process;
- idle: an Engine with the embedder and the bundled Gemma loaded, after one question.

    QUIRE_MODELS_DIR=.cache/models .venv/bin/python benchmarks/app.py [--full]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.ingest import CORPUS, corpus_files  # noqa: E402

LAUNCH = """
import sys, time
from PySide6.QtCore import QTimer
from ui.app import create_app
app = create_app()
from ui.main_window import MainWindow
w = MainWindow(sys.argv[1])
def status(_s):
    print("status", time.time(), flush=True); app.quit()
w.bridge.status_changed.connect(status)
w.show()
def shown():
    print("shown", time.time(), w.windowHandle().isExposed(), flush=True)
QTimer.singleShot(0, shown)
QTimer.singleShot(30000, app.quit)
app.exec()
w.close()
"""

IDLE = """
import gc, sys, time
from engine.core import Engine
e = Engine(__import__("pathlib").Path(sys.argv[1]))
e.embedder; e.generator
e.answer("What is Quire?", "base", __import__("engine.core").core.AskOptions(max_tokens=8))
gc.collect(); time.sleep(1)
rss = [l for l in open("/proc/self/status") if l.startswith("VmRSS")][0].split()[1]
print("rss_kb", rss, flush=True)
"""


def launch(data_dir: Path) -> dict[str, float]:
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    start = time.time()
    out = subprocess.run(
        [sys.executable, "-c", LAUNCH, str(data_dir)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    marks = {line.split()[0]: float(line.split()[1]) for line in out.splitlines() if line}
    return {"window_shown_s": marks["shown"] - start, "first_status_s": marks["status"] - start}


def tree_rss_kb(pid: int) -> int:
    """Resident memory of a process and all its descendants, in KiB."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            status = Path(f"/proc/{p}/status").read_text()
            total += int(next(x for x in status.splitlines() if x.startswith("VmRSS")).split()[1])
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, StopIteration):
            continue
    return total


def indexing(data_dir: Path, files: list[Path]) -> dict[str, float]:
    """Peak tree RSS (sampled) and the largest process's peak while `main.py ingest` runs."""
    cmd = [sys.executable, "main.py", "--data-dir", str(data_dir), "ingest", *map(str, files)]
    start = time.perf_counter()
    child = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak = 0
    while child.poll() is None:
        peak = max(peak, tree_rss_kb(child.pid))
        time.sleep(0.05)
    wall = time.perf_counter() - start
    largest = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {"ingest_cli_s": wall, "index_peak_tree_mb": peak / 1024,
            "index_peak_process_mb": largest / 1024}  # fmt: skip


def idle(data_dir: Path) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", IDLE, str(data_dir)],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=True,
    ).stdout  # fmt: skip
    kb = next(int(x.split()[1]) for x in out.splitlines() if x.startswith("rss_kb"))
    return {"idle_rss_mb": kb / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="index the whole corpus")
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        out = {"cold_" + k: v for k, v in launch(data / "fresh").items()}
        out |= indexing(data / "index", corpus_files(args.full, args.corpus))
        out |= launch(data / "index")
        out |= idle(data / "index")
    out["subset"] = not args.full
    out["load"] = os.getloadavg()[0]
    print(json.dumps(out, indent=1))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
