"""Writing files so that readers never see half of one, and removing folders so that none is seen half-gone."""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path


def write_atomic(path: Path, data: bytes) -> None:
    """Writes `data` beside `path`, then renames it into place. The temp name is this process's and
    thread's own: threads writing the same file at once (two variants sharing a photo) must not move
    each other's temp file away."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}-{threading.get_ident()}")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def remove_folder(folder: Path) -> None:
    """Renamed at once, so the folder disappears completely even if removal is cut short; its files are
    then removed by a thread of their own (a large collection's take a while: nobody waits for them)."""
    trash = folder.with_name(f".deleted-{folder.name}-{os.getpid()}-{time.time_ns()}")
    try:
        os.replace(folder, trash)
    except FileNotFoundError:
        return
    threading.Thread(target=shutil.rmtree, args=(trash,), kwargs={"ignore_errors": True},
                     name="remove-folder").start()
