"""`main.py eval`: score answer modes and retrieval variants on a question file.

Progress goes to stderr; the table (or `--json`) to stdout. The first Ctrl+C stops after
the current answer, prints the partial table and says how to resume; a second one aborts.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

from cli.interrupts import on_first_ctrl_c
from cli.server import add_server_options, open_engine
from engine.answer.modes import MODES
from engine.answer.modes import parse_modes as check_modes
from engine.eval.evaluation import EvalConfig, EvalProgress, Evaluation, render_markdown
from engine.types import UserError


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add the `eval` subcommand to the `main.py` parser."""
    p = sub.add_parser("eval", parents=[common], help="score modes and retrieval on questions")
    p.add_argument("questions", type=Path, metavar="QUESTIONS.jsonl")
    p.add_argument(
        "--modes", type=parse_modes, default=("rag", "hybrid"),
        help=f"comma list of {','.join(MODES)} (default: rag,hybrid)",
    )  # fmt: skip
    p.add_argument("--k", type=int, default=None, help="sources per question (default: settings)")
    p.add_argument("--max-tokens", type=int, default=96, help="answer length cap (default: 96)")
    p.add_argument("--collection")
    p.add_argument("--retrieval-only", action="store_true", help="search only, no generation")
    p.add_argument("--restart", action="store_true", help="ignore the saved partial run")
    p.add_argument("--json", action="store_true")
    add_server_options(p)
    p.set_defaults(handler=cmd_eval)


def parse_modes(text: str) -> tuple[str, ...]:
    """`base,rag` -> ("base", "rag"); unknown names are an argparse error."""
    try:
        return check_modes(text)
    except UserError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def cmd_eval(args: argparse.Namespace) -> int:
    if (args.k is not None and args.k < 1) or args.max_tokens < 1:
        raise UserError("--k and --max-tokens must be 1 or more")
    config = EvalConfig(
        modes=args.modes, k=args.k, max_tokens=args.max_tokens, collection=args.collection,
        retrieval_only=args.retrieval_only, restart=args.restart,
    )  # fmt: skip
    engine = open_engine(args)
    evaluation = Evaluation(engine, args.questions, config)
    cancel = threading.Event()
    bar = ProgressBar()

    with on_first_ctrl_c(lambda: _stop_after_current(cancel)):
        report = evaluation.run(bar, stop=cancel)
    bar.finish()
    if args.json:
        print(json.dumps(report.to_json(), ensure_ascii=False, indent=2))
    else:
        print(render_markdown(report))
    print(_summary(report.computed, report.resumed, evaluation.checkpoint), file=sys.stderr)
    if not report.complete:
        print(
            "Stopped. Run the same command again to resume where it stopped "
            "(--restart starts over).",
            file=sys.stderr,
        )
    return 0


def _summary(computed: int, resumed: int, checkpoint: Path) -> str:
    return f"{computed} answers generated, {resumed} reused from {checkpoint}"


class ProgressBar:
    """A text progress bar on stderr: rewritten in place on a terminal, every few s else."""

    def __init__(self, width: int = 30) -> None:
        self.tty = sys.stderr.isatty()
        self.width = width
        self.last = 0.0
        self.recent: deque[tuple[float, int]] = deque(maxlen=10)  # for the time left

    def __call__(self, p: EvalProgress) -> None:
        now = time.monotonic()
        self.recent.append((now, p.done))
        if not self.tty and now - self.last < 5 and p.done < p.total:
            return
        self.last = now
        filled = int(self.width * p.done / p.total) if p.total else self.width
        (t0, d0), (t1, d1) = self.recent[0], self.recent[-1]
        eta = (t1 - t0) / (d1 - d0) * (p.total - p.done) if d1 > d0 else 0.0
        line = (
            f"[{'#' * filled}{'.' * (self.width - filled)}] {p.done}/{p.total} "
            f"{p.elapsed_s:.0f} s, ~{eta:.0f} s left  {p.label}"
        )
        sys.stderr.write(("\r" + line[:110].ljust(110)) if self.tty else line + "\n")
        sys.stderr.flush()

    def finish(self) -> None:
        if self.tty:
            sys.stderr.write("\n")


def _stop_after_current(cancel: threading.Event) -> None:
    print("\nStopping after the current answer (Ctrl+C again to abort)...", file=sys.stderr)
    cancel.set()
