"""Run every benchmark, write its figures as JSON under docs/benchmarks/, then the charts.

    QUIRE_MODELS_DIR=.cache/models .venv/bin/python benchmarks/run_all.py [--million] [--full]

Each script also runs on its own (see its docstring). Figures are ratios measured in
one run; absolute times depend on the machine's load, which each JSON records.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE.parent / "docs" / "benchmarks"


def step(script: str, *args: str) -> None:
    cmd = [sys.executable, str(HERE / script), *args]
    print("\n$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--million", action="store_true", help="search at 1M chunks too")
    parser.add_argument("--full", action="store_true", help="ingest the whole shared corpus")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument(
        "--only", nargs="+", help="search ingest generation server app reader training"
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    full = ["--full"] if args.full else []
    steps: dict[str, list[tuple[str, ...]]] = {
        "search": [("search.py", "--json", str(args.out / "search.json"))],
        "ingest": [("ingest.py", *full, "--json", str(args.out / "ingest.json"))],
        "generation": [
            ("generation.py", "--json", str(args.out / "generation.json")),
            ("grounded.py", "--json", str(args.out / "grounded.json")),
        ],
        "server": [("server.py", "--json", str(args.out / "server.json"))],
        "app": [("app.py", *full, "--json", str(args.out / "app.json"))],
        "reader": [("reader.py", "--answers", "12", "--json", str(args.out / "reader.json"))],
        "training": [("training.py", "--json", str(args.out / "training.json"))],
    }
    if args.million:
        steps["search"].append(
            ("search.py", "--sizes", "1000000", "--queries", "20", "--no-vec0",
             "--json", str(args.out / "search_1m.json"))
        )  # fmt: skip
    for name in args.only or list(steps):
        for script, *rest in steps[name]:
            step(script, *rest)
    step("report.py", str(args.out))


if __name__ == "__main__":
    main()
