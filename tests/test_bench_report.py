"""`make bench`'s report: a real (small) benchmark run writes bench/results.json in the
report's schema, and the table prints every figure (the numbers are not checked here)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from report import Report  # noqa: E402


def test_a_benchmark_writes_the_report_and_the_table_shows_it(tmp_path: Path) -> None:
    results = tmp_path / "results.json"
    env = {k: v for k, v in os.environ.items() if k != "HUBD_TEST_PG_URL"}  # SQLite only
    env["HUBD_BENCH_RESULTS"] = str(results)
    bench = [sys.executable, str(ROOT / "bench" / "hub_listing.py"), "--repos", "300"]
    subprocess.run([*bench, "--runs", "1"], env=env, check=True, capture_output=True, timeout=300)
    report = Report.model_validate_json(results.read_text())
    assert report.machine.cpus >= 1 and report.machine.python
    names = [f.name for f in report.figures]
    assert len(names) == len(set(names)) == 11 and all(
        f.bench == "hub_listing" for f in report.figures
    )
    for figure in report.figures:
        assert figure.reference == "target" and figure.unit == "ms"
        assert abs(figure.ratio - figure.value / figure.reference_value) < 1e-9
        assert figure.met == (figure.ratio <= 1.0)
    table = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "report.py"), "--table"],
        env=env, check=True, capture_output=True, text=True, timeout=60,
    ).stdout  # fmt: skip
    assert all(name in table for name in names)
    assert table.rstrip().endswith("missed their target")
