"""Scattered rows of a memory-mapped snapshot table, read with pread instead of through the mapping.

Touching one row of a mapped file maps the pages around it as well (the kernel's fault-around, 64 KB
whatever `madvise` says). The searcher's exact pass reads a few hundred scattered rows per search, so
at a million products each search mapped 25-50 MB more of the float32 tables, and after a few hundred
searches the process held them whole (3 GB of text and cross-modal vectors). Read with pread, the rows
come from the page cache, shared and evictable, and the process holds only what it asked for.
"""

from __future__ import annotations

import mmap
import os
import weakref
from collections.abc import Iterator
from typing import Any

import numpy as np

from vitrine.arrays import Array

BLOCK_ROWS = 16_384  # rows of a table read at a time by `row_blocks` (32 MB of 512-d float32)
READ_LIMIT = 4096  # rows past which one gather through the mapping beats a system call per row
_PREAD = hasattr(os, "pread")  # not on Windows: rows are read through the mapping there

_held_open: dict[int, int] = {}  # id of a table -> its file, open for as long as the table lives


def keep_open(table: Any) -> None:
    """Opens `table`'s file for `take_rows` until the table is gone. A newer snapshot deletes the older
    one's files while processes still map them; the mapping lives on, and so must reading its rows."""
    if not _whole_mapping(table):
        return
    try:
        fd = os.open(table.filename, os.O_RDONLY)
    except OSError:  # out of descriptors, say: each read opens the file instead
        return
    if hasattr(os, "posix_fadvise"):  # Linux; not macOS
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)  # no read-ahead of the neighbours of a row
    _held_open[id(table)] = fd
    weakref.finalize(table, _close, id(table), fd)


def _close(key: int, fd: int) -> None:
    _held_open.pop(key, None)
    os.close(fd)


def take_rows(table: Any, rows: Array) -> Array:
    """`table[rows]` as a new array; read from the file when `table` is a whole mapped .npy table."""
    rows = np.asarray(rows, dtype=np.int64)
    if not _PREAD or not _whole_mapping(table) or len(rows) > READ_LIMIT or len(rows) == 0:
        return np.asarray(table[rows])
    if rows.min() < 0 or rows.max() >= len(table):
        raise IndexError(f"rows {rows.min()}..{rows.max()} are not all inside a table of {len(table)}")
    row_bytes = table.shape[1] * table.itemsize
    out = np.empty((len(rows), table.shape[1]), dtype=table.dtype)
    buffer = out.data.cast("B")
    held = _held_open.get(id(table))
    fd = held if held is not None else os.open(table.filename, os.O_RDONLY)
    try:
        for i, row in enumerate(rows.tolist()):
            read = os.pread(fd, row_bytes, table.offset + row * row_bytes)  # preadv is not on macOS
            if len(read) != row_bytes:
                raise OSError(f"{table.filename} is shorter than its header says")
            buffer[i * row_bytes:(i + 1) * row_bytes] = read
    finally:
        if held is None:
            os.close(fd)
    return out


def row_blocks(table: Any, rows: int | None = None) -> Iterator[tuple[int, Array]]:
    """(first row, its block) of `table`, `rows` rows at a time. A whole mapped table is read from its file
    into a buffer of one block, so that going through it (to build a graph or int8 codes from the snapshot
    being written) leaves none of it mapped into the process: through the mapping, the process held the
    whole table by the end (2 GB for a million photos)."""
    rows = rows or BLOCK_ROWS
    if not _whole_mapping(table):
        table = np.asarray(table)
        for start in range(0, len(table), rows):
            yield start, table[start:start + rows]
        return
    row_bytes = table.shape[1] * table.itemsize
    with open(table.filename, "rb") as file:
        file.seek(table.offset)
        for start in range(0, len(table), rows):
            block = np.empty((min(rows, len(table) - start), table.shape[1]), dtype=table.dtype)
            if file.readinto(block.data.cast("B")) != len(block) * row_bytes:
                raise OSError(f"{table.filename} is shorter than its header says")
            yield start, block


def _whole_mapping(table: Any) -> bool:
    """A 2-d C-ordered np.memmap over its whole file region (not a slice or view of one, whose
    `offset` would not be where its rows start)."""
    return isinstance(table, np.memmap) and isinstance(table.base, mmap.mmap) and table.ndim == 2 \
        and table.flags.c_contiguous and table.filename is not None
