"""`make dist`: Quire as an app folder that runs without Python, a tarball and a .deb.

    dist/quire/                                 quire, quire-cli, quire-desktop, _internal/
    dist/quire-<version>-linux-x86_64.tar.gz    that folder, with quire.desktop and quire.svg
    dist/quire_<version>_amd64.deb              /opt/quire, /usr/bin/quire and quire-cli,
                                                the menu entry and icon under /usr/share

The folder is PyInstaller's (packaging/quire.spec). llama.cpp is rebuilt once for any
x86-64 CPU with AVX2, into .cache/dist/ (about 5 minutes on 2 cores): the venv's build
uses every instruction of the machine that compiled it (AVX-512 here). Prints the sizes
and the time each step took.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ui.desktop import DESKTOP_NAME, ICON, ICON_NAME, desktop_entry  # noqa: E402

DIST = ROOT / "dist"
BUILD = ROOT / "build"
CACHE = ROOT / ".cache" / "dist"
APP = DIST / "quire"
SPEC = ROOT / "packaging" / "quire.spec"
CONTROL = ROOT / "packaging" / "deb" / "control"
PREFIX = Path("/opt/quire")  # where the .deb puts the folder
# Libraries that only optional Qt plugins need: Qt skips such a plugin when they are absent.
OPTIONAL_PLUGINS = ("platformthemes",)


def version() -> str:
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    found = re.search(r'^version = "([^"]+)"', text, re.M)
    assert found, "pyproject.toml has no version"
    return found.group(1)


def run(*args: str | Path, **kwargs: object) -> None:
    subprocess.run([str(a) for a in args], check=True, **kwargs)  # type: ignore[call-overload]


def portable_llama() -> Path:
    """llama.cpp's libraries built with GGML_NATIVE=OFF (AVX2, FMA, F16C), once."""
    release = importlib.metadata.version("llama_cpp_python")
    folder = CACHE / f"llama-{release}"
    if (folder / "libllama.so").is_file():
        return folder
    pip = [sys.executable, "-m", "pip"]
    sdist = CACHE / "src" / f"llama_cpp_python-{release}.tar.gz"
    if not sdist.is_file():
        run(*pip, "download", "--no-deps", "--no-binary", ":all:", "-d", sdist.parent,
            f"llama-cpp-python=={release}")  # fmt: skip
    # --no-cache-dir: pip's wheel cache does not tell CMAKE_ARGS apart, and would hand
    # back the native build.
    env = {**os.environ, "CMAKE_ARGS": "-DGGML_NATIVE=OFF", "CMAKE_BUILD_PARALLEL_LEVEL": "2"}
    wheels = CACHE / "wheels"
    run(*pip, "wheel", "--no-deps", "--no-cache-dir", "-w", wheels, sdist, env=env)
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    with zipfile.ZipFile(next(wheels.glob(f"llama_cpp_python-{release}-*.whl"))) as wheel:
        for name in wheel.namelist():
            if name.startswith("llama_cpp/lib/lib"):
                (tmp / Path(name).name).write_bytes(wheel.read(name))
    tmp.rename(folder)
    return folder


def pyinstaller(llama: Path) -> None:
    env = {**os.environ, "QUIRE_LLAMA_LIB": str(llama)}
    run(sys.executable, "-m", "PyInstaller", SPEC, "--noconfirm", "--log-level", "WARN",
        "--distpath", DIST, "--workpath", BUILD / "pyinstaller", env=env)  # fmt: skip
    (APP / "quire-cli").symlink_to("quire")  # one program: a command runs the CLI


def tarball(release: str) -> Path:
    """The folder as `quire/`, with the menu entry and icon beside the executables."""
    target = DIST / f"quire-{release}-linux-x86_64.tar.gz"
    entry = BUILD / DESKTOP_NAME
    entry.write_text(desktop_entry("quire"), encoding="utf-8")

    def owned_by_root(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        return info

    with tarfile.open(target, "w:gz", compresslevel=6) as tar:
        tar.add(APP, "quire", filter=owned_by_root)
        tar.add(entry, f"quire/{DESKTOP_NAME}", filter=owned_by_root)
        tar.add(ICON, f"quire/{ICON_NAME}.svg", filter=owned_by_root)
    return target


def deb(release: str) -> Path:
    """/opt/quire, /usr/bin links, the entry and icon; built with dpkg-deb."""
    root = BUILD / "deb"
    shutil.rmtree(root, ignore_errors=True)
    shutil.copytree(APP, root / PREFIX.relative_to("/"), symlinks=True, copy_function=os.link)
    share = root / "usr" / "share"
    files = {
        share / "applications" / DESKTOP_NAME: desktop_entry("quire").encode(),
        share / "icons" / "hicolor" / "scalable" / "apps" / f"{ICON_NAME}.svg": ICON.read_bytes(),
    }
    for path, data in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        path.chmod(0o644)
    (root / "usr" / "bin").mkdir(parents=True)
    for name in ("quire", "quire-cli"):
        (root / "usr" / "bin" / name).symlink_to(PREFIX / name)
    control = CONTROL.read_text(encoding="utf-8").format(
        version=release,
        installed_kb=sum(p.lstat().st_size for p in root.rglob("*")) // 1024,
        depends=", ".join(system_packages(APP)),
    )
    (root / "DEBIAN").mkdir()
    (root / "DEBIAN" / "control").write_text(control, encoding="utf-8")
    for folder in [root, *(p for p in root.rglob("*") if p.is_dir() and not p.is_symlink())]:
        folder.chmod(0o755)
    target = DIST / f"quire_{release}_amd64.deb"
    run("dpkg-deb", "--root-owner-group", "-Zgzip", "--build", root, target,
        stdout=subprocess.DEVNULL)  # fmt: skip
    return target


def system_packages(app: Path) -> list[str]:
    """The Debian packages of the libraries the folder leaves to the system (libc, GL,
    X11, fontconfig...): found with ldd and dpkg -S; one not installed here is named by
    Debian's rule (libxcb-icccm.so.4: libxcb-icccm4)."""
    bundled = {p.name for p in app.rglob("*")}
    paths, missing = set(), set()
    for binary in elf_files(app):
        out = subprocess.run(["ldd", binary], capture_output=True, text=True).stdout
        for name, where in re.findall(r"^\s*(\S+) => (\S+)", out, re.M):
            if name in bundled or where.startswith(str(app)):
                continue
            if where != "not":  # dpkg knows some as /lib/..., others as /usr/lib/...
                paths.update((where, os.path.realpath(where)))
            elif not any(part in OPTIONAL_PLUGINS for part in binary.parts):
                missing.add(name)
    owners = subprocess.run(["dpkg", "-S", *sorted(paths)], capture_output=True, text=True)
    packages = {line.split(":")[0] for line in owners.stdout.splitlines()}
    for name in missing:
        stem, number = re.match(r"(.+)\.so\.(\d+)", name).groups()  # type: ignore[union-attr]
        packages.add(f"{stem}{'-' if stem[-1].isdigit() else ''}{number}")
    glibc = os.confstr("CS_GNU_LIBC_VERSION").split()[-1]  # built here: needs this or newer
    return sorted(f"libc6 (>= {glibc})" if p == "libc6" else p for p in packages)


def elf_files(folder: Path) -> list[Path]:
    found = []
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            with path.open("rb") as fh:
                if fh.read(4) == b"\x7fELF":
                    found.append(path)
    return found


def size(path: Path) -> str:
    total = (
        path.stat().st_size if path.is_file() else sum(p.lstat().st_size for p in path.rglob("*"))
    )
    return f"{total / 1e6:.0f} MB"


def main() -> int:
    release = version()
    for old in (APP, BUILD / "deb"):
        shutil.rmtree(old, ignore_errors=True)
    BUILD.mkdir(exist_ok=True)
    started = time.perf_counter()
    llama = portable_llama()
    print(f"llama.cpp (portable): {time.perf_counter() - started:.0f} s")
    steps = {
        "PyInstaller": lambda: pyinstaller(llama),
        "tarball": lambda: tarball(release),
        "deb": lambda: deb(release),
    }
    for name, step in steps.items():
        began = time.perf_counter()
        step()
        print(f"{name}: {time.perf_counter() - began:.0f} s")
    print(f"total: {time.perf_counter() - started:.0f} s")
    for path in (APP, *sorted(DIST.glob(f"quire*{release}*"))):
        print(f"{path.relative_to(ROOT)}: {size(path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
