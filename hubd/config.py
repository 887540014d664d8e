"""Settings: defaults, then ``$HUBD_HOME/hubd.toml``, then ``HUBD_*`` variables, then flags.

One frozen :class:`Settings` is built at the edge (CLI, daemon, tests) and passed explicitly;
nothing reads the environment later. Each field carries its TOML key, its variable and its help
text, so ``hubd config``, the README's settings table and the schema's descriptions come from one
place. hubd.toml is first checked as written (:class:`ConfigFile`, strict: a TOML string is not a
number), then flattened into Settings with the variables and flags, which are text or Python
values and are converted (``"8"`` is 8).

Not pydantic-settings: its sources read ``os.environ`` itself (callers pass the environment), and
its TOML source maps keys to fields by name, not ``[mirror] concurrency`` to ``concurrency``.
"""

from __future__ import annotations

import os
import re
import socket
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

from .errors import ConfigError, InvalidReference
from .refs import RepoRef
from .validation import location

DEFAULT_ENDPOINT = "https://huggingface.co"

# Shared by the file and the settings, so a value the file refuses is refused from a variable too.
Count = Annotated[int, Field(ge=1)]
NonNegative = Annotated[int, Field(ge=0)]
Port = Annotated[int, Field(ge=0, le=65535)]
Seconds = Annotated[float, Field(gt=0)]
Name = Annotated[str, Field(min_length=1)]
UserPath = Annotated[Path, AfterValidator(Path.expanduser)]
# Only the file's URLs must be http(s) here: node.url given otherwise is refused when registered.
HttpUrl = Annotated[str, Field(pattern=r"^https?://", json_schema_extra={"format": "uri"})]

# A pull-through's upstreams: "peers" (the other nodes of the catalog, then the configured
# peers) and "hub" (the endpoint), in the order given.
Upstream = Literal["peers", "hub"]
RepoGlob = Annotated[str, Field(min_length=1, max_length=400)]
DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# A duration as hubd.toml writes it: "90s", "10m", "1h", "1d" (or a number of seconds).
DurationText = Annotated[str, Field(pattern=r"^[0-9]+(?:\.[0-9]+)?[smhd]?$")]


def _duration(value: Any) -> Any:
    """ "10m" as 600.0 seconds; a bare number (or its text, from a variable) as seconds."""
    if isinstance(value, str) and value[-1:] in DURATION_UNITS:
        number = value[:-1]
        if number.replace(".", "", 1).isdigit():
            return float(number) * DURATION_UNITS[value[-1]]
    return value


Duration = Annotated[float, BeforeValidator(_duration), Field(ge=0)]


def _toml_keys(schema: dict[str, Any]) -> None:
    """TOML has no null: an optional key is written or absent; its default is the setting's."""
    for prop in schema.get("properties", {}).values():
        prop.pop("default", None)
        branches = prop.pop("anyOf", [])
        prop.update(*(b for b in branches if b != {"type": "null"}))


def _repo_id(value: str) -> str:
    try:
        RepoRef.parse(value)
    except InvalidReference as exc:
        raise ValueError(exc.message) from None
    return value


RepoId = Annotated[str, AfterValidator(_repo_id)]

Backend = Literal["fs", "s3"]
_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}
_UNITS |= {"KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def _byte_size(value: Any) -> Any:
    """A byte count, or a string like "200GB" or "1.5 TiB" (anything else: pydantic's error)."""
    if not isinstance(value, str):
        return value
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", value)
    if match is None or match.group(2).upper() not in _UNITS:
        raise ValueError(f"expected a size like 200GB or 500MiB, got {value[:40]!r}")
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])


ByteSize = Annotated[int, BeforeValidator(_byte_size), Field(ge=0)]


class LlmEntry(BaseModel):
    """A model `hubd daemon` serves by alias on its OpenAI-compatible API ([[llm]] tables)."""

    model_config = ConfigDict(
        strict=True, extra="forbid", frozen=True, json_schema_extra=_toml_keys
    )

    alias: Name = Field(description='The "model" name clients send')
    repo: RepoId = Field(description="org/name or org/name@revision of the GGUF model")
    file: str | None = Field(None, description="Glob choosing the GGUF file, as `hubd run --file`")
    lora: RepoId | None = Field(None, description="org/name[@revision] of a LoRA adapter to apply")


def _setting(default: Any, key: str, env: str, help: str) -> Any:
    return Field(default, description=help, json_schema_extra={"key": key, "env": env})


class Settings(BaseModel):
    """Every knob hubd has. ``None`` means "derived from another setting" (see ``resolved``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    home: UserPath = _setting(
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
    store_dir: UserPath = _setting(
        None,
        "store.path",
        "HUBD_STORE",
        "Content-addressed store (default $HUBD_HOME/store).",
    )
    store_backend: Backend = _setting(
        "fs",
        "store.backend",
        "HUBD_STORE_BACKEND",
        'Where blobs live: "fs" (under store.path) or "s3" (S3-compatible object storage).',
    )
    s3_endpoint: str | None = _setting(
        None,
        "store.s3.endpoint",
        "HUBD_S3_ENDPOINT",
        "S3 endpoint URL (MinIO, Ceph RGW, SeaweedFS, R2…); unset, AWS's for the region.",
    )
    s3_bucket: str | None = _setting(
        None, "store.s3.bucket", "HUBD_S3_BUCKET", 'Bucket of the blobs (backend = "s3").'
    )
    s3_prefix: str = _setting(
        "",
        "store.s3.prefix",
        "HUBD_S3_PREFIX",
        'Key prefix inside the bucket, e.g. "prod/" (several stores may share a bucket).',
    )
    s3_region: Name = _setting(
        "us-east-1", "store.s3.region", "HUBD_S3_REGION", "Region the requests are signed for."
    )
    s3_credentials_file: UserPath | None = _setting(
        None,
        "store.s3.credentials_file",
        "HUBD_S3_CREDENTIALS_FILE",
        "File of AWS_ACCESS_KEY_ID=… and AWS_SECRET_ACCESS_KEY=… lines; unset, the standard "
        "AWS_* variables and files apply. Never stored in the catalog.",
    )
    s3_redirect: bool = _setting(
        False,
        "store.s3.redirect",
        "HUBD_S3_REDIRECT",
        "Answer downloads with a 302 to a short-lived presigned URL instead of streaming them.",
    )
    cache_path: UserPath = _setting(
        None,
        "store.cache.path",
        "HUBD_CACHE",
        "Local copies of S3 blobs that llama.cpp and GGUF readers open (default store.path).",
    )
    cache_max_size: ByteSize | None = _setting(
        None,
        "store.cache.max_size",
        "HUBD_CACHE_MAX_SIZE",
        'Bound of the local cache, e.g. "200GB" (least recently used go first; default none).',
    )
    concurrency: Count = _setting(
        8,
        "mirror.concurrency",
        "HUBD_CONCURRENCY",
        "Files transferred in parallel.",
    )
    parts: Count = _setting(
        32,
        "mirror.parts",
        "HUBD_PARTS",
        "Most streams in flight for one transfer, ranged parts and files together; the number"
        " used grows from 8 while the measured rate grows (1 disables ranged parts).",
    )
    part_size: Count = _setting(
        8 * 1024 * 1024,
        "mirror.part_size",
        "HUBD_PART_SIZE",
        "Largest ranged part (parts shrink as streams grow); files larger are fetched in parts.",
    )
    timeout: Seconds = _setting(
        30.0,
        "mirror.timeout",
        "HUBD_TIMEOUT",
        "Seconds without progress before a connection is given up.",
    )
    retries: NonNegative = _setting(
        3,
        "mirror.retries",
        "HUBD_RETRIES",
        "Attempts per file after a dropped connection (each resumes where the last stopped).",
    )
    min_rate: Count = _setting(
        50 * 1024,
        "mirror.min_rate",
        "HUBD_MIN_RATE",
        "Bytes per second a transfer must sustain after mirror.grace seconds, or the attempt "
        "fails; each file's deadline is its size at this rate plus a grace per attempt.",
    )
    grace: Seconds = _setting(
        10.0,
        "mirror.grace",
        "HUBD_GRACE",
        "Seconds a transfer may lag behind mirror.min_rate (connecting, a slow start, a pause).",
    )
    verify_workers: NonNegative = _setting(
        0,
        "verify.workers",
        "HUBD_VERIFY_WORKERS",
        "Threads hashing blobs in `hubd verify` (0 = one per core).",
    )
    node_name: Name = _setting(
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
    node_token_file: UserPath | None = _setting(
        None,
        "node.token_file",
        "HUBD_NODE_TOKEN_FILE",
        "File with a read-scope token this node sends to the other nodes of its catalog when "
        "they require auth (tokens live in the shared catalog: one serves every node).",
    )
    policy: UserPath | None = _setting(
        None,
        "audit.policy",
        "HUBD_POLICY",
        "Policy file (TOML, schemas/policy.schema.json) that `hubd audit` checks and "
        "`hubd mirror` enforces before downloading (default: none).",
    )
    host: str = _setting(
        "127.0.0.1", "server.host", "HUBD_HOST", "Address `hubd daemon` listens on."
    )
    port: Port = _setting(8080, "server.port", "HUBD_PORT", "Port `hubd daemon` listens on.")
    tls_cert: UserPath | None = _setting(
        None,
        "server.tls_cert",
        "HUBD_TLS_CERT",
        "PEM certificate (chain) for HTTPS; with server.tls_key (default: plain HTTP).",
    )
    tls_key: UserPath | None = _setting(
        None, "server.tls_key", "HUBD_TLS_KEY", "PEM private key for server.tls_cert."
    )
    jobs: Count = _setting(
        2, "jobs.concurrency", "HUBD_JOBS", "Mirror jobs the daemon runs at once."
    )
    jobs_poll: Seconds = _setting(
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
    daemon_token_file: UserPath | None = _setting(
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
    proxy_enabled: bool = _setting(
        False,
        "proxy.enabled",
        "HUBD_PROXY",
        "Pull-through: `hubd daemon` answers for repos the catalog lacks by resolving them "
        "upstream, vetting them (proxy.allow/deny, audit.policy, the trust policy) and "
        "streaming each file to its clients while fetching and verifying it.",
    )
    proxy_upstreams: tuple[Upstream, ...] = _setting(
        ("peers", "hub"),
        "proxy.upstreams",
        "",
        'Where the pull-through resolves, in order: "peers" (the other nodes of the catalog, '
        'then the configured peers) and "hub" (endpoint); hubd.toml only.',
    )
    proxy_allow: tuple[RepoGlob, ...] = _setting(
        ("*",),
        "proxy.allow",
        "",
        "Repo globs (org/name) the pull-through may fetch; hubd.toml only.",
    )
    proxy_deny: tuple[RepoGlob, ...] = _setting(
        (),
        "proxy.deny",
        "",
        "Repo globs the pull-through refuses, whatever proxy.allow says; hubd.toml only.",
    )
    proxy_ref_ttl: Duration = _setting(
        600.0,
        "proxy.ref_ttl",
        "HUBD_PROXY_REF_TTL",
        "How long the pull-through reuses an upstream branch or tag -> commit answer "
        '("30s", "10m", "1h"; 0: ask every time); a commit is immutable and never asked again.',
    )
    proxy_max_file_size: NonNegative = _setting(
        0,
        "proxy.max_file_size",
        "HUBD_PROXY_MAX_FILE_SIZE",
        "Bytes of the largest file the pull-through fetches (0: no limit); a larger one is "
        "refused with a 403 naming the limit.",
    )

    def resolved(self) -> Settings:
        """Fill derived defaults; idempotent."""
        home = self.home or default_home()
        return self.model_copy(
            update={
                "home": home,
                "endpoint": (self.endpoint or DEFAULT_ENDPOINT).rstrip("/"),
                "catalog_url": self.catalog_url or f"sqlite:///{home / 'catalog.db'}",
                "store_dir": self.store_dir or home / "store",
                "cache_path": self.cache_path or self.store_dir or home / "store",
                "node_name": self.node_name or socket.gethostname(),
                "node_url": (self.node_url or derived_node_url(self)).rstrip("/"),
                "verify_workers": self.verify_workers or (os.cpu_count() or 1),
            }
        )


def derived_node_url(settings: Settings, port: int | None = None) -> str:
    """node.url's default: server.host (a wildcard: the host name) and ``port`` or server.port."""
    host = settings.host
    if host in ("", "0.0.0.0", "::"):  # noqa: S104 - recognising a wildcard, not binding one
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


def _doc(name: str, info: FieldInfo) -> SettingDoc:
    extra = info.json_schema_extra
    if not isinstance(extra, dict):
        raise TypeError(f"Settings.{name} was not made by _setting")
    return SettingDoc(
        name, str(extra["key"]), str(extra["env"]), str(info.description), info.default
    )


def setting_docs() -> list[SettingDoc]:
    """Every setting's field, TOML key, variable, help and default: for `hubd config` and docs."""
    return [_doc(name, info) for name, info in Settings.model_fields.items()]


_HELP = {doc.key: doc.help for doc in setting_docs()}


def _key(dotted: str) -> Any:
    """A hubd.toml key, described by its setting's help."""
    return Field(None, description=_HELP[dotted])


class _Table(BaseModel):
    model_config = ConfigDict(
        strict=True, extra="forbid", frozen=True, json_schema_extra=_toml_keys
    )


class CatalogTable(_Table):
    """[catalog]: where the catalog lives."""

    url: str | None = _key("catalog.url")


class S3Table(_Table):
    """[store] s3.*: the bucket of backend "s3"."""

    endpoint: HttpUrl | None = _key("store.s3.endpoint")
    bucket: Name | None = _key("store.s3.bucket")
    prefix: str | None = _key("store.s3.prefix")
    region: Name | None = _key("store.s3.region")
    credentials_file: str | None = _key("store.s3.credentials_file")
    redirect: bool | None = _key("store.s3.redirect")


class CacheTable(_Table):
    """[store] cache.*: local copies of S3 blobs."""

    path: str | None = _key("store.cache.path")
    max_size: ByteSize | None = _key("store.cache.max_size")


class StoreTable(_Table):
    """[store]: where the blobs live."""

    path: str | None = _key("store.path")
    backend: Backend | None = _key("store.backend")
    s3: S3Table | None = None
    cache: CacheTable | None = None


class MirrorTable(_Table):
    """[mirror]: how files are transferred."""

    concurrency: Count | None = _key("mirror.concurrency")
    parts: Count | None = _key("mirror.parts")
    part_size: Count | None = _key("mirror.part_size")
    timeout: Seconds | None = _key("mirror.timeout")
    retries: NonNegative | None = _key("mirror.retries")
    min_rate: Count | None = _key("mirror.min_rate")
    grace: Seconds | None = _key("mirror.grace")


class VerifyTable(_Table):
    """[verify]: `hubd verify`."""

    workers: NonNegative | None = _key("verify.workers")


class NodeTable(_Table):
    """[node]: this node among those sharing a catalog."""

    name: Name | None = _key("node.name")
    url: HttpUrl | None = _key("node.url")
    token_file: str | None = _key("node.token_file")


class AuditTable(_Table):
    """[audit]: the policy `hubd audit` checks and `hubd mirror` enforces."""

    policy: Name | None = _key("audit.policy")


class ServerTable(_Table):
    """[server]: where `hubd daemon` listens."""

    host: str | None = _key("server.host")
    port: Port | None = _key("server.port")
    tls_cert: str | None = _key("server.tls_cert")
    tls_key: str | None = _key("server.tls_key")


class AuthTable(_Table):
    """[auth]: who may call the daemon."""

    required: bool | None = _key("auth.required")


class JobsTable(_Table):
    """[jobs]: the daemon's job queue."""

    concurrency: Count | None = _key("jobs.concurrency")
    poll: Seconds | None = _key("jobs.poll")


class DaemonTable(_Table):
    """[daemon]: a daemon the CLI hands its work to."""

    url: str | None = _key("daemon.url")
    token_file: str | None = _key("daemon.token_file")


class ProxyTable(_Table):
    """[proxy]: the daemon's pull-through for repos the catalog lacks."""

    enabled: bool | None = _key("proxy.enabled")
    upstreams: list[Upstream] | None = Field(
        None, min_length=1, description=_HELP["proxy.upstreams"]
    )
    allow: list[RepoGlob] | None = _key("proxy.allow")
    deny: list[RepoGlob] | None = _key("proxy.deny")
    ref_ttl: DurationText | None = _key("proxy.ref_ttl")
    max_file_size: NonNegative | None = _key("proxy.max_file_size")


class ConfigFile(_Table):
    """$HUBD_HOME/hubd.toml as JSON; every key optional (README), no `home` or `token` key."""

    model_config = ConfigDict(title="hubd.toml")

    endpoint: HttpUrl | None = _key("endpoint")
    offline: bool | None = _key("offline")
    catalog: CatalogTable | None = None
    store: StoreTable | None = None
    mirror: MirrorTable | None = None
    verify: VerifyTable | None = None
    node: NodeTable | None = None
    audit: AuditTable | None = None
    server: ServerTable | None = None
    auth: AuthTable | None = None
    jobs: JobsTable | None = None
    daemon: DaemonTable | None = None
    proxy: ProxyTable | None = None
    llm: list[LlmEntry] | None = _key("llm")

    @field_validator("llm")
    @classmethod
    def _unique_aliases(cls, entries: list[LlmEntry] | None) -> list[LlmEntry] | None:
        seen: dict[str, int] = {}
        for index, entry in enumerate(entries or ()):
            if entry.alias in seen:
                raise ValueError(
                    f"aliases must be unique: {entry.alias!r} is llm[{seen[entry.alias]}] "
                    f"and llm[{index}]"
                )
            seen[entry.alias] = index
        return entries

    def written(self) -> dict[str, Any]:
        """The keys the file sets, dotted (``mirror.concurrency``), with their values."""
        return _written(self)


def _written(table: BaseModel, under: str = "") -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name in table.model_fields_set:
        value = getattr(table, name)
        if isinstance(value, _Table):
            values.update(_written(value, f"{under}{name}."))
        else:
            values[f"{under}{name}"] = value
    return values


def _problem(error: ErrorDetails, key: str) -> str:
    if error["type"] == "extra_forbidden":
        return f"unknown setting {key!r}"
    if error["type"] == "missing":
        return f"{key} is missing"
    if error["type"] == "value_error":
        why = str(error.get("ctx", {}).get("error"))
    elif error["type"] == "model_type":
        why = "should be a table"
    else:
        why = error["msg"]
    value = error["input"]
    shown = "" if isinstance(value, dict | list | tuple) else f"value {value!r} for "
    return f"invalid {shown}{key}: {why}"


def _read_file(path: Path) -> dict[str, Any]:
    """hubd.toml's settings by field name; nothing if there is no file."""
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    try:
        config = ConfigFile.model_validate(data)
    except ValidationError as exc:
        problems = (_problem(e, location(e["loc"])) for e in exc.errors(include_url=False))
        raise ConfigError("; ".join(f"{path}: {p}" for p in problems)) from None
    by_key = {doc.key: doc.name for doc in setting_docs()}
    return {by_key[key]: value for key, value in config.written().items()}


def load_settings(environ: Mapping[str, str] = os.environ, **overrides: Any) -> Settings:
    """Build Settings from defaults, hubd.toml, the environment and explicit overrides (flags)."""
    home_raw = overrides.get("home") or environ.get("HUBD_HOME")
    home = Path(home_raw).expanduser() if home_raw else default_home(environ)
    path = home / "hubd.toml"
    values = _read_file(path)
    origin = dict.fromkeys(values, str(path))
    if environ.get("HF_ENDPOINT") and "endpoint" not in values:
        values["endpoint"], origin["endpoint"] = environ["HF_ENDPOINT"], "HF_ENDPOINT"
    docs = setting_docs()
    for doc in docs:
        if doc.env and doc.name != "home" and environ.get(doc.env):
            values[doc.name], origin[doc.name] = environ[doc.env], doc.env
    for name, value in overrides.items():
        if value is not None and name != "home":
            values[name], origin[name] = value, f"--{name.replace('_', '-')}"
    try:
        settings = Settings(home=home, **values)
    except ValidationError as exc:
        keys = {doc.name: doc.key for doc in docs}
        problems = []
        for error in exc.errors(include_url=False):
            field = str(error["loc"][0])
            key = location((keys.get(field, field), *error["loc"][1:]))
            problems.append(f"{origin.get(field, 'settings')}: {_problem(error, key)}")
        raise ConfigError("; ".join(problems)) from None
    return settings.resolved()
