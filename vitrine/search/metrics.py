"""Retrieval metrics as pure functions over ranked ids and relevant sets."""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np


def recall_at(ranked: Sequence[str], relevant: Collection[str], k: int) -> float:
    """Share of the relevant items found in the top k."""
    return len(set(ranked[:k]) & set(relevant)) / len(relevant) if relevant else 0.0


def hit_at(ranked: Sequence[str], relevant: Collection[str], k: int) -> float:
    """1 if any relevant item is in the top k (recall@k when there is one relevant item)."""
    return float(bool(set(ranked[:k]) & set(relevant)))


def precision_at(ranked: Sequence[str], relevant: Collection[str], k: int) -> float:
    return len(set(ranked[:k]) & set(relevant)) / k


def reciprocal_rank(ranked: Sequence[str], relevant: Collection[str]) -> float:
    wanted = set(relevant)
    return next((1.0 / (i + 1) for i, item in enumerate(ranked) if item in wanted), 0.0)


def ndcg_at(ranked: Sequence[str], relevant: Collection[str], k: int) -> float:
    wanted = set(relevant)
    gains = [1.0 / np.log2(i + 2) for i, item in enumerate(ranked[:k]) if item in wanted]
    ideal = sum(1.0 / np.log2(i + 2) for i in range(min(k, len(wanted))))
    return float(sum(gains) / ideal) if ideal else 0.0


def summarise(runs: Sequence[tuple[Sequence[str], Collection[str]]]) -> dict[str, float]:
    """Mean metrics over (ranked, relevant) pairs, with the names `vitrine eval` prints."""
    if not runs:
        return {}
    metrics = {
        "r@1": [recall_at(r, g, 1) for r, g in runs],
        "r@10": [recall_at(r, g, 10) for r, g in runs],
        "hit@1": [hit_at(r, g, 1) for r, g in runs],
        "hit@10": [hit_at(r, g, 10) for r, g in runs],
        "mrr": [reciprocal_rank(r, g) for r, g in runs],
        "p@10": [precision_at(r, g, 10) for r, g in runs],
        "ndcg@10": [ndcg_at(r, g, 10) for r, g in runs],
    }
    return {name: float(np.mean(values)) for name, values in metrics.items()} | {"queries": float(len(runs))}
