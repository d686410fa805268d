"""The reader's latency: reranking 20 passages and choosing the quote, int8 against float,
and against a bare onnxruntime session doing the same embedding work.

For each question of a question file, the 20 candidates Quire's search hands the reader
are taken from a real index, then timed:
- rerank, cold: the reader reads all 20 passages (a new index, or a new reader);
- rerank, warm: their vectors are already in the index (every later question);
- quote: the sentences of the answer's sources, embedded and scored;
- bare int8 / bare float: one onnxruntime session, the tokenizer and mean pooling in
  numpy, on the same 20 passages (what the reader's cold rerank costs at the least);
- the float reader (the same weights unquantized), cold, when torch can export it;
- with `--answers N`: N hybrid answers with the reader off and on, interleaved, and their
  time to first token (what the reader adds before the model starts).

    QUIRE_MODELS_DIR=.cache/models .venv/bin/python benchmarks/reader.py \
        [--data-dir .cache/dev/data] [eval/dev-questions.jsonl] [--n 20] [--answers N]
        [--json out.json]

Without `--data-dir`, the FreedomBox HTML pages the questions ask about are indexed into a
temporary folder first, and only those questions are timed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.core import Engine
from engine.eval.scoring import load_questions
from engine.reader.rank import Reader, passage_text

REPO = Path(__file__).resolve().parent.parent
QUESTIONS = REPO / "eval" / "dev-questions.jsonl"
HTML = REPO.parent / "shared" / "corpus" / "freedombox-manual"


def median_ms(values: list[float]) -> float:
    return round(statistics.median(values) * 1000, 1)


class Bare:
    """One onnxruntime session over a model.onnx, with the reader's tokenizer."""

    def __init__(self, onnx: Path, tokenizer_dir: Path, threads: int | None) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(onnx), options, ["CPUExecutionProvider"])
        self.tokenizer = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
        self.tokenizer.enable_truncation(256)
        self.tokenizer.enable_padding()

    def embed(self, texts: list[str], batch: int = 8) -> np.ndarray:
        out = []
        for i in range(0, len(texts), batch):
            enc = self.tokenizer.encode_batch(texts[i : i + batch])
            ids = np.array([e.ids for e in enc], dtype=np.int64)
            mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
            feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": ids * 0}
            hidden = self.session.run(None, feed)[0]
            pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)
            out.append(pooled / np.linalg.norm(pooled, axis=1, keepdims=True))
        return np.concatenate(out)


def float_reader(folder: Path, tmp: Path) -> Path | None:
    """The reader's weights unquantized (MiniLM + its LoRA, exported by torch), or None."""
    try:
        import shutil

        from peft import PeftModel
        from transformers import AutoModel

        from engine.reader.train import export_onnx
        from models.bundled import READER_PACKAGE_DIR, TOKENIZER_FILES, reader_base
    except ImportError:
        return None
    lora = READER_PACKAGE_DIR / "lora"
    if not lora.is_dir():
        return None
    base = reader_base(Path(os.environ.get("QUIRE_MODELS_DIR", ".cache/models")))
    model = PeftModel.from_pretrained(AutoModel.from_pretrained(str(base)), str(lora))
    out = tmp / "float"
    out.mkdir()
    export_onnx(model, out / "model.onnx", quantize=False)
    for name in (*TOKENIZER_FILES, "reader.json"):
        shutil.copyfile((folder / name) if name == "reader.json" else base / name, out / name)
    return out


def first_token(engine: Engine, questions: list) -> dict[str, float]:
    """Median first-token seconds of hybrid answers without and with the reader, asked in
    turn (answers the reader calls not covered are left out of both)."""
    from engine.core import AskOptions

    if not questions:
        return {}
    engine.load("hybrid")
    off: list[float] = []
    on: list[float] = []
    options = AskOptions(temperature=0.0, max_tokens=8)
    for q in questions:
        engine.settings.reader = True
        with_reader = engine.answer(q.question, "hybrid", options)
        engine.settings.reader = False
        without = engine.answer(q.question, "hybrid", options)
        if with_reader.not_covered or not with_reader.timings.tokens:
            continue
        on.append(with_reader.timings.first_token_s)
        off.append(without.timings.first_token_s)
    engine.settings.reader = True
    if not on:
        return {}
    return {"first_token_off_ms": median_ms(off), "first_token_on_ms": median_ms(on),
            "first_token_pairs": len(on)}  # fmt: skip


class _NoStore:
    """A store that keeps nothing: every rerank is cold."""

    def reader_vectors(self, reader: str, ids: list[int]) -> dict:
        return {}

    def put_reader_vectors(self, reader: str, vectors: dict) -> None:
        return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("questions", type=Path, nargs="?", default=QUESTIONS)
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--n", type=int, default=20, help="questions to time")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--answers", type=int, default=0, help="first-token pairs to time")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        return run(args, Path(scratch))


def run(args: argparse.Namespace, scratch: Path) -> int:
    questions = [q for q in load_questions(args.questions) if not q.absent]
    if args.data_dir is None:
        pages = sorted({q.doc for q in questions if q.doc and q.doc.endswith(".part.html")})
        engine = Engine(scratch / "data")
        engine.ingest([HTML / page for page in pages])
        questions = [q for q in questions if q.doc in pages]
    else:
        engine = Engine(args.data_dir)
    reader = engine.reader
    if reader is None:
        print("no reader: nothing to time", file=sys.stderr)
        return 1
    questions = questions[: args.n]
    cands = [engine.search(q.question, 20, rerank=False) for q in questions]
    bare = Bare(reader.folder / "model.onnx", reader.folder, engine.settings.threads)
    times: dict[str, list[float]] = {k: [] for k in
                                     ("cold", "warm", "quote", "bare_int8", "bare_float",
                                      "float_cold")}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        folder = float_reader(reader.folder, Path(tmp))
        floats = Reader(folder, engine.settings.threads) if folder else None
        bare_float = (
            Bare(folder / "model.onnx", folder, engine.settings.threads) if folder else None
        )
        for q, found in zip(questions, cands, strict=True):
            reader.rerank(engine.store, q.question, found)  # so that "warm" is warm
        for q, found in zip(questions, cands, strict=True):
            texts = [passage_text(s) for s in found]
            timed = {
                "cold": (reader.rerank, (_NoStore(), q.question, found)),
                "warm": (reader.rerank, (engine.store, q.question, found)),
                "quote": (reader.quote, (q.question, found[:3])),
                "bare_int8": (bare.embed, ([q.question, *texts],)),
            }
            for label, (call, call_args) in timed.items():
                start = time.perf_counter()
                call(*call_args)  # type: ignore[operator]
                times[label].append(time.perf_counter() - start)
            if floats is not None and bare_float is not None:
                start = time.perf_counter()
                floats.rerank(_NoStore(), q.question, found)
                times["float_cold"].append(time.perf_counter() - start)
                start = time.perf_counter()
                bare_float.embed([q.question, *texts])
                times["bare_float"].append(time.perf_counter() - start)
    figures = {k: median_ms(v) for k, v in times.items() if v}
    figures["rerank_warm_plus_quote_ms"] = median_ms(
        [w + qt for w, qt in zip(times["warm"], times["quote"], strict=True)]
    )
    figures["cold_over_bare_int8"] = round(figures["cold"] / figures["bare_int8"], 2)
    if times["float_cold"]:
        figures["float_over_int8_cold"] = round(figures["float_cold"] / figures["cold"], 2)
    figures.update(first_token(engine, questions[: args.answers]))
    figures.update(questions=len(questions), load=os.getloadavg()[0], passages=20)
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    engine.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
