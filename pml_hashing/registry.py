"""One registry idiom for the components a config names: methods, target miners, protocols.

A component registers itself in its own file with a decorator, as timm's models do::

    @METHODS.register("dpn")
    class DPNMethod(HashingMethod): ...

so adding one never means editing a central dict or an ``if``/``elif``. A registry is a
read-only :class:`~collections.abc.Mapping` from name to the registered class or function
(``name in METHODS``, ``sorted(METHODS)``, ``METHODS["dpn"]`` keep working as on a dict), plus
the facts each entry registered with (:meth:`Registry.info`). Registering a name twice warns
before it replaces the old entry, as timm's ``_registry.py`` does (``overwrite=True``
replaces quietly, ``overwrite=False`` refuses).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Mapping
from types import MappingProxyType
from typing import Any, Generic, TypeVar

T = TypeVar("T")

__all__ = ["Registry", "RegistryOverwriteWarning"]


class RegistryOverwriteWarning(UserWarning):
    """A name was registered again: the new entry replaces the old one."""


class Registry(Mapping, Generic[T]):
    """Name -> class or function, filled by :meth:`register` in each component's own file.

    Args:
        kind: what the entries are, for messages (``"hashing method"``).
        argument: the config key or argument that names an entry, for the error of an
            unknown name (``"method"`` gives ``method must be one of [...]; got 'x'``).
    """

    def __init__(self, kind: str, argument: str):
        self.kind = kind
        self.argument = argument
        self._entries: dict[str, T] = {}
        self._info: dict[str, MappingProxyType] = {}

    def register(
        self, name: str, obj: T | None = None, *, overwrite: bool | None = None, **info: Any
    ):
        """Register ``obj`` under ``name``; without ``obj``, a decorator that does it.

        Args:
            name: the name a config uses (``"dpn"``, ``"max-hamming"``, ``"cifar10-1"``).
            obj: the class or function (omit it to use ``register`` as a decorator).
            overwrite: what a name that is already taken does: ``None`` (default) warns
                (:class:`RegistryOverwriteWarning`) and replaces, ``True`` replaces quietly,
                ``False`` raises ``ValueError``.
            **info: facts about the entry that a caller reads before building it
                (a protocol's ``in_chans``, say); see :meth:`info`.

        Returns:
            ``obj`` (or the decorator, which returns what it decorates unchanged).
        """
        if not isinstance(name, str) or not name:
            raise TypeError(f"a {self.kind} name must be a non-empty string; got {name!r}")
        if overwrite not in (None, True, False):
            raise TypeError(f"overwrite must be None, True or False; got {overwrite!r}")

        def add(target: T) -> T:
            existing = self._entries.get(name)
            if existing is not None and existing is not target:
                description = f"{self.kind} {name!r} is already registered ({_label(existing)})"
                if overwrite is False:
                    raise ValueError(
                        f"{description}; pick another name or pass overwrite=True to replace it"
                    )
                if overwrite is None:
                    warnings.warn(
                        f"{description}; {_label(target)} replaces it",
                        RegistryOverwriteWarning,
                        stacklevel=3,
                    )
            self._entries[name] = target
            self._info[name] = MappingProxyType(dict(info))
            return target

        return add if obj is None else add(obj)

    def get_or_raise(self, name: str) -> T:
        """The entry of ``name``; an unknown name is a ``ValueError`` listing the choices."""
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            message = f"{self.argument} must be one of {self.names()}; got {name!r}"
            raise ValueError(message) from None

    def check(self, name: str) -> str:
        """``name`` if it is registered, else the ``ValueError`` of :meth:`get_or_raise`."""
        self.get_or_raise(name)
        return name

    def info(self, name: str) -> Mapping[str, Any]:
        """The facts ``name`` was registered with (read-only); unknown names raise."""
        self.get_or_raise(name)
        return self._info[name]

    def unregister(self, name: str) -> T:
        """Remove ``name`` and return its entry (a plugin's test cleans up after itself);
        an unknown name raises."""
        entry = self.get_or_raise(name)
        del self._entries[name], self._info[name]
        return entry

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._entries)

    def create(self, name: str, *args, **kwargs):
        """Call the entry of ``name`` (build the class) with ``args`` and ``kwargs``."""
        factory: Callable = self.get_or_raise(name)
        return factory(*args, **kwargs)

    def __getitem__(self, name: str) -> T:
        return self._entries[name]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"


def _label(obj) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"
