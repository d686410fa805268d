"""Build Quire's reader from what is committed: index ../shared/training-corpus, make the
pairs from model_builds/questions with Quire's own search, train, export int8 ONNX, ship.

    python model_builds/reader.py [--data-dir DIR] [--epochs N] [--max-steps N] [--zero-shot]
        [--pairs-out FILE] [--breadth]  # trains into <models>/readers/quire-reader/
    python model_builds/reader.py --ship FOLDER [--out models/reader]

`--zero-shot` installs MiniLM untrained (the baseline the trained reader is measured
against). The numbers in the card are chosen afterwards on held-out questions by
`model_builds/reader_scan.py --write` on the installed folder, which `--ship` then copies into
the package (`make reader` runs all of it). Never reads ../shared/corpus (the development
set's).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from fnmatch import fnmatch
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from engine.core import Engine  # noqa: E402
from engine.eval.scoring import load_questions  # noqa: E402
from engine.index.retrieval import Retriever  # noqa: E402
from engine.reader.job import LORA_DIR, ReaderJob  # noqa: E402
from engine.reader.train import ReaderConfig, ReaderProgress  # noqa: E402
from models.bundled import reader_base  # noqa: E402

QUESTIONS = REPO / "model_builds" / "questions"
CORPUS = REPO.parent / "shared" / "training-corpus"
# Other manuals' questions, over the breadth corpus's own index (model_builds/breadth/; its
# unseen/ questions are never trained on). `--breadth` adds them; the shipped reader was
# trained without: with them it ranked better alone but no better beside the search's own
# order (docs/evaluation.md, "The reader, fifth round").
BREADTH = REPO / "model_builds" / "breadth"
NAME = "quire-reader"
# The *-d.jsonl and *-e.jsonl questions were written after the shipped reader was trained;
# they fit its rankers and refusal model (model_builds/reader_ranker.py, reader_scan.py
# --gate-fit) on questions it never saw, so the reader leaves them out. (A reader trained
# with the *-e questions too ranked worse on the held-out ones: docs/evaluation.md.)
RANKER_ONLY = ("*-d.jsonl", "*-e.jsonl")


def questions(folder: Path = QUESTIONS, skip: tuple[str, ...] = RANKER_ONLY) -> list:
    rows = []
    for path in sorted(folder.glob("*.jsonl")):
        if not any(fnmatch(path.name, pattern) for pattern in skip):
            rows += load_questions(path)
    return rows


def show(p: ReaderProgress) -> None:
    print(f"step {p.step}/{p.total_steps} loss {p.loss:.3f} "
          f"{p.elapsed_s:.0f}s, {p.eta_s:.0f}s left", file=sys.stderr, flush=True)  # fmt: skip


def ship(folder: Path, out: Path) -> None:
    """Copy the reader's ONNX, card and LoRA into the package folder."""
    card = json.loads((folder / "reader.json").read_text())
    if "heldout" not in card:
        raise SystemExit(
            f"{folder}: choose its numbers first (model_builds/reader_scan.py --write)"
        )
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(folder / "model.onnx", out / "model.onnx")
    card["name"] = NAME
    (out / "reader.json").write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n")
    if (out / LORA_DIR).exists():
        shutil.rmtree(out / LORA_DIR)
    shutil.copytree(folder / LORA_DIR, out / LORA_DIR)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=REPO / ".cache" / "grounding" / "data")
    parser.add_argument("--out", type=Path, default=REPO / "models" / "reader")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--lr", type=float, default=ReaderConfig.lr)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--breadth-data-dir", type=Path,
                        default=REPO / ".cache" / "breadth" / "data")  # fmt: skip
    parser.add_argument("--breadth", action="store_true",
                        help="add model_builds/breadth/questions")  # fmt: skip
    parser.add_argument("--name", default=NAME, help="the folder under <models>/readers/")
    parser.add_argument("--from", dest="start", type=Path, help="continue this reader folder")
    parser.add_argument("--zero-shot", action="store_true", help="MiniLM untrained")
    parser.add_argument("--pairs-out", type=Path, default=None)
    parser.add_argument("--ship", type=Path, metavar="FOLDER", help="copy a trained reader "
                        "(its numbers chosen) into --out")  # fmt: skip
    args = parser.parse_args()
    if args.ship:
        ship(args.ship, args.out)
        print(f"shipped {args.out}")
        return 0
    engine = Engine(args.data_dir)
    report = engine.ingest([CORPUS])  # unchanged files are skipped in a second
    if report.failed:
        print(f"failed to index: {report.failed}", file=sys.stderr)
    more = []
    if args.breadth:
        wide = Engine(args.breadth_data_dir)
        report = wide.ingest([BREADTH / "corpus"])
        if report.failed:
            print(f"failed to index: {report.failed}", file=sys.stderr)
        more.append((questions(BREADTH / "questions", ()), Retriever(wide.store, wide.embedder)))
    config = ReaderConfig(epochs=args.epochs, lr=args.lr, max_steps=args.max_steps, seed=args.seed)
    if args.zero_shot:
        config = ReaderConfig(max_steps=1, lr=1e-12)  # one step at no rate: MiniLM as is
    job = ReaderJob(
        questions(), Retriever(engine.store, engine.embedder), engine.models_dir,
        reader_base(engine.models_dir), args.name + ("-zero-shot" if args.zero_shot else ""),
        config, start_from=args.start, more=more,
        source="model_builds/questions/*.jsonl"
        + (" + model_builds/breadth/questions/*.jsonl" if args.breadth else ""),
    )  # fmt: skip
    if args.pairs_out:
        pairs, stats = job.pairs()
        args.pairs_out.write_text("".join(json.dumps(p.to_json()) + "\n" for p in pairs))
        print(json.dumps(stats, indent=2))
    result = job.run(show)
    print(json.dumps(result.to_json(), indent=2))
    return 0 if result.folder is not None else 1


if __name__ == "__main__":
    sys.exit(main())
