"""Shared set-up for the benchmark scripts: where data and the benchmark home are, and the machine."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from vitrine.settings import Settings  # noqa: E402

DATA = Path(os.environ.get("VITRINE_DATA_DIR", REPO.parent / "shared" / "data")).resolve()
BENCH_HOME = Path(os.environ.get("VITRINE_BENCH_HOME", "/tmp/vitrine-bench"))
RESULTS = REPO / "benchmarks" / "results"


def bench_settings(home: Path = BENCH_HOME, **overrides: Any) -> Settings:
    return Settings(home=home, data_dir=DATA, **overrides)


def machine() -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    import onnxruntime

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(memory_gb, 1),
        "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__,
        "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                                 text=True).stdout.strip(),
    }


def save(name: str, result: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **result}, indent=2) + "\n")
    return path


def percentile(values: list[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(np.asarray(values), q))
