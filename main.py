"""Quire: chat with your own documents, offline.

`python main.py` opens the desktop app; subcommands run the same engine headless. The
packaged app (PyInstaller) runs this file as its main script: both entry points call
`multiprocessing.freeze_support()` first, which there runs multiprocessing's spawn
workers and resource tracker (started as this same executable) and exits; elsewhere it
does nothing.
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import sys
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no network unless a download is asked for
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")  # onnxruntime's telemetry (engine/__init__)


def build_parser() -> argparse.ArgumentParser:
    from cli import main as commands

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--data-dir",
        type=Path,
        default=argparse.SUPPRESS,
        help="folder for the index, settings and history (default: the platform's app-data folder)",
    )
    parser = argparse.ArgumentParser(
        prog="quire",
        description="Chat with your own documents, offline. No command opens the desktop app.",
        parents=[common],
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.register(sub, common)
    return parser


def run_cli(argv: list[str]) -> int:
    """Run one headless command; user errors print one line and return non-zero."""
    from engine.types import UserError

    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] | None = getattr(args, "handler", None)
    if handler is None:
        return run_gui(getattr(args, "data_dir", None))
    # Engine warnings (a broken settings file, ignored fields) as "quire: ..." on stderr.
    logging.basicConfig(level=logging.WARNING, format="quire: %(message)s")
    try:
        return handler(args)
    except UserError as exc:
        print(f"quire: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nquire: stopped", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `quire search ... | head`
        return 0
    except Exception as exc:  # a full disk, a read-only folder...: one line; a bug: traceback
        known = describe_error(exc, getattr(args, "data_dir", None))
        if known is None:
            raise
        print(f"quire: {known}", file=sys.stderr)
        return 1


def describe_error(exc: BaseException, data_dir: Path | None) -> Exception | None:
    """The one-line user error for an environment failure, naming the index file."""
    from engine.core import INDEX_FILE
    from engine.errors import describe
    from engine.paths import default_data_dir

    return describe(exc, (data_dir or default_data_dir()) / INDEX_FILE)


def headless_reason() -> str | None:
    """Why no window can open here, or None when one can."""
    if os.environ.get("QT_QPA_PLATFORM"):
        return None
    if sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    ):
        return "no graphical display was found (DISPLAY and WAYLAND_DISPLAY are unset)"
    return None


def run_gui(data_dir: Path | None = None) -> int:
    reason = headless_reason()
    if reason:
        print(
            f"quire: the desktop app cannot open: {reason}.\n"
            "Start it from a desktop session, or use the command line: python main.py --help",
            file=sys.stderr,
        )
        return 2
    from engine.types import UserError
    from ui.app import run

    try:
        return run(data_dir)
    except UserError as exc:  # the data folder cannot be made, before any window opens
        print(f"quire: {exc}", file=sys.stderr)
        return 1


def cli_entry() -> None:
    multiprocessing.freeze_support()  # a frozen app's spawn worker runs here, then exits
    sys.exit(run_cli(sys.argv[1:]))


def gui_entry() -> None:
    multiprocessing.freeze_support()
    sys.exit(run_gui())


if __name__ == "__main__":
    cli_entry()
