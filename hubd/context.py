"""What every use case needs, built once at the edge from Settings and passed down.

A Context is a context manager: ``with Context.open(settings) as ctx:`` opens the store and the
catalog (recovering what a killed process left first) and closes the catalog's connections at
the end. What layers above load once per operation (the node's keys and trust store) it holds
for them (:meth:`Context.held`), without this layer importing theirs.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, TypeVar

from sqlalchemy.orm import Session, sessionmaker

from .catalog.db import open_catalog
from .config import Settings
from .errors import StoreError
from .journal import recover
from .store import Store, open_store

T = TypeVar("T")


@dataclass(frozen=True)
class Context:
    settings: Settings
    store: Store
    catalog: sessionmaker[Session]
    # Not an init field: dataclasses.replace (another home, other settings) starts empty.
    _held: dict[type[Any], Any] = field(default_factory=dict, init=False, repr=False)
    _lock: threading.RLock = field(default_factory=threading.RLock, init=False, repr=False)

    @classmethod
    def open(cls, settings: Settings) -> Context:
        """Create the home, store and catalog on first use."""
        try:
            settings.home.mkdir(parents=True, exist_ok=True)
            settings.store_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create {settings.home}: {exc.strerror or exc}") from None
        store, catalog = open_store(settings), open_catalog(settings.catalog_url)
        recover(store, catalog)  # what a process killed mid-recording left is undone first
        return cls(settings, store, catalog)

    def held(self, kind: type[T], load: Callable[[], T]) -> T:
        """The one ``kind`` this Context holds, loaded by ``load`` on first use."""
        with self._lock:
            if kind not in self._held:
                self._held[kind] = load()
            found: T = self._held[kind]
            return found

    def close(self) -> None:
        engine = self.catalog.kw["bind"]
        engine.dispose()

    def __enter__(self) -> Context:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
