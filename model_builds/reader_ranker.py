"""Fit the reader's two linear rankers (engine/reader/features.py) and choose them on the
held-out questions: the passage ranker, which orders the search's 20 candidates, and the
sentence ranker, which picks the quote among the sentences of the answer's sources.

    python model_builds/reader_ranker.py --reader FOLDER [--data-dir DIR] \
        --train model_builds/questions/*-d.jsonl --heldout model_builds/heldout/*.jsonl \
        [--breadth-data-dir DIR --train-breadth FILE ... --heldout-breadth FILE ...] [--write]

Fitted on questions the reader's own training never saw (the `*-d.jsonl` files were
written after it), so the reader's cosine means there what it means on a new manual. Each
ranker is a listwise softmax over a question's candidates (the gold ones against the rest)
with an L2 penalty; the penalty is chosen on the held-out questions, and a ranker is
written into FOLDER/reader.json only where it beats what the card does now on them
(hit@1, then MRR for passages; the quote holding the gold phrase for sentences). Run it
over the training corpus's index, never the development set. `--train-breadth` and
`--heldout-breadth` add questions about other manuals (model_builds/breadth/, over that
corpus's own index, `--breadth-data-dir`): the ones the reader never trained on are fitted
on, and the ones on manuals nobody trained on (`unseen/`) join the held-out questions.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from engine.core import Engine  # noqa: E402
from engine.eval.scoring import Question, contains_answer, is_hit, load_questions  # noqa: E402
from engine.reader.features import PASSAGE_FEATURES, SENTENCE_FEATURES, linear  # noqa: E402
from engine.reader.rank import CARD_FILE, passage_rows, pick, sentence_rows  # noqa: E402

PENALTIES = (0.0, 0.001, 0.01, 0.1)
STEPS = 500

# One list per question: its candidates' features and which of them are gold.
Lists = list[tuple[np.ndarray, np.ndarray]]


def passage_lists(engine: Engine, questions: list[Question]) -> Lists:
    reader = engine.reader
    assert reader is not None
    out = []
    for q in questions:
        found = engine.search(q.question, 20, rerank=False)
        if not found:
            continue
        scores = reader.passage_scores(engine.store, q.question, found)
        rows = passage_rows(q.question, found, scores)
        out.append((rows, np.array([is_hit(s, q) for s in found])))
    return out


def sentence_lists(engine: Engine, questions: list[Question]) -> list[dict]:
    """Each question's sentences as the app would quote from them (its sources, in the
    card's current passage order)."""
    reader = engine.reader
    assert reader is not None
    out = []
    for q in questions:
        sources = engine.sources(q.question)
        table = reader.sentence_scores(q.question, sources) if sources else []
        if not table:
            out.append({"q": q, "table": [], "sources": sources, "rows": None, "gold": None})
            continue
        texts = [sources[n].text[a:b] for n, a, b, _, _ in table]
        gold = np.array([contains_answer(t, q.answer or "") for t in texts])
        out.append({"q": q, "table": table, "sources": sources,
                    "rows": sentence_rows(q.question, table, sources), "gold": gold})  # fmt: skip
    return out


def fit(lists: Lists, penalty: float, first: int = 0) -> np.ndarray:
    """Weights minimising the listwise softmax loss of the gold candidates (Adam, on
    standardised features, returned for the raw ones)."""
    usable = [(x, y) for x, y in lists if y.any() and not y.all()]
    stacked = np.concatenate([x for x, _ in usable])
    scale = stacked.std(axis=0) + 1e-6
    usable = [(x / scale, y) for x, y in usable]
    w = np.zeros(stacked.shape[1])
    w[first] = 1.0
    m = np.zeros_like(w)
    v = np.zeros_like(w)
    for t in range(1, STEPS + 1):
        grad = penalty * w
        for x, y in usable:
            s = x @ w
            p = np.exp(s - s.max())
            p /= p.sum()
            gold = p[y].sum()
            grad += (p @ x - (p[y] / gold) @ x[y]) / len(usable)
        m = 0.9 * m + 0.1 * grad
        v = 0.999 * v + 0.001 * grad * grad
        w -= 0.05 * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1e-8)
    return w / scale


def ranking(lists: Lists, weights: np.ndarray) -> dict[str, float]:
    hit1 = hit5 = mrr = 0.0
    for x, y in lists:
        order = np.argsort(-(x @ weights), kind="stable")
        ranks = [r for r, i in enumerate(order, 1) if y[i]]
        if ranks:
            hit1 += ranks[0] == 1
            hit5 += ranks[0] <= 5
            mrr += 1 / ranks[0]
    n = len(lists) or 1
    return {"hit@1": round(hit1 / n, 3), "hit@5": round(hit5 / n, 3), "mrr": round(mrr / n, 3)}


def quote_contained(items: list[dict], card: dict, weights: np.ndarray | None) -> float:
    """Share of the questions whose quote (as `pick` makes it) holds the gold phrase."""
    held = 0
    for item in items:
        if not item["table"]:
            continue
        ranked = None if weights is None else list(linear(item["rows"], list(weights)))
        quote = pick(item["table"], item["sources"], card, ranked)
        held += contains_answer(quote.text, item["q"].answer)
    return round(held / (len(items) or 1), 3)


def load(paths: list[Path]) -> list[Question]:
    return [q for path in paths for q in load_questions(path) if q.doc]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reader", type=Path, required=True, help="the reader folder")
    parser.add_argument("--data-dir", type=Path, default=REPO / ".cache" / "grounding" / "data")
    parser.add_argument("--train", type=Path, nargs="+", required=True)
    parser.add_argument("--heldout", type=Path, nargs="+", required=True)
    parser.add_argument("--breadth-data-dir", type=Path,
                        default=REPO / ".cache" / "breadth" / "data")  # fmt: skip
    parser.add_argument("--train-breadth", type=Path, nargs="*", default=[])
    parser.add_argument("--heldout-breadth", type=Path, nargs="*", default=[])
    parser.add_argument("--write", action="store_true", help="write the chosen rankers")
    args = parser.parse_args()

    engine = Engine(args.data_dir)
    engine.update_settings(save=False, reader_path=str(args.reader.resolve()))
    reader = engine.reader
    assert reader is not None, "the reader is off in this data folder's settings"
    card = reader.card  # changed in memory as the rankers are chosen; written with --write
    card.pop("passage_ranker", None)
    card.pop("sentence_ranker", None)
    # (engine, training questions, held-out questions) per index
    sets = [(engine, load(args.train), load(args.heldout))]
    if args.train_breadth or args.heldout_breadth:
        wide = Engine(args.breadth_data_dir)
        wide.update_settings(save=False, reader_path=str(args.reader.resolve()))
        assert wide.reader is not None
        wide.reader.card = card  # one card: the rankers' choices apply to both indexes
        sets.append((wide, load(args.train_breadth), load(args.heldout_breadth)))
    train = [q for _, t, _ in sets for q in t]
    report: dict = {"train": [str(p) for p in args.train + args.train_breadth],
                    "train_questions": len(train),
                    "heldout": [str(p) for p in args.heldout + args.heldout_breadth],
                    "heldout_questions": sum(len(h) for _, _, h in sets)}  # fmt: skip
    start = time.perf_counter()

    # -- passages ------------------------------------------------------------------------
    weight = float(card.get("rerank_weight", 0.0))
    now = np.zeros(len(PASSAGE_FEATURES))
    now[PASSAGE_FEATURES.index("reader")] = 1.0
    now[PASSAGE_FEATURES.index("relevance")] = weight
    fit_lists = [x for e, t, _ in sets for x in passage_lists(e, t)]
    held_lists = [x for e, _, h in sets for x in passage_lists(e, h)]
    rows = {"card now": ranking(held_lists, now)}
    fitted = {}
    for penalty in PENALTIES:
        w = fit(fit_lists, penalty)
        fitted[penalty] = w
        rows[f"fitted, penalty {penalty}"] = ranking(held_lists, w)
        print(f"passages, penalty {penalty}: train {ranking(fit_lists, w)} "
              f"held-out {rows[f'fitted, penalty {penalty}']}", file=sys.stderr)  # fmt: skip
    best = max(PENALTIES, key=lambda p: (rows[f"fitted, penalty {p}"]["hit@1"],
                                         rows[f"fitted, penalty {p}"]["mrr"]))  # fmt: skip
    chosen = rows[f"fitted, penalty {best}"]
    better = (chosen["hit@1"], chosen["mrr"]) > (rows["card now"]["hit@1"], rows["card now"]["mrr"])
    report["passages"] = {"heldout": rows, "penalty": best, "shipped": better,
                          "weights": dict(zip(PASSAGE_FEATURES, np.round(fitted[best], 4).tolist(),
                                              strict=True))}  # fmt: skip
    if better:
        card["passage_ranker"] = [round(float(x), 5) for x in fitted[best]]

    # -- sentences -----------------------------------------------------------------------
    settings = reader.card_settings()
    fit_items = [x for e, t, _ in sets for x in sentence_lists(e, t)]
    held_items = [x for e, _, h in sets for x in sentence_lists(e, h)]
    fit_s = [(i["rows"], i["gold"]) for i in fit_items if i["rows"] is not None]
    quotes = {"card now": quote_contained(held_items, settings, None)}
    fitted_s = {}
    for penalty in PENALTIES:
        w = fit(fit_s, penalty)
        fitted_s[penalty] = w
        quotes[f"fitted, penalty {penalty}"] = quote_contained(held_items, settings, w)
        print(f"sentences, penalty {penalty}: train {quote_contained(fit_items, settings, w)} "
              f"held-out {quotes[f'fitted, penalty {penalty}']}", file=sys.stderr)  # fmt: skip
    best_s = max(PENALTIES, key=lambda p: quotes[f"fitted, penalty {p}"])
    better_s = quotes[f"fitted, penalty {best_s}"] > quotes["card now"]
    report["sentences"] = {"heldout_quote_contained": quotes, "penalty": best_s,
                           "shipped": better_s,
                           "weights": dict(zip(SENTENCE_FEATURES,
                                               np.round(fitted_s[best_s], 4).tolist(),
                                               strict=True))}  # fmt: skip
    if better_s:
        card["sentence_ranker"] = [round(float(x), 5) for x in fitted_s[best_s]]
    report["seconds"] = round(time.perf_counter() - start, 1)
    card["rankers"] = report
    if args.write:
        (args.reader / CARD_FILE).write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
