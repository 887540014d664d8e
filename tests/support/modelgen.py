"""Deterministic tiny model repos for tests, demos and benchmarks.

Everything is derived from a seed, so the same call always yields byte-identical files (and thus
identical hashes and FakeHub commit shas). The repos are structurally real: valid safetensors
shards with an index, transformers-style configs and a README with a YAML model card.
"""

from __future__ import annotations

import json
import struct
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from huggingface_hub import ModelCard, ModelCardData
from safetensors.numpy import save

HIDDEN = 16
INTERMEDIATE = 32
VOCAB = 32
LAYERS = 2
_WRITE_CHUNK = 8 * 1024 * 1024


def tiny_model_files(
    *,
    seed: int = 0,
    shards: int = 2,
    license: str = "apache-2.0",
    extra_card: Mapping[str, Any] | None = None,
) -> dict[str, bytes]:
    """A tiny llama-like transformers repo (float32 weights split over `shards` files).

    With `shards == 1` the weights go to `model.safetensors` without an index, as transformers
    does; otherwise `model-0000i-of-0000n.safetensors` plus `model.safetensors.index.json`.
    `extra_card` adds or overrides model card fields (e.g. `base_model`).
    """
    rng = np.random.default_rng(seed)

    def weight(*shape: int) -> np.ndarray[Any, np.dtype[np.float32]]:
        return rng.standard_normal(shape, dtype=np.float32) * np.float32(0.02)

    tensors = {"model.embed_tokens.weight": weight(VOCAB, HIDDEN)}
    for i in range(LAYERS):
        prefix = f"model.layers.{i}"
        for proj in ("q_proj", "k_proj", "v_proj", "o_proj"):
            tensors[f"{prefix}.self_attn.{proj}.weight"] = weight(HIDDEN, HIDDEN)
        tensors[f"{prefix}.mlp.gate_proj.weight"] = weight(INTERMEDIATE, HIDDEN)
        tensors[f"{prefix}.mlp.up_proj.weight"] = weight(INTERMEDIATE, HIDDEN)
        tensors[f"{prefix}.mlp.down_proj.weight"] = weight(HIDDEN, INTERMEDIATE)
        tensors[f"{prefix}.input_layernorm.weight"] = np.ones(HIDDEN, dtype=np.float32)
        tensors[f"{prefix}.post_attention_layernorm.weight"] = np.ones(HIDDEN, dtype=np.float32)
    tensors["model.norm.weight"] = np.ones(HIDDEN, dtype=np.float32)
    tensors["lm_head.weight"] = weight(VOCAB, HIDDEN)

    names = _shard_names(shards)
    groups = np.array_split(np.array(sorted(tensors)), shards)
    files = {
        shard: save({str(n): tensors[str(n)] for n in group}, metadata={"format": "pt"})
        for shard, group in zip(names, groups, strict=True)
    }
    if shards > 1:
        weight_map = {
            str(n): shard for shard, group in zip(names, groups, strict=True) for n in group
        }
        total = sum(t.nbytes for t in tensors.values())
        files["model.safetensors.index.json"] = _json(
            {"metadata": {"total_size": total}, "weight_map": weight_map}
        )
    files["config.json"] = _json(
        {
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "hidden_size": HIDDEN,
            "intermediate_size": INTERMEDIATE,
            "num_hidden_layers": LAYERS,
            "num_attention_heads": 2,
            "num_key_value_heads": 2,
            "vocab_size": VOCAB,
            "max_position_embeddings": 64,
            "rms_norm_eps": 1e-6,
            "bos_token_id": 1,
            "eos_token_id": 2,
            "tie_word_embeddings": False,
            "torch_dtype": "float32",
        }
    )
    files["generation_config.json"] = _json(
        {"bos_token_id": 1, "eos_token_id": 2, "max_length": 64, "do_sample": False}
    )
    files["tokenizer_config.json"] = _json(
        {
            "tokenizer_class": "LlamaTokenizer",
            "bos_token": "<s>",
            "eos_token": "</s>",
            "unk_token": "<unk>",
            "model_max_length": 64,
        }
    )
    card = {
        "license": license,
        "language": ["en"],
        "library_name": "transformers",
        "pipeline_tag": "text-generation",
        "tags": ["llama", "tiny", "hubd-test"],
        "datasets": ["hubd/tiny-corpus"],
        **(extra_card or {}),
    }
    files["README.md"] = _readme(card, f"Tiny llama-like test model (seed {seed}).")
    return files


def tiny_lora_files(*, base_model: str, seed: int = 1) -> dict[str, bytes]:
    """A PEFT LoRA adapter (r=4 on q/v projections) for a `tiny_model_files` base."""
    rng = np.random.default_rng(seed)
    rank = 4
    tensors = {}
    for i in range(LAYERS):
        for proj in ("q_proj", "v_proj"):
            prefix = f"base_model.model.model.layers.{i}.self_attn.{proj}"
            tensors[f"{prefix}.lora_A.weight"] = rng.standard_normal((rank, HIDDEN), np.float32)
            tensors[f"{prefix}.lora_B.weight"] = np.zeros((HIDDEN, rank), np.float32)
    config = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base_model,
        "r": rank,
        "lora_alpha": 8,
        "lora_dropout": 0.0,
        "target_modules": ["q_proj", "v_proj"],
        "bias": "none",
        "inference_mode": True,
    }
    card = {
        "base_model": base_model,
        "base_model_relation": "adapter",
        "license": "apache-2.0",
        "library_name": "peft",
        "tags": ["lora", "hubd-test"],
    }
    return {
        "adapter_config.json": _json(config),
        "adapter_model.safetensors": save(tensors, metadata={"format": "pt"}),
        "README.md": _readme(card, f"Tiny LoRA adapter for {base_model} (seed {seed})."),
    }


def tiny_llama_gguf(
    *,
    seed: int = 0,
    license: str = "apache-2.0",
    hidden: int = HIDDEN,
    layers: int = LAYERS,
    ff: int = INTERMEDIATE,
) -> bytes:
    """A runnable llama GGUF (random weights, a few hundred KB) that llama.cpp loads.

    The tokenizer is llama's SentencePiece layout: <unk>, <s>, </s> and the 256 byte tokens
    <0x00>..<0xFF>, so any text tokenizes. Default shapes match :func:`tiny_lora_gguf`; larger
    ``hidden``/``layers``/``ff`` make a model big enough to time (benchmarks).
    """
    from gguf import GGUFWriter, TokenType

    rng = np.random.default_rng(seed)
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    types = [TokenType.UNKNOWN, TokenType.CONTROL, TokenType.CONTROL] + [TokenType.BYTE] * 256
    heads, context = 2, 512

    def weight(*shape: int) -> np.ndarray[Any, np.dtype[np.float32]]:
        return (rng.standard_normal(shape) * 0.1).astype(np.float32)

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.gguf"
        writer = GGUFWriter(path, "llama")
        writer.add_name("tiny-llama")
        writer.add_license(license)
        writer.add_context_length(context)
        writer.add_embedding_length(hidden)
        writer.add_block_count(layers)
        writer.add_feed_forward_length(ff)
        writer.add_head_count(heads)
        writer.add_head_count_kv(heads)
        writer.add_layer_norm_rms_eps(1e-5)
        writer.add_rope_dimension_count(hidden // heads)
        writer.add_tokenizer_model("llama")
        writer.add_token_list(tokens)
        writer.add_token_scores([0.0] * len(tokens))
        writer.add_token_types(types)
        writer.add_bos_token_id(1)
        writer.add_eos_token_id(2)
        writer.add_unk_token_id(0)
        writer.add_tensor("token_embd.weight", weight(len(tokens), hidden))
        writer.add_tensor("output_norm.weight", np.ones(hidden, dtype=np.float32))
        # Zero logits for <unk>, <s>, </s> against large random ones for the byte tokens:
        # generation practically never ends early, so tests can count tokens.
        output = weight(len(tokens), hidden) * 10
        output[:3] = 0
        writer.add_tensor("output.weight", output)
        for layer in range(layers):
            blk = f"blk.{layer}"
            writer.add_tensor(f"{blk}.attn_norm.weight", np.ones(hidden, dtype=np.float32))
            for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
                writer.add_tensor(f"{blk}.{name}.weight", weight(hidden, hidden))
            writer.add_tensor(f"{blk}.ffn_norm.weight", np.ones(hidden, dtype=np.float32))
            writer.add_tensor(f"{blk}.ffn_gate.weight", weight(ff, hidden))
            writer.add_tensor(f"{blk}.ffn_up.weight", weight(ff, hidden))
            writer.add_tensor(f"{blk}.ffn_down.weight", weight(hidden, ff))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        return path.read_bytes()


def tiny_lora_gguf(
    *, seed: int = 1, rank: int = 4, architecture: str = "llama", hidden: int = HIDDEN
) -> bytes:
    """A llama.cpp LoRA adapter GGUF (``general.type = adapter``) for the tiny model's shapes.

    ``architecture`` and ``hidden`` other than the defaults make adapters that do not fit.
    """
    from gguf import GGUFWriter

    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "adapter.gguf"
        writer = GGUFWriter(path, architecture)
        writer.add_type("adapter")
        writer.add_string("adapter.type", "lora")
        writer.add_float32("adapter.lora.alpha", float(rank * 2))
        for layer in range(LAYERS):
            for name in ("attn_q", "attn_v"):
                writer.add_tensor(
                    f"blk.{layer}.{name}.weight.lora_a",
                    rng.standard_normal((rank, hidden), dtype=np.float32),
                )
                writer.add_tensor(
                    f"blk.{layer}.{name}.weight.lora_b",
                    rng.standard_normal((hidden, rank), dtype=np.float32),
                )
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        return path.read_bytes()


def tiny_gguf_files(*, base_model: str | None = None, seed: int = 0) -> dict[str, bytes]:
    """A GGUF quantization repo of the tiny model (two files; Q4_K_M is the default choice)."""
    card: dict[str, Any] = {"license": "apache-2.0", "tags": ["gguf", "hubd-test"]}
    if base_model:
        card.update(base_model=base_model, base_model_relation="quantized")
    return {
        "README.md": _readme(card, "# tiny-llama GGUF\n\nRandom weights, for tests.\n"),
        "tiny-llama-Q4_K_M.gguf": tiny_llama_gguf(seed=seed),
        "tiny-llama-Q8_0.gguf": tiny_llama_gguf(seed=seed + 1),
    }


def tiny_gguf_lora_files(*, base_model: str, seed: int = 1) -> dict[str, bytes]:
    """A llama.cpp LoRA adapter repo for :func:`tiny_gguf_files`."""
    card = {
        "license": "apache-2.0",
        "base_model": base_model,
        "base_model_relation": "adapter",
        "tags": ["lora", "gguf", "hubd-test"],
    }
    return {
        "README.md": _readme(card, "# tiny-llama GGUF LoRA\n\nRandom weights, for tests.\n"),
        "tiny-llama-lora-f32.gguf": tiny_lora_gguf(seed=seed),
    }


def write_files(root: Path, files: Mapping[str, bytes]) -> None:
    """Write a `{repo path: content}` mapping under `root`."""
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)


def big_safetensors_repo(
    root: Path, *, total_bytes: int, shards: int, seed: int = 0
) -> dict[str, Path]:
    """Write a repo of `shards` safetensors files holding `total_bytes` of random uint8 data.

    Headers are written by hand and the data streamed in chunks, so memory stays small even for
    multi-GiB repos. Returns `{repo path: file}` ready for `FakeHub.add_repo`.
    """
    root.mkdir(parents=True, exist_ok=True)
    names = _shard_names(shards)
    sizes = [total_bytes // shards + (i < total_bytes % shards) for i in range(shards)]
    weight_map = {}
    for i, (name, size) in enumerate(zip(names, sizes, strict=True)):
        tensor = f"blob.{i}.weight"
        weight_map[tensor] = name
        header = json.dumps(
            {
                "__metadata__": {"format": "pt"},
                tensor: {"dtype": "U8", "shape": [size], "data_offsets": [0, size]},
            },
            separators=(",", ":"),
        ).encode()
        header += b" " * (-len(header) % 8)
        rng = np.random.default_rng([seed, i])
        with (root / name).open("wb") as f:
            f.write(struct.pack("<Q", len(header)) + header)
            for offset in range(0, size, _WRITE_CHUNK):
                f.write(rng.bytes(min(_WRITE_CHUNK, size - offset)))
    small: dict[str, bytes] = {
        "config.json": _json({"architectures": ["BlobModel"], "model_type": "blob"}),
        "README.md": _readme(
            {"license": "apache-2.0", "tags": ["hubd-test", "benchmark"]},
            f"{total_bytes} bytes of random weights in {shards} shard(s) (seed {seed}).",
        ),
    }
    if shards > 1:
        small["model.safetensors.index.json"] = _json(
            {"metadata": {"total_size": total_bytes}, "weight_map": weight_map}
        )
    write_files(root, small)
    return {name: root / name for name in (*names, *small)}


def _shard_names(shards: int) -> list[str]:
    if shards < 1:
        raise ValueError("shards must be >= 1")
    if shards == 1:
        return ["model.safetensors"]
    return [f"model-{i:05d}-of-{shards:05d}.safetensors" for i in range(1, shards + 1)]


def _json(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode()


def _readme(card: Mapping[str, Any], body: str) -> bytes:
    data = ModelCardData(**card)
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n\n# Model card\n\n{body}\n")).encode()
