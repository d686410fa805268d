"""Charts (PNG) and a targets table from the JSON figures the benchmark scripts write.

.venv/bin/python benchmarks/report.py docs/benchmarks
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def load(folder: Path, name: str) -> Any:
    path = folder / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def search_chart(rows: list[dict[str, float]], out: Path) -> None:
    """Median latency per method and index size, log scale."""
    series = [("numpy_ms", "numpy brute force"), ("memory_vector_ms", "vector (in memory)"),
              ("memory_keyword_ms", "keyword (FTS5)"), ("memory_hybrid_ms", "hybrid"),
              ("vec0_float_hybrid_ms", "hybrid on vec0 float (before)")]  # fmt: skip
    fig, ax = plt.subplots(figsize=(8, 4.2))
    width = 0.8 / len(series)
    for n, (key, label) in enumerate(series):
        xs = [i + n * width for i, r in enumerate(rows) if key in r]
        ax.bar(xs, [r[key] for r in rows if key in r], width, label=label)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(rows))])
    ax.set_xticklabels([f"{int(r['chunks']):,} chunks\n(load {r['load']:.1f})" for r in rows])
    ax.set_yscale("log")
    ax.set_ylabel("median ms per query (log)")
    ax.set_title("Search latency, k=10 (query embedding excluded)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def recall_chart(rows: list[dict[str, float]], out: Path) -> None:
    series = [("recall_float", "float (exact)"), ("recall_int8", "int8 (scalar)"),
              ("recall_binary_100", "binary, 100 rescored"),
              ("recall_binary_1000", "binary, 1000 rescored")]  # fmt: skip
    fig, ax = plt.subplots(figsize=(8, 4.2))
    width = 0.8 / len(series)
    for n, (key, label) in enumerate(series):
        xs = [i + n * width for i in range(len(rows))]
        bars = ax.bar(xs, [r[key] for r in rows], width, label=label)
        ax.bar_label(bars, fmt="%.2f", fontsize=7)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(rows))])
    ax.set_xticklabels([f"{int(r['chunks']):,} chunks" for r in rows])
    ax.set_ylim(0.3, 1.08)
    ax.set_ylabel("recall@10 vs exact")
    ax.set_title("Recall of each quantization")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=4)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def ingest_chart(data: dict[str, Any], out: Path) -> None:
    labels = ["parse CPU", "embed CPU", "ideal\n(CPU sum / cores)", "pipeline CPU",
              "embed wall\n(alone)", "pipeline wall"]  # fmt: skip
    keys = ["parse_cpu_s", "embed_cpu_s", "ideal_s", "pipeline_cpu_s", "embed_wall_s",
            "pipeline_wall_s"]  # fmt: skip
    fig, ax = plt.subplots(figsize=(8, 3.8))
    colors = ["#94a3b8"] * 3 + ["#6366f1", "#fcd34d", "#f59e0b"]
    ax.bar(labels, [data[k] for k in keys], color=colors)
    ax.set_ylabel("seconds")
    size = f"{data['files']} files / {data['chunks']} chunks"
    ax.set_title(f"Ingest, {size} (load {data['load']:.1f})")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def generation_chart(data: dict[str, Any], out: Path) -> None:
    fig, (left, mid, right) = plt.subplots(1, 3, figsize=(10, 3.6))
    sides = ["quire", "direct"]
    left.bar(sides, [data["base"][s]["tokens_per_s"] for s in sides], color=["#6366f1", "#94a3b8"])
    left.set_title("tokens/s (base mode)")
    mid.bar(sides, [data["rag"][s]["first_token_s"] for s in sides], color=["#6366f1", "#94a3b8"])
    mid.set_title("first token, 5-source RAG (s)")
    prefix = data["prefix"]
    right.bar(["cold", "after a question\n(same system prompt)"],
              [prefix["cold_first_token_s"], prefix["after_q1_first_token_s"]],
              color=["#94a3b8", "#6366f1"])  # fmt: skip
    right.set_title("first token, KV prefix reuse (s)")
    fig.suptitle(f"Generation, bundled Gemma 3 270M (load {data['load']:.1f})")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, nargs="?", default=Path("docs/benchmarks"))
    args = parser.parse_args()
    folder = args.folder
    search = (load(folder, "search") or []) + (load(folder, "search_1m") or [])
    if search:
        search_chart(search, folder / "search.png")
        recall_chart(search, folder / "recall.png")
    if ingest := load(folder, "ingest"):
        ingest_chart(ingest, folder / "ingest.png")
    if generation := load(folder, "generation"):
        generation_chart(generation, folder / "generation.png")
    print("charts in", folder, sorted(p.name for p in folder.glob("*.png")))


if __name__ == "__main__":
    main()
