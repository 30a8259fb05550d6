"""Runs every benchmark in order (ingest builds the home the others read); results land in
benchmarks/results/*.json and are summarised by hand in docs/benchmarks.md."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

RUNS = [["ingest_throughput.py"], ["catalog_reading.py"], ["query_latency.py"], ["text_quality.py"],
        ["query_understanding.py"], ["suggest_latency.py"], ["image_quality.py"], ["analytics_cost.py"],
        ["reindex_swap.py"],
        ["http_load.py", "--seconds", "12", "--workers", "1"], ["http_load.py", "--seconds", "12", "--workers", "2"]]

for script, *args in RUNS:
    print(f"== {script} {' '.join(args)}", flush=True)
    subprocess.run([sys.executable, str(HERE / script), *args], cwd=HERE, check=True)
