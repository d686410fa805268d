"""The headless command line: thin argparse commands over `engine.core.Engine`.

This is Quire's text interface; it imports no Qt so it runs on any machine.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import threading
import time
from pathlib import Path
from typing import Any

from cli import eval as cli_eval
from cli import reader as cli_reader
from cli import server as cli_server
from cli import train as cli_train
from cli.interrupts import on_first_ctrl_c
from cli.server import add_server_options, open_engine
from engine.answer.events import Answer, AnswerFinished, AskOptions, SourcesFound, TokenReceived
from engine.answer.followup import Turn, turns_of
from engine.answer.modes import MODES
from engine.answer.prompting import source_label
from engine.core import Engine
from engine.index.retrieval import METHODS
from engine.index.schema import printable
from engine.types import IngestProgress, IngestReport, SearchResult, UserError


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add every subcommand to the `main.py` parser."""
    p = sub.add_parser("ingest", parents=[common], help="index files and folders")
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    p.add_argument("--collection", help="collection to index into (default: settings)")
    p.add_argument(
        "--ocr", action="store_true", help="read PDFs with no text layer by OCR (tesseract)"
    )
    p.set_defaults(handler=cmd_ingest)

    p = sub.add_parser("search", parents=[common], help="semantic + keyword search, no model")
    p.add_argument("query")
    p.add_argument("--k", type=int, default=None, help="number of results (default: settings)")
    p.add_argument("--collection")
    p.add_argument("--method", choices=METHODS, default="hybrid")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_search)

    p = sub.add_parser("ask", parents=[common], help="answer a question, streaming, with sources")
    p.add_argument("question")
    p.add_argument(
        "--mode", choices=[*MODES, "all"], default=None,
        help="default: hybrid when an adapter is there (the bundled model has one), else rag; "
        "all: every mode side by side",
    )  # fmt: skip
    p.add_argument("--lora-scale", type=float, default=None, help="adapter strength (default 1)")
    p.add_argument("--lora", type=Path, help="GGUF LoRA adapter (for modes lora and hybrid)")
    p.add_argument("--model", type=Path, help="any GGUF model file (default: the bundled one)")
    p.add_argument("--k", type=int, default=None)
    p.add_argument("--collection")
    p.add_argument("--temperature", type=float, default=None)
    p.add_argument("--max-tokens", type=int, default=None)
    p.add_argument("--json", action="store_true")
    p.add_argument(
        "--conversation", type=int, metavar="ID",
        help="continue this saved conversation (a follow-up: searched and answered with it)",
    )  # fmt: skip
    add_server_options(p)
    p.set_defaults(handler=cmd_ask)

    p = sub.add_parser("docs", parents=[common], help="what is indexed, and what failed")
    p.add_argument("--collection")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_docs)

    p = sub.add_parser("remove", parents=[common], help="forget documents (files or folders)")
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    p.add_argument("--collection")
    p.set_defaults(handler=cmd_remove)

    p = sub.add_parser("models", parents=[common], help="list local models; download one")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_models)
    models_sub = p.add_subparsers(dest="models_command", metavar="ACTION")
    d = models_sub.add_parser(
        "download", parents=[common], help="fetch a GGUF from the Hugging Face Hub (network)"
    )
    d.add_argument("repo", metavar="REPO_ID", help="e.g. bartowski/Qwen2.5-0.5B-Instruct-GGUF")
    d.add_argument("filename", metavar="FILE", help="e.g. Qwen2.5-0.5B-Instruct-Q4_K_M.gguf")
    d.add_argument("--use", action="store_true", help="make it the model for answers")
    d.set_defaults(handler=cmd_models_download)

    cli_eval.register(sub, common)
    cli_train.register(sub, common)
    cli_reader.register(sub, common)
    cli_server.register(sub, common)

    lora = sub.add_parser("lora", parents=[common], help="LoRA adapters: convert and inspect")
    lora_sub = lora.add_subparsers(dest="lora_command", metavar="ACTION", required=True)
    p = lora_sub.add_parser("convert", parents=[common], help="PEFT adapter folder -> GGUF")
    p.add_argument("peft_dir", type=Path, metavar="PEFT_DIR")
    p.add_argument("out", type=Path, metavar="OUT.gguf")
    p.add_argument("--base", type=Path, help="base model GGUF (default: the current model)")
    p.set_defaults(handler=cmd_lora_convert)
    p = lora_sub.add_parser(
        "import", parents=[common], help="PEFT folder -> the models folder's adapters, and use it"
    )
    p.add_argument("peft_dir", type=Path, metavar="PEFT_DIR")
    p.add_argument("--scale", type=float, default=1.0, help="adapter strength (default 1)")
    p.set_defaults(handler=cmd_lora_import)
    p = lora_sub.add_parser("info", parents=[common], help="what a GGUF adapter holds")
    p.add_argument("adapter", type=Path, metavar="ADAPTER.gguf")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_lora_info)


# -- ingest ---------------------------------------------------------------------------


def cmd_ingest(args: argparse.Namespace) -> int:
    engine = open_engine(args)
    printer = _ProgressPrinter()
    stop = threading.Event()  # the first Ctrl+C sets it: finished files are kept
    with on_first_ctrl_c(stop.set):
        report = engine.ingest(args.paths, args.collection, printer, stop=stop, ocr=args.ocr)
    printer.finish()
    print_report(report)
    if report.cancelled:
        return 130
    return 1 if report.failed else 0


class _ProgressPrinter:
    """Progress on stderr: one rewritten line on a terminal, a line every few seconds else."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.last = 0.0
        self.width = 0

    def __call__(self, p: IngestProgress) -> None:
        now = time.monotonic()
        if not self.tty and now - self.last < 2 and p.files_done < p.files_total:
            return
        self.last = now
        line = (
            f"[{p.files_done}/{p.files_total} files] {p.pages_done} pages, "
            f"{p.chunks_done} chunks, {p.chunks_per_s:.1f} chunks/s  {self.doing(p)}"
        )
        if self.tty:
            sys.stderr.write("\r" + line[:120].ljust(self.width))
            self.width = min(len(line), 120)
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def finish(self) -> None:
        if self.tty and self.width:
            sys.stderr.write("\n")

    @staticmethod
    def doing(p: IngestProgress) -> str:
        """The current file, how far into it (a big one takes minutes), and the time left."""
        if p.reading:
            what = f"reading {p.current}"
        elif p.current_share > 0:
            what = f"{p.current} {p.current_share:.0%}"
        else:
            what = p.current
        if p.eta_s is None or p.files_done == p.files_total:
            return what
        minutes, seconds = divmod(round(p.eta_s), 60)
        return f"{what}, ETA {minutes // 60}:{minutes % 60:02d}:{seconds:02d}"


def print_report(report: IngestReport) -> None:
    rate = report.chunks / report.seconds if report.seconds else 0.0
    print(
        f"Indexed {len(report.indexed)} files ({report.pages} pages, {report.chunks} chunks, "
        f"{rate:.1f} chunks/s) in {report.seconds:.1f} s; skipped {len(report.skipped)} "
        f"unchanged; removed {len(report.removed)} deleted; failed {len(report.failed)}.",
        file=sys.stderr,
    )
    for path, reason in report.failed:
        how = f": ingest --ocr {shlex.quote(path)}" if path in report.scanned else ""
        print(f"  failed: {printable(path)}: {printable(reason + how)}", file=sys.stderr)
    if report.cancelled:
        kept = len(report.indexed)
        print(
            f"  stopped: {kept} file{'s' * (kept != 1)} indexed and kept, {report.left} still "
            "to go; run ingest again to finish.",
            file=sys.stderr,
        )


# -- search and ask ---------------------------------------------------------------------


def cmd_search(args: argparse.Namespace) -> int:
    engine = open_engine(args)
    results = engine.search(args.query, args.k, args.collection, args.method)
    if args.json:
        payload = {"query": args.query, "results": [r.to_json() for r in results]}
        print(json.dumps(payload, ensure_ascii=False, indent=2))
        return 0
    if not results:
        print("No matching passages. Index documents with: python main.py ingest PATH")
    for r in results:
        print(f"{r.rank}. {source_label(r)}  ({r.score_label()})")
        print(f"   {_snippet(r.text)}\n")
    return 0


def cmd_ask(args: argparse.Namespace) -> int:
    engine = open_engine(args)
    if args.model:  # this question's choices, not saved
        engine.update_settings(save=False, model_path=str(args.model))
    if args.lora:
        engine.set_adapter(args.lora, args.lora_scale or engine.settings.lora_scale)
    elif args.lora_scale is not None:
        engine.update_settings(save=False, lora_scale=args.lora_scale)
    stop = threading.Event()  # the first Ctrl+C sets it
    options = AskOptions(
        k=args.k,
        collection=args.collection,
        temperature=args.temperature,
        max_tokens=args.max_tokens,
    )
    if args.mode == "all":
        return _ask_all(engine, args, options, stop)
    mode = args.mode or engine.default_mode()
    conversation = Conversation(engine, args.conversation)
    options.turns = conversation.turns
    with on_first_ctrl_c(stop.set):
        for event in engine.ask(args.question, mode, options, stop=stop):
            if isinstance(event, TokenReceived) and not args.json:
                sys.stdout.write(event.text)
                sys.stdout.flush()
            elif isinstance(event, AnswerFinished):
                answer = event.answer
                number = conversation.record(answer)
                payload = {**answer.to_json(), "conversation": number}
                _print_answer_end(payload, args.json, answer.sources)
                if not args.json and number is not None:
                    print(f"(conversation {number}: follow up with --conversation {number})",
                          file=sys.stderr)  # fmt: skip
                return 130 if answer.cancelled else 0
            elif isinstance(event, SourcesFound) and not args.json:
                _print_found(event, mode)
    return 0


class Conversation:
    """The saved conversation an `ask` continues (--conversation) or starts: its earlier
    turns, and the question and answer recorded in it, as the app records them."""

    def __init__(self, engine: Engine, number: int | None) -> None:
        from engine.history import History

        self.history = History(engine.data_dir)
        self.number = number
        self.turns: list[Turn] | None = None
        if number is not None:
            if self.history.conversation(number) is None:
                raise UserError(f"no conversation {number} (the app's History lists them)")
            self.turns = turns_of(self.history.messages(number)) or None

    def record(self, answer: Answer) -> int | None:
        """Save the question and the answer; the conversation's number."""
        from engine.history import Message

        if self.number is None:
            self.number = self.history.create()
        self.history.add(self.number, Message("user", answer.question))
        self.history.add(self.number, Message(
            "assistant", answer.answer, answer.mode, answer.sources, vars(answer.timings).copy(),
            answer.cancelled, prompt=answer.prompt or None,
            quote=answer.quote.to_json() if answer.quote else None,
        ))  # fmt: skip
        return self.number


def _print_found(event: SourcesFound, mode: str) -> None:
    """The reader's quote, which opens the answer; or that nothing was relevant."""
    if not MODES[mode].retrieves:
        return
    if not event.sources:
        print("(no passage in your documents is relevant to this question)", file=sys.stderr)
    elif event.quote is not None:
        text = " ".join(event.quote.text.split())
        number = f" [{event.quote.source}]" if event.quote.source else ""
        print(f'> "{text}"\n>   — {event.quote.label()}{number}\n')


def _ask_all(
    engine: Engine, args: argparse.Namespace, options: AskOptions, stop: threading.Event
) -> int:
    """Every mode in turn: streamed under a heading each, or one JSON object at the end."""
    modes: dict[str, Any] = {}
    for mode, reason in engine.available_modes().items():
        if reason:
            modes[mode] = {"mode": mode, "skipped": reason}
    cancelled = False
    with on_first_ctrl_c(stop.set):
        for mode, event in engine.compare(args.question, options, stop=stop):
            if isinstance(event, SourcesFound) and not args.json:
                print(f"\n== {mode} ==")
                _print_found(event, mode)
            elif isinstance(event, TokenReceived) and not args.json:
                sys.stdout.write(event.text)
                sys.stdout.flush()
            elif isinstance(event, AnswerFinished):
                modes[mode] = event.answer.to_json()
                cancelled = cancelled or event.answer.cancelled
                if not args.json:
                    _print_answer_end(modes[mode], False, event.answer.sources)
    if args.json:
        ordered = {m: modes[m] for m in MODES if m in modes}
        print(
            json.dumps({"question": args.question, "modes": ordered}, ensure_ascii=False, indent=2)
        )
    else:
        for mode, entry in modes.items():
            if "skipped" in entry:
                print(f"\n== {mode} == skipped: {entry['skipped']}")
    return 130 if cancelled else 0


def _print_answer_end(payload: dict[str, Any], as_json: bool, sources: list[SearchResult]) -> None:
    if as_json:
        print(json.dumps(payload, ensure_ascii=False, indent=2))
        return
    t = payload["timings"]
    if payload["cancelled"]:
        print("\n[stopped]", end="")
    print("\n")
    if (payload.get("quote") or {}).get("nearest"):
        print("(the quote above is the nearest passage: the model found no answer in it)")
    if payload.get("not_covered"):
        print("Nearest passages:")
    for i, source in enumerate(sources, 1):
        print(f"[{i}] {source_label(source)}  ({source.score_label()})")
    print(
        f"\n{t['tokens']} tokens, first token {t['first_token_s']:.2f} s, "
        f"{t['tokens_per_s']:.1f} tokens/s, retrieval {t['retrieval_s'] * 1000:.0f} ms",
        file=sys.stderr,
    )


# -- library ---------------------------------------------------------------------------


def cmd_docs(args: argparse.Namespace) -> int:
    engine = open_engine(args)
    docs = [_doc_json(d) for d in engine.documents(args.collection)]
    if args.json:
        print(json.dumps({"documents": docs}, ensure_ascii=False, indent=2))
        return 0
    if not docs:
        print("Nothing indexed yet. Add documents with: python main.py ingest PATH")
    for d in docs:
        state = f"FAILED: {d['error']}" if d.get("error") else "indexed"
        print(f"{d['collection']:<12} {d['pages'] or '-':>5} p {d['chunks']:>6} ch  {d['path']}")
        if d.get("error"):
            print(f"{'':>30}{state}")
    return 0


def _doc_json(doc: Any) -> dict[str, Any]:
    data = doc.to_json() if hasattr(doc, "to_json") else dict(vars(doc))
    return {k: v for k, v in data.items() if not k.startswith("_")}


def cmd_remove(args: argparse.Namespace) -> int:
    engine = open_engine(args)
    removed = engine.remove(args.paths, args.collection)
    print(f"Removed {len(removed)} document(s) from the index.", file=sys.stderr)
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from models.registry import list_models

    engine = open_engine(args)
    extra = [Path(engine.settings.model_path)] if engine.settings.model_path else []
    models = list_models(engine.models_dir, extra)
    if args.json:
        print(json.dumps({"models": [m.to_json() for m in models]}, indent=2))
        return 0
    for m in models:
        print(m.summary() if hasattr(m, "summary") else m.to_json())
    return 0


def _snippet(text: str, width: int = 240) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def cmd_lora_convert(args: argparse.Namespace) -> int:
    from models.lora import convert_peft

    engine = open_engine(args)
    base = args.base or engine.model_path()
    info = convert_peft(args.peft_dir, args.out, base)
    print(
        f"Wrote {info.path}: LoRA for {info.architecture}, rank {info.rank}, alpha {info.alpha:g}, "
        f"{len(info.tensors)} tensors. Use it with: python main.py ask ... --mode lora "
        f"--lora {info.path}",
        file=sys.stderr,
    )
    return 0


def cmd_lora_import(args: argparse.Namespace) -> int:
    """What the app's Adapter dialog does with a PEFT folder: convert, keep, switch to."""
    engine = open_engine(args)
    info = engine.import_adapter(args.peft_dir, args.scale)
    engine.save_settings()
    print(
        f"Wrote {info.path} and made it the adapter for modes lora and hybrid (×{args.scale:g}).",
        file=sys.stderr,
    )
    return 0


def cmd_lora_info(args: argparse.Namespace) -> int:
    from models.lora import read_adapter

    info = read_adapter(args.adapter)
    data = {
        "path": str(info.path),
        "architecture": info.architecture,
        "rank": info.rank,
        "alpha": info.alpha,
        "base_model": info.base_model,
        "tensors": list(info.tensors),
    }
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        print(f"{info.path.name}: LoRA for {info.architecture} (base {info.base_model or '?'})")
        print(f"rank {info.rank}, alpha {info.alpha:g}, {len(info.tensors)} tensors")
    return 0


def cmd_models_download(args: argparse.Namespace) -> int:
    """The one command that reaches the network, and only because the user typed it."""
    from models.hub import download

    engine = open_engine(args)
    printer = _DownloadPrinter()
    path = download(args.repo, args.filename, engine.models_dir, printer)
    printer.finish()
    print(f"Downloaded {path}", file=sys.stderr)
    if args.use:
        engine.update_settings(model_path=str(path))
        print("It is now the model for answers (settings saved).", file=sys.stderr)
    return 0


class _DownloadPrinter:
    """Download progress on stderr, at most every half second."""

    def __init__(self) -> None:
        self.last = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if now - self.last < 0.5 and done != total:
            return
        self.last = now
        size = f"{done / 1e6:.1f}/{total / 1e6:.1f} MB" if total else f"{done / 1e6:.1f} MB"
        sys.stderr.write(f"\rdownloading {size}")
        sys.stderr.flush()

    def finish(self) -> None:
        if self.last:
            sys.stderr.write("\n")
