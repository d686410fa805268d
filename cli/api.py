"""`main.py serve`: Quire as an OpenAI-compatible server, for editors, scripts and other
Quires (`--server`). Starlette on uvicorn; the engine runs on one worker thread of its own.

- `GET /v1/models`: the answering model, and `quire:<collection>` for each collection;
- `POST /v1/chat/completions`: streaming (SSE) or not. A `quire:<collection>` model answers
  the last user message with retrieval: the reader's quote first, the answer, then the
  sources as numbered references in the text, and in the extra fields `sources` and `quote`.
  The plain model answers the messages as they are;
- `POST /v1/embeddings`: the bundled embedder.

One request runs at a time (the engine is single-threaded); the others wait in turn. A
client that disconnects stops its answer, or leaves the queue. Errors are OpenAI-style
JSON with the same one line as the CLI.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from engine.answer.events import Answer, AnswerFinished, AskOptions, SourcesFound, TokenReceived
from engine.answer.modes import RETRIEVING
from engine.answer.prompting import source_label
from engine.core import Engine
from engine.types import SearchResult, UserError

log = logging.getLogger(__name__)

PREFIX = "quire:"  # model ids that answer with retrieval: quire:<collection>
DEFAULT_PORT = 8765
POLL_S = 0.25  # how often a waiting request looks for its client's disconnect
_END = object()


class ApiError(Exception):
    """An error answered as OpenAI-style JSON with an HTTP status."""

    def __init__(self, status: int, message: str, code: str, kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.code, self.kind = status, message, code, kind

    def response(self) -> JSONResponse:
        body = {"error": {"message": self.message, "type": self.kind, "code": self.code}}
        return JSONResponse(body, status_code=self.status)


def user_error(exc: UserError) -> ApiError:
    """The engine's one line, with the status an OpenAI client expects for it."""
    text = str(exc)
    if "does not fit the context" in text or "do not fit the context" in text:
        return ApiError(400, text, "context_length_exceeded")
    if "model server" in text:
        return ApiError(502, text, "upstream_error", "server_error")
    return ApiError(400, text, "invalid_request")


class EngineThread:
    """The one thread that owns the Engine; jobs run in the order they came."""

    def __init__(self, make_engine: Callable[[], Engine]) -> None:
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="quire-engine")
        self.engine: Engine = self.pool.submit(make_engine).result()
        self.waiting = 0  # answers queued or running
        self.stopped = 0  # answers stopped (or never started) because their client left
        self._lock = threading.Lock()

    async def call(self, job: Callable[[Engine], Any]) -> Any:
        return await asyncio.wrap_future(self.pool.submit(job, self.engine))

    def stream(
        self, job: Callable[[Engine, threading.Event], Any], cancel: threading.Event
    ) -> asyncio.Queue[Any]:
        """Run a job that yields events; they arrive on the returned queue, then _END (or
        the exception that ended it). A job whose client left before its turn is skipped."""
        loop = asyncio.get_running_loop()
        out: asyncio.Queue[Any] = asyncio.Queue()

        def run(engine: Engine) -> None:
            stopped = cancel.is_set()
            try:
                if not stopped:
                    for event in job(engine, cancel):
                        if isinstance(event, AnswerFinished) and event.answer.cancelled:
                            stopped = True
                        loop.call_soon_threadsafe(out.put_nowait, event)
                loop.call_soon_threadsafe(out.put_nowait, _END)
            except BaseException as exc:  # noqa: BLE001 - any failure is handed to the request
                loop.call_soon_threadsafe(out.put_nowait, exc)
            finally:
                self._count(-1, stopped)

        self._count(1, False)
        self.pool.submit(run, self.engine)
        return out

    def _count(self, waiting: int, stopped: bool) -> None:
        with self._lock:
            self.waiting += waiting
            self.stopped += int(stopped)

    def close(self) -> None:
        self.pool.submit(self.engine.close).result()
        self.pool.shutdown()


class Api:
    """The routes, over one EngineThread."""

    def __init__(self, make_engine: Callable[[], Engine], api_key: str | None = None) -> None:
        self.engine = EngineThread(make_engine)
        self.api_key = api_key or None
        self.app = Starlette(
            routes=[
                Route("/v1/models", self.models, methods=["GET"]),
                Route("/v1/chat/completions", self.chat, methods=["POST"]),
                Route("/v1/embeddings", self.embeddings, methods=["POST"]),
                Route("/health", self.health, methods=["GET"]),
            ],
            exception_handlers={ApiError: _api_error, 404: _not_found, 405: _not_allowed},
        )

    # -- routes ------------------------------------------------------------------------

    async def health(self, request: Request) -> Response:
        """Up, how many requests wait or run, and how many answers were stopped because
        their client left (no key needed: it says nothing about the documents)."""
        engine = self.engine
        return JSONResponse({"status": "ok", "waiting": engine.waiting, "stopped": engine.stopped})

    async def models(self, request: Request) -> Response:
        self._check_key(request)
        ids = await self._model_ids()
        created = int(time.time())
        data = [{"id": i, "object": "model", "created": created, "owned_by": "quire"} for i in ids]
        return JSONResponse({"object": "list", "data": data})

    async def embeddings(self, request: Request) -> Response:
        self._check_key(request)
        body = await _json(request)
        texts = body.get("input")
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            raise ApiError(400, "'input' must be a string or a list of strings", "invalid_input")

        def embed(engine: Engine) -> tuple[str, list[list[float]], int]:
            embedder = engine.embedder
            vectors = embedder.embed(texts, sort_by_length=True)
            tokens = sum(embedder.count_tokens_batch(texts))
            return embedder.name, [[float(x) for x in v] for v in vectors], tokens

        name, vectors, tokens = await self.engine.call(embed)
        data = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)]
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        return JSONResponse({"object": "list", "data": data, "model": name, "usage": usage})

    async def chat(self, request: Request) -> Response:
        self._check_key(request)
        body = await _json(request)
        model = body.get("model")
        messages = _messages(body.get("messages"))
        ids = await self._model_ids()
        if model not in ids:
            raise ApiError(
                404, f"model '{model}' not found; this server has: {', '.join(ids)}",
                "model_not_found",
            )  # fmt: skip
        options = AskOptions(
            max_tokens=_positive(body.get("max_completion_tokens") or body.get("max_tokens")),
            temperature=_number(body.get("temperature")),
            seed=body.get("seed", 0) if isinstance(body.get("seed", 0), int) else 0,
        )
        job = self._job(str(model), messages, body.get("mode"), options)
        cancel = threading.Event()
        events = self.engine.stream(job, cancel)
        reply = _Reply(str(model), options.max_tokens, body.get("references", True) is not False)
        try:
            first = await _next(events, request, cancel)  # errors before any text: a status
        except BaseException:
            cancel.set()
            raise
        if body.get("stream"):
            return StreamingResponse(
                self._sse(first, events, request, cancel, reply),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache"},
            )
        event = first
        while event is not _END:
            reply.take(event)
            event = await _next(events, request, cancel)
        return JSONResponse(reply.completion())

    # -- helpers -------------------------------------------------------------------------

    def _job(
        self, model: str, messages: list[dict[str, str]], mode: Any, options: AskOptions
    ) -> Callable[[Engine, threading.Event], Any]:
        if model.startswith(PREFIX):
            collection = model[len(PREFIX) :]
            question, turns = _question_and_turns(messages)
            if mode is not None and mode not in RETRIEVING:  # rag or hybrid
                raise ApiError(400, "'mode' must be rag or hybrid for a quire: model", "bad_mode")

            def ask(engine: Engine, cancel: threading.Event) -> Any:
                options.collection, options.turns = collection, turns
                return engine.ask(question, mode or engine.default_mode(), options, stop=cancel)

            return ask

        def chat(engine: Engine, cancel: threading.Event) -> Any:
            return engine.chat(messages, options, stop=cancel)

        return chat

    async def _model_ids(self) -> list[str]:
        def ids(engine: Engine) -> list[str]:
            names = [c.name for c in engine.collections()] or [engine.settings.collection]
            return [engine.model_id(), *(PREFIX + n for n in names)]

        try:
            return list(await self.engine.call(ids))
        except UserError as exc:
            raise user_error(exc) from exc

    def _check_key(self, request: Request) -> None:
        if self.api_key is None:
            return
        given = request.headers.get("authorization", "")
        token = given[7:].strip() if given.lower().startswith("bearer ") else ""
        if not hmac.compare_digest(token.encode(), self.api_key.encode()):
            raise ApiError(401, "missing or wrong API key", "invalid_api_key")

    async def _sse(
        self,
        first: Any,
        events: asyncio.Queue[Any],
        request: Request,
        cancel: threading.Event,
        reply: _Reply,
    ) -> AsyncIterator[str]:
        """The answer as server-sent events; a client that leaves stops it."""
        try:
            text = reply.take(first)
            yield _data(
                {**reply.chunk({"role": "assistant", "content": ""}), **reply.found_fields()}
            )
            event = first
            while event is not _END:
                if event is not first:
                    text = reply.take(event)
                if text:
                    yield _data(reply.chunk({"content": text}))
                try:
                    event = await _next(events, request, cancel)
                except ApiError as exc:  # after the headers: the error goes in the stream
                    body = {"error": {"message": exc.message, "type": exc.kind, "code": exc.code}}
                    yield _data(body)
                    return
            yield _data(reply.chunk({}, finish=True))
            yield "data: [DONE]\n\n"
        finally:
            cancel.set()  # a no-op once the answer is done; stops it when the client left

    def close(self) -> None:
        self.engine.close()


class _Reply:
    """One chat completion as it is built from the engine's events."""

    def __init__(self, model: str, max_tokens: int | None, references: bool = True) -> None:
        self.id = f"chatcmpl-{uuid.uuid4().hex}"
        self.references = references  # False: the answer alone (the fields carry the rest)
        self.model, self.max_tokens = model, max_tokens
        self.created = int(time.time())
        self.text: list[str] = []
        self.found: SourcesFound | None = None
        self.answer: Answer | None = None

    def take(self, event: Any) -> str:
        """The text this event adds to the reply."""
        if isinstance(event, SourcesFound):
            self.found = event
            quote = event.quote
            if quote is None or not self.references:
                return ""
            number = f" [{quote.source}]" if quote.source else ""
            text = f'> "{" ".join(quote.text.split())}"\n> — {quote.label()}{number}\n\n'
        elif isinstance(event, TokenReceived):
            text = event.text
        elif isinstance(event, AnswerFinished):
            self.answer = event.answer
            text = _references(event.answer.sources) if self.references else ""
        else:
            return ""
        self.text.append(text)
        return text

    def found_fields(self) -> dict[str, Any]:
        """The sources and the quote, as soon as they are known (the stream's first chunk)."""
        found = self.found
        if found is None:
            return {}
        return {
            "sources": [_source(n, s) for n, s in enumerate(found.sources, 1)],
            "quote": found.quote.to_json() if found.quote else None,
        }

    def extra(self) -> dict[str, Any]:
        answer = self.answer
        if answer is None or self.found is None:
            return {}
        return {
            "sources": [_source(n, s) for n, s in enumerate(answer.sources, 1)],
            "quote": answer.quote.to_json() if answer.quote else None,
            "not_covered": answer.not_covered,
            "no_sources": answer.no_sources,
            "timings": vars(answer.timings).copy(),
        }

    def finish_reason(self) -> str:
        answer = self.answer
        if answer is not None and self.max_tokens and answer.timings.tokens >= self.max_tokens:
            return "length"
        return "stop"

    def usage(self) -> dict[str, int]:
        answer = self.answer
        prompt = sum(len(m["content"]) for m in answer.prompt) // 4 if answer else 0
        done = answer.timings.tokens if answer else 0
        return {"prompt_tokens": prompt, "completion_tokens": done, "total_tokens": prompt + done}

    def chunk(self, delta: dict[str, Any], finish: bool = False) -> dict[str, Any]:
        choice = {
            "index": 0,
            "delta": delta,
            "finish_reason": self.finish_reason() if finish else None,
        }
        data = {"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                "model": self.model, "choices": [choice]}  # fmt: skip
        if finish:
            data.update(self.extra())
            data["usage"] = self.usage()
        return data

    def completion(self) -> dict[str, Any]:
        message = {"role": "assistant", "content": "".join(self.text).strip()}
        choice = {"index": 0, "message": message, "finish_reason": self.finish_reason()}
        return {"id": self.id, "object": "chat.completion", "created": self.created,
                "model": self.model, "choices": [choice], "usage": self.usage(),
                **self.extra()}  # fmt: skip


def _references(sources: list[SearchResult]) -> str:
    """The sources as numbered references under the answer, for clients that show text."""
    if not sources:
        return ""
    lines = [f"[{n}] {source_label(s)}" for n, s in enumerate(sources, 1)]
    return "\n\nSources:\n" + "\n".join(lines)


def _source(number: int, s: SearchResult) -> dict[str, Any]:
    """A source as `search --json` prints it, with its number in the answer."""
    return {"number": number, **s.to_json()}


async def _next(events: asyncio.Queue[Any], request: Request, cancel: threading.Event) -> Any:
    """The job's next event, watching for the client leaving meanwhile (then the job is
    told to stop, and the request ends)."""
    while True:
        try:
            event = await asyncio.wait_for(events.get(), POLL_S)
        except asyncio.TimeoutError:
            if await request.is_disconnected():
                cancel.set()
                raise asyncio.CancelledError() from None
            continue
        if isinstance(event, UserError):
            raise user_error(event)
        if isinstance(event, ApiError):
            raise event
        if isinstance(event, BaseException):
            log.error("the engine failed on a request", exc_info=event)
            raise ApiError(500, f"Quire failed: {event}", "internal_error", "server_error")
        return event


def _data(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"


async def _json(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise ApiError(400, "the request body is not valid JSON", "invalid_json") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object", "invalid_json")
    return body


def _messages(raw: Any) -> list[dict[str, str]]:
    """Chat messages with text content (parts of type "text" are joined)."""
    if not isinstance(raw, list) or not raw:
        raise ApiError(400, "'messages' must be a non-empty list", "invalid_messages")
    messages = []
    for m in raw:
        if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant"):
            raise ApiError(
                400, "each message needs a role: system, user or assistant", "invalid_messages"
            )
        content = m.get("content")
        if isinstance(content, list):
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        if not isinstance(content, str):
            raise ApiError(400, "each message needs text content", "invalid_messages")
        messages.append({"role": m["role"], "content": content})
    if not any(m["role"] == "user" for m in messages):
        raise ApiError(400, "no user message to answer", "invalid_messages")
    return messages


def _question_and_turns(messages: list[dict[str, str]]) -> tuple[str, list[tuple[str, str]]]:
    """The last user message, and the (question, answer) turns before it: a follow-up."""
    last = max(i for i, m in enumerate(messages) if m["role"] == "user")
    turns: list[tuple[str, str]] = []
    asked: str | None = None
    for m in messages[:last]:
        if m["role"] == "user":
            asked = m["content"]
        elif m["role"] == "assistant" and asked is not None:
            turns.append((asked, m["content"]))
            asked = None
    return messages[last]["content"], turns


def _positive(value: Any) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ApiError(400, "'max_tokens' must be a positive integer", "invalid_max_tokens")
    return value


def _number(value: Any) -> float | None:
    if value is None:
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise ApiError(400, "'temperature' must be a number", "invalid_temperature")
    return float(value)


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return exc.response()


async def _not_found(request: Request, exc: Exception) -> Response:
    return ApiError(404, f"no such endpoint: {request.url.path}", "not_found").response()


async def _not_allowed(request: Request, exc: Exception) -> Response:
    return ApiError(405, f"{request.method} is not allowed here", "method_not_allowed").response()


def is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(
    data_dir: Path | None,
    host: str,
    port: int,
    api_key: str | None,
    configure: Callable[[Engine], None] | None = None,
    ready: Callable[[str], None] | None = None,
) -> None:
    """Run the server until Ctrl+C (or SIGTERM)."""
    import uvicorn

    def make_engine() -> Engine:
        engine = Engine(data_dir)
        if configure is not None:
            configure(engine)
        engine.preload()
        return engine

    api = Api(make_engine, api_key)
    config = uvicorn.Config(api.app, host=host, port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    if ready is not None:
        original = server.startup

        async def startup(sockets: Any = None) -> None:
            await original(sockets)
            if server.started:
                bound = server.servers[0].sockets[0].getsockname() if server.servers else None
                real = bound[1] if bound else port
                ready(f"http://{host if ':' not in host else f'[{host}]'}:{real}/v1")

        server.startup = startup  # type: ignore[method-assign]
    try:
        server.run()
    finally:
        api.close()
