"""Model servers, with real servers on 127.0.0.1 and no mock of HTTP: `quire serve` queried
with the official `openai` client and with raw HTTP; a second Quire pointed at it with
`--server`; llama-cpp-python's own server as a third party; the failures a user meets."""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from cli.api import is_loopback
from engine.answer.events import AnswerFinished, AskOptions, SourcesFound, TokenReceived
from engine.answer.remote import Server, list_models, load_key, normalize_url, save_key
from engine.core import Engine
from engine.types import UserError
from tests.conftest import REPO
from tests.factory import write_pdf

KETTLE = "How long do I boil vinegar to descale the kettle?"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main_py(data_dir: Path, *args: str) -> list[str]:
    return [sys.executable, str(REPO / "main.py"), "--data-dir", str(data_dir), *args]


def start_serve(data_dir: Path, *args: str, env: dict[str, str] | None = None):
    """`main.py serve --port 0`, waited for; returns (process, base URL)."""
    proc = subprocess.Popen(
        main_py(data_dir, "serve", "--port", "0", *args),
        stderr=subprocess.PIPE, text=True, cwd=REPO, env={**os.environ, **(env or {})},
    )  # fmt: skip
    assert proc.stderr is not None
    lines = []
    for line in proc.stderr:
        lines.append(line)
        found = re.search(r"serves on (http://\S+/v1)", line)
        if found:
            threading.Thread(target=_drain, args=(proc.stderr,), daemon=True).start()
            return proc, found.group(1)
    proc.wait(10)
    proc.stderr.close()
    raise AssertionError("serve did not start:\n" + "".join(lines))


def _drain(pipe) -> None:
    """Keep a server's stderr read (a full pipe would block it); close it at the end."""
    pipe.read()
    pipe.close()


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def start_llama_server(llm_path: Path, *args: str) -> tuple[subprocess.Popen, str]:
    """llama-cpp-python's own OpenAI-compatible server with the bundled model."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(llm_path), "--host",
         "127.0.0.1", "--port", str(port), "--chat_format", "gemma", "--n_ctx", "2048",
         "--n_threads", "1", *args],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), 0.5):
                return proc, url
        except OSError:
            if proc.poll() is not None:
                raise AssertionError("llama_cpp.server exited") from None
            time.sleep(0.3)
    stop(proc)
    raise AssertionError("llama_cpp.server did not start")


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir with one small manual indexed (real embedder, real SQLite)."""
    root = tmp_path_factory.mktemp("served")
    docs = root / "docs"
    docs.mkdir()
    write_pdf(
        docs / "kettle.pdf",
        [
            ["Chapter one introduces the kettle and its parts."],
            ["To descale the kettle, boil vinegar with water for ten minutes. Rinse twice."],
            ["The warranty lasts twenty-four months from purchase."],
        ],
    )
    data = root / "data"
    engine = Engine(data)
    engine.settings.threads = 1
    engine.save_settings()
    report = engine.ingest([docs])
    engine.close()
    assert not report.failed
    return data


@pytest.fixture(scope="module")
def served(library: Path) -> Iterator[str]:
    proc, url = start_serve(library)
    yield url
    stop(proc)


@pytest.fixture(scope="module")
def client(served: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=served, api_key="unused", max_retries=0, timeout=120)


# -- no server needed ------------------------------------------------------------------


def test_urls_are_normalized_and_checked() -> None:
    assert normalize_url("127.0.0.1:11434") == "http://127.0.0.1:11434/v1"
    assert normalize_url("http://host:8000/v1/") == "http://host:8000/v1"
    assert normalize_url("https://example.org/api/v1") == "https://example.org/api/v1"
    for bad in ("", "ftp://host/v1", "http://"):
        with pytest.raises(UserError):
            normalize_url(bad)


def test_key_is_stored_0600_and_never_in_settings(data_dir: Path, monkeypatch) -> None:
    monkeypatch.delenv("QUIRE_SERVER_KEY", raising=False)
    save_key(data_dir, "sk-secret-1")
    path = data_dir / "server_key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_key(data_dir) == "sk-secret-1"
    engine = Engine(data_dir)
    engine.settings.server_url = "http://127.0.0.1:9/v1"
    engine.save_settings()
    assert "sk-secret-1" not in (data_dir / "settings.json").read_text()
    assert engine.server() == Server("http://127.0.0.1:9/v1", None, "sk-secret-1", 120.0)
    monkeypatch.setenv("QUIRE_SERVER_KEY", "from-env")
    assert load_key(data_dir) == "from-env"
    save_key(data_dir, None)
    assert not path.exists()


def test_adapter_modes_say_they_need_a_local_model(data_dir: Path) -> None:
    engine = Engine(data_dir)
    engine.settings.server_url, engine.settings.server_model = "http://127.0.0.1:9/v1", "big"
    available = engine.available_modes()
    assert available["base"] is None and available["rag"] is None
    assert "local GGUF" in (available["hybrid"] or "")
    assert engine.default_mode() == "rag"
    with pytest.raises(UserError, match="adapters need a local GGUF model"):
        engine.answer("anything?", "lora")
    assert engine.status().model == "big @ 127.0.0.1:9"


def test_server_down_is_one_line(data_dir: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    with pytest.raises(UserError, match=r"cannot reach the model server .* is it running"):
        list_models(Server(url))
    engine = Engine(data_dir)
    engine.settings.server_url, engine.settings.server_model = url, "m"
    with pytest.raises(UserError, match="cannot reach"):
        list(engine.chat([{"role": "user", "content": "hi"}]))
    done = subprocess.run(
        main_py(data_dir, "server", "test", url), capture_output=True, text=True, cwd=REPO
    )
    assert done.returncode == 1
    assert done.stderr.strip().count("\n") == 0 and "is it running" in done.stderr


def test_serve_listens_on_loopback_only_by_default_and_says_so_when_not() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4")


# -- quire serve, with the openai client and raw HTTP -----------------------------------


def test_models_and_embeddings(client: openai.OpenAI, embedder, served: str) -> None:
    ids = [m.id for m in client.models.list()]
    assert ids == ["gemma-3-270m-q4_k_m", "quire:default"]
    assert served.startswith("http://127.0.0.1:")
    got = client.embeddings.create(model="any", input=["descale the kettle", "warranty"])
    assert [d.index for d in got.data] == [0, 1]
    want = embedder.embed(["descale the kettle", "warranty"])
    for d, w in zip(got.data, want, strict=True):
        assert len(d.embedding) == 384
        assert sum(a * b for a, b in zip(d.embedding, w, strict=True)) > 0.999


@pytest.mark.slow
def test_cited_answer_with_the_openai_client(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model="quire:default", messages=[{"role": "user", "content": KETTLE}], max_tokens=48
    )
    text = reply.choices[0].message.content or ""
    extra = reply.model_extra or {}
    assert "ten minutes" in extra["quote"]["text"]  # the reader's sentence that answers
    assert text.startswith('> "To descale the kettle')
    assert "Sources:\n[1] kettle.pdf, page 2" in text  # plain clients see the references
    assert extra["sources"][0]["document"] == "kettle.pdf" and extra["sources"][0]["page"] == 2
    assert reply.usage is not None and reply.usage.completion_tokens > 0


@pytest.mark.slow
def test_streaming_with_the_openai_client(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="quire:default", messages=[{"role": "user", "content": KETTLE}], max_tokens=32,
        stream=True,
    )  # fmt: skip
    chunks = list(stream)
    first, last = chunks[0].model_extra or {}, chunks[-1]
    assert first["sources"][0]["document"] == "kettle.pdf"  # known before the first word
    assert last.choices[0].finish_reason in ("stop", "length")
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "ten minutes" in text and text.rstrip().endswith("kettle.pdf, page 2")
    assert len(chunks) > 4


def raw(url: str, method: str, path: str, body: bytes | None = None, **headers: str):
    host, port = url.split("//")[1].split("/")[0].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=120)
    conn.request(method, path, body=body, headers=headers)
    return conn, conn.getresponse()


def health(url: str) -> dict:
    conn, resp = raw(url, "GET", "/health")
    try:
        return json.loads(resp.read())
    finally:
        conn.close()


def test_raw_http_errors_are_openai_shaped(served: str) -> None:
    conn, resp = raw(served, "POST", "/v1/chat/completions", b"{not json", **{"Content-Type": "x"})
    assert resp.status == 400
    assert json.loads(resp.read())["error"]["code"] == "invalid_json"
    conn.close()
    body = json.dumps({"model": "nope", "messages": [{"role": "user", "content": "hi"}]})
    conn, resp = raw(served, "POST", "/v1/chat/completions", body.encode())
    error = json.loads(resp.read())["error"]
    assert resp.status == 404 and error["code"] == "model_not_found"
    assert "quire:default" in error["message"]  # says what there is
    conn.close()
    conn, resp = raw(served, "GET", "/v1/nothing")
    assert resp.status == 404 and "error" in json.loads(resp.read())
    conn.close()


@pytest.mark.slow
def test_raw_streaming_request(served: str) -> None:
    body = {"model": "quire:default", "stream": True, "max_tokens": 16,
            "messages": [{"role": "user", "content": KETTLE}]}  # fmt: skip
    conn, resp = raw(served, "POST", "/v1/chat/completions", json.dumps(body).encode())
    assert resp.status == 200 and resp.getheader("content-type").startswith("text/event-stream")
    lines = [line for line in resp.read().decode().split("\n") if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    final = json.loads(lines[-2][6:])
    assert final["choices"][0]["finish_reason"] and final["sources"]
    conn.close()


@pytest.mark.slow
def test_a_client_that_leaves_stops_its_answer(served: str, client: openai.OpenAI) -> None:
    """The plain model repeats itself to the token limit; a client that reads two chunks
    and hangs up stops it (the server counts it), and the next request is answered."""
    before = health(served)["stopped"]
    body = {"model": "gemma-3-270m-q4_k_m", "stream": True, "max_tokens": 2000,
            "messages": [{"role": "user", "content": "Write a long story."}]}  # fmt: skip
    conn, resp = raw(served, "POST", "/v1/chat/completions", json.dumps(body).encode())
    assert resp.status == 200
    resp.readline(), resp.readline(), resp.readline()
    conn.sock.shutdown(socket.SHUT_RDWR)
    conn.close()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        now = health(served)
        if now["stopped"] > before and now["waiting"] == 0:
            break
        time.sleep(0.2)
    assert now["stopped"] == before + 1 and now["waiting"] == 0
    assert next(m.id for m in client.models.list()) == "gemma-3-270m-q4_k_m"


# -- a second Quire pointed at the first --------------------------------------------------


@pytest.mark.slow
def test_second_quire_answers_with_the_first_ones_sources(served: str, tmp_path: Path) -> None:
    """An empty Quire asks `quire:default`: the sources and the quote come back with the
    answer, on the CLI, with the mode that server runs (its grounding adapter)."""
    done = subprocess.run(
        main_py(tmp_path / "empty", "ask", KETTLE, "--server", served, "--server-model",
                "quire:default", "--max-tokens", "48", "--json"),
        capture_output=True, text=True, cwd=REPO, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["mode"] == "hybrid"
    assert answer["sources"][0]["document"] == "kettle.pdf"
    assert "ten minutes" in answer["quote"]["text"]
    assert answer["timings"]["tokens"] > 0 and answer["timings"]["first_token_s"] > 0
    assert "Sources:" not in answer["answer"]  # the references came as fields, not text


@pytest.mark.slow
def test_stop_closes_the_stream_and_the_server_stops_too(served: str, data_dir: Path) -> None:
    engine = Engine(data_dir)
    engine.settings.server_url, engine.settings.server_model = served, "gemma-3-270m-q4_k_m"
    before = health(served)["stopped"]
    cancel = threading.Event()
    options = AskOptions(max_tokens=2000)
    pieces = []
    story = [{"role": "user", "content": "Tell a long story."}]
    for event in engine.chat(story, options, stop=cancel):
        if isinstance(event, TokenReceived):
            pieces.append(event.text)
            if len(pieces) == 3:
                cancel.set()
        elif isinstance(event, AnswerFinished):
            assert event.answer.cancelled and len(pieces) == 3
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if health(served)["stopped"] > before:
            break
        time.sleep(0.2)
    else:
        raise AssertionError("the server did not see the client leave")


def test_model_not_found_and_a_refused_key(library: Path, served: str, data_dir: Path) -> None:
    engine = Engine(data_dir)
    engine.settings.server_url, engine.settings.server_model = served, "no-such-model"
    with pytest.raises(UserError, match="has no model 'no-such-model'"):
        list(engine.chat([{"role": "user", "content": "hi"}]))
    proc, url = start_serve(library, "--api-key-env", "KEY_FOR_TEST", env={"KEY_FOR_TEST": "k1"})
    try:
        with pytest.raises(UserError, match=r"needs an API key \(HTTP 401\)"):
            list_models(Server(url))
        with pytest.raises(UserError, match=r"refused the API key \(HTTP 401\)"):
            list_models(Server(url, key="wrong"))
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=url, api_key="wrong", max_retries=0).models.list()
        assert "quire:default" in list_models(Server(url, key="k1"))
    finally:
        stop(proc)


# -- llama-cpp-python's own server as the answering model ---------------------------------


@pytest.fixture(scope="module")
def llama_server(llm_path: Path) -> Iterator[tuple[subprocess.Popen, str]]:
    proc, url = start_llama_server(llm_path, "--api_key", "llama-key")
    yield proc, url
    stop(proc)


@pytest.mark.slow
def test_a_third_party_server_answers_with_local_sources(
    llama_server: tuple[subprocess.Popen, str], library: Path, monkeypatch
) -> None:
    _, url = llama_server
    monkeypatch.setenv("QUIRE_SERVER_KEY", "llama-key")
    engine = Engine(library)
    engine.settings.server_url = url  # no model named: the server's first
    events = list(engine.ask(KETTLE, "rag", AskOptions(max_tokens=24)))
    found = next(e for e in events if isinstance(e, SourcesFound))
    answer = events[-1].answer
    assert found.sources[0].document == "kettle.pdf" and found.quote is not None
    assert answer.timings.tokens > 0 and answer.timings.first_token_s > 0
    assert answer.answer and not answer.cancelled
    assert engine.status().model.endswith("@ " + url.split("//")[1].split("/")[0])
    monkeypatch.delenv("QUIRE_SERVER_KEY")
    engine = Engine(library)
    engine.settings.server_url = url
    with pytest.raises(UserError, match="needs an API key"):
        list(engine.ask(KETTLE, "rag", AskOptions(max_tokens=8)))


@pytest.mark.slow
def test_a_server_that_dies_mid_answer_is_one_line(llm_path: Path, data_dir: Path) -> None:
    proc, url = start_llama_server(llm_path)
    engine = Engine(data_dir)
    engine.settings.server_url = url
    messages = [{"role": "user", "content": "Tell a very long story."}]
    pieces = []

    def read_and_kill() -> None:
        for event in engine.chat(messages, AskOptions(max_tokens=1500)):
            if isinstance(event, TokenReceived):
                pieces.append(event.text)
                if len(pieces) == 2:
                    proc.kill()

    try:
        with pytest.raises(UserError, match="stopped mid-answer"):
            read_and_kill()
    finally:
        stop(proc)
    assert len(pieces) >= 2


def test_serve_on_a_port_in_use_is_one_line(served: str, tmp_path: Path) -> None:
    port = served.rsplit(":", 1)[1].split("/")[0]
    done = subprocess.run(
        main_py(tmp_path / "data", "serve", "--port", port),
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.startswith(f"quire: cannot listen on 127.0.0.1:{port}")
    assert done.stderr.count("\n") == 1


@pytest.mark.slow
def test_eval_scores_rag_through_a_server_and_skips_the_adapter_modes(
    llama_server: tuple[subprocess.Popen, str], library: Path, tmp_path: Path
) -> None:
    _, url = llama_server
    questions = tmp_path / "q.jsonl"
    rows = [{"id": "k1", "question": KETTLE, "doc": "kettle.pdf", "pages": [2],
             "answer": "ten minutes"},
            {"id": "k2", "question": "How long is the warranty?", "doc": "kettle.pdf",
             "pages": [3], "answer": "twenty-four months"}]  # fmt: skip
    questions.write_text("".join(json.dumps(r) + "\n" for r in rows))
    done = subprocess.run(
        main_py(library, "eval", str(questions), "--modes", "rag,hybrid", "--max-tokens", "16",
                "--server", url, "--json"),
        capture_output=True, text=True, cwd=REPO, timeout=300,
        env={**os.environ, "QUIRE_SERVER_KEY": "llama-key"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["rag"]["n"] == 2
    assert "local GGUF" in report["run"]["skipped"]["hybrid"]
    answers = [d for d in report["details"] if d.get("mode") == "rag"]
    assert len(answers) == 2 and all(d["answer"] and d["rank"] == 1 for d in answers)
