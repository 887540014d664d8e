"""What every use case needs, built once at the edge from Settings and passed down."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from .catalog.db import open_catalog
from .config import Settings
from .errors import StoreError
from .journal import recover
from .store import Store


@dataclass(frozen=True)
class Context:
    settings: Settings
    store: Store
    catalog: sessionmaker[Session]

    @classmethod
    def open(cls, settings: Settings) -> Context:
        """Create the home, store and catalog on first use."""
        try:
            settings.home.mkdir(parents=True, exist_ok=True)
            settings.store_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create {settings.home}: {exc.strerror or exc}") from None
        store, catalog = Store(settings.store_dir), open_catalog(settings.catalog_url)
        recover(store, catalog)  # what a process killed mid-recording left is undone first
        return cls(settings, store, catalog)

    def close(self) -> None:
        engine = self.catalog.kw["bind"]
        engine.dispose()
