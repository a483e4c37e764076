"""Lazy re-exports for package ``__init__`` files (PEP 562).

A package that re-exports names from heavy submodules (the Trainer pulls in Accelerate,
timm and faiss) would make ``import pml_hashing.training.config`` and every ``--help``
pay for all of them. :func:`lazy_exports` gives a package ``__getattr__`` and ``__dir__``
that import a submodule on the first access of one of its names, so that only what is
used is imported. Static tools (type checkers, the API reference) read the same names
from an ``if TYPE_CHECKING:`` block of ordinary imports in the package.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping


def lazy_exports(
    package: str, exports: Mapping[str, str], eager: bool = False
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of a package whose names load on first use.

    Args:
        package: the package's ``__name__``.
        exports: public name -> submodule (relative, e.g. ``".trainer"``) that defines it.
        eager: the package also imports other names itself; its ``__all__`` then lists
            those and ``exports`` together.

    Returns:
        ``(__getattr__, __dir__)`` to assign in the package's namespace.
    """
    namespace = importlib.import_module(package).__dict__
    # __all__ is written out for linters and ``import *``; it must name the same things
    listed = set(namespace.get("__all__", exports))
    if not (set(exports) <= listed if eager else set(exports) == listed):
        raise RuntimeError(f"{package}: __all__ and the lazy exports name different things")

    def __getattr__(name: str) -> object:
        submodule = exports.get(name)
        if submodule is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(submodule, package), name)
        # cache in the package: later look-ups are plain attribute reads, and a submodule
        # named like its function (``evaluation.retrieval_report``) cannot shadow it
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *exports})

    return __getattr__, __dir__
