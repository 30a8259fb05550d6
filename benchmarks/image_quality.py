"""Image -> image retrieval on H&M variant groups (the colourways of one product): for each photo of
a group with 2+ members, are the other colourways ranked high among all H&M photos? Compares plain
L2-normalised CNN features with the power-normalised ones search uses. Needs the hm collection
(run ingest_throughput.py first).

    python benchmarks/image_quality.py [--queries 1000]
"""

from __future__ import annotations

import argparse
import csv
import random

import numpy as np
from common import DATA, bench_settings, save

from vitrine.engine import Engine
from vitrine.search.metrics import summarise
from vitrine.search.scoring import image_search_vectors, normalise_rows, top_indices


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--queries", type=int, default=1000)
    args = parser.parse_args()
    with (DATA / "hm" / "catalog.csv").open(newline="") as fh:
        group_of = {r["product_id"]: r["group_id"] for r in csv.DictReader(fh)}
    with Engine(bench_settings()) as engine:
        data = engine.store("hm").load_vectors(())  # the raw features, which search does not keep
    ids = data.ids
    members: dict[str, list[int]] = {}
    for i, pid in enumerate(ids):
        members.setdefault(group_of[pid], []).append(i)
    candidates = [i for i, pid in enumerate(ids) if len(members[group_of[pid]]) > 1]
    queries = random.Random(0).sample(candidates, min(args.queries, len(candidates)))
    results = {}
    for name, vectors in (("l2", normalise_rows(data.image_features)),
                          ("signed_sqrt_l2", image_search_vectors(data.image_features))):
        runs = []
        for q in queries:
            scores = vectors @ vectors[q]
            scores[q] = -np.inf  # the query photo itself is not an answer
            ranked = [ids[i] for i in top_indices(scores, 100)]
            relevant = {ids[i] for i in members[group_of[ids[q]]] if i != q}
            runs.append((ranked, relevant))
        results[name] = {k: round(v, 4) for k, v in summarise(runs).items()}
        print(name, results[name])
    print(f"saved {save('image_quality', {'queries': len(queries), 'results': results})}")


if __name__ == "__main__":
    main()
