"""deploy/ read as systemd, podman and compose would: the commands exist, the hardening is there.

Nothing here builds an image or starts a unit (no container engine or systemd in CI); the files
are parsed and every hubd command line in them is resolved and parsed by hubd's own click tree.
"""

from __future__ import annotations

import json
import re
import shlex
from collections import defaultdict
from pathlib import Path

import click
import yaml
from sqlalchemy import make_url

from hubd.cli.main import cli
from hubd.config import load_settings, setting_docs

DEPLOY = Path(__file__).parent.parent / "deploy"
HOME = "/var/lib/hubd"
SETTING_VARIABLES = {doc.env for doc in setting_docs()} | {"HF_HOME"}


def hubd_command(argv: list[str]) -> list[str]:
    """Resolve ``hubd ARGS…`` through the real click tree, parsing the options; the names."""
    assert Path(argv[0]).name == "hubd", argv
    command: click.Command = cli
    ctx = click.Context(cli, info_name="hubd")
    args, names = argv[1:], []
    while isinstance(command, click.Group):
        name, sub, args = command.resolve_command(ctx, args)
        assert name is not None and sub is not None, argv
        names.append(name)
        command, ctx = sub, click.Context(sub, info_name=name, parent=ctx)
    command.parse_args(ctx, args)  # unknown options or bad values raise
    return names


def systemd_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """Sections -> key -> values (systemd allows a key more than once; configparser does not)."""
    sections: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    section = ""
    for raw in path.read_text().replace("\\\n", " ").splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        sections[section][key.strip()].append(value.strip())
    return sections


def test_systemd_unit_runs_hubd_commands_hardened() -> None:
    service = systemd_unit(DEPLOY / "hubd.service")["Service"]
    commands = [
        hubd_command(shlex.split(line.lstrip("-+!@:")))
        for key in ("ExecStartPre", "ExecStart")
        for line in service[key]
    ]
    assert commands == [["db", "upgrade"], ["daemon"]]
    assert service["ExecStart"] == ["/opt/hubd/bin/hubd daemon --host 0.0.0.0 --port 8080"]
    expected = {
        "User": "hubd",
        "StateDirectory": "hubd",
        "ProtectSystem": "strict",
        "NoNewPrivileges": "yes",
        "Restart": "on-failure",
        "PrivateTmp": "yes",
        "ProtectHome": "yes",
        "CapabilityBoundingSet": "",
    }
    assert {key: service[key][-1] for key in expected} == expected
    env = dict(line.split("=", 1) for line in service["Environment"])
    assert env["HUBD_HOME"] == HOME and set(env) <= SETTING_VARIABLES


def containerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the final stage, continuation lines joined."""
    text = (DEPLOY / "Containerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    instructions = [tuple(line.split(None, 1)) for line in lines if line and line[0] != "#"]
    last_from = max(i for i, (word, _) in enumerate(instructions) if word == "FROM")
    return [(word.upper(), rest) for word, rest in instructions[last_from:]]  # type: ignore[misc]


def test_containerfile_non_root_volume_healthcheck() -> None:
    stage = containerfile()
    words = dict(stage)
    assert re.search(r"^ARG PYTHON=\S*-slim", (DEPLOY / "Containerfile").read_text(), re.M)
    assert stage[0] == ("FROM", "docker.io/library/python:${PYTHON}")
    assert words["USER"] not in ("root", "0")
    assert json.loads(words["VOLUME"]) == [HOME]
    env = dict(re.findall(r"(\w+)=(\S+)", words["ENV"]))
    assert env["HUBD_HOME"] == HOME
    health = words["HEALTHCHECK"]
    assert "http://127.0.0.1:8080/healthz" in health and " CMD " in f" {health} "
    entrypoint, cmd = json.loads(words["ENTRYPOINT"]), json.loads(words["CMD"])
    assert hubd_command(["/opt/hubd/bin/" + entrypoint[0], *entrypoint[1:], *cmd]) == ["daemon"]
    assert cmd == ["daemon", "--host", "0.0.0.0", "--port", "8080"]  # noqa: S104 - in a container


def test_compose_two_stateless_daemons_on_postgresql_and_s3_behind_one_address() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services, volumes = compose["services"], set(compose["volumes"])
    (db,) = [name for name, s in services.items() if "postgres" in s["image"]]
    (s3,) = [name for name, s in services.items() if "seaweedfs" in s["image"]]
    (proxy,) = [name for name, s in services.items() if "nginx" in s["image"]]
    daemons = {name: s for name, s in services.items() if s.get("image") == "localhost/hubd:latest"}
    assert len(daemons) == 2 and "build" in next(iter(daemons.values()))
    for name, service in services.items():
        named = {
            v.split(":")[0] for v in service.get("volumes", []) if not v.startswith((".", "/"))
        }
        assert named <= volumes and (named or name == proxy), name
    assert [name for name, s in services.items() if s.get("ports")] == [proxy]  # one address
    nginx = (DEPLOY / services[proxy]["volumes"][0].split(":")[0]).read_text()
    assert sorted(re.findall(r"server (\S+):8080", nginx)) == sorted(daemons)
    nodes, homes, buckets = set(), set(), set()
    for name, service in daemons.items():
        assert hubd_command(["hubd", *service["command"]]) == ["daemon"]
        (home,) = [v.split(":")[0] for v in service["volumes"] if v.endswith(f":{HOME}")]
        homes.add(home)
        assert {db, s3} <= {k for k, v in service["depends_on"].items() if v["condition"]}
        env = {k: re.sub(r"\$\{[^}]*\}", "pw", v) for k, v in service["environment"].items()}
        assert set(env) - {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= SETTING_VARIABLES
        url = make_url(env["HUBD_CATALOG_URL"])
        assert (url.drivername, url.host, url.database) == ("postgresql+psycopg", db, "hubd")
        settings = load_settings({**env, "HUBD_HOME": "/nonexistent/hubd"})
        assert settings.catalog_url == env["HUBD_CATALOG_URL"]
        assert settings.store_backend == "s3" and settings.s3_endpoint == f"http://{s3}:8333"
        buckets.add((settings.s3_bucket, settings.s3_prefix))
        nodes.add(settings.node_name)
        port = service["command"][service["command"].index("--port") + 1]
        assert settings.node_url == f"http://{name}:{port}"
    assert len(nodes) == 2  # provenance and job ownership tell the daemons apart
    assert len(homes) == 2 and len(buckets) == 1  # keys apart, blobs in one bucket
    assert f"-bucket={buckets.pop()[0]}" in services[s3]["command"]
