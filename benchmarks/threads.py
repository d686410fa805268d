"""Answer speed on a quiet and on a busy machine: Quire's thread choice against fixed counts.

One run, one loaded model. For each condition (quiet; then with --hogs CPU-bound
processes beside it, 3 by default as in issue 11) every setting answers the same prompt
--reps times, interleaved: "auto" (the default: engine/threads.py picks the free cores
when each answer starts) and each fixed thread count from 1 to all cores. Prints medians
of tokens/s and first-token seconds, and per condition the ratio of auto to the best
fixed count (targets: >= 0.8 under load, >= 0.9 quiet).

    QUIRE_MODELS_DIR=.cache/models .venv/bin/python benchmarks/threads.py [--hogs 3] [--reps 3]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.answer.generation import Generator
from engine.core import Engine
from engine.threads import cores

PROMPT = [
    {
        "role": "user",
        "content": "Explain in a few sentences how a backup tool can save disk space "
        "by storing each repeated block of data only once.",
    }
]


def hog(stop: multiprocessing.synchronize.Event) -> None:
    x = 0
    while not stop.is_set():
        for _ in range(100_000):
            x += 1


def answer(gen: Generator, fixed: int | None, max_tokens: int) -> dict:
    gen.fixed_threads = fixed
    text = "".join(gen.stream(PROMPT, max_tokens=max_tokens, temperature=0.0, seed=0))
    t = gen.last_timings
    return {
        "threads": gen.threads,
        "first_token_s": t.first_token_s,
        "tokens_per_s": t.tokens_per_s,
        "chars": len(text),
    }


def measure(gen: Generator, settings: list, reps: int, max_tokens: int) -> dict:
    runs: dict[str, list[dict]] = {str(s): [] for s in settings}
    for _ in range(reps):
        for s in settings:
            gen.llm.reset()
            runs[str(s)].append(answer(gen, None if s == "auto" else s, max_tokens))
    return {
        name: {
            "tokens_per_s": statistics.median(r["tokens_per_s"] for r in rs),
            "first_token_s": statistics.median(r["first_token_s"] for r in rs),
            "threads_used": sorted({r["threads"] for r in rs}),
        }
        for name, rs in runs.items()
    }


def report(condition: str, result: dict) -> dict:
    fixed = {k: v for k, v in result.items() if k != "auto"}
    best_name = max(fixed, key=lambda k: fixed[k]["tokens_per_s"])
    best = fixed[best_name]
    auto = result["auto"]
    print(f"\n{condition}")
    print("  setting  threads  tokens/s  first token s")
    for name, r in result.items():
        used = ",".join(map(str, r["threads_used"]))
        print(f"  {name:>7}  {used:>7}  {r['tokens_per_s']:8.1f}  {r['first_token_s']:13.2f}")
    ratio = auto["tokens_per_s"] / best["tokens_per_s"]
    first = auto["first_token_s"] / best["first_token_s"]
    print(
        f"  auto / best fixed ({best_name} threads): "
        f"tokens/s {ratio:.2f}x, first token {first:.2f}x"
    )
    return {"best_fixed": best_name, "tokens_per_s_ratio": ratio, "first_token_ratio": first}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hogs", type=int, default=3)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    settings: list = ["auto", *range(1, cores() + 1)]
    with tempfile.TemporaryDirectory() as data:
        model = Engine(Path(data)).model_path()
    gen = Generator(model, context_size=2048)
    answer(gen, None, 8)  # warm up
    out = {"cores": cores(), "hogs": args.hogs}
    out["quiet"] = measure(gen, settings, args.reps, args.max_tokens)
    out["quiet_summary"] = report("quiet machine", out["quiet"])
    stop = multiprocessing.Event()
    hogs = [multiprocessing.Process(target=hog, args=(stop,)) for _ in range(args.hogs)]
    for p in hogs:
        p.start()
    try:
        out["loaded"] = measure(gen, settings, args.reps, args.max_tokens)
    finally:
        stop.set()
        for p in hogs:
            p.join()
    out["loaded_summary"] = report(f"{args.hogs} CPU-bound processes beside it", out["loaded"])
    if args.json:
        print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
