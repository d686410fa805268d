"""`main.py train-reader`: the reader trained further on the user's own questions.

The questions (the test-set file "Add to test set…" writes, `eval`'s format, and with
`--feedback` the answers rated 👍 in the chat) become pairs over this data folder's index;
a one-line check says how many and why some gave none. Progress goes to stderr; the first
Ctrl+C (the app's Stop sends SIGINT too) or SIGTERM finishes the step and keeps a checkpoint,
and the same command resumes it. The new reader is installed in `models/readers/NAME/`
and put in use; `train-reader --default` goes back to the shipped one.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
import time
from pathlib import Path
from typing import Any

from cli.train import _clock, _stop_on_signals, print_stopped
from engine.core import Engine
from engine.eval.scoring import Question, load_questions
from engine.finetune.job import PROGRESS_PREFIX
from engine.index.retrieval import Retriever
from engine.reader.job import ReaderJob, ReaderResult
from engine.reader.questions import feedback_questions, indexed_only, start_reader
from engine.reader.summary import accuracy_line, check_line, no_pair_reasons, reader_name
from engine.reader.train import ReaderConfig, ReaderProgress
from engine.types import UserError

NOT_INDEXED = "document not indexed (no pair)"


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add the `train-reader` subcommand to the `main.py` parser."""
    d = ReaderConfig()
    p = sub.add_parser(
        "train-reader", parents=[common],
        help="train the reader (reranking, quotes) further on your own questions; "
        "--default goes back to the shipped one",
    )  # fmt: skip
    p.add_argument(
        "questions", type=Path, nargs="?", metavar="QUESTIONS.jsonl",
        help="questions in the test-set format (doc, pages or section, answer)",
    )  # fmt: skip
    p.add_argument("--feedback", action="store_true", help="add the answers rated 👍 in the chat")
    p.add_argument("--out", metavar="NAME", help="reader name (default: the file's name)")
    p.add_argument("--epochs", type=int, default=d.epochs, help=f"default {d.epochs}")
    p.add_argument("--lr", type=float, default=d.lr, help=f"learning rate (default {d.lr:g})")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="questions per step")
    p.add_argument("--max-steps", type=int, default=None, help="stop after N optimizer steps")
    p.add_argument("--collection", help="search this collection only (default: all)")
    p.add_argument("--check", action="store_true", help="only count the pairs, train nothing")
    p.add_argument("--default", action="store_true", help="go back to the shipped reader")
    p.add_argument("--progress-json", action="store_true", help=argparse.SUPPRESS)  # the app
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_train_reader)


def cmd_train_reader(args: argparse.Namespace) -> int:
    engine = Engine(getattr(args, "data_dir", None))
    if args.default:
        return _back_to_default(engine)
    if args.questions is None and not args.feedback:
        raise UserError("train-reader needs QUESTIONS.jsonl, --feedback, or --default")
    questions, not_indexed = _questions(engine, args)
    config = ReaderConfig(
        epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, max_steps=args.max_steps
    )
    job = _job(engine, args, questions, config)
    pairs, stats = job.pairs()
    stats = {**stats, NOT_INDEXED: not_indexed} if not_indexed else stats
    check = {"questions": len(questions) + not_indexed, "pairs": len(pairs), "stats": stats}
    if args.check:
        print(json.dumps(check, indent=2) if args.json else check_line(check))
        return 0 if pairs else 1
    print(check_line(check), file=sys.stderr)
    if not pairs:
        raise UserError("no training pairs: " + (no_pair_reasons(stats) or "no questions"))
    return _train(engine, job, args)


def _questions(engine: Engine, args: argparse.Namespace) -> tuple[list[Question], int]:
    """The questions to use, those about unindexed documents left out, and their count."""
    if not engine.store.stats().chunks:
        raise UserError(
            f"nothing is indexed in {engine.data_dir}: index the questions' documents first "
            "with: python main.py ingest PATH"
        )
    questions = load_questions(args.questions) if args.questions else []
    if args.feedback:
        from engine.history import History

        history = History(engine.data_dir)
        try:
            questions += feedback_questions(history)
        finally:
            history.close()
        if not questions:
            raise UserError("no answers rated 👍 with sources in the chat history yet")
    return indexed_only(questions, engine.documents(args.collection))


def _job(
    engine: Engine, args: argparse.Namespace, questions: list[Question], config: ReaderConfig
) -> ReaderJob:
    from models.bundled import reader_base

    source = str(args.questions or "") + (" + 👍 answers" if args.feedback else "")
    return ReaderJob(
        questions, Retriever(engine.store, engine.embedder), engine.models_dir,
        reader_base(engine.models_dir), reader_name(args.questions, args.out), config,
        start_from=start_reader(), collection=args.collection, source=source.strip(" +"),
    )  # fmt: skip


def _train(engine: Engine, job: ReaderJob, args: argparse.Namespace) -> int:
    printer = _ProgressPrinter(args.progress_json)
    cancel = threading.Event()
    logging.getLogger().addFilter(_no_quantization_advice)
    try:
        with _stop_on_signals(cancel):
            result = job.run(printer, stop=cancel)
    finally:
        logging.getLogger().removeFilter(_no_quantization_advice)
    printer.finish()
    if result.folder is not None:
        use_reader(engine, str(result.folder))
    _print_result(result, args.json)
    return 130 if result.cancelled else 0


def _no_quantization_advice(record: logging.LogRecord) -> bool:
    """onnxruntime's quantize_dynamic advises pre-processing on the root logger; it is
    not for users (and the app reads "quire: ..." lines as errors)."""
    return not str(record.msg).startswith("Please consider to run pre-processing")


def use_reader(engine: Engine, folder: str | None) -> None:
    """Put `folder` in use (None: the shipped reader) and save the settings as they are on
    disk now (the app may have changed them while this ran)."""
    engine.reload_settings()
    engine.update_settings(reader_path=folder)


def _back_to_default(engine: Engine) -> int:
    use_reader(engine, None)
    folder = engine.reader_folder()
    if not engine.settings.reader:
        note = "the reader is switched off in the settings"
    elif folder is None:
        note = "this install ships no reader, so none is used"
    else:
        note = f"{folder}"
    print(f"Back to the shipped reader (settings saved): {note}", file=sys.stderr)
    return 0


# -- what is printed -------------------------------------------------------------------


def _print_result(result: ReaderResult, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result.to_json(), ensure_ascii=False, indent=2))
        return
    if result.cancelled:
        print_stopped(result.steps, result.total_steps)
        return
    loss = f", loss {result.train_loss:.3f}" if result.train_loss is not None else ""
    print(
        f"Trained reader {result.name}: {result.steps} steps on {result.pairs} pairs in "
        f"{result.seconds:.0f} s{loss}; {accuracy_line(result.to_json())}.\n"
        f"Reader: {result.folder} (now in use; back to the shipped one with: "
        "python main.py train-reader --default)"
    )


class _ProgressPrinter:
    """Step, loss and ETA on stderr; one JSON line per step for the app."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.tty = sys.stderr.isatty() and not as_json
        self.last = 0.0

    def __call__(self, p: ReaderProgress) -> None:
        if self.as_json:
            sys.stderr.write(PROGRESS_PREFIX + json.dumps(vars(p)) + "\n")
            sys.stderr.flush()
            return
        now = time.monotonic()
        if not self.tty and now - self.last < 5 and p.step < p.total_steps:
            return
        self.last = now
        line = f"step {p.step}/{p.total_steps} loss {p.loss:.3f} ETA {_clock(p.eta_s)}"
        sys.stderr.write(("\r" + line.ljust(60)) if self.tty else line + "\n")
        sys.stderr.flush()

    def finish(self) -> None:
        if self.tty and self.last:
            sys.stderr.write("\n")
