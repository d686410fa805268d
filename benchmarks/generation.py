"""Generation through Quire against llama-cpp-python called directly, in one run.

Both sides load the same GGUF with the same settings (context, threads, batch, seed)
and get the same prompt tokens; runs are interleaved, each preceded by a KV reset on
both, and medians are reported. Measured: tokens/s (base mode, fixed prompt), time to
first token of a 5-source RAG question (Quire's includes query embedding, search and
prompt building), and the time a second question saves by reusing the system prompt's
KV prefix.

    QUIRE_MODELS_DIR=.cache/models .venv/bin/python benchmarks/generation.py --reps 5
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.answer.prompting import build_prompt
from engine.core import AskOptions, Engine
from engine.settings import Settings

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "freedombox-manual"
DOCS = ("Backups", "Bind", "Calibre", "Cockpit", "Configure", "DateTime", "Deluge")
BASE_PROMPT = "Write a short story about a lighthouse keeper and a storm."
QUESTIONS = ("How do I restore a backup?", "How do I add books to the Calibre library?")


def direct_stream(llm: Any, tokens: list[int], max_tokens: int, stop: list[str]) -> tuple:
    """First-token seconds and tokens/s of a plain create_completion stream."""
    start = time.perf_counter()
    first, count = 0.0, 0
    for _ in llm.create_completion(
        tokens, max_tokens=max_tokens, temperature=0.0, stop=stop, stream=True
    ):
        if count == 0:
            first = time.perf_counter() - start
        count += 1
    gen_s = time.perf_counter() - start - first
    return first, (count - 1) / gen_s if count > 1 and gen_s > 0 else 0.0


def prompt_tokens(engine: Engine, question: str, mode: str, max_tokens: int) -> tuple:
    """The exact tokens and stop strings Engine.ask sends for this question."""
    gen = engine.generator
    sources = engine.search(question) if mode == "rag" else []
    prompt = build_prompt(
        question,
        sources,
        gen.count_tokens,
        gen.context_size - max_tokens,
        engine.settings.system_prompt,
    )
    text, stop = gen.format(prompt.messages)
    return gen.chat.tokenize_prompt(text), stop


def quire_run(engine: Engine, question: str, mode: str, max_tokens: int) -> tuple:
    opts = AskOptions(temperature=0.0, max_tokens=max_tokens)
    t = engine.answer(question, mode, opts).timings
    return t.first_token_s, t.tokens_per_s


def interleave(reps: int, sides: dict[str, Callable[[], tuple]], resets: list[Any]) -> dict:
    """Run each side `reps` times, alternating, with every KV cache reset first.

    The order flips every repetition (ABBA): the first run after a reset measured up to
    ~200 ms slower whichever side it was, which biased an always-first side.
    """
    runs: dict[str, list[tuple]] = {name: [] for name in sides}
    for rep in range(reps):
        order = list(sides.items())
        for name, fn in order if rep % 2 == 0 else order[::-1]:
            for llm in resets:
                llm.reset()
            runs[name].append(fn())
    return {
        name: {"first_token_s": float(np.median([r[0] for r in rs])),
               "tokens_per_s": float(np.median([r[1] for r in rs]))}
        for name, rs in runs.items()
    }  # fmt: skip


def prefix_reuse(engine: Engine, max_tokens: int) -> dict[str, float]:
    """First-token time of question 2 cold, and right after question 1 (shared prefix)."""
    a, _ = prompt_tokens(engine, QUESTIONS[0], "rag", max_tokens)
    b, _ = prompt_tokens(engine, QUESTIONS[1], "rag", max_tokens)
    shared = next((n for n, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), len(a))
    cold, warm = [], []
    for _ in range(3):
        engine.generator.llm.reset()
        cold.append(quire_run(engine, QUESTIONS[1], "rag", max_tokens)[0])
        quire_run(engine, QUESTIONS[0], "rag", max_tokens)
        warm.append(quire_run(engine, QUESTIONS[1], "rag", max_tokens)[0])
    return {"prompt_tokens": len(b), "shared_prefix_tokens": shared,
            "cold_first_token_s": float(np.median(cold)),
            "after_q1_first_token_s": float(np.median(warm))}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=96, help="max tokens, base mode")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    import llama_cpp

    with tempfile.TemporaryDirectory() as tmp:
        # generation is what is compared: no reader, so no answer is "not covered"
        engine = Engine(Path(tmp), Settings(reader=False))
        engine.ingest([CORPUS / f"{d}.part.html" for d in DOCS])
        gen = engine.generator
        direct = llama_cpp.Llama(
            model_path=str(gen.model_path),
            n_ctx=gen.context_size,
            n_threads=os.cpu_count() or 2,
            n_batch=512,
            seed=0,
            verbose=False,
        )  # fmt: skip — the same settings as engine.answer.generation._load
        base, stop = prompt_tokens(engine, BASE_PROMPT, "base", args.tokens)
        rag, rag_stop = prompt_tokens(engine, QUESTIONS[0], "rag", 16)
        resets = [gen.llm, direct]
        out: dict[str, Any] = {
            "base": interleave(args.reps, {
                "quire": lambda: quire_run(engine, BASE_PROMPT, "base", args.tokens),
                "direct": lambda: direct_stream(direct, base, args.tokens, stop),
            }, resets),
            "rag": interleave(args.reps, {
                "quire": lambda: quire_run(engine, QUESTIONS[0], "rag", 16),
                "direct": lambda: direct_stream(direct, rag, 16, rag_stop),
            }, resets),
            "rag_prompt_tokens": len(rag),
            "prefix": prefix_reuse(engine, 16),
            "load": os.getloadavg()[0],
        }  # fmt: skip
        direct.close()
        engine.close()
    b, r = out["base"], out["rag"]
    out["tps_ratio"] = b["quire"]["tokens_per_s"] / b["direct"]["tokens_per_s"]
    out["rag_overhead_ms"] = 1000 * (r["quire"]["first_token_s"] - r["direct"]["first_token_s"])
    print(json.dumps(out, indent=1))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
