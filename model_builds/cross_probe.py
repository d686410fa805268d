"""Probe: does a cross-encoder over the bi-encoder's best sentences pick the quote and say
"not covered" better than the bi-encoder's cosine alone? (DESIGN: keep a cross-encoder only
if it beats the tuned embedder on held-out questions.)

Trains MiniLM (float weights, a linear head on [CLS]) on the sentence pairs of
model_builds/questions (gold sentence against the other sentences of the app's sources) and on
the absent questions (every sentence a negative), listwise: a softmax over the candidates
and a learned "none of these" logit. Then, on held-out questions, with the reader's sources
and its TOP sentences, compares quote containment and the absent / false-refusal trade-off.

    python model_builds/cross_probe.py --reader FOLDER [--epochs 1] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from engine.core import Engine  # noqa: E402
from engine.eval.scoring import contains_answer, load_questions  # noqa: E402
from engine.reader.pairs import gold_sentence  # noqa: E402
from models.bundled import reader_base  # noqa: E402

TOP = 8


def candidates(engine: Engine, question: str) -> tuple[list, list[float], list[str]]:
    """The app's sources, and the reader's TOP sentences of them with their cosine."""
    reader = engine.reader
    assert reader is not None
    sources = engine.sources(question)
    table = reader.sentence_scores(question, sources) if sources else []
    table.sort(key=lambda r: -r[3])
    top = table[:TOP]
    return sources, [r[3] for r in top], [sources[r[0]].text[r[1] : r[2]] for r in top]


def build(engine: Engine, questions: list) -> list[dict]:
    rows = []
    for q in questions:
        sources, cos, texts = candidates(engine, q.question)
        if not texts:
            continue
        if q.absent:
            rows.append({"q": q.question, "texts": texts, "label": -1, "cos": cos})
            continue
        gold = [i for i, t in enumerate(texts) if contains_answer(t, q.answer or "")]
        if gold:
            rows.append({"q": q.question, "texts": texts, "label": gold[0], "cos": cos})
        else:  # the gold sentence is not among them: bring it in from its passage
            for s in sources:
                span = gold_sentence(s.text, q.answer or "") if q.answer else None
                if span:
                    texts = [s.text[span[0] : span[1]], *texts[: TOP - 1]]
                    rows.append({"q": q.question, "texts": texts, "label": 0, "cos": cos})
                    break
    return rows


class Cross(torch.nn.Module):
    def __init__(self, base: Path) -> None:
        super().__init__()
        from transformers import AutoModel, AutoTokenizer

        self.tok = AutoTokenizer.from_pretrained(str(base))
        self.bert = AutoModel.from_pretrained(str(base))
        self.head = torch.nn.Linear(384, 1)
        self.none = torch.nn.Parameter(torch.zeros(1))

    def forward(self, question: str, texts: list[str]) -> torch.Tensor:
        batch = self.tok([question] * len(texts), texts, padding=True, truncation=True,
                         max_length=128, return_tensors="pt")  # fmt: skip
        cls = self.bert(**batch).last_hidden_state[:, 0]
        return self.head(cls).squeeze(-1)


def train(model: Cross, rows: list[dict], epochs: int, lr: float) -> None:
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    total = epochs * len(rows)
    step = 0
    start = time.time()
    for epoch in range(epochs):
        random.Random(epoch).shuffle(rows)
        for i in range(0, len(rows), 8):
            opt.zero_grad()
            loss = torch.zeros(())
            for row in rows[i : i + 8]:
                logits = torch.cat([model.none, model(row["q"], row["texts"])])
                target = torch.tensor(row["label"] + 1)
                loss = loss + torch.nn.functional.cross_entropy(logits[None], target[None])
            (loss / 8).backward()
            for group in opt.param_groups:
                group["lr"] = lr * min(1.0, (step + 8) / (0.1 * total)) * (1 - step / total)
            opt.step()
            step += 8
            if step % 160 == 0:
                print(f"{step}/{total} loss {float(loss) / 8:.3f} {time.time() - start:.0f}s",
                      file=sys.stderr, flush=True)  # fmt: skip


def evaluate(model: Cross, rows: list[dict], held: list) -> None:
    model.eval()
    out: list[tuple[Any, ...]] = []  # (question, cross best, margin, bi best, cosine)
    with torch.inference_mode():
        for q in held:
            _sources, cos, texts = candidates(ENGINE, q.question)
            if not texts:
                out.append((q, None, None, None, None))
                continue
            logits = model(q.question, texts)
            best = int(torch.argmax(logits))
            margin = float(logits[best] - model.none[0])
            cbest = max(range(len(cos)), key=cos.__getitem__)
            out.append((q, texts[best], margin, texts[cbest], cos[cbest]))
    answerable = [o for o in out if not o[0].absent]
    absent = [o for o in out if o[0].absent]
    for name, ti, si in (("cross", 1, 2), ("bi-encoder", 3, 4)):
        contained = sum(
            bool(o[ti]) and contains_answer(o[ti], o[0].answer or "") for o in answerable
        ) / len(answerable)
        print(f"{name}: top sentence holds the phrase {contained:.3f} of answerable")
        scores = sorted({round(o[si], 2) for o in out if o[si] is not None})
        for bar in scores[:: max(1, len(scores) // 25)]:

            def refused(o: tuple, bar: float = bar, si: int = si) -> bool:
                return o[si] is None or o[si] < bar

            print(f"  bar {bar:6.2f}: absent {sum(map(refused, absent)) / len(absent):.3f} "
                  f"false {sum(map(refused, answerable)) / len(answerable):.3f}")  # fmt: skip


def main() -> int:
    global ENGINE
    parser = argparse.ArgumentParser()
    parser.add_argument("--reader", type=Path, required=True)
    parser.add_argument("--data-dir", type=Path, default=REPO / ".cache" / "grounding" / "data")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--lr", type=float, default=3e-5)
    args = parser.parse_args()
    torch.manual_seed(0)
    ENGINE = Engine(args.data_dir)
    ENGINE.settings.reader_path = str(args.reader.resolve())
    questions = []
    for path in sorted((REPO / "model_builds" / "questions").glob("*.jsonl")):
        questions += load_questions(path)
    rows = build(ENGINE, questions)
    print(f"{len(rows)} training lists ({sum(r['label'] < 0 for r in rows)} absent)",
          file=sys.stderr)  # fmt: skip
    model = Cross(reader_base(ENGINE.models_dir))
    train(model, rows, args.epochs, args.lr)
    held = load_questions(REPO / "model_builds/heldout/borg.jsonl")
    held += load_questions(REPO / "model_builds/heldout/absent.jsonl")
    evaluate(model, rows, held)
    torch.save(model.state_dict(), REPO / ".cache" / "reader" / "cross.pt")
    return 0


ENGINE: Engine


if __name__ == "__main__":
    sys.exit(main())
