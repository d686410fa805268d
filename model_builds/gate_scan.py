"""Choose the grounding adapter's refusal threshold on held-out questions.

    python model_builds/gate_scan.py --data-dir DIR QUESTIONS.jsonl [...] [--adapter FILE.gguf]
        [--scale S] [--out ANSWERS.jsonl]
    python model_builds/gate_scan.py --answers ANSWERS.jsonl

Answers every question in hybrid mode with the gate never refusing, and records the
adapter's probability of starting the refusal (the gate's p("The")). An answer below a
threshold is exactly that answer; at or above it, the refusal. So one pass gives, for
every threshold, the share of absent questions refused, of answerable ones refused
(false refusals) and of answerable ones whose answer holds the gold phrase. It does the
same for a bar raised where the best source is very close to the question (the shipped
gate's second level: `refusal_close`, `refusal_sure` in the adapter card's "app" section,
read by engine.answer.grounding; write the chosen numbers there). The reader reranks the sources
as in the app, with its not-covered bar open; each row keeps the quote's score, so that
`model_builds/reader_scan.py --gate` can choose the reader's bar together with this gate. Use
questions the adapter was not trained on and that are not the development set
(model_builds/heldout/).
`--answers FILE` prints the tables again from an earlier run's `--out`, without the model.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import models.bundled as bundled  # noqa: E402
from engine.answer import grounding  # noqa: E402
from engine.answer.events import AskOptions  # noqa: E402
from engine.core import Engine  # noqa: E402
from engine.eval.scoring import citation_counts, contains_answer, load_questions  # noqa: E402

THRESHOLDS = (0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.6, 1.01)
CLOSE = (0.6, 0.65, 0.7)  # the best source's similarity from which the second bar holds
SURE = (0.4, 0.5, 0.6)  # that second bar


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("questions", type=Path, nargs="*")
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--answers", type=Path, help="an earlier --out: only print the tables")
    parser.add_argument("--adapter", type=Path, help="default: the shipped adapter")
    parser.add_argument("--scale", type=float, help="default: the shipped adapter card's")
    parser.add_argument("--out", type=Path, help="write each answer and its odds here")
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument("--reader", type=Path, help="default: the shipped reader (its bar open)")
    args = parser.parse_args()
    if args.answers:
        rows = [json.loads(line) for line in args.answers.read_text().splitlines() if line]
        report(rows, grounding.read_card().refusal)
        return 0
    if not args.questions or not args.data_dir:
        parser.error("give QUESTIONS.jsonl and --data-dir, or --answers")
    shipped = grounding.read_card()  # the shipped adapter's, even when --adapter is another
    if args.adapter:
        bundled.GROUNDING_ADAPTER = args.adapter.resolve()
    base = shipped.refusal  # the bar the two-level rows raise
    engine = Engine(args.data_dir)
    engine.grounding.card_override = dataclasses.replace(  # never refuse: the odds decide below
        shipped,
        scale=shipped.scale if args.scale is None else args.scale,
        refusal=1.01,
        refusal_close=0.0,
        refusal_sure=1.01,
    )
    if args.reader:
        engine.settings.reader_path = str(args.reader.resolve())
    if engine.reader is not None:  # open: reader_scan.py --gate chooses both bars
        engine.reader.card["quote_threshold"] = -1.0
        engine.reader.card["grounding_refusal"] = None
    rows = []
    questions = [q for path in args.questions for q in load_questions(path)]
    for i, q in enumerate(questions, 1):
        answer = engine.answer(q.question, "hybrid", AskOptions(max_tokens=args.max_tokens))
        # None: no source passed the cutoff, so no model call
        odds = engine.last_refusal_odds if answer.timings.tokens else None
        gold, cited = citation_counts(answer.answer, answer.sources, q) if q.doc else (0, 0)
        rows.append({
            "id": q.id, "absent": q.absent, "odds": odds, "answer": answer.answer,
            "contained": bool(q.answer) and contains_answer(answer.answer, q.answer or ""),
            "gold_cited": gold, "cited": cited,
            "best_score": max((s.score for s in answer.sources), default=None),
            "quote_score": answer.quote.score if answer.quote else None,
            "quote_contained": answer.quote is not None and bool(q.answer)
            and contains_answer(answer.quote.text, q.answer or ""),
        })  # fmt: skip
        print(f"{i}/{len(questions)} {q.id} p={odds}", file=sys.stderr)
    if args.out:
        args.out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    engine.close()
    report(rows, base)
    return 0


def report(rows: list[dict], base: float) -> None:
    """Print what each threshold, and each two-level gate raising `base`, would have given."""
    answerable = [r for r in rows if not r["absent"]]
    absent = [r for r in rows if r["absent"]]
    print(f"{len(answerable)} answerable, {len(absent)} absent")
    header = "absent refused  false refusals  contained  citation precision"
    print(f"threshold  {header}")
    for t in THRESHOLDS:
        print(f"{t:9.2f}  {_scores(answerable, absent, _flat(t))}")
    print(f"\nat {base} (the card's refusal), raised where the best source's similarity >= close")
    print(f"close  raised to  {header}")
    for close in CLOSE:
        for sure in SURE:

            def bar(r: dict, close: float = close, sure: float = sure) -> float:
                return sure if (r["best_score"] or 0.0) >= close else base

            print(f"{close:5.2f}  {sure:9.2f}  {_scores(answerable, absent, bar)}")


def _flat(t: float) -> Callable[[dict], float]:
    """The bar that is `t` for every answer."""
    return lambda _r: t


def _scores(answerable: list[dict], absent: list[dict], bar: Callable[[dict], float]) -> str:
    def refused(r: dict) -> bool:
        return r["odds"] is None or r["odds"] >= bar(r)

    kept = [r for r in answerable if not refused(r)]
    cited = sum(r["cited"] for r in kept)
    return (
        f"{sum(map(refused, absent)) / max(len(absent), 1):14.2f}  "
        f"{sum(map(refused, answerable)) / len(answerable):14.2f}  "
        f"{sum(r['contained'] for r in kept) / len(answerable):9.2f}  "
        f"{sum(r['gold_cited'] for r in kept) / cited if cited else float('nan'):18.2f}"
    )


if __name__ == "__main__":
    sys.exit(main())
