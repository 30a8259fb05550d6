"""Int8 copies of vector tables, for full scans.

A text search reads every product's text vector and every photo's shared-space vector. In float32,
at 19k products, that is 58 MB per query: more than the 32 MB L3 cache of our machines, so each
scan waits on memory. In int8 it is 15 MB. ONNX Runtime's integer matrix product (VNNI on recent
x86) then scans 19k x 384 in 0.2 ms instead of 1.7 ms.

The scores are approximate: per row, the error is a few thousandths of a cosine (7-bit codes;
`tests/test_store_and_scoring.py` bounds it). The searcher ranks with them, then re-scores the best
candidates exactly from the float32 table (`vitrine.search.searcher`).

Codes use 7 bits (-63..63), not 8: without VNNI, the AVX2 kernel adds pairs of u8 x s8 products in
int16, which 8-bit codes can overflow (2 x 255 x 127 > 32767).
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from vitrine.arrays import Array
from vitrine.index.mapped import row_blocks

ROW_LEVELS = 63
QUERY_LEVELS = 127
QUERY_ZERO = 128

_session: Any = None
_session_lock = threading.Lock()


def _matmul_session() -> Any:
    """One ONNX Runtime session for every table: uint8 (1, d) x int8 (d, n) -> int32 (1, n)."""
    global _session
    with _session_lock:
        if _session is None:
            import onnxruntime as ort
            from onnx import TensorProto, helper

            graph = helper.make_graph(
                [helper.make_node("MatMulInteger", ["query", "codes"], ["dots"])], "int8_scan",
                [helper.make_tensor_value_info("query", TensorProto.UINT8, [1, "d"]),
                 helper.make_tensor_value_info("codes", TensorProto.INT8, ["d", "n"])],
                [helper.make_tensor_value_info("dots", TensorProto.INT32, [1, "n"])])
            model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
            model.ir_version = 8
            options = ort.SessionOptions()
            # One thread per scan: a scan takes a fraction of a millisecond, and concurrent requests
            # already keep the cores busy.
            options.intra_op_num_threads = 1
            options.inter_op_num_threads = 1
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            _session = ort.InferenceSession(model.SerializeToString(), options,
                                            providers=["CPUExecutionProvider"])
        return _session


class QuantizedTable:
    """A (n, d) float table as int8 codes with a scale per row; `scores(q)` approximates `table @ q`."""

    def __init__(self, table: Array) -> None:
        self.size, self.dim = table.shape
        self.row_scale = np.empty(self.size, dtype=np.float32)
        self.codes = np.empty((self.dim, self.size), dtype=np.int8)  # (d, n): the product reads it row by row
        # The query is sent as uint8 with a zero point of 128; this undoes the offset per row.
        self.row_offset = np.empty(self.size, dtype=np.int32)
        for start, block in row_blocks(table):  # a block's temporaries at a time, not the table's
            block = np.asarray(block, dtype=np.float32)
            end = start + len(block)
            scale = (np.maximum(np.abs(block).max(axis=1), 1e-12) / ROW_LEVELS).astype(np.float32)
            codes = np.rint(block / scale[:, None]).astype(np.int8)
            self.row_scale[start:end] = scale
            self.codes[:, start:end] = codes.T
            self.row_offset[start:end] = QUERY_ZERO * codes.astype(np.int32).sum(axis=1)

    @classmethod
    def from_parts(cls, codes: Array, row_scale: Array, row_offset: Array) -> QuantizedTable:
        """A table saved before (its (d, n) codes, scales and offsets; memory-mapped arrays work)."""
        table = cls.__new__(cls)
        table.dim, table.size = codes.shape
        table.codes, table.row_scale, table.row_offset = codes, row_scale, row_offset
        return table

    @property
    def nbytes(self) -> int:
        return int(self.codes.nbytes + self.row_scale.nbytes + self.row_offset.nbytes)

    def scores(self, query: Array) -> Array:
        query = np.asarray(query, dtype=np.float32)
        peak = float(np.abs(query).max()) if query.size else 0.0
        if self.size == 0 or peak == 0.0:
            return np.zeros(self.size, dtype=np.float32)
        query_scale = peak / QUERY_LEVELS
        code = (np.rint(query / query_scale) + QUERY_ZERO).astype(np.uint8)[None, :]
        dots = _matmul_session().run(None, {"query": code, "codes": self.codes})[0][0]
        scores: Array = (dots - self.row_offset).astype(np.float32) * (self.row_scale * np.float32(query_scale))
        return scores


class GraphCodes:
    """The 8-bit codes an HNSW graph over 8-bit codes (`faiss.IndexHNSWSQ`, QT_8bit) keeps for its
    vectors, read in place as an (n, d) table: `scores(q, rows)` approximates `table[rows] @ q`.

    Above the exact limit, the searcher's first pass scores the graphs' candidates (and a filter's
    products) from these rather than from the float32 tables: the graph already holds them (a quarter
    of the float32 bytes), so a search touches one copy of each vector, not two. The error is that of
    the graph's own distances, about 4e-4 of a cosine (max 1.5e-3 at a million products); the page is
    re-scored exactly afterwards.
    """

    # Rows decoded at a time: a block of float32 (6 MB) stays in the cache for the product that reads it;
    # 56k rows took 15 ms in blocks of 65k, 7 ms in blocks of 4k (of which 5 ms gather the codes).
    CHUNK = 4096

    def __init__(self, index: Any) -> None:
        import faiss

        storage = faiss.downcast_index(index.storage)
        if not isinstance(storage, faiss.IndexScalarQuantizer) or storage.sq.qtype != faiss.ScalarQuantizer.QT_8bit:
            raise TypeError(f"not a graph over 8-bit codes: {type(storage).__name__}")
        self._index = index  # the codes live in its memory (or its mapping): keep it alive with them
        self.size, self.dim = int(storage.ntotal), int(storage.d)
        self.codes = faiss.rev_swig_ptr(storage.codes.data(), self.size * self.dim).reshape(self.size, self.dim) \
            if self.size else np.zeros((0, self.dim), dtype=np.uint8)
        trained = faiss.vector_to_array(storage.sq.trained).astype(np.float32)
        # faiss decodes component i of code c as vmin[i] + (c + 0.5) / 255 * vdiff[i]
        self.vmin, self.step = trained[: self.dim], trained[self.dim:] / 255

    def __len__(self) -> int:
        return self.size

    def scores(self, query: Array, rows: Array) -> Array:
        query = np.asarray(query, dtype=np.float32)
        weights = query * self.step
        constant = np.float32(query @ (self.vmin + 0.5 * self.step))
        rows = np.asarray(rows, dtype=np.int64)
        out = np.empty(len(rows), dtype=np.float32)
        for start in range(0, len(rows), self.CHUNK):
            block = self.codes[rows[start:start + self.CHUNK]]
            out[start:start + len(block)] = block.astype(np.float32) @ weights + constant
        return out
