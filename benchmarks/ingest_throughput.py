"""Ingest throughput (images/s) on H&M + Fashion Product Images, next to the encoder-only ceiling
measured in the same run on a sample of the same photos.

Ceilings:
- `encoder_pipeline`: file bytes -> decode/preprocess (thread pool) -> ONNX, the next batch decoded
  while the current one is encoded: the image encoder alone, with no catalog work.
- `onnx_only`: ONNX on already preprocessed arrays: the model's raw speed.
Ingest adds catalog parsing and validation, hashing, the feature cache, text encoding and SQLite.

    python benchmarks/ingest_throughput.py [--sample 1000]
"""

from __future__ import annotations

import argparse
import random
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from common import BENCH_HOME, DATA, bench_settings, save

from vitrine.engine import Engine


def sample_images(n: int) -> list[Path]:
    files = sorted((DATA / "hm" / "images").rglob("*.jpg")) + sorted((DATA / "fpi" / "images").rglob("*.jpg"))
    return random.Random(0).sample(files, min(n, len(files)))


def encoder_pipeline(engine: Engine, files: list[Path]) -> float:
    embedder, size = engine.embedder, engine.settings.batch_size
    batches = [files[i : i + size] for i in range(0, len(files), size)]

    def prepare(batch: list[Path]) -> list[object]:
        return embedder.preprocess_many([f.read_bytes() for f in batch])

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=1) as ahead:
        upcoming = ahead.submit(prepare, batches[0])
        for i in range(len(batches)):
            arrays = upcoming.result()
            if i + 1 < len(batches):
                upcoming = ahead.submit(prepare, batches[i + 1])
            embedder.encode_arrays([a for a in arrays if not isinstance(a, Exception)])  # type: ignore[misc]
    return len(files) / (time.perf_counter() - started)


def onnx_only(engine: Engine, files: list[Path]) -> float:
    arrays = [a for a in engine.embedder.preprocess_many([f.read_bytes() for f in files])
              if not isinstance(a, Exception)]
    started = time.perf_counter()
    engine.embedder.encode_arrays(arrays)  # type: ignore[arg-type]
    return len(arrays) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sample", type=int, default=1000)
    args = parser.parse_args()
    for stale in ("collections", "cache"):
        shutil.rmtree(BENCH_HOME / stale, ignore_errors=True)
    with Engine(bench_settings()) as engine:
        engine.warm()
        files = sample_images(args.sample)
        engine.embedder.encode_arrays(engine.embedder.preprocess_many([f.read_bytes() for f in files[:64]]))
        ceiling = encoder_pipeline(engine, files)
        raw = onnx_only(engine, files)
        print(f"encoder pipeline ceiling: {ceiling:.1f} img/s; ONNX only: {raw:.1f} img/s")
        runs = {}
        for name in ("hm", "fpi"):
            report = engine.ingest(name, DATA / name / "catalog.csv")
            runs[name] = {"images": report.images, "elapsed_s": round(report.elapsed_s, 1),
                          "images_per_s": round(report.images_per_s, 1), "failed": report.failed}
            print(f"ingest {name}: {report.images} images in {report.elapsed_s:.1f} s = "
                  f"{report.images_per_s:.1f} img/s")
        images = sum(r["images"] for r in runs.values())
        rate = images / sum(r["elapsed_s"] for r in runs.values())
        ceiling_after = encoder_pipeline(engine, files)  # the machine may drift: measure on both sides
        best_ceiling = max(ceiling, ceiling_after)
        print(f"ingest overall: {rate:.1f} img/s = {100 * rate / best_ceiling:.0f}% of the encoder pipeline")
        path = save("ingest_throughput", {
            "sample_images": len(files), "threads": engine.settings.threads, "batch_size": engine.settings.batch_size,
            "encoder_pipeline_img_s": round(best_ceiling, 1), "encoder_pipeline_runs": [round(ceiling, 1),
                                                                                         round(ceiling_after, 1)],
            "onnx_only_img_s": round(raw, 1), "ingest": runs, "ingest_img_s": round(rate, 1),
            "ingest_share_of_encoder_pipeline": round(rate / best_ceiling, 3),
        })
        print(f"saved {path}")


if __name__ == "__main__":
    main()
