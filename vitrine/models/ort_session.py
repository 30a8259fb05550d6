"""One place that opens ONNX Runtime sessions, with the threading every Vitrine model uses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vitrine.errors import ModelUnavailable


def open_session(path: Path, *, threads: int) -> Any:
    """A CPU session with `threads` intra-op threads that sleep instead of spinning when idle.

    Spinning threads burn the cores that image decoding and the other model need: on 2 cores,
    turning it off raised ingest from 115 to 142 images/s (docs/benchmarks.md).
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own untyped errors
        raise ModelUnavailable(f"cannot load model {path}: {exc}") from exc
