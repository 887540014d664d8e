#!/usr/bin/env bash
# The main job end to end, offline. Generated models (safetensors + a PEFT LoRA, and a GGUF
# quantization + a GGUF LoRA) are served by a loopback stand-in for huggingface.co. Node A
# mirrors them and serves them as a hubd peer; node B (the demo's home) trusts A's key, requires
# it for acme/*, mirrors from peer A (A's signatures and SLSA statements checked before anything
# is visible), verifies every byte and signature, shows the two-hop provenance, audits the
# licenses, has llama.cpp answer a prompt (random weights: the text is noise, but it is
# llama.cpp's), and prints the URL of node B's web catalog.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="$PWD/.venv/bin"
WORK="${HUBD_DEMO_DIR:-$PWD/.demo}"
rm -rf "$WORK"
mkdir -p "$WORK"
export HF_HOME="$WORK/hf-home" HF_HUB_DISABLE_TELEMETRY=1
unset HF_TOKEN HF_HUB_OFFLINE HF_ENDPOINT HUBD_ENDPOINT HUBD_CATALOG_URL HUBD_STORE \
    HUBD_POLICY || true
PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null || true' EXIT

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }
wait_for() {  # FILE PID: the URL a background server writes once it listens
    for _ in $(seq 200); do [ -s "$1" ] && return 0; kill -0 "$2" || break; sleep 0.1; done
    echo "demo: server did not start" >&2
    exit 1
}

gen() { "$BIN/python" -m tests.support generate "$@"; }
gen tiny-model "$WORK/repos/acme/tiny-llama"
gen tiny-lora "$WORK/repos/acme/tiny-llama-lora" --base acme/tiny-llama
gen tiny-gguf "$WORK/repos/acme/tiny-llama-GGUF" --base acme/tiny-llama
gen tiny-gguf-lora "$WORK/repos/acme/tiny-llama-gguf-lora" --base acme/tiny-llama-GGUF
REPOS=(acme/tiny-llama acme/tiny-llama-lora acme/tiny-llama-GGUF acme/tiny-llama-gguf-lora)
SERVE=()
for r in "${REPOS[@]}"; do SERVE+=(--repo "$r=$WORK/repos/$r"); done
"$BIN/python" -m tests.support serve "${SERVE[@]}" --port-file "$WORK/hub-url" \
    >"$WORK/hub.log" 2>&1 &
PIDS+=($!)
wait_for "$WORK/hub-url" "${PIDS[-1]}"
HUB="$(cat "$WORK/hub-url")"
echo "stand-in for huggingface.co on loopback: $HUB"

echo; echo "== node A mirrors from the Hub and serves as a peer"
export HUBD_HOME="$WORK/node-a" HUBD_NODE_NAME=node-a
step "$BIN/hubd" mirror acme/tiny-llama-lora --with-base --endpoint "$HUB"
step "$BIN/hubd" mirror acme/tiny-llama-gguf-lora --with-base --endpoint "$HUB" --quiet
"$BIN/hubd" daemon --port 0 --url-file "$WORK/peer-url" 2>"$WORK/peer.log" &
PIDS+=($!)
wait_for "$WORK/peer-url" "${PIDS[-1]}"
PEER="$(cat "$WORK/peer-url")"

echo; echo "== node B trusts A's key, requires it for acme/*, mirrors from peer A ($PEER)"
"$BIN/hubd" keys show --public >"$WORK/node-a.pub"
export HUBD_HOME="$WORK/home" HUBD_NODE_NAME=node-b
step "$BIN/hubd" trust add node-a "$WORK/node-a.pub"
printf '[[rules]]\nrepo = "acme/*"\nsigners = ["node-a"]\n' >"$HUBD_HOME/trust/policy.toml"
step "$BIN/hubd" mirror acme/tiny-llama-lora --with-base --endpoint "$PEER"
step "$BIN/hubd" mirror acme/tiny-llama-gguf-lora --with-base --endpoint "$PEER"
step "$BIN/hubd" mirror acme/tiny-llama --endpoint "$PEER"
step "$BIN/hubd" verify --signatures
step "$BIN/hubd" provenance acme/tiny-llama-lora
step "$BIN/hubd" ls
step "$BIN/hubd" audit
step "$BIN/hubd" run acme/tiny-llama -p "Why is drinking water so healthy?" \
    || true  # safetensors only: hubd names the GGUF quantization to run instead
step "$BIN/hubd" run --lora acme/tiny-llama-gguf-lora -p "Why is drinking water so healthy?" \
    --max-tokens 16

echo; echo "== node B's web catalog (the pages people browse; each has a JSON twin)"
"$BIN/hubd" daemon --port 0 --url-file "$WORK/web-url" 2>"$WORK/web.log" &
PIDS+=($!)
wait_for "$WORK/web-url" "${PIDS[-1]}"
WEB="$(cat "$WORK/web-url")"
"$BIN/python" - "$WEB/ui/models/acme/tiny-llama-lora?format=json" <<'PY'
import json, sys, urllib.request
page = json.load(urllib.request.urlopen(sys.argv[1], timeout=60))
license, lineage = page["license"], ", ".join(a["repo"] for a in page["lineage"])
print(f"{page['repo']}: {license['spdx']} ({license['class']}), signed by "
      f"{', '.join(page['signatures']['signers'])}; built on {lineage}")
PY
echo "web catalog: $WEB/ui/  model page: $WEB/ui/models/acme/tiny-llama-lora"
echo "  (the demo stops it; to browse: HUBD_HOME=$HUBD_HOME $BIN/hubd daemon --port 8080)"
echo
echo "demo: ok (node B: $HUBD_HOME, peer A: $WORK/node-a)"
