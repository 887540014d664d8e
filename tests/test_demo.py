"""`make demo` keeps working: the demo script end to end, in a temporary directory."""

import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


@pytest.mark.slow
def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HUBD_", "HF_"))}
    env["HUBD_DEMO_DIR"] = str(tmp_path / "demo")
    result = subprocess.run(
        ["bash", str(ROOT / "demo" / "demo.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "#1 http" in out and "-> node-b" in out
    assert "SLSA statement #0 by urn:hubd:node:node-a (node-a)" in out
    assert "signed by: node, node-a" in out and "may be used" in out
    assert "all ok" in out and "compliant" in out
    assert "GGUF quantizations of it in the catalog: acme/tiny-llama-GGUF" in result.stderr
    assert "acme/tiny-llama-lora: Apache-2.0 (osi-open-source), signed by node, node-a" in out
    assert re.search(r"web catalog: http://127\.0\.0\.1:\d+/ui/", out)
    assert out.rstrip().endswith(f"peer A: {tmp_path / 'demo' / 'node-a'})")
