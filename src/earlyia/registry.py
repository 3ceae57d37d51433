"""Named implementations of one kind (readers, feature extractors, query strategies, perturbations,
...).

One small pattern for every place where earlyia looks an implementation up by name: a
:class:`Registry` keeps entries in registration order, :meth:`Registry.get` raises one
:class:`~earlyia.errors.ConfigError` that names the kind and the choices, and built-ins that are
costly to import are declared by module (``lazy``) and imported on first use, so that importing a
package stays cheap.

>>> from earlyia.registry import Registry
>>> colours = Registry("colour")
>>> colours.register("red", "#f00")
'#f00'
>>> colours.get("red"), colours.names()
('#f00', ['red'])
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping
from typing import Generic, TypeVar

from earlyia.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Entries of one ``kind`` by name, in registration order.

    Args:
        kind: what an entry is, in words ("feature extractor"); used in error messages. lazy:
        built-in names -> the module that registers them when imported (imported by :meth:`get` the
        first
            time the name is asked for, and by :meth:`names`/iteration, which list everything
            available).
        check: called as ``check(name, entry)`` before an entry is stored; raises on an entry of the
        wrong type.
    """

    def __init__(
        self,
        kind: str,
        *,
        lazy: Mapping[str, str] | None = None,
        check: Callable[[str, T], None] | None = None,
    ):
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._lazy: dict[str, str] = dict(lazy or {})
        self._check = check

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names()})"

    # ------------------------------------------------------------------ registration
    def register(self, name: str, entry: T, *, replace: bool = False) -> T:
        """Store ``entry`` under ``name`` and return it (usable as a decorator's body).

        Registering the very same entry again is a no-op; another entry under a taken name raises
        :class:`ConfigError` unless ``replace=True`` (it then keeps its place in the order).
        """
        if not isinstance(name, str) or not name:
            raise ConfigError(f"a {self.kind} name must be a non-empty string, got {name!r}")
        if self._check is not None:
            self._check(name, entry)
        old = self._entries.get(name)
        if old is not None and old is not entry and not replace:
            raise ConfigError(
                f"{self.kind} {name!r} is already registered ({old!r}); pass replace=True to "
                "replace it"
            )
        self._entries[name] = entry
        return entry

    def unregister(self, name: str) -> T:
        """Remove ``name`` (e.g. a test's temporary entry) and return its entry."""
        self._load(name)
        try:
            return self._entries.pop(name)
        except KeyError:
            raise self._unknown(name) from None

    # ------------------------------------------------------------------ look-up
    def get(self, name: str) -> T:
        """The entry registered under ``name``; :class:`ConfigError` naming the choices when
        there is none."""
        if not isinstance(name, str):
            raise ConfigError(f"a {self.kind} name must be a string, got {type(name).__name__}")
        self._load(name)
        try:
            return self._entries[name]
        except KeyError:
            raise self._unknown(name) from None

    def names(self) -> list[str]:
        """Every available name: registered ones in registration order, then built-ins not
        imported yet."""
        return list(self._entries) + [n for n in self._lazy if n not in self._entries]

    def items(self) -> list[tuple[str, T]]:
        """``(name, entry)`` of everything available (imports the pending built-ins), in
        registration order."""
        self.load_all()
        return list(self._entries.items())

    def load_all(self) -> None:
        """Import every built-in module not imported yet."""
        for name in list(self._lazy):
            self._load(name)

    def __contains__(self, name: object) -> bool:
        return name in self._entries or name in self._lazy

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def name_of(self, entry: T) -> str | None:
        """The name ``entry`` is registered under (None when it is not registered)."""
        for name, value in self._entries.items():
            if value is entry:
                return name
        return None

    # ------------------------------------------------------------------ internals
    def _load(self, name: str) -> None:
        module = self._lazy.get(name)
        if module is None or name in self._entries:
            return
        importlib.import_module(module)
        if name not in self._entries:
            raise ConfigError(
                f"built-in {self.kind} {name!r}: importing {module} did not register it"
            )

    def _unknown(self, name: str) -> ConfigError:
        return ConfigError(
            f"unknown {self.kind} {name!r}; choose one of: "
            f"{', '.join(self.names()) or '(none registered)'}"
        )
