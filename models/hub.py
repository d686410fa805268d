"""Hugging Face Hub downloads, the one place Quire may reach the network.

The app runs with `HF_HUB_OFFLINE=1` (set by `engine/__init__`). huggingface_hub reads
that variable once, at import, into `huggingface_hub.constants.HF_HUB_OFFLINE`, and
every request checks `constants.is_offline_mode()`, which returns that attribute.
`download()` lifts it for its own call only, under a lock, and puts it back after;
the environment variable stays as it is, so fastembed and everything else remain
offline even while a download runs in another thread.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from models.errors import UserError

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

#: Called with (bytes done, bytes total; 0 when unknown) as the file arrives.
Progress = Callable[[int, int], None]

_ONLINE_LOCK = threading.Lock()


def download(
    repo_id: str,
    filename: str,
    models_dir: Path,
    progress: Progress | None = None,
    revision: str | None = None,
) -> Path:
    """Download `filename` from the Hub repo `repo_id` into `models_dir`; return its path.

    Only for an explicit user request. The file lands at `models_dir/filename`
    (huggingface_hub keeps its bookkeeping in `models_dir/.cache/huggingface`).
    A GGUF file is checked to be one. Raises UserError for network, missing-repo,
    missing-file and disk problems.
    """
    import huggingface_hub

    models_dir = Path(models_dir)
    where = f"{repo_id}/{filename}"
    try:
        models_dir.mkdir(parents=True, exist_ok=True)
        with _online():
            local = huggingface_hub.hf_hub_download(
                repo_id=repo_id,
                filename=filename,
                revision=revision,
                local_dir=models_dir,
                tqdm_class=_progress_bar(progress) if progress else None,
            )
    except Exception as exc:  # mapped to one line below, or re-raised as a bug
        raise _as_user_error(exc, where) from exc
    path = Path(local)
    if path.suffix == ".gguf":
        from models.registry import read_gguf_info

        read_gguf_info(path)  # raises UserError naming the file if it is not GGUF
    return path


@contextmanager
def _online() -> Iterator[None]:
    """Let huggingface_hub make requests for the duration of the block, without its own
    retry warnings on stderr (the failure, if any, is said once, as one line)."""
    from huggingface_hub import constants
    from huggingface_hub.utils import logging as hub_logging  # its import sets the level

    with _ONLINE_LOCK:
        saved, level = constants.HF_HUB_OFFLINE, hub_logging.get_verbosity()
        constants.HF_HUB_OFFLINE = False
        hub_logging.set_verbosity(hub_logging.ERROR)
        try:
            yield
        finally:
            constants.HF_HUB_OFFLINE = saved
            hub_logging.set_verbosity(level)


def _as_user_error(exc: Exception, where: str) -> Exception:
    """A one-line UserError for what the user can fix; the exception itself for a bug."""
    from huggingface_hub import errors

    if isinstance(exc, UserError):
        return exc
    if isinstance(exc, errors.GatedRepoError):
        return UserError(f"{where}: the repository is gated; accept its terms on huggingface.co")
    if isinstance(exc, errors.RepositoryNotFoundError):
        return UserError(f"{where}: no such repository on the Hugging Face Hub (or it is private)")
    if isinstance(exc, errors.RevisionNotFoundError):
        return UserError(f"{where}: no such revision on the Hugging Face Hub")
    if isinstance(exc, errors.EntryNotFoundError) and not _is_offline_miss(exc):
        return UserError(f"{where}: no such file in that repository")
    if isinstance(exc, errors.HfHubHTTPError):
        status = getattr(getattr(exc, "response", None), "status_code", "?")
        return UserError(f"{where}: the Hugging Face Hub refused the download (HTTP {status})")
    if _is_network_error(exc):
        return UserError(
            f"{where}: cannot reach huggingface.co; check the network connection and try again"
        )
    if isinstance(exc, OSError):
        return UserError(f"{where}: could not save the download ({exc})")
    return exc


def _is_offline_miss(exc: Exception) -> bool:
    """huggingface_hub reports "no network and not cached" as LocalEntryNotFoundError."""
    from huggingface_hub import errors

    return isinstance(exc, errors.LocalEntryNotFoundError)


def _is_network_error(exc: Exception) -> bool:
    import httpx
    from huggingface_hub import errors

    network = (
        errors.OfflineModeIsEnabled,
        errors.LocalEntryNotFoundError,
        httpx.TransportError,
        ConnectionError,
        TimeoutError,
    )
    return isinstance(exc, network)


def _progress_bar(progress: Progress) -> type[Any]:
    """A silent tqdm class that forwards byte counts to `progress`."""
    from tqdm import tqdm

    class _Bar(tqdm):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)
            self._done = int(kwargs.get("initial") or 0)

        def update(self, n: float | None = 1) -> bool | None:
            self._done += int(n or 0)
            progress(self._done, int(self.total or 0))
            return super().update(n)

    return _Bar
