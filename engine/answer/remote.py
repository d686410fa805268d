"""Answering with a model server: any OpenAI-compatible `/v1` endpoint (Ollama, LM Studio,
llama.cpp's `llama-server`, vLLM, Jan, another Quire's `serve`).

`RemoteGenerator` stands where a local `Generator` stands in `Engine.ask`: chat messages
in, a stream of text pieces out, timings measured the same way (first token and tokens/s
from the pieces as they arrive). The HTTP client is httpx. Nothing here reaches the network
unless the user has named a server.

Every failure a user can meet becomes one `UserError` line: the server down, a wrong URL,
a refused key, a model it does not have, a prompt too long for it, an answer cut off.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import queue
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from engine.answer.followup import as_messages
from engine.answer.generation import Cancelled, RefusalGate
from engine.reader.rank import Quote
from engine.types import SearchResult, Timings, UserError

#: Where the usual servers listen, as the Models window offers them.
PRESETS: dict[str, str] = {
    "Ollama": "http://127.0.0.1:11434/v1",
    "LM Studio": "http://127.0.0.1:1234/v1",
    "llama.cpp server": "http://127.0.0.1:8080/v1",
    "vLLM": "http://127.0.0.1:8000/v1",
    "Quire (serve)": "http://127.0.0.1:8765/v1",
}
QUIRE_PREFIX = "quire:"  # another Quire's collections, as its `serve` lists them
QUIRE_FIELDS = ("sources", "quote", "not_covered", "no_sources")  # its extra chunk fields
KEY_FILE = "server_key"  # the API key, beside settings.json, readable by the user alone
KEY_ENV = "QUIRE_SERVER_KEY"  # overrides the stored key (scripts, CI)
CONNECT_TIMEOUT = 5.0
POLL_S = 0.1  # how often a waiting answer looks at its stop event


@dataclass(frozen=True)
class Server:
    """A model server as the user named it: base URL, model (None: its first), key."""

    url: str
    model: str | None = None
    key: str | None = None
    timeout: float = 120.0  # seconds to wait for the next piece (a CPU server is slow)

    @property
    def host(self) -> str:
        parts = urlsplit(self.url)
        return parts.netloc or self.url


def normalize_url(url: str) -> str:
    """A base URL as the client uses it: scheme added, no trailing slash. A URL without a
    path gets `/v1`, which is where every server named in PRESETS answers."""
    url = url.strip()
    if not url:
        raise UserError("no server URL given (for example http://127.0.0.1:11434/v1)")
    if "://" not in url:
        url = "http://" + url
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UserError(f"{url}: not an http(s) URL (for example http://127.0.0.1:11434/v1)")
    url = url.rstrip("/")
    return url if parts.path.strip("/") else url + "/v1"


# -- the API key: kept out of settings.json, logs and history ---------------------------


def load_key(data_dir: Path) -> str | None:
    """The key for the model server: $QUIRE_SERVER_KEY, else the stored one, else None."""
    if os.environ.get(KEY_ENV):
        return os.environ[KEY_ENV]
    try:
        key = (data_dir / KEY_FILE).read_text(encoding="utf-8").strip()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise UserError(f"{data_dir / KEY_FILE}: cannot read the server key ({exc})") from exc
    return key or None


def save_key(data_dir: Path, key: str | None) -> None:
    """Store the key with 0600 permissions (created so, never world-readable for a moment);
    None or empty removes it."""
    path = data_dir / KEY_FILE
    if not key:
        path.unlink(missing_ok=True)
        return
    data_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(KEY_FILE + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(key.strip() + "\n")
    os.replace(tmp, path)


# -- talking to the server ------------------------------------------------------------


def list_models(server: Server) -> list[str]:
    """The model ids the server offers ("Test connection")."""
    with _client(server) as client:
        try:
            response = client.get("/models")
        except httpx.HTTPError as exc:
            raise _network_error(server, exc) from exc
        if response.status_code != 200:
            raise _status_error(server, response, "/models")
        try:
            data = response.json()["data"]
            return [str(m["id"]) for m in data]
        except (ValueError, KeyError, TypeError) as exc:
            raise UserError(
                f"{server.url}/models did not answer like an OpenAI-compatible server; "
                "is this the base URL (often ending in /v1)?"
            ) from exc


class RemoteGenerator:
    """A model server in the place of the local GGUF model, for base and rag answers."""

    def __init__(self, server: Server, context_size: int = 4096) -> None:
        self.server = server
        self._context_size = context_size
        self.model = server.model  # asked of the server when not named
        self.last_timings = Timings()
        self.last_refusal_odds: float | None = None  # no gate: no logits to look at
        self.last_extra: dict[str, Any] = {}  # a Quire server's closing fields

    @property
    def name(self) -> str:
        return f"{self.model or 'server model'} @ {self.server.host}"

    @property
    def context_size(self) -> int:
        """The budget prompts are built for: the context size in the settings (a server
        does not say its own; one that is smaller answers "too long", in one line)."""
        return self._context_size

    def count_tokens(self, text: str) -> int:
        """An estimate on the safe side: the server's tokenizer is not here. Subword
        tokenizers give about 4 bytes of English a token; 3 leaves room."""
        return -(-len(text.encode("utf-8")) // 3)

    def resolve_model(self) -> str:
        if self.model is None:
            found = list_models(self.server)
            if not found:
                raise UserError(f"the model server at {self.server.url} offers no model")
            self.model = found[0]
        return self.model

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
        """Yield the answer piece by piece, as `Generator.stream` does (`guard` is for a
        local adapter and never set here). Setting `cancel`
        (from any thread) closes the stream at once and raises `Cancelled`, even while the
        server is still reading the prompt."""
        if gate is not None:
            raise UserError("a refusal gate needs a local GGUF model")  # a bug if reached
        body = self._body(messages, max_tokens, temperature, seed)
        for kind, value in self._events(body, cancel):
            if kind == "piece":
                yield value

    @property
    def is_quire(self) -> bool:
        """Whether the server's model is another Quire's collection (`quire:<name>`), which
        finds its own sources: the question goes as it is, the sources come back."""
        return (self.model or "").startswith(QUIRE_PREFIX)

    def ask_quire(
        self,
        question: str,
        mode: str | None,
        max_tokens: int = 384,
        temperature: float = 0.2,
        seed: int | None = None,
        cancel: threading.Event | None = None,
        turns: Sequence[tuple[str, str]] = (),
    ) -> Iterator[tuple[str, Any]]:
        """Ask another Quire's `quire:<collection>` model (a follow-up goes with its earlier
        `turns`): ("found", (sources, quote)) once, then ("piece", text) for each piece of
        the answer; `last_extra` then holds the closing fields (`not_covered`, ...)."""
        messages = [*as_messages(turns), {"role": "user", "content": question}]
        body = self._body(messages, max_tokens, temperature, seed)
        body["references"] = False  # the answer alone; sources and quote come as fields
        if mode is not None:
            body["mode"] = mode
        self.last_extra = {}
        found = False
        for kind, value in self._events(body, cancel):
            if kind == "extra":
                if not found and "sources" in value:
                    found = True
                    yield "found", _found(value)
                self.last_extra.update(value)
            else:
                yield kind, value

    def _body(
        self, messages: list[dict[str, str]], max_tokens: int, temperature: float, seed: int | None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.resolve_model(),
            "messages": messages,
            "max_tokens": max_tokens,
            "temperature": temperature,
            "stream": True,
        }
        if seed is not None:
            body["seed"] = seed
        return body

    def _events(
        self, body: dict[str, Any], cancel: threading.Event | None
    ) -> Iterator[tuple[str, Any]]:
        """("piece", text) and ("extra", fields) as the stream brings them."""
        stop = cancel or threading.Event()
        if stop.is_set():
            raise Cancelled()
        timings = self.last_timings = Timings()
        start = time.perf_counter()
        pieces: queue.Queue[tuple[str, Any]] = queue.Queue()
        reading = _StreamReader(self.server, body, pieces)
        reading.start()
        try:
            while True:
                try:
                    kind, value = pieces.get(timeout=POLL_S)
                except queue.Empty:
                    if stop.is_set():
                        raise Cancelled() from None
                    continue
                if stop.is_set():
                    raise Cancelled()
                if kind == "piece":
                    now = time.perf_counter() - start
                    if timings.tokens == 0:
                        timings.first_token_s = now
                    timings.tokens += 1
                    timings.total_s = now
                    yield kind, value
                elif kind == "extra":
                    yield kind, value
                elif kind == "error":
                    raise value
                else:  # "end"
                    return
        finally:
            reading.close()
            timings.total_s = time.perf_counter() - start
            gen_s = timings.total_s - timings.first_token_s
            if timings.tokens > 1 and gen_s > 0:
                timings.tokens_per_s = (timings.tokens - 1) / gen_s

    def close(self) -> None:
        return None


class _StreamReader(threading.Thread):
    """Reads one streamed chat completion into a queue: ("piece", text) for each content
    piece, then ("end", None) or ("error", UserError). `close()` shuts the socket, which
    wakes a read that is waiting on the server and tells the server the client left."""

    def __init__(self, server: Server, body: dict[str, Any], out: queue.Queue[Any]) -> None:
        super().__init__(name="quire-server-stream", daemon=True)
        self.server, self.body, self.out = server, body, out
        self._closed = threading.Event()
        self._socket: socket.socket | None = None

    def run(self) -> None:
        try:
            self._read()
        except UserError as exc:
            self.out.put(("error", exc))
        except httpx.HTTPError as exc:
            if not self._closed.is_set():
                self.out.put(("error", _network_error(self.server, exc, midway=True)))
        except OSError as exc:  # the socket shut by close(), or dropped
            if not self._closed.is_set():
                self.out.put(("error", _network_error(self.server, exc, midway=True)))

    def _read(self) -> None:
        finished = False
        with (
            _client(self.server) as client,
            client.stream("POST", "/chat/completions", json=self.body) as response,
        ):
            stream = response.extensions.get("network_stream")
            if stream is not None:
                self._socket = stream.get_extra_info("socket")
            if self._closed.is_set():
                return
            if response.status_code != 200:
                response.read()
                raise _status_error(self.server, response, "/chat/completions", self.body)
            for line in response.iter_lines():
                if self._closed.is_set():
                    return
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    finished = True
                    break
                chunk = _parse_chunk(self.server, data)
                extra = {k: chunk[k] for k in QUIRE_FIELDS if k in chunk}
                if extra:
                    self.out.put(("extra", extra))
                text, reason = _delta(chunk)
                if text:
                    self.out.put(("piece", text))
                if reason is not None:
                    finished = True
        if not finished and not self._closed.is_set():
            raise UserError(
                f"the model server at {self.server.host} stopped mid-answer "
                "(the stream ended without finishing)"
            )
        self.out.put(("end", None))

    def close(self) -> None:
        """Stop reading: shut the connection, so the server stops generating too."""
        self._closed.set()
        sock = self._socket
        if sock is not None:
            with contextlib.suppress(OSError):  # already closed
                sock.shutdown(socket.SHUT_RDWR)


def _found(fields: dict[str, Any]) -> tuple[list[SearchResult], Quote | None]:
    """A Quire server's sources and quote as this engine's own objects. The passages are
    numbered in the answer's order; that number stands in for their (remote) chunk id."""
    names = {f.name for f in dataclasses.fields(SearchResult)}
    sources = []
    for n, raw in enumerate(fields.get("sources") or [], 1):
        values = {k: v for k, v in raw.items() if k in names and k not in ("chunk_id",)}
        values.setdefault("rank", n)
        sources.append(SearchResult(**{"page": None, "section": None, **values}, chunk_id=n))
    quote = None
    raw_quote = fields.get("quote")
    if isinstance(raw_quote, dict) and raw_quote.get("text"):
        names = {f.name for f in dataclasses.fields(Quote)}
        values = {k: v for k, v in raw_quote.items() if k in names and k != "chunk_id"}
        quote = Quote(
            **{"start": 0, "end": 0, "score": 0.0, **values}, chunk_id=values.get("source", 0)
        )
    return sources, quote


def _client(server: Server) -> httpx.Client:
    headers = {"Authorization": f"Bearer {server.key}"} if server.key else {}
    timeout = httpx.Timeout(server.timeout, connect=CONNECT_TIMEOUT)
    # trust_env=False: no proxy from the environment sees the questions.
    return httpx.Client(base_url=server.url, headers=headers, timeout=timeout, trust_env=False)


def _parse_chunk(server: Server, data: str) -> dict[str, Any]:
    try:
        chunk = json.loads(data)
    except ValueError as exc:
        raise UserError(f"the model server at {server.host} sent a broken stream") from exc
    if isinstance(chunk, dict) and "error" in chunk:  # an error reported mid-stream
        raise UserError(f"the model server at {server.host} failed: {_message(chunk)}")
    if not isinstance(chunk, dict):
        raise UserError(f"the model server at {server.host} sent a broken stream")
    return chunk


def _delta(chunk: dict[str, Any]) -> tuple[str, str | None]:
    """A stream chunk's content and finish reason (None while it goes on)."""
    choices = chunk.get("choices") or []
    if not choices:
        return "", None  # e.g. a closing usage chunk
    choice = choices[0]
    delta = choice.get("delta") or {}
    text = delta.get("content") or choice.get("text") or ""
    return str(text), choice.get("finish_reason")


def _message(payload: Any) -> str:
    """The error message in an OpenAI-style (or Ollama-style) error body."""
    if isinstance(payload, dict):
        error = payload.get("error", payload.get("detail", payload))
        if isinstance(error, dict):
            return str(error.get("message") or error)
        return str(error)
    return str(payload)


def _body_message(response: httpx.Response) -> str:
    try:
        return _message(response.json())
    except ValueError:
        return response.text.strip()[:200] or response.reason_phrase


def _status_error(
    server: Server, response: httpx.Response, path: str, body: dict[str, Any] | None = None
) -> UserError:
    """One line for an HTTP error status, naming what the user can change."""
    status, message = response.status_code, _body_message(response)
    where = f"the model server at {server.host}"
    if status in (401, 403):
        what = "needs an API key" if not server.key else "refused the API key"
        return UserError(f"{where} {what} (HTTP {status}): set it in Models, or ${KEY_ENV}")
    model = body.get("model") if body else None
    lowered = message.lower()
    if status == 404 and model and ("model" in lowered or path != "/models"):
        return UserError(f"{where} has no model '{model}' ({message}); pick one it lists")
    if status == 404:
        return UserError(
            f"{server.url}{path} answered 404: is this the server's OpenAI-compatible base "
            "URL (often ending in /v1)?"
        )
    if status in (400, 413, 422) and ("context" in lowered or "too long" in lowered):
        return UserError(
            f"the question and its sources do not fit the context of '{model}' on "
            f"{server.host} ({message}); use fewer sources or a smaller context size"
        )
    return UserError(f"{where} answered HTTP {status}: {message}")


def _network_error(server: Server, exc: BaseException, midway: bool = False) -> UserError:
    if isinstance(exc, httpx.ConnectError):
        return UserError(f"cannot reach the model server at {server.url}: is it running?")
    if isinstance(exc, httpx.ConnectTimeout):
        return UserError(f"the model server at {server.url} did not accept a connection")
    if isinstance(exc, httpx.TimeoutException):
        return UserError(
            f"the model server at {server.host} sent nothing for {server.timeout:g} s; "
            "it may be overloaded"
        )
    if midway:
        return UserError(f"the model server at {server.host} stopped mid-answer ({exc})")
    return UserError(f"the model server at {server.url} failed: {exc}")
