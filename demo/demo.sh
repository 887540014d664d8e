#!/usr/bin/env bash
# The main job end to end, offline: a generated model and its LoRA adapter served by a loopback
# Hugging Face–compatible server, mirrored into a fresh hubd home, verified, shown, and answered by
# llama.cpp (a GGUF quantization with a GGUF LoRA; random weights, so the text is noise).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="$PWD/.venv/bin"
WORK="${HUBD_DEMO_DIR:-$PWD/.demo}"
rm -rf "$WORK"
mkdir -p "$WORK"
export HUBD_HOME="$WORK/home" HF_HOME="$WORK/hf-home" HF_HUB_DISABLE_TELEMETRY=1
unset HF_TOKEN HF_HUB_OFFLINE HUBD_ENDPOINT HUBD_CATALOG_URL HUBD_STORE || true

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

"$BIN/python" -m hubd.testing generate tiny-model "$WORK/repos/acme/tiny-llama"
"$BIN/python" -m hubd.testing generate tiny-lora "$WORK/repos/acme/tiny-llama-lora" \
    --base acme/tiny-llama
"$BIN/python" -m hubd.testing generate tiny-gguf "$WORK/repos/acme/tiny-llama-GGUF" \
    --base acme/tiny-llama
"$BIN/python" -m hubd.testing generate tiny-gguf-lora "$WORK/repos/acme/tiny-llama-gguf-lora" \
    --base acme/tiny-llama-GGUF
"$BIN/python" -m hubd.testing serve \
    --repo "acme/tiny-llama=$WORK/repos/acme/tiny-llama" \
    --repo "acme/tiny-llama-lora=$WORK/repos/acme/tiny-llama-lora" \
    --repo "acme/tiny-llama-GGUF=$WORK/repos/acme/tiny-llama-GGUF" \
    --repo "acme/tiny-llama-gguf-lora=$WORK/repos/acme/tiny-llama-gguf-lora" \
    --port-file "$WORK/endpoint" >"$WORK/hub.log" 2>&1 &
HUB_PID=$!
trap 'kill $HUB_PID 2>/dev/null || true' EXIT
for _ in $(seq 100); do [ -s "$WORK/endpoint" ] && break; sleep 0.1; done
[ -s "$WORK/endpoint" ] || { cat "$WORK/hub.log"; echo "demo: fake hub did not start" >&2; exit 1; }
export HF_ENDPOINT
HF_ENDPOINT="$(cat "$WORK/endpoint")"
echo "loopback Hugging Face endpoint: $HF_ENDPOINT"

step "$BIN/hubd" mirror acme/tiny-llama-lora --with-base
step "$BIN/hubd" mirror acme/tiny-llama
step "$BIN/hubd" verify
step "$BIN/hubd" ls
step "$BIN/hubd" show acme/tiny-llama-lora
step "$BIN/hubd" mirror acme/tiny-llama-gguf-lora --with-base
step "$BIN/hubd" run acme/tiny-llama --file '*.gguf' -p "Why is drinking water so healthy?" \
    || true  # safetensors only: hubd names the GGUF quantization to run instead
step "$BIN/hubd" run --lora acme/tiny-llama-gguf-lora -p "Why is drinking water so healthy?" \
    --max-tokens 16
echo
echo "demo: ok (home: $HUBD_HOME)"
