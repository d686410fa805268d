"""`main.py train`: a LoRA adapter from chat examples, on this machine.

Problems with the data go to stderr with their line numbers, then progress (step, loss,
tokens/s, ETA). The first Ctrl+C (the app's Stop sends SIGINT too) or SIGTERM finishes
the current step and keeps a checkpoint; running the same command again resumes from it.
`--json` prints the result as one object on stdout.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from engine.core import Engine
from engine.finetune.job import PROGRESS_PREFIX, TrainResult
from engine.finetune.trainer import DEFAULT_RANK, TrainConfig, TrainProgress
from engine.types import UserError

PROBLEMS_SHOWN = 20


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add the `train` subcommand to the `main.py` parser."""
    d = TrainConfig()
    p = sub.add_parser("train", parents=[common], help="train a LoRA adapter on chat examples")
    p.add_argument("data", type=Path, metavar="DATA.jsonl")
    p.add_argument("--out", metavar="NAME", help="adapter name (default: the data file's name)")
    p.add_argument("--epochs", type=int, default=d.epochs, help=f"default {d.epochs}")
    p.add_argument("--max-steps", type=int, default=None, help="stop after N optimizer steps")
    p.add_argument(
        "--rank", type=int, default=None,
        help=f"LoRA rank (default {DEFAULT_RANK}; with --from, the adapter's own, or grow it to a "
        "larger rank)",
    )  # fmt: skip
    p.add_argument("--alpha", type=float, default=d.alpha, help=f"LoRA alpha (default {d.alpha:g})")
    p.add_argument("--lr", type=float, default=d.lr, help=f"learning rate (default {d.lr:g})")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="examples per step")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--val", type=Path, metavar="FILE", help="validation examples (default: 10%%)")
    p.add_argument("--base", type=Path, metavar="MODEL.gguf", help="default: the current model")
    p.add_argument(
        "--from", dest="start_from", metavar="ADAPTER",
        help="continue training an adapter (its name here, or a PEFT folder)",
    )  # fmt: skip
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: all)")
    p.add_argument("--overwrite", action="store_true", help="replace an adapter of the same name")
    p.add_argument("--check", action="store_true", help="only check the data, train nothing")
    p.add_argument("--progress-json", action="store_true", help=argparse.SUPPRESS)  # for the app
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_train)

    p = sub.add_parser(
        "export-training", parents=[common], help="approved and corrected chat answers -> JSONL"
    )
    p.add_argument("out", type=Path, metavar="FILE.jsonl")
    p.set_defaults(handler=cmd_export_training)


def cmd_train(args: argparse.Namespace) -> int:
    engine = Engine(getattr(args, "data_dir", None))
    config = TrainConfig(
        epochs=args.epochs, max_steps=args.max_steps, rank=args.rank, alpha=args.alpha,
        lr=args.lr, batch_size=args.batch_size, seed=args.seed, threads=args.threads,
        start_from=args.start_from,
    )  # fmt: skip
    job = engine.train_job(args.data, args.out, config, args.base, args.val)
    if args.check:
        checked = job.check()
        print_problems(checked.problems, limit=None)  # what --check is for: every line
        payload = {"examples": len(checked.encoded), "problems": [str(p) for p in checked.problems]}
        print(json.dumps(payload, indent=2) if args.json else f"{len(checked.encoded)} usable")
        return 0 if checked.encoded else 1
    if not args.overwrite:
        refuse_existing(engine, args.out or args.data.stem)
    printer = _ProgressPrinter(args.progress_json)
    cancel = threading.Event()
    with _stop_on_signals(cancel):
        result = job.run(printer, stop=cancel)
    printer.finish()
    print_problems(result.problems)
    _print_result(result, args.json)
    return 130 if result.cancelled else 0


def refuse_existing(engine: Engine, name: str) -> None:
    """A UserError when an adapter of this name exists: retraining would replace it."""
    from engine.finetune.job import adapter_name
    from models.registry import adapters_dir

    existing = adapters_dir(engine.models_dir) / f"{adapter_name(name)}.gguf"
    if existing.exists():
        raise UserError(
            f"{existing}: an adapter of this name exists; train it under another name "
            "(--out NAME), or add --overwrite to replace it"
        )


def cmd_export_training(args: argparse.Namespace) -> int:
    from engine.history import History

    engine = Engine(getattr(args, "data_dir", None))
    history = History(engine.data_dir)
    try:
        count = history.export_training(args.out)
    except OSError as exc:
        raise UserError(f"{args.out}: cannot write ({exc.strerror or exc})") from exc
    finally:
        history.close()
    print(
        f"Wrote {count} training example(s) to {args.out} (answers rated up or corrected in "
        f"the chat). Train with: python main.py train {args.out}",
        file=sys.stderr,
    )
    return 0 if count else 1


def print_problems(problems: list[Any], limit: int | None = PROBLEMS_SHOWN) -> None:
    """Each left-out line on stderr (the first `limit`, then a count; None: every one)."""
    for problem in problems[:limit]:
        print(f"  skipped {problem}", file=sys.stderr)
    if limit is not None and len(problems) > limit:
        print(
            f"  ... and {len(problems) - limit} more lines skipped (--check lists them all)",
            file=sys.stderr,
        )


def print_stopped(step: int, total: int) -> None:
    """What a stopped training run says (`train` and `train-reader`)."""
    print(
        f"Stopped at step {step} of {total}; the checkpoint is kept. "
        "Run the same command again to resume.",
        file=sys.stderr,
    )


def _print_result(result: TrainResult, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result.to_json(), ensure_ascii=False, indent=2))
        return
    if result.cancelled:
        print_stopped(result.steps, result.total_steps)
        return
    val = f", validation loss {result.val_loss:.3f}" if result.val_loss is not None else ""
    print(
        f"Trained {result.name}: {result.steps} steps on {result.examples} examples in "
        f"{result.seconds:.0f} s ({result.tokens_per_s:.0f} tokens/s on {result.device}), "
        f"loss {result.train_loss:.3f}{val}.\nAdapter: {result.adapter}\n"
        f"Use it with: python main.py ask QUESTION --mode lora --lora {result.adapter}"
    )


class _ProgressPrinter:
    """Step, loss, tokens/s and ETA on stderr; one JSON line per step for the app."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.tty = sys.stderr.isatty() and not as_json
        self.last = 0.0

    def __call__(self, p: TrainProgress) -> None:
        if self.as_json:
            sys.stderr.write(PROGRESS_PREFIX + json.dumps(vars(p)) + "\n")
            sys.stderr.flush()
            return
        now = time.monotonic()
        if not self.tty and now - self.last < 5 and p.step < p.total_steps:
            return
        self.last = now
        val = f" val {p.val_loss:.3f}" if p.val_loss is not None else ""
        line = (
            f"step {p.step}/{p.total_steps} (epoch {p.epoch:.2f}) loss {p.loss:.3f}{val} "
            f"{p.tokens_per_s:.0f} tokens/s ETA {_clock(p.eta_s)}"
        )
        sys.stderr.write(("\r" + line.ljust(90)) if self.tty else line + "\n")
        sys.stderr.flush()

    def finish(self) -> None:
        if self.tty and self.last:
            sys.stderr.write("\n")


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}"


class _stop_on_signals:  # noqa: N801 - used as a context manager, like contextlib's
    """The first Ctrl+C or SIGTERM sets `cancel`; a second Ctrl+C aborts as usual."""

    def __init__(self, cancel: threading.Event) -> None:
        self.cancel = cancel
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self.previous[sig] = signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, _frame: Any) -> None:
        if signum == signal.SIGINT:
            signal.signal(signal.SIGINT, self.previous[signal.SIGINT])
        print("\nstopping after this step; the checkpoint will be kept", file=sys.stderr)
        self.cancel.set()

    def __exit__(self, *_exc: object) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
