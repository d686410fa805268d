"""The benchmark scripts run end to end on tiny inputs and write their figures and charts.

Not timing tests: they only prove `make bench` will not fall over. Those that train, run
torch or load the real LLM (in the benchmark's own process) are marked slow.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _run(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_search_benchmark_and_charts(tmp_path: Path) -> None:
    _run("benchmarks/search.py", "--sizes", "1500", "--queries", "3",
         "--json", str(tmp_path / "search.json"))  # fmt: skip
    (figures,) = json.loads((tmp_path / "search.json").read_text())
    assert figures["chunks"] == 1500 and figures["recall_float"] == 1.0
    assert figures["memory_hybrid_ms"] > 0 and "vec0_float_hybrid_ms" in figures
    _run("benchmarks/report.py", str(tmp_path))
    assert (tmp_path / "search.png").stat().st_size > 0
    assert (tmp_path / "recall.png").stat().st_size > 0


def test_ingest_benchmark_on_a_tiny_corpus(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for n in range(3):
        body = "".join(f"<p>Paragraph {i} of page {n} about lighthouses.</p>" for i in range(30))
        (corpus / f"page{n}.html").write_text(f"<html><body><h1>Page {n}</h1>{body}</body></html>")
    out = _run("benchmarks/ingest.py", "--full", "--corpus", str(corpus),
               "--json", str(tmp_path / "ingest.json"))  # fmt: skip
    figures = json.loads((tmp_path / "ingest.json").read_text())
    assert figures["files"] == 3 and figures["chunks"] > 0 and figures["failed"] == 0
    assert figures["reingest_skipped"] == 3
    assert "wall_over_ideal" in out


def test_app_benchmark_measures_a_process_tree() -> None:
    sys.path.insert(0, str(REPO))
    from benchmarks.app import tree_rss_kb

    assert tree_rss_kb(os.getpid()) > 10_000


@pytest.mark.slow
def test_training_benchmark_runs(tmp_path: Path) -> None:
    out = _run("benchmarks/training.py", "--steps", "1", "--batch", "1", "--prompt-tokens", "64",
               "--json", str(tmp_path / "training.json"))  # fmt: skip
    figures = json.loads((tmp_path / "training.json").read_text())
    assert figures["quire_tokens_per_s"] > 0 and figures["bare_tokens_per_s"] > 0
    assert "ratio_quire_vs_bare" in out


@pytest.mark.slow
def test_grounded_benchmark_compares_three_ways_to_answer(tmp_path: Path) -> None:
    _run("benchmarks/grounded.py", "--reps", "1", "--questions", "1", "--tokens", "8",
         "--json", str(tmp_path / "grounded.json"))  # fmt: skip
    figures = json.loads((tmp_path / "grounded.json").read_text())
    assert set(figures) >= {"rag", "hybrid merged", "hybrid runtime"}
    assert figures["hybrid merged"]["answers"] == 1 and figures["rag"]["first_token_s"] > 0
    assert figures["hybrid runtime"]["tps_vs_rag"] > 0


@pytest.mark.slow
def test_reader_benchmark_times_rerank_and_quote(tmp_path: Path) -> None:
    _run("benchmarks/reader.py", "--n", "2", "--json", str(tmp_path / "reader.json"))
    figures = json.loads((tmp_path / "reader.json").read_text())
    assert figures["questions"] == 2 and figures["passages"] == 20
    assert 0 < figures["warm"] < figures["cold"]  # kept vectors are not read again
    assert figures["cold_over_bare_int8"] > 0 and figures["quote"] > 0


@pytest.mark.slow
def test_server_benchmark_compares_direct_and_served_generation(tmp_path: Path) -> None:
    out = _run("benchmarks/server.py", "--reps", "1", "--tokens", "6", "--gap", "0",
               "--json", str(tmp_path / "server.json"))  # fmt: skip
    figures = json.loads((tmp_path / "server.json").read_text())
    paths = figures["paths"]
    assert set(paths) == {"direct", "serve", "server", "server_default", "server_quire"}
    assert all(p["tokens_per_s"] > 0 and p["first_token_s"] > 0 for p in paths.values())
    assert paths["serve"]["same_text_as_direct"] == 1  # the same model, greedy, same prompt
    assert figures["setup"]["threads"] >= 1 and "target >= 0.9x" in out
