"""Quire stays offline unless a download is asked for, and a failed download is one line."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest
from huggingface_hub import constants, errors

from engine.types import UserError
from models import hub

REPO = Path(__file__).resolve().parents[2]

NO_NETWORK_SCRIPT = """
import socket, sys
from pathlib import Path

def refuse(*args, **kwargs):
    raise AssertionError(f"network use: {args!r}")

socket.socket.connect = refuse
socket.socket.connect_ex = refuse
socket.create_connection = refuse
socket.getaddrinfo = refuse

from engine.index.embedding import Embedder
from models.bundled import ensure_embedder, ensure_llm
from models.registry import list_models
import models.hub
import huggingface_hub.constants

models_dir = Path(sys.argv[1])
vector = Embedder(ensure_embedder(models_dir)).embed_query("offline by default")
rows = list_models(models_dir)
assert huggingface_hub.constants.HF_HUB_OFFLINE, "huggingface_hub is online"
assert "PySide6" not in sys.modules, "engine/models imported Qt"
print("ok", vector.shape[0], len(rows))
"""


def test_engine_and_models_work_with_the_network_cut_off(models_dir: Path):
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}  # engine must set it
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(NO_NETWORK_SCRIPT), str(models_dir)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split()[:2] == ["ok", "384"]


def fake_download(raises: Exception):
    def download(**kwargs):
        raise raises

    return download


REQUEST = httpx.Request("HEAD", "https://huggingface.co/org/repo/resolve/main/m.gguf")


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (errors.LocalEntryNotFoundError("cannot find the requested files"), "cannot reach"),
        (httpx.ConnectError("[Errno -2] Name or service not known"), "cannot reach"),
        (errors.OfflineModeIsEnabled("offline"), "cannot reach"),
        (
            errors.RepositoryNotFoundError("404", response=httpx.Response(404, request=REQUEST)),
            "no such repository",
        ),
        (
            errors.RemoteEntryNotFoundError("404", response=httpx.Response(404, request=REQUEST)),
            "no such file",
        ),
    ],
)
def test_failed_download_is_a_one_line_user_error(error, message, tmp_path, monkeypatch):
    monkeypatch.setattr("huggingface_hub.hf_hub_download", fake_download(error))
    with pytest.raises(UserError, match=message) as caught:
        hub.download("org/repo", "m.gguf", tmp_path)
    assert "\n" not in str(caught.value)
    assert str(caught.value).startswith("org/repo/m.gguf: ")
    assert constants.HF_HUB_OFFLINE  # put back after the call


def test_download_is_online_only_during_the_call(tmp_path, monkeypatch):
    seen: dict[str, object] = {}
    progress: list[tuple[int, int]] = []

    def download(*, repo_id, filename, local_dir, tqdm_class, **kwargs):
        seen["offline"] = constants.HF_HUB_OFFLINE
        bar = tqdm_class(total=10, initial=0, unit="B", unit_scale=True, desc=filename)
        bar.update(4)
        bar.update(6)
        bar.close()
        path = Path(local_dir) / filename
        path.write_text("notes")
        return str(path)

    monkeypatch.setattr("huggingface_hub.hf_hub_download", download)
    path = hub.download("org/repo", "notes.txt", tmp_path, progress=lambda *a: progress.append(a))
    assert path == tmp_path / "notes.txt"
    assert seen["offline"] is False
    assert constants.HF_HUB_OFFLINE is True
    assert progress == [(4, 10), (10, 10)]


def test_downloaded_file_that_is_not_gguf_is_reported(tmp_path, monkeypatch):
    def download(*, filename, local_dir, **kwargs):
        path = Path(local_dir) / filename
        path.write_text("<html>login required</html>")
        return str(path)

    monkeypatch.setattr("huggingface_hub.hf_hub_download", download)
    with pytest.raises(UserError, match=r"model\.gguf is not a GGUF file"):
        hub.download("org/repo", "model.gguf", tmp_path)


SOCKET_GUARD = """
import os, socket

_LOG = os.environ["QUIRE_NETWORK_LOG"]


def _record(what):
    with open(_LOG, "a") as log:
        log.write(what + "\\n")
    raise OSError("network use refused by the test")


def _getaddrinfo(host, *args, **kwargs):
    _record(f"lookup {host}")


_connect = socket.socket.connect


def _guarded_connect(self, address):
    if self.family == socket.AF_UNIX:
        return _connect(self, address)
    _record(f"connect {address}")


socket.getaddrinfo = _getaddrinfo
socket.gethostbyname = _getaddrinfo
socket.socket.connect = _guarded_connect
"""


def _strace() -> list[str]:
    """The strace prefix for recording connect() of the whole process tree, if it works."""
    if not shutil.which("strace"):
        return []
    probe = subprocess.run(["strace", "-o", os.devnull, "true"], capture_output=True)
    return ["strace", "-f", "-e", "trace=connect"] if probe.returncode == 0 else []


def run_offline(tmp_path: Path, models_dir: Path, *commands: list[str]) -> list[str]:
    """Run CLI commands on one data dir with a fresh HOME, a socket guard and (where it
    works) strace; assert no lookup, no connection and no onnxruntime telemetry folder.
    Returns each command's stdout."""
    guard = tmp_path / "guard"
    guard.mkdir()
    (guard / "sitecustomize.py").write_text(SOCKET_GUARD)
    home = tmp_path / "home"
    home.mkdir()
    drop = ("HF_HUB_OFFLINE", "ORT_DISABLE_TELEMETRY")  # the app must set both itself
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env |= {"HOME": str(home), "PYTHONPATH": str(guard), "QUIRE_MODELS_DIR": str(models_dir)}
    env["QUIRE_NETWORK_LOG"] = str(tmp_path / "network.log")
    strace = _strace()
    outputs = []
    for n, command in enumerate(commands):
        trace = ["-o", str(tmp_path / f"trace{n}.txt")] if strace else []
        result = subprocess.run(
            [*strace, *trace, sys.executable, str(REPO / "main.py"),
             "--data-dir", str(tmp_path / "data"), *command],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-2000:]
        if strace:
            trace_text = (tmp_path / f"trace{n}.txt").read_text()
            assert "AF_INET" not in trace_text, [x for x in trace_text.splitlines() if "INET" in x]
        outputs.append(result.stdout)
    assert not (tmp_path / "network.log").exists(), (tmp_path / "network.log").read_text()
    assert not (home / ".cache" / "Microsoft").exists(), "onnxruntime telemetry is on"
    return outputs


def test_ingest_and_search_make_no_lookup_no_connection_and_no_telemetry(
    tmp_path: Path, models_dir: Path
) -> None:
    """onnxruntime's telemetry wrote ~/.cache/Microsoft/ and looked up
    mobile.events.data.microsoft.com until ORT_DISABLE_TELEMETRY was set by the engine."""
    (tmp_path / "library").mkdir()
    (tmp_path / "library" / "notes.txt").write_text("The ferry to the island leaves at nine.")
    outputs = run_offline(
        tmp_path, models_dir, ["ingest", str(tmp_path / "library")], ["search", "ferry"]
    )
    assert "island" in outputs[-1]


@pytest.mark.slow
def test_ask_makes_no_lookup_no_connection_and_no_telemetry(
    tmp_path: Path, models_dir: Path, llm_path: Path
) -> None:
    (tmp_path / "library").mkdir()
    (tmp_path / "library" / "notes.txt").write_text("The ferry to the island leaves at nine.")
    ask = ["ask", "When does the ferry leave?", "--max-tokens", "4", "--json"]
    outputs = run_offline(tmp_path, models_dir, ["ingest", str(tmp_path / "library")], ask)
    assert "notes.txt" in outputs[-1]
