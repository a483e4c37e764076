"""Load a script of the repository (a benchmark, a recipe) as a module, by its path."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[1]


def load_file(path: Path, name: str | None = None) -> ModuleType:
    """The module of the Python file at ``path`` (executed, not run as ``__main__``)."""
    spec = importlib.util.spec_from_file_location(name or path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_benchmark(name: str) -> ModuleType:
    """``benchmarks/<name>.py`` as a module."""
    return load_file(REPO / "benchmarks" / f"{name}.py", name)
