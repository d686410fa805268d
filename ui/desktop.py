"""Linux desktop integration: `python -m ui.desktop install` (or `uninstall`).

Writes `~/.local/share/applications/quire.desktop` and the icon, so Quire appears in the
applications menu and starts with a double-click, without a terminal. The launcher runs
the `quire` gui-script installed next to this Python (`pip install .` or `make setup`),
falling back to `python main.py` from a source checkout.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

ICON = Path(__file__).resolve().parent / "resources" / "quire.svg"
REPO = Path(__file__).resolve().parent.parent
DESKTOP_NAME = "quire.desktop"
ICON_NAME = "quire"


def data_home() -> Path:
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")


def launcher_command() -> str:
    """The command the menu entry runs: the gui-script when installed, else main.py."""
    script = Path(sys.executable).parent / "quire"
    if script.is_file():
        return shlex.quote(str(script))
    found = shutil.which("quire")
    if found:
        return shlex.quote(found)
    return f"{shlex.quote(sys.executable)} {shlex.quote(str(REPO / 'main.py'))}"


def desktop_entry(command: str) -> str:
    return "\n".join(
        [
            "[Desktop Entry]",
            "Type=Application",
            "Name=Quire",
            "GenericName=Document chat",
            "Comment=Chat with your own documents, offline",
            f"Exec={command}",
            f"Icon={ICON_NAME}",
            "Terminal=false",
            "Categories=Office;Utility;",
            "Keywords=RAG;PDF;documents;search;chat;LLM;",
            "StartupWMClass=quire",
            "",
        ]
    )


def install(root: Path | None = None) -> list[Path]:
    """Write the .desktop file and the icon under `root` (the XDG data home)."""
    root = root or data_home()
    apps = root / "applications"
    icons = root / "icons" / "hicolor" / "scalable" / "apps"
    apps.mkdir(parents=True, exist_ok=True)
    icons.mkdir(parents=True, exist_ok=True)
    icon = icons / f"{ICON_NAME}.svg"
    shutil.copyfile(ICON, icon)
    entry = apps / DESKTOP_NAME
    entry.write_text(desktop_entry(launcher_command()), encoding="utf-8")
    entry.chmod(0o755)
    _refresh(apps)
    return [entry, icon]


def uninstall(root: Path | None = None) -> list[Path]:
    root = root or data_home()
    gone = []
    for path in (
        root / "applications" / DESKTOP_NAME,
        root / "icons" / "hicolor" / "scalable" / "apps" / f"{ICON_NAME}.svg",
    ):
        if path.exists():
            path.unlink()
            gone.append(path)
    _refresh(root / "applications")
    return gone


def _refresh(apps: Path) -> None:
    """Tell the desktop about the change, where the tool exists (it is optional)."""
    tool = shutil.which("update-desktop-database")
    if tool and apps.is_dir():
        subprocess.run([tool, str(apps)], check=False, capture_output=True)


def main(argv: list[str]) -> int:
    if argv[:1] == ["install"]:
        for path in install():
            print(f"wrote {path}")
        return 0
    if argv[:1] == ["uninstall"]:
        for path in uninstall():
            print(f"removed {path}")
        return 0
    print("usage: python -m ui.desktop install|uninstall", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
