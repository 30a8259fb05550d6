"""Structured logs: one JSON object per line on stderr, with any `extra=` fields kept."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import sys
import tempfile
import time
from collections.abc import Iterator

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: int = logging.WARNING) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("httpx", "httpcore", "sentence_transformers", "transformers", "torch"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


# What MediaPipe's C++ and TensorFlow Lite print of themselves: their info and warning lines.
NATIVE_CHATTER = re.compile(
    r"^(INFO: Created TensorFlow Lite|WARNING: All log messages before absl::InitializeLog|[IW]\d{4} \d\d:\d\d:\d\d)")


@contextlib.contextmanager
def native_chatter_logged(logger: logging.Logger) -> Iterator[None]:
    """Native libraries write their own log lines straight to file descriptor 2, between the JSON lines (and
    under a CLI's table). While this runs, that descriptor goes to a temporary file. Their info and warning lines
    are then logged at debug level; any other line is written back to stderr, as it came."""
    sys.stderr.flush()
    with contextlib.ExitStack() as stack:
        try:
            captured = stack.enter_context(tempfile.TemporaryFile())
            saved = os.dup(2)
        except OSError:  # no temporary file or no descriptor 2: leave stderr as it is
            captured = None
        if captured is None:
            yield
            return
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            for line in captured.read().decode(errors="replace").splitlines():
                if NATIVE_CHATTER.match(line):
                    logger.debug("native library: %s", line)
                elif line:
                    sys.stderr.write(line + "\n")
            sys.stderr.flush()
