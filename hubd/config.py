"""Settings: defaults, then ``$HUBD_HOME/hubd.toml``, then ``HUBD_*`` variables, then flags.

One frozen :class:`Settings` is built at the edge (CLI, daemon, tests) and passed explicitly;
nothing reads the environment later. Each field's metadata carries its TOML key, its variable and
its help text, so ``hubd config`` and the README's settings table come from one place.
"""

from __future__ import annotations

import os
import socket
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from .errors import ConfigError, InvalidReference
from .refs import RepoRef

DEFAULT_ENDPOINT = "https://huggingface.co"


@dataclass(frozen=True)
class LlmEntry:
    """A model `hubd daemon` serves by alias on its OpenAI-compatible API ([[llm]] tables)."""

    alias: str
    repo: str
    file: str | None = None
    lora: str | None = None


def _setting(default: Any, key: str, env: str, help: str) -> Any:
    return field(default=default, metadata={"key": key, "env": env, "help": help})


@dataclass(frozen=True)
class Settings:
    """Every knob hubd has. ``None`` means "derived from another setting" (see ``resolve``)."""

    home: Path = _setting(
        None,
        "home",
        "HUBD_HOME",
        "Where hubd keeps hubd.toml, the store and the SQLite catalog "
        "(default $XDG_DATA_HOME/hubd, else ~/.local/share/hubd).",
    )
    endpoint: str = _setting(
        None,
        "endpoint",
        "HUBD_ENDPOINT",
        "Hugging Face endpoint to mirror from (default $HF_ENDPOINT, else https://huggingface.co).",
    )
    token: str | None = _setting(
        None,
        "token",
        "HF_TOKEN",
        "Hugging Face token (HF_TOKEN); unset, huggingface_hub's own lookup (the `hf auth login` "
        "file) applies when the Hub is contacted. Never read from hubd.toml.",
    )
    offline: bool = _setting(
        False,
        "offline",
        "HF_HUB_OFFLINE",
        "Never touch the network; answer from the local store and catalog only.",
    )
    catalog_url: str = _setting(
        None,
        "catalog.url",
        "HUBD_CATALOG_URL",
        "SQLAlchemy URL of the catalog (default sqlite:///$HUBD_HOME/catalog.db).",
    )
    store_dir: Path = _setting(
        None,
        "store.path",
        "HUBD_STORE",
        "Content-addressed store (default $HUBD_HOME/store).",
    )
    concurrency: int = _setting(
        8,
        "mirror.concurrency",
        "HUBD_CONCURRENCY",
        "Files transferred in parallel.",
    )
    parts: int = _setting(
        4,
        "mirror.parts",
        "HUBD_PARTS",
        "Ranged requests in flight for one large file (1 disables ranged parts).",
    )
    part_size: int = _setting(
        8 * 1024 * 1024,
        "mirror.part_size",
        "HUBD_PART_SIZE",
        "Bytes per ranged part; files larger than this are fetched in parts.",
    )
    timeout: float = _setting(
        30.0,
        "mirror.timeout",
        "HUBD_TIMEOUT",
        "Seconds without progress before a connection is given up.",
    )
    retries: int = _setting(
        3,
        "mirror.retries",
        "HUBD_RETRIES",
        "Attempts per file after a dropped connection (each resumes where the last stopped).",
    )
    min_rate: int = _setting(
        50 * 1024,
        "mirror.min_rate",
        "HUBD_MIN_RATE",
        "Bytes per second a transfer must sustain after mirror.grace seconds, or the attempt "
        "fails; each file's deadline is its size at this rate plus a grace per attempt.",
    )
    grace: float = _setting(
        10.0,
        "mirror.grace",
        "HUBD_GRACE",
        "Seconds a transfer may lag behind mirror.min_rate (connecting, a slow start, a pause).",
    )
    verify_workers: int = _setting(
        0,
        "verify.workers",
        "HUBD_VERIFY_WORKERS",
        "Threads hashing blobs in `hubd verify` (0 = one per core).",
    )
    node_name: str = _setting(
        None,
        "node.name",
        "HUBD_NODE_NAME",
        "This node's name in provenance records (default the host name).",
    )
    node_url: str = _setting(
        None,
        "node.url",
        "HUBD_NODE_URL",
        "Where the other nodes sharing this catalog reach this node's Hub API (default from "
        "server.host and server.port, https with TLS; a wildcard host becomes the host name).",
    )
    node_token_file: Path | None = _setting(
        None,
        "node.token_file",
        "HUBD_NODE_TOKEN_FILE",
        "File with a read-scope token this node sends to the other nodes of its catalog when "
        "they require auth (tokens live in the shared catalog: one serves every node).",
    )
    policy: Path | None = _setting(
        None,
        "audit.policy",
        "HUBD_POLICY",
        "Policy file (TOML, schemas/policy.schema.json) that `hubd audit` checks and "
        "`hubd mirror` enforces before downloading (default: none).",
    )
    host: str = _setting(
        "127.0.0.1", "server.host", "HUBD_HOST", "Address `hubd daemon` listens on."
    )
    port: int = _setting(8080, "server.port", "HUBD_PORT", "Port `hubd daemon` listens on.")
    tls_cert: Path | None = _setting(
        None,
        "server.tls_cert",
        "HUBD_TLS_CERT",
        "PEM certificate (chain) for HTTPS; with server.tls_key (default: plain HTTP).",
    )
    tls_key: Path | None = _setting(
        None, "server.tls_key", "HUBD_TLS_KEY", "PEM private key for server.tls_cert."
    )
    jobs: int = _setting(2, "jobs.concurrency", "HUBD_JOBS", "Mirror jobs the daemon runs at once.")
    jobs_poll: float = _setting(
        5.0,
        "jobs.poll",
        "HUBD_JOBS_POLL",
        "Seconds between the daemon's looks at the job queue and the watch list.",
    )
    daemon_url: str | None = _setting(
        None,
        "daemon.url",
        "HUBD_DAEMON_URL",
        "A running daemon that `hubd mirror` and `hubd jobs add` hand their work to "
        "(default: none, work in-process).",
    )
    daemon_token_file: Path | None = _setting(
        None,
        "daemon.token_file",
        "HUBD_DAEMON_TOKEN_FILE",
        "File with a write-scope token for daemon.url (when it requires auth).",
    )
    llm: tuple[LlmEntry, ...] = _setting(
        (),
        "llm",
        "",
        "[[llm]] tables (alias, repo, file, lora) that `hubd daemon` serves on /v1 by alias; "
        "hubd.toml only.",
    )
    auth_required: bool = _setting(
        False,
        "auth.required",
        "HUBD_AUTH_REQUIRED",
        "Require `Authorization: Bearer <token>` (from `hubd tokens create`) on every call "
        "but /healthz.",
    )

    def resolved(self) -> Settings:
        """Fill derived defaults; idempotent."""
        home = self.home or default_home()
        return replace(
            self,
            home=home,
            endpoint=(self.endpoint or DEFAULT_ENDPOINT).rstrip("/"),
            catalog_url=self.catalog_url or f"sqlite:///{home / 'catalog.db'}",
            store_dir=self.store_dir or home / "store",
            node_name=self.node_name or socket.gethostname(),
            node_url=(self.node_url or derived_node_url(self)).rstrip("/"),
            verify_workers=self.verify_workers or (os.cpu_count() or 1),
        )


def derived_node_url(settings: Settings, port: int | None = None) -> str:
    """node.url's default: server.host (a wildcard: the host name) and ``port`` or server.port."""
    host = settings.host
    if host in ("", "0.0.0.0", "::"):
        host = socket.gethostname()
    elif ":" in host:
        host = f"[{host}]"
    scheme = "https" if settings.tls_cert else "http"
    return f"{scheme}://{host}:{settings.port if port is None else port}"


def default_home(environ: Mapping[str, str] = os.environ) -> Path:
    xdg = environ.get("XDG_DATA_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "share"
    return base / "hubd"


@dataclass(frozen=True)
class SettingDoc:
    name: str
    key: str
    env: str
    help: str
    default: Any


def setting_docs() -> list[SettingDoc]:
    """Every setting's field, TOML key, variable, help and default: for `hubd config` and docs."""
    return [
        SettingDoc(f.name, f.metadata["key"], f.metadata["env"], f.metadata["help"], f.default)
        for f in fields(Settings)
    ]


def _convert(name: str, raw: Any, source: str) -> Any:
    kind = {f.name: f.type for f in fields(Settings)}[name]
    try:
        if kind == "bool":
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(raw)
        if kind == "int":
            value = int(raw)
            if value < 0 or (value == 0 and name not in ("verify_workers", "retries", "port")):
                raise ValueError(raw)
            if name == "port" and value > 65535:
                raise ValueError(raw)
            return value
        if kind == "float":
            number = float(raw)
            if number <= 0:
                raise ValueError(raw)
            return number
        if kind in ("Path", "Path | None"):
            return Path(str(raw)).expanduser()
        return str(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"{source}: invalid value {raw!r} for {name}") from None


def _from_toml(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    by_key = {f.metadata["key"]: f.name for f in fields(Settings)}
    values: dict[str, Any] = {}

    def walk(table: Mapping[str, Any], prefix: str) -> None:
        for key, value in table.items():
            dotted = f"{prefix}{key}"
            if dotted == "llm":
                values["llm"] = _llm_entries(value, path)
            elif isinstance(value, dict):
                walk(value, f"{dotted}.")
            elif dotted not in by_key or dotted in ("home", "token"):
                raise ConfigError(f"{path}: unknown setting {dotted!r}")
            else:
                values[by_key[dotted]] = _convert(by_key[dotted], value, str(path))

    walk(data, "")
    return values


def _llm_entries(raw: Any, path: Path) -> tuple[LlmEntry, ...]:
    if not isinstance(raw, list) or not all(isinstance(e, dict) for e in raw):
        raise ConfigError(f"{path}: llm must be [[llm]] tables")
    entries = []
    for index, entry in enumerate(raw, 1):
        unknown = set(entry) - {"alias", "repo", "file", "lora"}
        if unknown or not isinstance(entry.get("alias"), str) or not entry["alias"]:
            raise ConfigError(
                f"{path}: [[llm]] #{index} needs an alias and a repo; "
                f"unknown keys: {sorted(unknown)}"
            )
        try:
            for key in ("repo", "lora"):
                if key in entry:
                    RepoRef.parse(str(entry[key]))
        except InvalidReference as exc:
            raise ConfigError(f"{path}: [[llm]] {entry['alias']}: {exc.message}") from None
        if "repo" not in entry:
            raise ConfigError(f"{path}: [[llm]] {entry['alias']} has no repo")
        entries.append(LlmEntry(**{k: str(v) for k, v in entry.items()}))
    aliases = [e.alias for e in entries]
    if len(set(aliases)) != len(aliases):
        raise ConfigError(f"{path}: [[llm]] aliases must be unique")
    return tuple(entries)


def load_settings(environ: Mapping[str, str] = os.environ, **overrides: Any) -> Settings:
    """Build Settings from defaults, hubd.toml, the environment and explicit overrides (flags)."""
    home_raw = overrides.get("home") or environ.get("HUBD_HOME")
    home = Path(home_raw).expanduser() if home_raw else default_home(environ)
    values: dict[str, Any] = _from_toml(home / "hubd.toml")
    if environ.get("HF_ENDPOINT"):
        values.setdefault("endpoint", environ["HF_ENDPOINT"])
    for f in fields(Settings):
        env = f.metadata["env"]
        if f.name != "home" and environ.get(env) not in (None, ""):
            values[f.name] = _convert(f.name, environ[env], env)
    for name, value in overrides.items():
        if value is not None and name != "home":
            values[name] = value
    return Settings(home=home, **values).resolved()
