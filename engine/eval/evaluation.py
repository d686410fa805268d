"""Evaluation: score answer modes and retrieval variants on a file of gold questions.

A question file is JSONL (`id`, `question`, and optionally `doc`, `pages`, `section`,
`answer`, `kind`). Each finished (question, mode) answer is appended to a checkpoint under
`<data dir>/eval-runs/`, keyed by the file's content and the settings that change answers,
so a stopped run resumes where it stopped. Scores are computed from the saved records.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.answer.followup import Turn, search_query
from engine.answer.modes import MODES, RETRIEVING, parse_modes, preferred
from engine.eval.scoring import (
    METRICS,
    Question,
    answer_detail,
    first_hit_rank,
    load_questions,
    rank_metrics,
    score_mode,
)
from engine.index.retrieval import METHODS as SEARCH_METHODS
from engine.reader.rank import DEFAULTS
from engine.types import SearchResult, UserError

if TYPE_CHECKING:
    from engine.core import Engine

METHODS = (*SEARCH_METHODS, "reader")  # reader: hybrid, then reranked
# Follow-up questions (`follows` in the file), searched as the app searches them (with the
# question they follow) and as if asked alone, with the best method that runs.
WITH_CONTEXT, ALONE = "follow-ups", "follow-ups alone"
RUNS_DIR = "eval-runs"


@dataclass
class EvalConfig:
    """What to run; `k`, `max_tokens` and `collection` also key the checkpoint."""

    modes: tuple[str, ...] = RETRIEVING  # rag and hybrid
    k: int | None = None  # None: the settings' sources per answer
    max_tokens: int = 96
    collection: str | None = None
    retrieval_only: bool = False
    restart: bool = False


@dataclass
class EvalProgress:
    """Sent after every finished step (a search variant or an answer)."""

    done: int
    total: int
    label: str
    elapsed_s: float
    fraction: float = 0.0  # of the work's time, not of the steps: an answer costs ~100 searches
    eta_s: float | None = None
    answers_done: int = 0
    answers_total: int = 0


@dataclass
class EvalReport:
    """Metrics per answer mode and per retrieval method, and how the run went."""

    modes: dict[str, dict[str, Any]]
    retrieval: dict[str, dict[str, Any]]
    skipped: dict[str, str] = field(default_factory=dict)  # mode -> why
    details: list[dict[str, Any]] = field(default_factory=list)  # per question and method
    complete: bool = True
    computed: int = 0  # answers generated in this run (not resumed)
    resumed: int = 0  # answers read back from the checkpoint
    checkpoint: Path | None = None
    counts: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {m: dict(v) for m, v in self.modes.items()}
        data["retrieval"] = self.retrieval
        data["run"] = {
            "complete": self.complete, "computed": self.computed, "resumed": self.resumed,
            "skipped": self.skipped, "checkpoint": str(self.checkpoint or ""), **self.counts,
        }  # fmt: skip
        data["details"] = self.details
        return data


ProgressFn = Callable[[EvalProgress], None]


# -- checkpoints ---------------------------------------------------------------------


def run_key(questions_file: Path, settings: dict[str, Any]) -> str:
    """Hash of the question file's bytes and the settings that change answers."""
    digest = hashlib.sha256(Path(questions_file).read_bytes())
    digest.update(json.dumps(settings, sort_keys=True).encode())
    return digest.hexdigest()[:16]


def _load_checkpoint(path: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """Saved answers by (question id, mode); a torn last line (a crash) is ignored."""
    records: dict[tuple[str, str], dict[str, Any]] = {}
    if not path.exists():
        return records
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
            records[(row["id"], row["mode"])] = row
        except (ValueError, KeyError, TypeError):
            continue
    return records


def _append(path: Path, record: dict[str, Any]) -> None:
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        handle.flush()


def _source_json(source: SearchResult) -> dict[str, Any]:
    return {"document": source.document, "path": source.path, "page": source.page,
            "section": source.section, "rank": source.rank}  # fmt: skip


# -- the runner ------------------------------------------------------------------------


class Evaluation:
    """One evaluation run of a question file over an Engine (used on the Engine's thread)."""

    def __init__(self, engine: Engine, questions_file: Path, config: EvalConfig) -> None:
        self.engine = engine
        self.file = Path(questions_file)
        self.config = config
        self.questions = load_questions(self.file)
        self.by_id = {q.id: q for q in self.questions}
        parse_modes(config.modes)
        runs = engine.data_dir / RUNS_DIR
        runs.mkdir(parents=True, exist_ok=True)
        self.checkpoint = runs / f"{self.file.stem}-{run_key(self.file, self._settings())}.jsonl"

    def _settings(self) -> dict[str, Any]:
        """What changes answers: a retrained adapter at the same path, or a new refusal
        threshold, starts a new run instead of resuming the old answers."""
        from models.bundled import sha256_file

        s = self.engine.settings
        adapter = self.engine.adapter_path()
        gate = self.engine.refusal_gate(preferred(adapter=True))
        card = self.engine.grounding.card() if gate else None  # its two-level bars
        refusal = [gate.threshold, card.refusal_close, card.refusal_sure] if gate and card else None
        return {
            "model": s.model_path or "bundled", "lora": str(adapter),
            "lora_sha256": sha256_file(adapter) if adapter and adapter.is_file() else None,
            "refusal": refusal,
            "lora_scale": self.engine.adapter_scale(), "k": self._k(), "min_score": s.min_score,
            "max_tokens": self.config.max_tokens,
            "collection": self.config.collection or s.collection, "context": s.context_size,
            "system_prompt": s.system_prompt, "merged": self.engine.llms.merge,
            "reader": self._reader_key(),
            "server": [s.server_url, s.server_model] if s.server_url else None,
        }  # fmt: skip

    def _reader_key(self) -> list[Any] | None:
        """The reader in use and the card's numbers: a new reader starts a new run."""
        reader = self.engine.reader
        if reader is None:
            return None
        card = reader.card
        rankers = [card.get(k) for k in ("passage_ranker", "sentence_ranker", "refusal_model")]
        bars = [card.get("grounding_refusal"), card.get("quote_threshold_alone")]
        return [reader.key, *bars, *rankers,
                *(reader.setting(k) for k in sorted(DEFAULTS))]  # fmt: skip

    def run(
        self, progress: ProgressFn | None = None, *, stop: threading.Event | None = None
    ) -> EvalReport:
        """Search variants first (cheap), then answers; `stop` ends it between steps (and
        mid-answer: that answer is not saved)."""
        cancel = stop or threading.Event()
        if self.config.restart:
            self.checkpoint.unlink(missing_ok=True)
        saved = _load_checkpoint(self.checkpoint)
        answerable = [q for q in self.questions if not q.absent and q.doc]
        modes = () if self.config.retrieval_only else self.config.modes
        todo = [(q, m) for q in self.questions for m in modes if (q.id, m) not in saved]
        self._warm_up(todo)
        tick = _Ticker(progress, len(answerable) * len(self._methods()), len(todo))
        ranks, search_s = self._search_variants(answerable, tick, cancel)
        skipped: dict[str, str] = {}
        computed = 0
        for question, mode in todo:
            if cancel.is_set():
                break
            if mode not in skipped:
                turns = self._turns(question, mode, saved)
                record = self._answer(question, mode, skipped, cancel, turns)
                if record is not None and not record.get("cancelled"):
                    _append(self.checkpoint, record)
                    saved[(question.id, mode)] = record
                    computed += 1
            tick(f"{mode}  {question.id}", "answer")
        report = self._report(saved, ranks, search_s, skipped)
        report.complete = len(ranks["hybrid"]) == len(answerable) and all(
            (q.id, m) in saved or m in skipped for q in self.questions for m in modes
        )
        report.computed, report.resumed = computed, len(saved) - computed
        return report

    def _warm_up(self, todo: list[tuple[Question, str]]) -> None:
        """Load the embedder and the model first, so the first timings are not load times."""
        self.engine.search("warm-up", 1, self._collection())
        modes = {m for _, m in todo}
        for mode in sorted(modes):
            # a problem (a missing model or adapter) is reported per mode as its reason to
            # be skipped
            with contextlib.suppress(UserError):
                self.engine.load(mode)

    def _search_variants(
        self, questions: list[Question], tick: _Ticker, cancel: threading.Event
    ) -> tuple[dict[str, dict[str, int | None]], dict[str, list[float]]]:
        """First-hit rank of every answerable question under each retrieval method."""
        ranks: dict[str, dict[str, int | None]] = {m: {} for m in (*METHODS, ALONE)}
        seconds: dict[str, list[float]] = {m: [] for m in METHODS}
        depth = max(5, self._k())
        methods = self._methods()
        for question in questions:
            for method in methods:
                if cancel.is_set():
                    return ranks, seconds
                start = time.perf_counter()
                query = search_query(question.question, self._turns(question))
                found = self._search(query, depth, method)
                seconds[method].append(time.perf_counter() - start)
                ranks[method][question.id] = first_hit_rank(found, question)
                tick(f"search {method}  {question.id}")
            if question.follows is not None:  # and as if it were asked on its own
                found = self._search(question.question, depth, methods[-1])
                ranks[ALONE][question.id] = first_hit_rank(found, question)
        return ranks, seconds

    def _turns(
        self,
        question: Question,
        mode: str | None = None,
        saved: dict[tuple[str, str], dict[str, Any]] | None = None,
    ) -> list[Turn]:
        """The turn a follow-up follows: the earlier question, with the answer this mode
        gave it (when it has one yet)."""
        earlier = self.by_id.get(question.follows or "")
        if earlier is None:
            return []
        record = (saved or {}).get((earlier.id, mode or ""))
        return [(earlier.question, str(record["answer"]) if record else "")]

    def _methods(self) -> tuple[str, ...]:
        """The search variants to run: the reader's only when there is one."""
        return METHODS if self.engine.reader is not None else METHODS[:-1]

    def _search(self, question: str, depth: int, method: str) -> list[SearchResult]:
        """One search variant; "reader" is hybrid reranked (and is left out, as is its
        row, when the reader is off)."""
        if method == "reader":
            return self.engine.search(question, depth, self._collection(), "hybrid")
        return self.engine.search(question, depth, self._collection(), method, rerank=False)

    def _collection(self) -> str:
        return self.config.collection or self.engine.settings.collection

    def _k(self) -> int:
        return self.config.k or self.engine.settings.top_k

    def _answer(
        self,
        question: Question,
        mode: str,
        skipped: dict[str, str],
        cancel: threading.Event,
        turns: list[Turn] | None = None,
    ) -> dict[str, Any] | None:
        """Generate one answer (`cancel` stops it mid-answer: it is then not saved); a mode
        the engine refuses (no adapter) is skipped, with why."""
        from engine.answer.events import AskOptions

        options = AskOptions(
            k=self._k(), collection=self._collection(), temperature=0.0,
            max_tokens=self.config.max_tokens, turns=turns or None,
        )  # fmt: skip
        try:
            answer = self.engine.answer(question.question, mode, options, stop=cancel)
        except UserError as exc:
            skipped[mode] = str(exc)
            return None
        return {
            "id": question.id, "mode": mode, "answer": answer.answer,
            "sources": [_source_json(s) for s in answer.sources],
            "timings": vars(answer.timings).copy(), "cancelled": answer.cancelled,
            "quote": answer.quote.to_json() if answer.quote else None,
            "not_covered": answer.not_covered,
        }  # fmt: skip

    def _report(
        self,
        saved: dict[tuple[str, str], dict[str, Any]],
        ranks: dict[str, dict[str, int | None]],
        search_s: dict[str, list[float]],
        skipped: dict[str, str],
    ) -> EvalReport:
        by_id = {q.id: q for q in self.questions}
        details = [
            {"id": qid, "method": method, "rank": rank}
            for method, per_q in ranks.items()
            for qid, rank in per_q.items()
        ]
        retrieval = {
            m: rank_metrics(list(ranks[m].values()), search_s[m]) for m in METHODS if ranks[m]
        }
        if ranks[ALONE]:  # follow-ups: searched with the question before, and alone
            used = ranks["reader"] if ranks.get("reader") else ranks["hybrid"]
            retrieval[WITH_CONTEXT] = rank_metrics([used.get(q) for q in ranks[ALONE]], [])
            retrieval[ALONE] = rank_metrics(list(ranks[ALONE].values()), [])
        modes: dict[str, dict[str, Any]] = {}
        for mode in self.config.modes:
            if mode in skipped:
                modes[mode] = {**dict.fromkeys(METRICS), "n": 0, "skipped": skipped[mode]}
                continue
            rows = [(by_id[qid], r) for (qid, m), r in saved.items() if m == mode and qid in by_id]
            modes[mode] = score_mode(rows, mode)
            if self.config.retrieval_only and MODES[mode].retrieves:
                searched = retrieval.get("reader") or retrieval.get("hybrid") or {}
                modes[mode].update({k: searched.get(k) for k in METRICS[:3]})
                modes[mode]["n"] = searched.get("n", 0)
            details += [answer_detail(q, r) for q, r in rows]
        counts = {
            "questions": len(self.questions),
            "answerable": sum(1 for q in self.questions if not q.absent),
            "absent": sum(1 for q in self.questions if q.absent),
        }
        return EvalReport(modes, retrieval, skipped, details, checkpoint=self.checkpoint,
                          counts=counts)  # fmt: skip


class _Ticker:
    """Counts finished steps and reports them to a progress callback, with the share of
    the run's time done: searches and answers are timed as they go (an answer is assumed
    to cost 100 searches until one is measured), so the bar follows the work, not steps."""

    ASSUMED_ANSWER_IN_SEARCHES = 100

    def __init__(self, progress: ProgressFn | None, searches: int, answers: int) -> None:
        self.progress = progress
        self.total = {"search": searches, "answer": answers}
        self.count = {"search": 0, "answer": 0}
        self.seconds = {"search": 0.0, "answer": 0.0}
        self.start = self.last = time.perf_counter()
        self.shown = 0.0  # never moves back when a measured answer time corrects the guess

    def __call__(self, label: str, kind: str = "search") -> None:
        now = time.perf_counter()
        self.count[kind] += 1
        self.seconds[kind] += now - self.last
        self.last = now
        if self.progress is None:
            return
        elapsed = now - self.start
        fraction = self.shown = max(self.shown, self._fraction())
        eta = elapsed * (1 - fraction) / fraction if fraction > 0 and elapsed >= 1 else None
        done, total = sum(self.count.values()), sum(self.total.values())
        self.progress(
            EvalProgress(
                done, total, label, elapsed, fraction, eta,
                self.count["answer"], self.total["answer"],
            )
        )  # fmt: skip

    def _fraction(self) -> float:
        search = self.seconds["search"] / max(1, self.count["search"])
        if self.count["answer"]:
            answer = self.seconds["answer"] / self.count["answer"]
        else:
            answer = search * self.ASSUMED_ANSWER_IN_SEARCHES
        done = self.count["search"] * search + self.count["answer"] * answer
        total = self.total["search"] * search + self.total["answer"] * answer
        return min(1.0, done / total) if total > 0 else 1.0


# -- rendering -----------------------------------------------------------------------


_COLUMNS = (
    ("hit@1", "hit_at_1", "{:.2f}"), ("hit@5", "hit_at_5", "{:.2f}"), ("MRR", "mrr", "{:.2f}"),
    ("answer contained", "answer_containment", "{:.2f}"),
    ("quote contained", "quote_containment", "{:.2f}"),
    ("citation precision", "citation_precision", "{:.2f}"),
    ("absent: don't know", "absent_dont_know", "{:.2f}"),
    ("false refusals", "false_refusal", "{:.2f}"),
    ("gold in sources", "gold_in_sources", "{:.2f}"),
    ("prompt echoed", "prompt_echo", "{:.2f}"),
    ("retrieval ms", "retrieval_s", "ms"), ("rerank ms", "rerank_s", "ms"),
    ("quote ms", "quote_s", "ms"), ("first token s", "first_token_s", "{:.2f}"),
    ("total s", "total_s", "{:.2f}"), ("tokens/s", "tokens_per_s", "{:.1f}"),
)  # fmt: skip


def table_rows(report: EvalReport) -> list[tuple[str, dict[str, Any]]]:
    """(label, metrics) in display order: the search variants, then the measured modes."""
    searched = [(m, report.retrieval.get(m) or {}) for m in (*METHODS, WITH_CONTEXT, ALONE)]
    rows = [(f"search: {m}", metrics) for m, metrics in searched if metrics.get("n")]
    measured = [
        (m, v) for m, v in report.modes.items() if any(v.get(k) is not None for k in METRICS)
    ]
    return rows + [(f"mode: {m}", v) for m, v in measured]


def format_metric(key: str, value: Any) -> str:
    if value is None:
        return "–"
    spec = next(fmt for _, k, fmt in _COLUMNS if k == key)
    return f"{value * 1000:.0f}" if spec == "ms" else spec.format(value)


def render_markdown(report: EvalReport) -> str:
    """The report as a Markdown table with notes for skipped modes and stopped runs."""
    head = ["", "n", *(name for name, _, _ in _COLUMNS)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, metrics in table_rows(report):
        cells = [label, str(metrics.get("n", 0))]
        cells += [format_metric(key, metrics.get(key)) for _, key, _ in _COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    for mode, why in report.skipped.items():
        lines.append(f"\nmode {mode} skipped: {why}")
    if not report.complete:
        lines.append("\nstopped before the end: these figures cover the finished answers only.")
    return "\n".join(lines)
