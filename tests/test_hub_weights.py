"""What the Hub tells of a repo's weights: GET /api/models/{repo}/safetensors-metadata/{index}
(a sharded model's headers in one answer, as get_sharded_safetensors_metadata reads them) and
model info's ``safetensors`` and ``gguf`` expands; and what a hostile index, shard or header
gets."""

from __future__ import annotations

import asyncio
import json
import struct
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import MODEL
from huggingface_hub import HfApi
from support.fakehub import FakeHub
from support.modelgen import tiny_gguf_files, tiny_model_files
from test_hub_repo_api import request
from test_server import serving

from hubd.context import Context
from hubd.ops.mirror import mirror
from hubd.refs import RepoRef

INDEX = "model.safetensors.index.json"


def header(data: bytes) -> dict[str, object]:
    (length,) = struct.unpack("<Q", data[:8])
    parsed: dict[str, object] = json.loads(data[8 : 8 + length])
    return parsed


@pytest.fixture
def served(ctx: Context, hub: FakeHub) -> Iterator[str]:
    hub.add_repo("acme/tiny-gguf", tiny_gguf_files())
    hub.add_repo("acme/bad-gguf", {"README.md": b"# bad\n", "x.gguf": b"GGUF" + b"\xff" * 40})
    hub.add_repo(
        "acme/bad-index",
        {"README.md": b"# bad\n", INDEX: b'{"weight_map": {"w": 7}}'},
    )
    hub.add_repo(
        "acme/bad-shard",
        {
            "README.md": b"# bad\n",
            INDEX: json.dumps({"weight_map": {"w": "w.safetensors"}}).encode(),
            "w.safetensors": struct.pack("<Q", 1 << 40) + b"{}",
        },
    )
    hub.add_repo(
        "acme/lost-shard",
        {"README.md": b"# lost\n", INDEX: json.dumps({"weight_map": {"w": "gone"}}).encode()},
    )
    repos = ("acme/tiny-gguf", "acme/bad-gguf", "acme/bad-index", "acme/bad-shard")
    for repo in (MODEL, "acme/lost-shard", *repos):
        asyncio.run(mirror(ctx, RepoRef.parse(repo)))
    with serving(ctx) as url:
        yield url


def test_sharded_metadata_in_one_request(served: str) -> None:
    files = tiny_model_files(seed=0)
    shards = sorted(set(json.loads(files[INDEX])["weight_map"].values()))
    assert len(shards) == 2
    api = HfApi(endpoint=served)
    metadata = api.get_sharded_safetensors_metadata(MODEL)
    assert metadata.sharded and sorted(metadata.files_metadata) == shards
    for shard in shards:
        expected = header(files[shard])
        got = metadata.files_metadata[shard]
        assert sorted(got.tensors) == sorted(k for k in expected if k != "__metadata__")
    assert metadata.weight_map == json.loads(files[INDEX])["weight_map"]
    # The same answer huggingface_hub assembles from ranged reads of each shard.
    assert api.get_safetensors_metadata(MODEL).weight_map == metadata.weight_map


@pytest.mark.parametrize(
    ("repo", "status", "code"),
    [
        ("acme/bad-index", 422, "InvalidModelFile"),
        ("acme/bad-shard", 422, "InvalidModelFile"),
        ("acme/lost-shard", 404, "EntryNotFound"),
        ("acme/nothing-here", 404, "RepoNotFound"),
    ],
)
def test_hostile_indexes_and_shards_are_typed_errors(
    served: str, repo: str, status: int, code: str
) -> None:
    got, headers, body = request(served, "GET", f"/api/models/{repo}/safetensors-metadata/{INDEX}")
    assert got == status, body
    assert headers["X-Error-Code"] == code and headers["X-Error-Message"]
    assert "error" in json.loads(body)


def test_a_path_that_escapes_is_refused(served: str) -> None:
    got, headers, _ = request(served, "GET", f"/api/models/{MODEL}/safetensors-metadata/../x")
    assert got in (400, 404) and headers["X-Error-Code"]


def test_model_info_expands_safetensors_parameter_counts(served: str) -> None:
    files = tiny_model_files(seed=0)
    expected: dict[str, int] = {}
    for name, data in files.items():
        if name.endswith(".safetensors"):
            for key, tensor in header(data).items():
                if key != "__metadata__":
                    assert isinstance(tensor, dict)
                    count = 1
                    for dim in tensor["shape"]:
                        count *= dim
                    expected[tensor["dtype"]] = expected.get(tensor["dtype"], 0) + count
    info = HfApi(endpoint=served).model_info(MODEL, expand=["safetensors"])
    assert info.safetensors is not None
    assert info.safetensors.parameters == expected
    assert info.safetensors.total == sum(expected.values()) > 0
    got, _, body = request(served, "GET", "/api/models/acme/bad-shard?expand=safetensors")
    assert got == 422 and "header length" in json.loads(body)["error"]


def test_model_info_expands_gguf_from_the_stored_file(served: str) -> None:
    from gguf import GGUFReader

    api = HfApi(endpoint=served)
    info = api.model_info("acme/tiny-gguf", expand=["gguf"])
    assert info.gguf is not None
    assert info.gguf["architecture"] == "llama" and info.gguf["context_length"] == 512
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.gguf"
        path.write_bytes(tiny_gguf_files()["tiny-llama-Q4_K_M.gguf"])
        expected = sum(int(np.prod(t.shape)) for t in GGUFReader(path).tensors)
    assert info.gguf["total"] == expected > 0
    assert api.model_info(MODEL, expand=["gguf"]).gguf is None  # no GGUF file: no field
    got, _, body = request(served, "GET", "/api/models/acme/bad-gguf?expand=gguf")
    assert got == 422 and "x.gguf" in json.loads(body)["error"]
