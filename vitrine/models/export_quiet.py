"""Exporting models through torch prints and warns a lot; none of it may reach stdout (it would
corrupt `--json` output), so export runs inside this guard."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from collections.abc import Iterator


@contextlib.contextmanager
def quiet_export() -> Iterator[None]:
    noise = io.StringIO()
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    previous = logging.getLogger("transformers").level
    logging.getLogger("transformers").setLevel(logging.ERROR)
    root = logging.getLogger()
    root_level = root.level
    root.setLevel(logging.ERROR)  # onnxruntime's quantiser warns through the root logger
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(noise), contextlib.redirect_stderr(noise):
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.getLogger("transformers").setLevel(previous)
        root.setLevel(root_level)
