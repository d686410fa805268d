"""Text generation with one GGUF model through llama-cpp-python.

One `Generator` owns one `Llama`; it is not thread-safe, so only the engine's worker
thread (or the CLI's main thread) calls it.
"""

from __future__ import annotations

import ctypes
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import llama_cpp
import numpy as np

from engine.answer.adapters import AdapterSet
from engine.answer.chat_template import ChatTemplate, TemplateRefusedError
from engine.threads import answer_threads
from engine.types import Timings, UserError

# Gemma's real turn format. The bundled Gemma 3 GGUF carries no chat template, and
# llama-cpp-python would then fall back to the llama-2 format, which is wrong for Gemma.
# Gemma has no system role: the system text opens the first user turn, as its own
# template does.
_GEMMA_TURN = "<start_of_turn>{role}\n{content}<end_of_turn>\n"
_GEMMA_STOP = ["<end_of_turn>", "<start_of_turn>"]


class Cancelled(Exception):  # noqa: N818 - an outcome the user asked for, not an error
    """Generation was stopped by the user."""


@dataclass(frozen=True)
class RefusalGate:
    """Answer or refuse, decided once, at the first token, on the model's own odds.

    An adapter trained to start every answer one way ("Source [n]: ...") and every
    refusal another ("The documents do not say.") makes that choice with its first
    token. Greedy decoding takes whichever is likelier, so the share of refusals in
    training, not the question, decides: `threshold` moves the line. When the first
    refusal token's probability reaches it, the whole refusal `sentence` is written;
    below it, that token is barred and the model answers, and the refusal cannot begin
    later in the answer either (its second token is barred after its first word: the
    adapter once wrote "Source [1]: The documents do not say."). `restart` is how an answer
    starts ("\nSource ["): one answer starts once, so meeting it again means the model is
    writing its answer a second time, and generation stops there. A phrase repeated back to
    back (`looping`) ends the answer too.
    """

    sentence: str
    threshold: float
    restart: str | None = None


LOOP_TOKENS = 12  # a repeat this long ends a gated or guarded answer (see `looping`)
REPEAT_PENALTY = 1.1  # llama.cpp's usual value, for answers with a user's own adapter


def looping(tokens: Any) -> bool:
    """Whether `tokens` end in one block repeated back to back at least three times and
    over at least LOOP_TOKENS tokens: the small model, once in a loop, writes the same
    phrase to the token limit ("target_with_anchor_target_with_anchor_..."). "8, 4, 4, 4
    and 12" repeats ", 4" three times in 6 tokens, which is not a loop."""
    tail = [int(t) for t in tokens[-3 * LOOP_TOKENS :]]
    n = len(tail)
    for period in range(1, LOOP_TOKENS + 1):
        repeats = max(3, -(-LOOP_TOKENS // period))  # ceil(LOOP_TOKENS / period)
        if n < period * repeats:
            break
        block = tail[n - period :]
        if all(tail[n - (k + 1) * period : n - k * period] == block for k in range(1, repeats)):
            return True
    return False


class Generator:
    """A loaded GGUF model that turns chat messages into a stream of text pieces."""

    def __init__(
        self,
        model_path: Path,
        context_size: int = 4096,
        threads: int | None = None,
        seed: int = 0,
    ) -> None:
        self.model_path = Path(model_path)
        self.fixed_threads = threads  # None: each answer takes the cores free when it starts
        self.threads = answer_threads(threads)
        self.llm = _load(self.model_path, context_size, self.threads, seed)
        self.chat = ChatFormat(self.llm)
        self.last_timings = Timings()
        self.last_refusal_odds: float | None = None  # the gate's first-token odds, if any
        self._request_stop: threading.Event | None = None  # the running request's own stop
        # Keep a reference: ctypes callbacks are freed when garbage-collected.
        self._abort_cb = llama_cpp.ggml_abort_callback(lambda _data: self._stopping())
        llama_cpp.llama_set_abort_callback(self.llm.ctx, self._abort_cb, None)
        self.adapters = AdapterSet(self.llm, self.model_path)

    @property
    def name(self) -> str:
        return self.model_path.name

    @property
    def context_size(self) -> int:
        return int(self.llm.n_ctx())

    @property
    def template_kind(self) -> str:
        return self.chat.kind

    def use_adapter(self, path: Path | None, scale: float = 1.0) -> None:
        """Switch the LoRA adapter (None: the base model alone) without reloading the model."""
        self.adapters.activate(path, scale)

    def count_tokens(self, text: str) -> int:
        return self.chat.count_tokens(text)

    def _stopping(self) -> bool:
        stop = self._request_stop
        return stop is not None and stop.is_set()

    def format(self, messages: list[dict[str, str]]) -> tuple[str, list[str]]:
        return self.chat.format(messages)

    def stream(
        self,
        messages: list[dict[str, str]],
        max_tokens: int = 384,
        temperature: float = 0.2,
        seed: int | None = None,
        cancel: threading.Event | None = None,
        gate: RefusalGate | None = None,
        guard: bool = False,
    ) -> Iterator[str]:
        """Yield the answer piece by piece; `self.last_timings` is filled as it goes.

        With `guard` (a user's own adapter), a phrase repeated back to back ends the answer
        and repeated tokens are penalised (REPEAT_PENALTY): a style adapter trained on a
        dozen examples once wrote "alarının" to the token limit.

        Raises `Cancelled` once `cancel` (the request's own event) is set, from any thread,
        even before generation started or during a long prompt evaluation; breaking out of
        the loop also stops.
        """
        prompt, stop = self.chat.format(messages)
        if gate is not None and gate.restart:
            stop = [*stop, gate.restart]
        tokens = self.chat.tokenize_prompt(prompt)
        budget = self.context_size - len(tokens)
        if budget < 16:
            raise UserError(
                f"The prompt ({len(tokens)} tokens) does not fit the context window "
                f"({self.context_size}); raise the context size or use fewer sources."
            )
        self._request_stop = cancel or threading.Event()
        self._fit_threads()
        if seed is not None:
            self.llm.set_seed(seed)
        try:
            if self._stopping():
                raise Cancelled()
            # Evaluate the whole prompt every time: reusing the previous prompt's cache
            # re-evaluates only its last token, and those logits differ enough (the same
            # kettle question: p("The") 0.18, then 0.21) to flip a gated answer or a
            # greedy word. RAG prompts share only a few dozen leading tokens anyway.
            self.llm.reset()
            self.last_refusal_odds = None
            processor = self._gate(gate, len(tokens)) if gate is not None else None
            if processor is None and guard:
                processor = self._loop_guard(len(tokens))
            penalty = REPEAT_PENALTY if guard else 1.0
            yield from self._run(
                tokens, stop, min(max_tokens, budget), temperature, processor, penalty
            )
        finally:
            self._request_stop = None

    def _fit_threads(self) -> None:
        """Use the cores free right now (engine/threads.py says why), or the user's count."""
        wanted = answer_threads(self.fixed_threads)
        if wanted != self.threads:
            llama_cpp.llama_set_n_threads(self.llm.ctx, wanted, wanted)
            self.threads = wanted

    def _gate(self, gate: RefusalGate, prompt_tokens: int) -> Callable[[Any, Any], Any]:
        """A logits processor that applies `gate` (see RefusalGate)."""
        sentence = self.llm.tokenize(gate.sentence.encode(), add_bos=False, special=False)
        forced = [*sentence, self.llm.token_eos()]
        first_word = gate.sentence.split(" ", 1)[0]
        # The refusal's first word inside an answer ("Source [1]: The ..."), spaced or not.
        openers = {forced[0], *self.llm.tokenize(f" {first_word}".encode(), False, False)[:1]}
        refusing = False

        def process(input_ids: Any, scores: Any) -> Any:
            nonlocal refusing
            step = len(input_ids) - prompt_tokens
            if step == 0:
                logits = scores.astype(np.float64)
                odds = np.exp(logits - logits.max())
                self.last_refusal_odds = float(odds[forced[0]] / odds.sum())
                refusing = self.last_refusal_odds >= gate.threshold
                if not refusing:
                    scores[forced[0]] = -np.inf
            elif not refusing and len(forced) > 2 and input_ids[-1] in openers:
                scores[forced[1]] = -np.inf  # decided: the refusal does not start later either
            if not refusing and step >= LOOP_TOKENS and looping(input_ids[prompt_tokens:]):
                keep = max(float(scores[forced[-1]]), 0.0)  # the answer ends here
                scores[:] = -np.inf
                scores[forced[-1]] = keep
            if refusing and step < len(forced):
                keep = scores[forced[step]]
                scores[:] = -np.inf
                scores[forced[step]] = keep
            return scores

        return process

    def _loop_guard(self, prompt_tokens: int) -> Callable[[Any, Any], Any]:
        """A logits processor that ends the answer once it loops (see `looping`)."""
        eos = self.llm.token_eos()

        def process(input_ids: Any, scores: Any) -> Any:
            if len(input_ids) - prompt_tokens >= LOOP_TOKENS and looping(input_ids[prompt_tokens:]):
                keep = max(float(scores[eos]), 0.0)
                scores[:] = -np.inf
                scores[eos] = keep
            return scores

        return process

    def _run(
        self,
        tokens: list[int],
        stop: list[str],
        max_tokens: int,
        temperature: float,
        processor: Callable[[Any, Any], Any] | None = None,
        repeat_penalty: float = 1.0,
    ) -> Iterator[str]:
        timings = self.last_timings = Timings()
        start = time.perf_counter()
        pieces = self.llm.create_completion(
            tokens,
            max_tokens=max_tokens,
            temperature=temperature,
            stop=stop,
            stream=True,
            repeat_penalty=repeat_penalty,
            logits_processor=llama_cpp.LogitsProcessorList([processor]) if processor else None,
        )
        try:
            for chunk in pieces:
                if self._stopping():
                    raise Cancelled()
                text, finished = _chunk_text(chunk)
                if finished and not text:
                    break
                now = time.perf_counter() - start
                if timings.tokens == 0:
                    timings.first_token_s = now
                timings.tokens += 1
                timings.total_s = now
                if text:
                    yield text
        except RuntimeError as exc:  # llama_decode reports an abort as an error
            self.llm.reset()
            if self._stopping():
                raise Cancelled() from exc
            raise
        finally:
            timings.total_s = time.perf_counter() - start
            gen_s = timings.total_s - timings.first_token_s
            if timings.tokens > 1 and gen_s > 0:
                timings.tokens_per_s = (timings.tokens - 1) / gen_s

    def close(self) -> None:
        self.llm.close()


class ChatFormat:
    """How one GGUF model turns chat messages into prompt tokens, at answer and training time.

    The GGUF's own chat template when it has one, else Gemma turns for Gemma models, else a
    plain "Role: text" layout. Training renders its examples through this same object, so
    what is trained is exactly what runs.
    """

    def __init__(self, llm: llama_cpp.Llama) -> None:
        self.llm = llm
        self.template: str | None = llm.metadata.get("tokenizer.chat_template")
        self.architecture: str = llm.metadata.get("general.architecture", "")
        self._formatter = self._make_formatter()

    @property
    def kind(self) -> str:
        """Which chat format is in use: the GGUF's own, Gemma turns, or plain text."""
        if self._formatter is not None:
            return "gguf"
        return "gemma" if self.architecture.startswith("gemma") else "plain"

    def count_tokens(self, text: str) -> int:
        return len(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def format(self, messages: list[dict[str, str]]) -> tuple[str, list[str]]:
        """The prompt text for `messages` in the model's chat format, and its stop strings."""
        if self._formatter is not None:
            try:
                return self._formatter.render(messages)
            except TemplateRefusedError:  # templates that refuse a system role, e.g. Gemma 2's
                try:
                    return self._formatter.render(_fold_system(messages))
                except TemplateRefusedError as exc:
                    raise UserError(
                        f"{self._formatter.model}: this model's chat template refuses the "
                        f"messages ({exc})"
                    ) from None
        if self.kind == "gemma":
            turns = [_GEMMA_TURN.format(**m) for m in _fold_system(messages)]
            return "".join(turns) + "<start_of_turn>model\n", list(_GEMMA_STOP)
        text = "".join(f"{m['role'].capitalize()}: {m['content']}\n\n" for m in messages)
        return text + "Assistant:", ["\nUser:", "\nSystem:"]

    def tokenize_prompt(self, prompt: str) -> list[int]:
        """Tokenize with special tokens; add BOS unless the template already wrote it."""
        bos = self._piece(self.llm.token_bos())
        add_bos = not (bos and prompt.startswith(bos))
        return list(self.llm.tokenize(prompt.encode("utf-8"), add_bos=add_bos, special=True))

    def encode_example(
        self, messages: list[dict[str, str]], answer: str
    ) -> tuple[list[int], list[int]]:
        """(prompt tokens, answer tokens) for training: the answer ends the way generation
        stops, with the format's first stop string (Gemma's `<end_of_turn>`) or EOS."""
        prompt, stop = self.format(messages)
        end = stop[0] if self.kind != "plain" and stop else self._piece(self.llm.token_eos())
        target = self.llm.tokenize((answer + end).encode("utf-8"), add_bos=False, special=True)
        return self.tokenize_prompt(prompt), list(target)

    def _piece(self, token: int) -> str:
        return self.llm.detokenize([token], special=True).decode("utf-8", "ignore")

    def _make_formatter(self) -> ChatTemplate | None:
        if not self.template:
            return None
        return ChatTemplate(
            self.template,
            bos_token=self._piece(self.llm.token_bos()),
            eos_token=self._piece(self.llm.token_eos()),
            model=Path(self.llm.model_path).name,
        )


def load_vocab(path: Path) -> llama_cpp.Llama:
    """A GGUF's tokenizer and metadata alone, without its weights (for rendering examples)."""
    _check_gguf(path)
    _quiet_llama_logs()
    try:
        return llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
    except (ValueError, RuntimeError) as exc:
        raise UserError(f"{path.name}: llama.cpp could not read this model ({exc})") from exc


def _check_gguf(path: Path) -> None:
    if not path.is_file():
        raise UserError(f"{path}: model file not found; pick a GGUF file in Settings or --model")
    with path.open("rb") as handle:
        if handle.read(4) != b"GGUF":
            raise UserError(f"{path.name} is not a GGUF file; Quire runs GGUF models only")


def _load(path: Path, context_size: int, threads: int, seed: int) -> llama_cpp.Llama:
    """Load a GGUF model, turning llama.cpp's failures into one clear line."""
    _check_gguf(path)
    _quiet_llama_logs()
    try:
        return llama_cpp.Llama(
            model_path=str(path),
            n_ctx=context_size,
            n_threads=threads,
            n_threads_batch=threads,
            n_batch=512,
            seed=seed,
            verbose=False,
        )
    except (ValueError, RuntimeError) as exc:
        raise UserError(f"{path.name}: llama.cpp could not load this model ({exc})") from exc


@llama_cpp.llama_log_callback
def _discard_log(_level: int, _text: bytes, _data: ctypes.c_void_p) -> None:
    return None


def _quiet_llama_logs() -> None:
    """llama.cpp prints model-loading chatter to stderr; the CLI's stderr is for progress."""
    if not os.environ.get("QUIRE_LLAMA_LOGS"):
        llama_cpp.llama_log_set(_discard_log, ctypes.c_void_p(0))


def _fold_system(messages: list[dict[str, str]]) -> list[dict[str, str]]:
    """Merge a leading system message into the first user turn, for formats without one."""
    if not messages or messages[0]["role"] != "system":
        return messages
    system, rest = messages[0]["content"], list(messages[1:])
    if rest and rest[0]["role"] == "user":
        rest[0] = {"role": "user", "content": f"{system}\n\n{rest[0]['content']}"}
        return rest
    return [{"role": "user", "content": system}, *rest]


def _chunk_text(chunk: Any) -> tuple[str, bool]:
    """A streamed piece's text, and whether it is the closing piece (no new token)."""
    choice = chunk["choices"][0]
    return str(choice["text"]), choice.get("finish_reason") is not None
