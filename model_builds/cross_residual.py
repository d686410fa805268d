"""Probe: a cross-encoder that only corrects the shipped sentence ranker's choice of quote.

The first probe (`cross_probe.py`) scored the sentences with a cross-encoder alone and lost
to the bi-encoder (held-out 0.32 against 0.48). Here the cross-encoder learns a residual:
each of the sentence ranker's TOP sentences scores `ranked + head(CLS(question, text))`,
the head starting at zero, so that before training the quote is exactly the shipped one
and the ~3,000 questions only have to teach it where the ranker is wrong (typically: it
quotes the sentence that restates the question, and the answer is the next one). A
candidate's text is the sentence, the sentence before it and its section heading. The
loss is listwise (every candidate holding the gold phrase is a positive). The quote's
score, what the not-covered bar reads, is unchanged.

Trained on the recipe's questions (`model_builds/questions`, over the training corpus's
index) and the breadth questions (`model_builds/breadth/questions`, over theirs); scored
after each epoch on the held-out BorgBackup questions and the unseen manuals' questions:
the quote, with the app's neighbour rules, holding the gold phrase (shipped and corrected,
on the same sources).

`where` counts, for the held-out sets, where the gold phrase stands when the quote misses
it (not in the sources; in the quote's passage, after or before it; in another source).
`heads` measures, on the same lists, a rule instead of a model: quote from a reference
entry's head (a line opening with a quoted term or an option) when the chosen sentence lies
a few sentences below it in its passage.

    python model_builds/cross_residual.py build [--lists FILE]
    python model_builds/cross_residual.py train [--lists FILE] [--epochs 2] [--share 0.5]
    python model_builds/cross_residual.py heads [--lists FILE]
    python model_builds/cross_residual.py where
"""

from __future__ import annotations

import argparse
import collections
import pickle
import random
import re
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from engine.core import Engine  # noqa: E402
from engine.eval.scoring import Question, contains_answer, load_questions  # noqa: E402
from engine.reader.features import linear  # noqa: E402
from engine.reader.rank import pick, sentence_rows  # noqa: E402
from engine.reader.sentences import sentence_spans  # noqa: E402
from engine.types import SearchResult  # noqa: E402
from models.bundled import reader_base  # noqa: E402

TOP = 8
CACHE = REPO / ".cache" / "reader"
GROUNDING = REPO / ".cache" / "grounding" / "data"
BREADTH = REPO / ".cache" / "breadth" / "data"


def candidate_text(source: SearchResult, a: int, b: int) -> str:
    """The sentence, the one before it in its passage and the passage's section."""
    text = source.text
    before = [s for s in sentence_spans(text) if s[1] <= a]
    out = text[a:b]
    if before:
        out += " | before: " + text[before[-1][0] : before[-1][1]]
    if source.section:
        out += " | section: " + source.section
    return out


def one(engine: Engine, q: Question, train: bool) -> dict[str, Any] | None:
    """The question's sources, scored sentences and TOP candidates by the sentence ranker
    (for training, the first gold sentence is brought in when none of them holds it)."""
    reader = engine.reader
    assert reader is not None
    sources = engine.sources(q.question)
    table = reader.sentence_scores(q.question, sources) if sources else []
    if not table:
        return None
    rows = sentence_rows(q.question, table, sources)
    ranked = [float(x) for x in linear(rows, reader.card["sentence_ranker"])]

    def holds(i: int) -> bool:
        n, a, b = table[i][:3]
        return contains_answer(sources[n].text[a:b], q.answer or "")

    order = sorted(range(len(table)), key=lambda i: -ranked[i])
    top = order[:TOP]
    if train and not any(map(holds, top)):
        gold = [i for i in order if holds(i)]
        if not gold:
            return None
        top = [gold[0], *top[: TOP - 1]]
    texts = [candidate_text(sources[table[i][0]], table[i][1], table[i][2]) for i in top]
    return {"id": q.id, "q": q.question, "answer": q.answer, "top": top, "texts": texts,
            "labels": [holds(i) for i in top], "ranked": ranked, "table": table,
            "sources": sources}  # fmt: skip


def engine_for(data: Path, reader: Path) -> Engine:
    engine = Engine(data)
    engine.settings.reader_path = str(reader.resolve())
    return engine


def build(reader: Path, out: Path) -> None:
    grounding, breadth = engine_for(GROUNDING, reader), engine_for(BREADTH, reader)
    asked: list[tuple[Engine, Question]] = []
    for folder, engine in ((REPO / "model_builds" / "questions", grounding),
                           (REPO / "model_builds" / "breadth" / "questions", breadth)):  # fmt: skip
        for path in sorted(folder.glob("*.jsonl")):
            asked += [(engine, q) for q in load_questions(path) if not q.absent and q.answer]
    lists: dict[str, list] = {"train": [], "borg": [], "unseen": []}
    start = time.time()
    for n, (engine, q) in enumerate(asked):
        row = one(engine, q, True)
        if row and any(row["labels"]):
            lists["train"].append(row)
        if n % 200 == 0:
            print(f"{n}/{len(asked)} {time.time() - start:.0f}s", file=sys.stderr, flush=True)
    held = [(grounding, q) for q in load_questions(REPO / "model_builds/heldout/borg.jsonl")]
    for path in sorted((REPO / "model_builds" / "breadth" / "unseen").glob("*.jsonl")):
        held += [(breadth, q) for q in load_questions(path)]
    for engine, q in held:
        if q.answer and not q.absent:
            name = "borg" if engine is grounding else "unseen"
            lists[name].append(one(engine, q, False) or {"id": q.id, "none": True})
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(pickle.dumps(lists))
    print({k: len(v) for k, v in lists.items()})


def make_model(base: Path) -> Any:
    import torch
    from transformers import AutoModel, AutoTokenizer

    class Cross(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.tok = AutoTokenizer.from_pretrained(str(base))
            self.bert = AutoModel.from_pretrained(str(base))
            self.head = torch.nn.Linear(384, 1)
            torch.nn.init.zeros_(self.head.weight)
            torch.nn.init.zeros_(self.head.bias)

        def forward(self, question: str, texts: list[str]) -> Any:
            batch = self.tok(
                [question] * len(texts), texts, padding=True, truncation="only_second",
                max_length=128, return_tensors="pt",
            )  # fmt: skip
            return self.head(self.bert(**batch).last_hidden_state[:, 0]).squeeze(-1)

    return Cross()


def evaluate(model: Any, rows: list[dict], card: dict[str, float], label: str) -> None:
    """The quote (the app's neighbour rules) holding the gold phrase, shipped and corrected,
    and the top candidate alone; `oracle`: some candidate holds it."""
    import torch

    model.eval()
    got = dict.fromkeys(("shipped", "corrected", "top1_shipped", "top1_corrected", "oracle"), 0)
    words = 0
    with torch.inference_mode():
        for r in rows:
            if r.get("none"):
                continue
            extra = model(r["q"], r["texts"]).numpy()
            base = np.array(r["ranked"])
            corrected = base - 1e3
            corrected[r["top"]] = base[r["top"]] + extra
            shipped = pick(r["table"], r["sources"], card, [float(x) for x in base])
            quote = pick(r["table"], r["sources"], card, [float(x) for x in corrected])
            got["shipped"] += contains_answer(shipped.text, r["answer"])
            got["corrected"] += contains_answer(quote.text, r["answer"])
            got["top1_shipped"] += r["labels"][0]
            got["top1_corrected"] += r["labels"][int(np.argmax(base[r["top"]] + extra))]
            got["oracle"] += any(r["labels"])
            words += len(quote.text.split())
    n = len(rows)
    print(label, n, {k: round(v / n, 3) for k, v in got.items()},
          f"corrected quote {words / n:.1f} words", flush=True)  # fmt: skip


def train(
    lists: Path, reader: Path, epochs: int, lr: float, head_lr: float, share: float = 1.0
) -> None:
    import torch

    torch.manual_seed(0)
    sets = pickle.loads(lists.read_bytes())
    rows = sets["train"]
    if share < 1.0:  # a learning curve: a random share of the lists
        rows = random.Random(1).sample(rows, round(share * len(rows)))
    engine = engine_for(GROUNDING, reader)
    assert engine.reader is not None
    card = engine.reader.card_settings()
    model = make_model(reader_base(engine.models_dir))
    opt = torch.optim.AdamW([{"params": model.bert.parameters(), "lr": lr},
                             {"params": model.head.parameters(), "lr": head_lr}],
                            weight_decay=0.01)  # fmt: skip
    total, step, batch, start = epochs * len(rows), 0, 8, time.time()
    losses: list[float] = []
    for epoch in range(epochs):
        random.Random(epoch).shuffle(rows)
        model.train()
        for i in range(0, len(rows), batch):
            opt.zero_grad()
            loss = torch.zeros(())
            for r in rows[i : i + batch]:
                base = torch.tensor([r["ranked"][k] for k in r["top"]])
                logits = base + model(r["q"], r["texts"])
                positive = torch.tensor(r["labels"])
                loss = loss - (torch.logsumexp(logits[positive], 0) - torch.logsumexp(logits, 0))
            (loss / batch).backward()
            for group, peak in zip(opt.param_groups, (lr, head_lr), strict=True):
                group["lr"] = peak * min(1.0, (step + batch) / (0.1 * total)) * (1 - step / total)
            opt.step()
            step += batch
            losses.append(float(loss.detach()) / batch)
            if (step // batch) % 25 == 0:
                print(f"{step}/{total} loss {np.mean(losses[-25:]):.3f} "
                      f"{time.time() - start:.0f}s", file=sys.stderr, flush=True)  # fmt: skip
        evaluate(model, sets["borg"], card, f"epoch {epoch + 1} borg")
        evaluate(model, sets["unseen"], card, f"epoch {epoch + 1} unseen")
        torch.save(model.state_dict(), CACHE / f"cross-residual-{share}-e{epoch + 1}.pt")


ENTRY_HEAD = re.compile(r"""(?:[‘'"`][^’'"`\n]{1,60}[’'"`]|--?[A-Za-z][\w-]*)""")


def from_head(sources: list[SearchResult], quote: Any, depth: int, cap: int) -> str:
    """The quote, widened up to its entry's head when the head is at most `depth` sentences
    above it (only the head and the quote, joined by an ellipsis, when that is over `cap`
    words)."""
    text = next(s.text for s in sources if s.chunk_id == quote.chunk_id)
    spans = sentence_spans(text)
    here = [i for i, (a, b) in enumerate(spans) if a <= quote.start < b]
    if not here:
        return str(quote.text)

    def is_head(i: int) -> bool:
        a = spans[i][0]
        return (a == 0 or text[a - 1] == "\n") and bool(ENTRY_HEAD.match(text, a))

    if is_head(here[0]):
        return str(quote.text)
    for j in range(here[0] - 1, max(-1, here[0] - 1 - depth), -1):
        if is_head(j):
            wide = text[spans[j][0] : quote.end]
            if len(wide.split()) <= cap:
                return wide
            return f"{text[spans[j][0] : spans[j][1]]} … {quote.text}"
    return str(quote.text)


def heads(lists: Path, reader: Path) -> None:
    sets = pickle.loads(lists.read_bytes())
    card = engine_for(GROUNDING, reader).reader.card_settings()  # type: ignore[union-attr]
    for name in ("borg", "unseen", "train"):
        rows = [r for r in sets[name] if not r.get("none")]
        n, k = len(sets[name]), len(rows)
        quotes = [pick(r["table"], r["sources"], card, r["ranked"]) for r in rows]
        answers, found = [r["answer"] for r in rows], [r["sources"] for r in rows]
        held = sum(map(contains_answer, (q.text for q in quotes), answers))
        words = sum(len(q.text.split()) for q in quotes)
        print(f"{name} ({n}): shipped {held / n:.3f}, {words / n:.1f} words")
        for depth in (1, 2, 3, 5):
            for cap in (60, 80, 1000):
                texts = list(map(from_head, found, quotes, [depth] * k, [cap] * k))
                held = sum(map(contains_answer, texts, answers))
                words = sum(len(t.split()) for t in texts)
                changed = sum(t != q.text for t, q in zip(texts, quotes, strict=True))
                print(f"  depth {depth}, cap {cap}: {held / n:.3f}, {words / n:.1f} words, "
                      f"{changed} changed")  # fmt: skip


def where_missed(engine: Engine, q: Question) -> str:
    """Where the gold phrase stands for the app's quote: `contained`, `not in sources`,
    `next`/`earlier`/`further` (sentences of the quote's passage) or `another source`."""
    assert engine.reader is not None
    sources = engine.sources(q.question)
    quote = engine.reader.quote(q.question, sources) if sources else None
    answer = q.answer or ""
    if quote and contains_answer(quote.text, answer):
        return "contained"
    holding = [s for s in sources if contains_answer(s.text, answer)]
    if quote is None or not holding:
        return "not in sources"
    if all(s.chunk_id != quote.chunk_id for s in holding):
        return "another source"
    text = next(s.text for s in holding if s.chunk_id == quote.chunk_id)
    spans = sentence_spans(text)
    gold = [i for i, (a, b) in enumerate(spans) if contains_answer(text[a:b], answer)]
    quoted = [i for i, (a, b) in enumerate(spans) if a >= quote.start and b <= quote.end]
    if not gold or not quoted:
        return "across sentences"
    if gold[0] < quoted[0]:
        return "earlier"
    return "next" if gold[0] == quoted[-1] + 1 else "further"


def where(reader: Path) -> None:
    unseen = sorted((REPO / "model_builds" / "breadth" / "unseen").glob("*.jsonl"))
    held = {"borg": (GROUNDING, [REPO / "model_builds/heldout/borg.jsonl"]),
            "unseen": (BREADTH, unseen)}  # fmt: skip
    for name, (data, paths) in held.items():
        engine = engine_for(data, reader)
        counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        for path in paths:
            for q in load_questions(path):
                if q.answer and not q.absent:
                    counts[q.id.split("-")[0]][where_missed(engine, q)] += 1
        for manual, counted in sorted(counts.items()):
            print(name, manual, sum(counted.values()), dict(counted.most_common()))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("step", choices=("build", "train", "heads", "where"))
    parser.add_argument("--lists", type=Path, default=CACHE / "cross-lists.pkl")
    parser.add_argument("--reader", type=Path, default=REPO / ".cache/models/quire-reader")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--lr", type=float, default=4e-5)
    parser.add_argument("--head-lr", type=float, default=1e-3)
    parser.add_argument("--share", type=float, default=1.0, help="train on this share of the lists")
    args = parser.parse_args()
    if args.step == "build":
        build(args.reader, args.lists)
    elif args.step == "where":
        where(args.reader)
    elif args.step == "heads":
        heads(args.lists, args.reader)
    else:
        train(args.lists, args.reader, args.epochs, args.lr, args.head_lr, args.share)
    return 0


if __name__ == "__main__":
    sys.exit(main())
