"""Answer speed with Quire's grounding adapter: merged into the model, at runtime, and none.

The same questions over the same small index, answered in three ways, interleaved (ABBA)
so that the machine's load falls on all alike: `rag` (the plain base model with sources),
`hybrid` as shipped (the adapter folded into a copy of the model, `models.merge`) and
`hybrid` with the adapter applied by llama.cpp at runtime. Reported: median tokens/s and
first-token seconds of each, and their ratios to rag (issue 9's targets: tokens/s >= 0.9x,
first token no slower than rag).

    QUIRE_MODELS_DIR=.cache/models .venv/bin/python benchmarks/grounded.py --reps 3
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.core import AskOptions, Engine
from engine.settings import Settings

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "freedombox-manual"
DOCS = ("Backups", "Calibre", "Deluge", "MediaWiki", "Syncthing", "Transmission")
QUESTIONS = (
    "How do I restore a backup?",
    "How do I add books to the Calibre library?",
    "What is the default password of the Deluge web interface?",
    "How do I reset the MediaWiki administrator password?",
    "Where is the Syncthing web interface?",
    "Which port should I forward for Transmission?",
)
SIDES = {
    "rag": ("rag", True),
    "hybrid merged": ("hybrid", True),
    "hybrid runtime": ("hybrid", False),
}


def answer(engine: Engine, question: str, mode: str, merged: bool, tokens: int) -> tuple:
    engine.llms.merge = merged
    t = engine.answer(question, mode, AskOptions(temperature=0.0, max_tokens=tokens)).timings
    return t.first_token_s, t.tokens_per_s, t.tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=64, help="max tokens per answer")
    parser.add_argument("--questions", type=int, default=len(QUESTIONS), help="how many to ask")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    runs: dict[str, list[tuple]] = {name: [] for name in SIDES}
    with tempfile.TemporaryDirectory() as tmp:
        # generation is what is compared: no reader, so no answer is "not covered"
        engine = Engine(Path(tmp), Settings(reader=False))
        engine.ingest([CORPUS / f"{d}.part.html" for d in DOCS])
        for mode, merged in SIDES.values():  # load everything before timing
            answer(engine, QUESTIONS[0], mode, merged, 4)
        order = list(SIDES.items())
        for rep in range(args.reps):
            for question in QUESTIONS[: args.questions]:
                for name, (mode, merged) in order if rep % 2 == 0 else order[::-1]:
                    runs[name].append(answer(engine, question, mode, merged, args.tokens))
        engine.close()
    out: dict = {
        name: {
            "first_token_s": float(np.median([r[0] for r in rs])),
            "tokens_per_s": float(np.median([r[1] for r in rs if r[2] > 1] or [0.0])),
            "answers": len(rs),
        }
        for name, rs in runs.items()
    }
    rag = out["rag"]
    for name in ("hybrid merged", "hybrid runtime"):
        out[name]["tps_vs_rag"] = out[name]["tokens_per_s"] / rag["tokens_per_s"]
        out[name]["first_token_vs_rag"] = out[name]["first_token_s"] / rag["first_token_s"]
    out["load"] = os.getloadavg()[0]
    print(json.dumps(out, indent=1))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
