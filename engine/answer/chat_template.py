"""A GGUF's own chat template, rendered in a sandbox with a budget.

A chat template is code that comes with a model file, so a downloaded model can carry a
hostile or broken one. Jinja's sandbox already refuses attribute tricks (they raise
`SecurityError`) and caps each `range()` at 100,000 items, but a template can still
nest loops for hours (`range(100000)` inside `range(100000)`) or ask for a huge string
(`'x' * 10**11`). Here every render has a budget: loop items, string and list sizes,
output length and time. A template that breaks one, or fails, or reaches outside the
sandbox, is reported in one line ("this model's chat template is broken or unsafe"),
never a traceback, never a hang.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

from engine.types import UserError

LOOP_ITEMS = 200_000  # range() items over one render (real templates use a few dozen)
MAX_CHARS = 4_000_000  # any string or list made while rendering, and the output
MAX_SECONDS = 2.0  # one render (real templates take about a millisecond)


class TemplateBudgetError(Exception):
    """A render went past its budget."""


class _Budget:
    def __init__(self) -> None:
        self.deadline = time.monotonic() + MAX_SECONDS
        self.items = 0

    def tick(self, items: int = 0) -> None:
        self.items += items
        if self.items > LOOP_ITEMS:
            raise TemplateBudgetError(f"loops over more than {LOOP_ITEMS:,} items")
        if time.monotonic() > self.deadline:
            raise TemplateBudgetError(f"rendering took over {MAX_SECONDS:g} s")


class _Generation(jinja2.ext.Extension):
    """Hugging Face's `{% generation %}` tag (training masks): the text passes through."""

    tags = {"generation"}  # noqa: RUF012 - jinja2.ext.Extension declares it a plain set

    def parse(self, parser: Any) -> Any:
        parser.stream.skip(1)
        return parser.parse_statements(("name:endgeneration",), drop_needle=True)


class _Environment(ImmutableSandboxedEnvironment):
    """The sandbox, checking the render's budget on every call, attribute, item and
    operator, and the size of what `*` and `+` build."""

    intercepted_binops = frozenset({"*", "+", "**"})

    def __init__(self) -> None:
        super().__init__(
            loader=jinja2.BaseLoader(),
            trim_blocks=True,
            lstrip_blocks=True,
            extensions=[_Generation, jinja2.ext.loopcontrols],
        )
        self.budget = _Budget()
        self.filters["tojson"] = _tojson
        self.globals["range"] = self._range

    def _range(self, *args: int) -> range:
        items = range(*args)
        self.budget.tick(len(items))
        return items

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        self.budget.tick()
        if operator == "**" and isinstance(right, int) and abs(right) > 64:
            raise TemplateBudgetError("a power over 64")
        if _size(operator, left, right) > MAX_CHARS:
            raise TemplateBudgetError("a string or list over the size limit")
        return super().call_binop(context, operator, left, right)

    def getattr(self, obj: Any, attribute: str) -> Any:
        self.budget.tick()
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        self.budget.tick()
        return super().getitem(obj, argument)

    def call(self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        self.budget.tick()
        return super().call(__context, __obj, *args, **kwargs)


def _size(operator: str, left: Any, right: Any) -> int:
    """How long the string or list that `left <operator> right` makes would be (0: not one)."""
    sized = (str, list, tuple)
    if operator == "*":
        for seq, count in ((left, right), (right, left)):
            if isinstance(seq, sized) and isinstance(count, int):
                return len(seq) * count
    if operator == "+" and isinstance(left, sized) and isinstance(right, sized):
        return len(left) + len(right)
    return 0


class ChatTemplate:
    """One model's chat template: `render(messages)` -> (prompt, stop strings)."""

    def __init__(self, source: str, bos_token: str, eos_token: str, model: str = "") -> None:
        self.bos_token, self.eos_token, self.model = bos_token, eos_token, model
        self.env = _Environment()
        try:
            self.template = self.env.from_string(source)
        except (jinja2.TemplateError, RecursionError, MemoryError, ValueError) as exc:
            raise self._broken(exc) from None

    def render(self, messages: list[dict[str, str]]) -> tuple[str, list[str]]:
        """The prompt and its stop strings. A template that raises on purpose (e.g. one
        that refuses a system role) raises `TemplateRefusedError`; anything else that goes
        wrong is a `UserError` naming the model."""
        self.env.budget = _Budget()
        try:
            prompt = _bounded(self.template.generate(
                messages=messages, bos_token=self.bos_token, eos_token=self.eos_token,
                add_generation_prompt=True, raise_exception=_refuse, strftime_now=_now,
                tools=None, functions=None,
            ))  # fmt: skip
        except TemplateRefusedError:
            raise
        except Exception as exc:  # noqa: BLE001 - model code: any failure is the template's
            raise self._broken(exc) from None
        return prompt, [s for s in [self.eos_token] if s]

    def _broken(self, exc: BaseException) -> UserError:
        reason = str(exc).strip() or type(exc).__name__
        if isinstance(exc, RecursionError):
            reason = "it recurses too deeply"
        elif isinstance(exc, MemoryError):
            reason = "it asks for more memory than this machine has"
        elif isinstance(exc, jinja2.exceptions.SecurityError):
            reason = f"it reaches outside the sandbox ({reason})"
        where = f"{self.model}: " if self.model else ""
        return UserError(f"{where}this model's chat template is broken or unsafe: {reason[:200]}")


class TemplateRefusedError(Exception):
    """The template called raise_exception(): it refuses these messages as they are."""


def _refuse(message: str) -> None:
    raise TemplateRefusedError(message)


def _now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


def _tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None,
            separators: tuple[str, str] | None = None, sort_keys: bool = False) -> str:  # fmt: skip
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)  # fmt: skip


def _bounded(pieces: Iterator[str]) -> str:
    out: list[str] = []
    size = 0
    for piece in pieces:
        size += len(piece)
        if size > MAX_CHARS:
            raise TemplateBudgetError(f"its output passed {MAX_CHARS:,} characters")
        out.append(piece)
    return "".join(out)
