"""Generation through a model server against generation in process, in one run.

The same chat messages (temperature 0, the same max_tokens) answered five ways:
- direct: an in-process Engine with the bundled model, `Engine.chat`;
- serve: `main.py serve` in a subprocess, streamed with the official openai client to its
  plain model id; first token is the first content chunk, tokens/s the content chunks
  after the first over their time, both on the client side;
- server: an in-process Engine whose `settings.server_url` is llama-cpp-python's own
  server (a subprocess, the same GGUF, --chat_format gemma, Quire's context, batch and
  seed, and --logits_all False as Quire loads it), as `--server URL` answers;
- server_default: the same, with llama_cpp.server's default --logits_all True (the
  logits of every prompt token, for logprobs: a slower first token);
- server_quire: an in-process Engine pointed at the `serve` above.

Every generator gets the same thread count: the Engine's `settings.threads`, serve's
settings.json, llama_cpp.server's --n_threads and --n_threads_batch. Only one generates at
a time: the paths take turns, the order flipping every repetition (ABBA), each after a
short pause so the previous one's threads are asleep; medians are reported. Each
repetition asks another prompt (the same on every path): llama_cpp.server keeps the last
prompt's KV and evaluates only what differs, while Quire evaluates the whole prompt every
time, so one prompt asked over and over would give the server its first token for free.

    QUIRE_MODELS_DIR=.cache/models .venv/bin/python benchmarks/server.py --reps 7
        [--tokens 128] [--threads N] [--json docs/benchmarks/server.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any, NamedTuple, cast

import httpx

# The servers get the environment this script started with: importing the engine sets
# OMP_WAIT_POLICY=PASSIVE (engine/reader/train.py, for training), which this process's
# llama.cpp read before it was set, but a child process would start with (see the docs).
ENV = dict(os.environ)
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.core import AnswerFinished, AskOptions, Engine  # noqa: E402
from engine.settings import Settings  # noqa: E402
from engine.threads import cores  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
TARGET = 0.9  # a server path should keep at least this share of direct tokens/s
START_S = 180.0  # how long a server may take to start
TASKS = (
    "Write a short story about a lighthouse keeper and a storm, using the notes.",
    "Explain to a new volunteer how the lighthouse works, using the notes.",
    "Write a letter from the keeper to her sister, using the notes.",
    "Describe one night at the lighthouse, hour by hour, using the notes.",
    "Write a newspaper article about the lighthouse, using the notes.",
    "List what a keeper must check every evening, and why, using the notes.",
    "Write a poem about the lighthouse and the sea, using the notes.",
    "Tell the story of the ship the keeper saved, using the notes.",
)
WARMUP = "Summarize the notes in three sentences."
NOTES = (
    "The lighthouse stands on a granite point at the mouth of the bay. It was built in "
    "1874 and its lamp was first lit with whale oil, then paraffin, then electricity in "
    "1931. The keeper lives in the cottage at the foot of the tower with a dog and two "
    "goats. Every evening she climbs the 112 steps, cleans the lens, winds the clockwork "
    "that turns it and writes the weather in the log. In winter storms the spray reaches "
    "the gallery and the windows must be wiped every hour. A supply boat comes on "
    "Thursdays when the sea allows; in bad weeks the keeper eats tinned fish and the "
    "bread she bakes herself. The fog horn is sounded by hand when the mist comes in. In "
    "1952 the keeper's grandfather saw a cargo ship drifting toward the rocks with a "
    "broken rudder and signalled it with the lamp until it dropped anchor."
)


class Run(NamedTuple):
    first_token_s: float
    tokens_per_s: float
    tokens: int
    text: str


def messages_for(task: str) -> list[dict[str, str]]:
    """The task first, so that two prompts share only the chat template's first tokens."""
    return [{"role": "user", "content": f"{task}\n\nNotes:\n{NOTES}"}]


# -- the four ways to answer ----------------------------------------------------------


def engine_run(engine: Engine, messages: list[dict[str, str]], tokens: int) -> Run:
    """Engine.chat, local or through its server, with the engine's own timings."""
    options = AskOptions(max_tokens=tokens, temperature=0.0)
    for event in engine.chat(messages, options):
        if isinstance(event, AnswerFinished):
            t, text = event.answer.timings, event.answer.answer
            return Run(t.first_token_s, t.tokens_per_s, t.tokens, text)
    raise RuntimeError("chat() ended without an answer")


def client_run(client: Any, model: str, messages: list[dict[str, str]], tokens: int) -> Run:
    """A streamed chat completion with the openai client, timed on the client side."""
    start = time.perf_counter()
    first = last = 0.0
    pieces: list[str] = []
    stream = client.chat.completions.create(
        model=model, messages=messages, max_tokens=tokens, temperature=0.0, stream=True
    )
    for chunk in stream:
        text = chunk.choices[0].delta.content if chunk.choices else None
        if not text:
            continue
        last = time.perf_counter() - start
        if not pieces:
            first = last
        pieces.append(text)
    gen_s = last - first
    tps = (len(pieces) - 1) / gen_s if len(pieces) > 1 and gen_s > 0 else 0.0
    return Run(first, tps, len(pieces), "".join(pieces).strip())


# -- the servers, each a subprocess with its log in a file ----------------------------


@contextlib.contextmanager
def process(cmd: list[str], log: Path, env: dict[str, str]) -> Iterator[subprocess.Popen]:
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_until(proc: subprocess.Popen[bytes], log: Path, ready: Callable[[], str | None]) -> str:
    """Poll `ready` until it returns the server's URL; exit with the log if it dies."""
    deadline = time.monotonic() + START_S
    what = cast(list[str], proc.args)[1:4]  # every command here is a list
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"{what} exited:\n{log.read_text()[-2000:]}")
        url = ready()
        if url:
            return url
        time.sleep(0.2)
    sys.exit(f"{what} did not start in {START_S:g} s:\n{log.read_text()[-2000:]}")


def start_serve(stack: contextlib.ExitStack, folder: Path, threads: int, env: dict) -> str:
    """`main.py serve --port 0` over its own data dir with these threads; its /v1 URL."""
    folder.mkdir()
    settings = {"threads": threads, "reader": False}
    (folder / "settings.json").write_text(json.dumps(settings))
    log = folder.parent / "serve.log"
    cmd = [sys.executable, str(REPO / "main.py"), "--data-dir", str(folder), "serve", "--port", "0"]
    proc = stack.enter_context(process(cmd, log, env))

    def ready() -> str | None:
        found = re.search(r"serves on (http://\S+/v1)", log.read_text())
        return found.group(1) if found else None

    return wait_until(proc, log, ready)


def start_llama_server(
    stack: contextlib.ExitStack, gguf: Path, threads: int, log: Path, env: dict, *extra: str
) -> str:
    """llama-cpp-python's own server on a free port, with these threads and Quire's context,
    batch and seed (engine/answer/generation.py `_load`); its /v1 URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf),
           "--host", "127.0.0.1", "--port", str(port), "--chat_format", "gemma",
           "--n_ctx", str(Settings().context_size), "--n_batch", "512", "--seed", "0",
           "--n_threads", str(threads), "--n_threads_batch", str(threads), *extra]  # fmt: skip
    proc = stack.enter_context(process(cmd, log, env))
    url = f"http://127.0.0.1:{port}/v1"

    def ready() -> str | None:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                return url
        return None

    return wait_until(proc, log, ready)


def remote_engine(folder: Path, url: str, model: str, threads: int) -> Engine:
    settings = Settings(threads=threads, reader=False, server_url=url, server_model=model)
    return Engine(folder, settings)


# -- measuring ------------------------------------------------------------------------


def interleave(
    reps: int, sides: dict[str, Callable[[list[dict[str, str]]], Run]], gap_s: float
) -> dict[str, list[Run]]:
    """One warm-up each, then `reps` rounds, one path at a time, the order flipping every
    round (ABBA); every round asks the next task, the same on every path."""
    for fn in sides.values():
        time.sleep(gap_s)
        fn(messages_for(WARMUP))
    runs: dict[str, list[Run]] = {name: [] for name in sides}
    for rep in range(reps):
        messages = messages_for(TASKS[rep % len(TASKS)])
        order = list(sides.items())
        for name, fn in order if rep % 2 == 0 else order[::-1]:
            time.sleep(gap_s)
            runs[name].append(fn(messages))
    return runs


def summarize(runs: dict[str, list[Run]]) -> dict[str, Any]:
    """Medians per path, and each path against direct."""
    direct = runs["direct"]
    out: dict[str, Any] = {}
    for name, rs in runs.items():
        out[name] = {
            "first_token_s": round(statistics.median(r.first_token_s for r in rs), 4),
            "tokens_per_s": round(statistics.median(r.tokens_per_s for r in rs), 2),
            "tokens": statistics.median(r.tokens for r in rs),
            "same_text_as_direct": sum(r.text == d.text for r, d in zip(rs, direct, strict=True)),
            "tokens_per_s_runs": [round(r.tokens_per_s, 2) for r in rs],
        }
    base = out["direct"]
    for name, figures in out.items():
        tps = figures["tokens_per_s"] / max(base["tokens_per_s"], 1e-9)
        figures["tps_vs_direct"] = round(tps, 3)
        # each round's ratio, then their median: steadier when the machine's load drifts
        ratios = [r.tokens_per_s / max(d.tokens_per_s, 1e-9)
                  for r, d in zip(runs[name], direct, strict=True)]  # fmt: skip
        figures["tps_vs_direct_per_round"] = round(statistics.median(ratios), 3)
        extra_ms = 1000 * (figures["first_token_s"] - base["first_token_s"])
        figures["first_token_extra_ms"] = round(extra_ms, 1)
    return out


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        found = re.search(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text())
        model = found.group(1).strip() if found else ""
    return {"cpu": model or platform.processor(), "cores": cores(), "load": os.getloadavg()[0]}


def measure(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """Start the servers, run the five paths in turn, stop everything."""
    import openai

    direct = Engine(tmp / "direct", Settings(threads=args.threads, reader=False))
    gguf = direct.model_path()
    env = {**ENV, "QUIRE_MODELS_DIR": str(direct.models_dir.resolve())}
    with contextlib.ExitStack() as stack:
        stack.callback(direct.close)
        serve_url = start_serve(stack, tmp / "serve", args.threads, env)
        llama_url = start_llama_server(
            stack, gguf, args.threads, tmp / "llama.log", env, "--logits_all", "False"
        )
        default_url = start_llama_server(stack, gguf, args.threads, tmp / "llama2.log", env)
        client = stack.enter_context(openai.OpenAI(base_url=serve_url, api_key="-", max_retries=0))
        model = next(m.id for m in client.models.list() if not m.id.startswith("quire:"))
        llama_model = httpx.get(f"{llama_url}/models").json()["data"][0]["id"]
        via_llama = remote_engine(tmp / "remote", llama_url, llama_model, args.threads)
        via_default = remote_engine(tmp / "remote2", default_url, llama_model, args.threads)
        via_serve = remote_engine(tmp / "remote3", serve_url, model, args.threads)
        n = args.tokens
        sides = {
            "direct": lambda m: engine_run(direct, m, n),
            "serve": lambda m: client_run(client, model, m, n),
            "server": lambda m: engine_run(via_llama, m, n),
            "server_default": lambda m: engine_run(via_default, m, n),
            "server_quire": lambda m: engine_run(via_serve, m, n),
        }
        load_before = os.getloadavg()[0]
        runs = interleave(args.reps, sides, args.gap)
    return {"runs": runs, "model": model, "load_before": load_before}


def report(out: dict[str, Any]) -> None:
    s = out["setup"]
    print(f"{s['model']}: {s['max_tokens']} max tokens, temperature 0, {s['reps']} rounds, "
          f"medians; {s['threads']} threads for every generator on {s['machine']['cores']} "
          f"cores ({s['machine']['cpu']}), load {s['load_before']:.2f} before, "
          f"{s['machine']['load']:.2f} after; servers' OMP_WAIT_POLICY "
          f"{s['omp_wait_policy_of_servers']}")  # fmt: skip
    print(f"{'path':<15}{'first token':>12}{'tokens/s':>10}{'vs direct':>11}{'per round':>11}"
          f"{'tokens':>8}{'same text':>11}")  # fmt: skip
    for name, f in out["paths"].items():
        print(f"{name:<15}{f['first_token_s']:>10.3f} s{f['tokens_per_s']:>10.1f}"
              f"{f['tps_vs_direct']:>10.2f}x{f['tps_vs_direct_per_round']:>10.2f}x"
              f"{f['tokens']:>8g}{f['same_text_as_direct']:>7}/{s['reps']}")  # fmt: skip
    for name, f in out["paths"].items():
        if name != "direct":
            verdict = "met" if f["tps_vs_direct"] >= TARGET else "MISSED"
            print(f"{name}: tokens/s {f['tps_vs_direct']:.2f}x direct, "
                  f"{f['tps_vs_direct_per_round']:.2f}x per round (target >= {TARGET}x: "
                  f"{verdict}); first token {f['first_token_extra_ms']:+.0f} ms")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--tokens", type=int, default=128, help="max tokens of each answer")
    parser.add_argument("--threads", type=int, default=cores(), help="default: all cores")
    parser.add_argument("--gap", type=float, default=0.3, help="seconds of quiet before a run")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        measured = measure(args, Path(tmp))
    out = {
        "setup": {"model": measured["model"], "max_tokens": args.tokens, "reps": args.reps,
                  "threads": args.threads, "machine": machine(),
                  "load_before": measured["load_before"],
                  "omp_wait_policy_of_servers": ENV.get("OMP_WAIT_POLICY", "default"),
                  "llama_cpp_python": version("llama-cpp-python")},
        "paths": summarize(measured["runs"]),
        "target_tps_vs_direct": TARGET,
    }  # fmt: skip
    report(out)
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
