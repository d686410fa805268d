"""Tests of model_builds/: the scripts and question files behind the shipped models."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[2]


def build_script(name: str) -> ModuleType:
    """model_builds/NAME.py loaded as a module (the scripts are not a package)."""
    spec = importlib.util.spec_from_file_location(name, REPO / "model_builds" / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
