"""Progress bars of counts (photos, bytes) on the terminal's stderr; none for JSON output, a pipe or
--no-progress."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

Progress = Callable[[int, int], None]


@contextmanager
def count_bar(enabled: bool, unit: str, *, unit_scale: bool = False) -> Iterator[Progress | None]:
    """Yields `progress(done, total)` that moves a bar, or None when there is no bar to show."""
    if not enabled or not sys.stderr.isatty():
        yield None
        return
    from tqdm import tqdm

    bar = tqdm(total=0, unit=unit, unit_scale=unit_scale, dynamic_ncols=True, file=sys.stderr)

    def progress(done: int, total: int) -> None:
        bar.total, bar.n = max(total, done), done
        bar.refresh()

    try:
        yield progress
    finally:
        bar.close()
