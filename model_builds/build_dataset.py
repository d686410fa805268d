"""Build the grounding adapter's training data (RAFT) with Quire's own retrieval and prompts.

For every question in `model_builds/questions/*.jsonl` (about `../shared/training-corpus/`,
never the evaluation corpus), the prompt is exactly what Quire gives the model at answer
time: the engine's search over an index of the training corpus (same defaults, relevance
cutoff and de-duplication), numbered by `build_prompt` with the app's system prompt and
context budget, listed best last as the app lists them for this adapter. The target names
the source that holds the answer first ("Source [n]: ") and then states the fact in the
question's ideal answer. Each answerable question gives one example: the sources as
retrieval ranked them when the gold passage is among the top k, else the gold passage
moved in at a random rank; one in twenty also gives an example with the gold passage
removed; those, like the absent questions, are answered with the exact "don't know"
sentence. About a fifth of the targets are refusals: the first adapter, trained with 28%,
refused 63% of the answerable development questions.

    python model_builds/build_dataset.py [--data-dir DIR] [--out FILE] [--seed N]
        [--order app|random]
        [--exclude GLOB ...] [--include GLOB ...]

Prints counts; writes the chat JSONL that `main.py train` takes.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections import Counter
from collections.abc import Sequence
from fnmatch import fnmatch
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from engine.answer.generation import ChatFormat, load_vocab  # noqa: E402
from engine.answer.prompting import DONT_KNOW, build_prompt  # noqa: E402
from engine.core import Engine  # noqa: E402
from engine.eval.scoring import contains_answer  # noqa: E402
from engine.index.retrieval import Retriever  # noqa: E402
from engine.types import SearchResult  # noqa: E402

QUESTIONS = REPO / "model_builds" / "questions"
CORPUS = REPO.parent / "shared" / "training-corpus"
REMOVED_SHARE = 0.05  # answerable questions that also get an example without the gold passage
DEEP_K = 40  # how far to look for the gold passage when the top-k missed it


def load_questions(
    folder: Path, exclude: Sequence[str] = (), include: Sequence[str] = ()
) -> list[dict]:
    """The questions in `folder`'s JSONL files: those matching an `include` glob if any is
    given, less those matching an `exclude` glob (an earlier stage's recipe leaves out the
    files written after it was trained; a later one may train on the new files only)."""
    rows = []
    for path in sorted(folder.glob("*.jsonl")):
        if include and not any(fnmatch(path.name, pattern) for pattern in include):
            continue
        if any(fnmatch(path.name, pattern) for pattern in exclude):
            continue
        rows += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return rows


def holds_answer(source: SearchResult, question: dict) -> bool:
    """The passage is from the gold document (and page) and contains the gold phrase."""
    if not source.path.replace("\\", "/").endswith("/" + question["doc"]):
        return False
    if question.get("pages") and source.page not in question["pages"]:
        return False
    return contains_answer(source.text, question["answer"])


def mentions_answer(source: SearchResult, question: dict) -> bool:
    """Any passage that contains the gold phrase: never a distractor for a "removed" example."""
    return contains_answer(source.text, question["answer"])


def find_gold(engine: Engine, question: dict, top: list[SearchResult]) -> SearchResult | None:
    """The gold passage: from the top-k, else deeper in the same search, else by keywords."""
    for source in top:
        if holds_answer(source, question):
            return source
    retriever = Retriever(engine.store, engine.embedder)
    for query, method in ((question["question"], "hybrid"), (question["answer"], "keyword")):
        for source in retriever.search(query, k=DEEP_K, min_score=0.0, method=method):
            if holds_answer(source, question):
                return source
    return None


def cite(ideal: str, number: int) -> str:
    """The ideal answer led by its citation: "Source [2]: The default is 10."

    Every answer starts with the same word, as every refusal does. Greedy decoding takes
    the likeliest token at each step: when answers begin in a hundred ways and the refusal
    in one, the refusal's first tokens win whenever the model is unsure, and the first
    adapters refused two answerable questions in three. Naming the source first also makes
    the model choose the passage before it writes from it.
    """
    return f"Source [{number}]: {ideal.strip()}"


def arrange(
    question: dict,
    top: list[SearchResult],
    gold: SearchResult,
    k: int,
    rng: random.Random,
    order: str = "app",
) -> list[tuple[list[SearchResult], SearchResult | None, str]]:
    """[(sources in rank order, the gold passage or None, variant)].

    `app`: what the app would give, retrieval's top k as ranked when the gold passage is
    among them; when retrieval ranked it deeper, it is moved in at a random rank (RAFT's
    moved gold passage). `random`: the gold passage at a random rank among the best
    distractors, whatever retrieval made of it. Sometimes also an example with the gold
    passage removed.
    """
    distractors = [
        s for s in top if s.chunk_id != gold.chunk_id and not mentions_answer(s, question)
    ]
    others = distractors[: k - 1]
    arrangements: list[tuple[list[SearchResult], SearchResult | None, str]] = []
    if order == "app" and any(s.chunk_id == gold.chunk_id for s in top[:k]):
        arrangements.append((top[:k], gold, "ranked"))
    else:
        if order == "random":
            rng.random()  # the first recipe drew this too: its data stays byte for byte
        position = rng.randint(0, len(others))
        variant = f"gold@{position + 1}" if order == "random" else "moved"
        arrangements.append(([*others[:position], gold, *others[position:]], gold, variant))
    if rng.random() < REMOVED_SHARE:
        arrangements.append((distractors[:k], None, "removed"))
    return arrangements


def build(
    engine: Engine, questions: list[dict], seed: int, order: str = "app"
) -> tuple[list[dict], Counter]:
    chat = ChatFormat(load_vocab(engine.model_path()))
    settings = engine.settings
    budget = settings.context_size - settings.max_tokens
    k = settings.top_k
    rng = random.Random(seed)
    examples: list[dict] = []
    stats: Counter = Counter()
    for question in questions:
        # Candidates past the cutoff too, so a "removed" example still has distractors.
        top = engine.sources(question["question"], k=k + 3)
        arrangements: list[tuple[list[SearchResult], SearchResult | None, str]]
        if question.get("kind") == "absent":
            arrangements = [(top[:k], None, "absent")]
        else:
            gold = find_gold(engine, question, top)
            if gold is None:
                stats["gold passage not found (skipped)"] += 1
                continue
            stats["gold in top-k" if gold in top[:k] else "gold found deeper"] += 1
            arrangements = arrange(question, top, gold, k, rng, order)
        for sources, gold_source, variant in arrangements:
            if not sources:
                stats[f"{variant}: no source passed the cutoff (answered without the model)"] += 1
                continue
            prompt = build_prompt(
                question["question"], sources, chat.count_tokens, budget,
                settings.system_prompt, best_last=order == "app",
            )  # fmt: skip
            target = DONT_KNOW
            if gold_source is not None:
                kept = [s.chunk_id for s in prompt.sources]
                if len(kept) < len(sources):
                    stats["a source cut by the context budget (skipped)"] += 1
                    continue
                number = kept.index(gold_source.chunk_id) + 1
                target = cite(question["ideal"], number)
                stats[f"gold cited as [{number}] of {len(kept)}"] += 1
            stats[variant] += 1
            examples.append(
                {
                    "messages": [*prompt.messages, {"role": "assistant", "content": target}],
                    "id": question["id"],
                    "variant": variant,
                }
            )
    rng.shuffle(examples)
    return examples, stats


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=REPO / ".cache" / "grounding" / "data")
    parser.add_argument(
        "--out", type=Path, default=REPO / ".cache" / "grounding" / "grounding.jsonl"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--order", choices=("app", "random"), default="app",
        help="app: sources as the app gives them (ranked, best last); random: the gold "
        "passage at a random rank, best first (the first training stage)",
    )  # fmt: skip
    parser.add_argument(
        "--exclude", action="append", default=[], metavar="GLOB",
        help="leave out question files whose name matches (repeatable), e.g. '*-c.jsonl'",
    )  # fmt: skip
    parser.add_argument(
        "--include", action="append", default=[], metavar="GLOB",
        help="read only question files whose name matches one of these (repeatable)",
    )  # fmt: skip
    args = parser.parse_args()
    engine = Engine(args.data_dir)
    report = engine.ingest([CORPUS])  # unchanged files are skipped in a second
    if report.failed:
        print(f"failed to index: {report.failed}", file=sys.stderr)
    questions = load_questions(QUESTIONS, args.exclude, args.include)
    examples, stats = build(engine, questions, args.seed, args.order)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", encoding="utf-8") as out:
        for example in examples:
            out.write(json.dumps(example, ensure_ascii=False) + "\n")
    print(f"{len(questions)} questions -> {len(examples)} examples in {args.out}")
    for key, count in sorted(stats.items()):
        print(f"  {key}: {count}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
