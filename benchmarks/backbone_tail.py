"""Does fine-tuning the last blocks of EfficientNet-Lite0 (with the heads) lift image-only retrieval?

The CPU design issue 12 suggests: the frozen early blocks run once through ONNX Runtime and their
activations are kept (the photo and its mirror image, float16); the last blocks (13-15), the head
convolution and the fashion heads are then trained on them in eager PyTorch with the base recipe's
loss. Batch-norm statistics stay frozen. Uses the split collections of `fashion_model.py` (run it
first) and reports, after each epoch, image-only MRR of the ground-truth queries and title -> photo
R@10 on the hm and fpi test splits, scored the same way for the frozen baseline.

    python benchmarks/backbone_tail.py extract          # ~3.5 min: activations of every catalog photo
    python benchmarks/backbone_tail.py frozen --epochs 17
    python benchmarks/backbone_tail.py tune --epochs 8 --tail-lr 3e-4   # ~2.5 min an epoch on 2 cores
    python benchmarks/backbone_tail.py export tune.pt   # the tuned tail into the package (float16)
    python benchmarks/backbone_tail.py extract --cut 11  # deeper: blocks 11-15 trained (1.7 GB of activations)

`export` writes the tail of a tuned state as the packaged weights of the `efficientnet-lite0-fashion`
image model; its base heads are then trained on its features with `vitrine train --base`.
"""

from __future__ import annotations

import argparse
import copy
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from common import DATA
from fashion_model import GT, HOME, bench_settings

from vitrine.engine import Engine
from vitrine.models.image_encoder import _torch_feature_model
from vitrine.models.imaging import decode_image, to_model_input
from vitrine.models.registry import image_model_spec
from vitrine.models.training import TrainingData, _view_weights, collect, describes_matrix, holdout_mask
from vitrine.search.evaluation import GroundTruth

WORK = Path("/tmp/vitrine-backbone")
CUT = 13  # blocks [0, CUT) frozen: their output is 192 x 7 x 7 (block 11's input is 112 x 14 x 14)
SPEC = image_model_spec("efficientnet-lite0")


def acts_path(cut: int) -> Path:
    return WORK / ("acts.npy" if cut == CUT else f"acts{cut}.npy")


def extract(cut: int = CUT) -> None:
    import hashlib

    import onnxruntime as ort
    import torch

    backbone = _torch_feature_model(SPEC).backbone.eval()

    class Front(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.backbone = backbone  # a submodule, so that the export reads its weights as parameters

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.backbone._swish(self.backbone._bn0(self.backbone._conv_stem(x)))
            for block in self.backbone._blocks[:cut]:
                x = block(x)
            return x

    WORK.mkdir(parents=True, exist_ok=True)
    onnx_path = WORK / f"front{cut}.onnx"
    with torch.no_grad():
        torch.onnx.export(Front().eval(), (torch.zeros(2, 3, 224, 224),), str(onnx_path), input_names=["pixels"],
                          output_names=["act"], dynamic_axes={"pixels": {0: "b"}, "act": {0: "b"}},
                          opset_version=17, dynamo=False)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    import csv

    photos: dict[str, Path] = {}
    for catalog in ("hm", "fpi", "luma"):
        with (DATA / catalog / "catalog.csv").open(newline="") as fh:
            for row in csv.DictReader(fh):
                for ref in filter(None, (row.get("image") or row.get("images") or "").split("|")):
                    path = DATA / catalog / ref.strip()
                    if path.is_file():
                        photos.setdefault(hashlib.sha256(path.read_bytes()).hexdigest(), path)
    shas, paths = list(photos), list(photos.values())
    with torch.no_grad():
        shape = tuple(Front()(torch.zeros(1, 3, 224, 224)).shape[1:])
    acts = np.lib.format.open_memmap(acts_path(cut), mode="w+", dtype=np.float16, shape=(len(paths), 2, *shape))
    started = time.time()
    for start in range(0, len(paths), 32):
        pixels = np.stack([to_model_input(decode_image(p.read_bytes(), max_pixels=50_000_000, draft_px=224),
                                          size_px=224, mean=SPEC.mean, std=SPEC.std) for p in paths[start:start + 32]])
        both = np.ascontiguousarray(np.concatenate([pixels, pixels[:, :, :, ::-1]]), dtype=np.float32)
        out = session.run(None, {"pixels": both})[0]
        acts[start:start + len(pixels), 0], acts[start:start + len(pixels), 1] = out[:len(pixels)], out[len(pixels):]
    acts.flush()
    (WORK / "shas.txt").write_text("\n".join(shas) + "\n")
    print(f"{len(paths)} photos in {time.time() - started:.0f} s")


def train(mode: str, epochs: int, tail_lr: float, start: str = "frozen.pt", out: str = "", cut: int = CUT) -> None:
    import torch
    from torch import nn

    torch.manual_seed(0)
    torch.set_num_threads(2)
    rng = np.random.default_rng(0)
    acts = np.load(acts_path(cut))
    sha_index = {s: i for i, s in enumerate((WORK / "shas.txt").read_text().split())}
    engine = Engine(bench_settings(HOME))
    backbone = _torch_feature_model(SPEC).backbone

    def load(names: list[str]) -> tuple[TrainingData, np.ndarray]:
        data = collect([engine.store(n) for n in names], engine.text_encoder)
        shas = []
        for name in names:
            with sqlite3.connect(HOME / "collections" / name / "store.sqlite") as db:
                shas += [s for (s,) in db.execute("SELECT sha256 FROM images ORDER BY product_row, position")]
        return data, np.asarray([sha_index[s] for s in shas])

    class Model(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.blocks = nn.ModuleList(copy.deepcopy(backbone._blocks[cut:]))
            self.head, self.bn = copy.deepcopy(backbone._conv_head), copy.deepcopy(backbone._bn1)
            self.drop = nn.Dropout(0.1)
            self.image_in, self.image_out = nn.Linear(1280 + 48, 1024), nn.Linear(1024, 384)
            self.text = nn.Linear(384, 384)
            nn.init.zeros_(self.text.weight)
            nn.init.zeros_(self.text.bias)
            self.logit_scale = nn.Parameter(torch.tensor(float(np.log(1 / 0.07))))

        def pooled(self, x: torch.Tensor) -> torch.Tensor:
            for block in self.blocks:
                x = block(x)
            return nn.functional.relu6(self.bn(self.head(x))).mean((2, 3))

        def image(self, pooled: torch.Tensor, colour: torch.Tensor) -> torch.Tensor:
            cnn = nn.functional.normalize(torch.sqrt(pooled.clamp_min(1e-8)), dim=-1)  # as image_search_vectors
            x = torch.cat([cnn, torch.sqrt(colour.clamp_min(0))], 1)
            hidden = nn.functional.gelu(self.image_in(self.drop(x)), approximate="tanh")
            return nn.functional.normalize(self.image_out(self.drop(hidden)), dim=-1)

        def texts(self, t: torch.Tensor) -> torch.Tensor:
            return nn.functional.normalize(t + self.text(t), dim=-1)

    model = Model()
    tail = [*model.blocks.parameters(), *model.head.parameters(), *model.bn.parameters()]

    def pooled_of(rows: np.ndarray, view: int = 0) -> torch.Tensor:
        with torch.no_grad():
            return torch.cat([model.pooled(torch.from_numpy(acts[rows[s:s + 512], view].astype(np.float32)))
                              for s in range(0, len(rows), 512)])

    train_data, train_act = load(["fpi-train", "hm-train", "luma-train"])
    tests = {c: load([f"{c}-test"]) for c in GT}
    gts = {c: GroundTruth.load(GT[c]) for c in GT}
    ids = {c: engine.store(f"{c}-test").load_vectors([]).ids for c in GT}
    titles = {c: [p.title for p in engine.store(f"{c}-test").get_products(ids[c])] for c in GT}
    query_vectors = {c: torch.from_numpy(engine.text_encoder.encode([q for q, _ in gts[c].text_queries])) for c in GT}
    title_vectors = {c: torch.from_numpy(engine.text_encoder.encode(titles[c])) for c in GT}

    def evaluate() -> dict[str, Any]:
        model.eval()
        out: dict[str, Any] = {}
        with torch.no_grad():
            for c, (data, act) in tests.items():
                images = model.image(pooled_of(act), torch.from_numpy(data.features[:, -48:].copy()))
                owner = torch.from_numpy(data.image_product)

                def per_product(q: torch.Tensor, data: TrainingData = data, images: torch.Tensor = images,
                                owner: torch.Tensor = owner) -> np.ndarray:
                    scores = torch.full((len(q), data.products), -9.0)
                    return scores.scatter_reduce(1, owner.expand(len(q), -1), q @ images.T, "amax").numpy()

                position = {p: i for i, p in enumerate(ids[c])}
                ranks = []
                for (_, relevant), row in zip(gts[c].text_queries, per_product(model.texts(query_vectors[c])),
                                              strict=True):
                    found = [position[r] for r in relevant if r in position]
                    if found:
                        ranks.append(1.0 / ((row > row[found].max()).sum() + 1))
                scores = per_product(model.texts(title_vectors[c]))
                own = scores[np.arange(len(scores)), np.arange(len(scores))]
                out[c] = {"image_mrr": round(float(np.mean(ranks)), 4), "queries": len(ranks),
                          "title_r10": round(float(np.mean((scores > own[:, None]).sum(1) < 10)), 4)}
        return out

    held = holdout_mask(train_data.groups, 0.1, 0)
    has_image = np.zeros(train_data.products, bool)
    has_image[train_data.image_product] = True
    trainable = np.flatnonzero(~held & has_image & np.asarray([bool(v) for v in train_data.views]))
    images_of: list[list[int]] = [[] for _ in range(train_data.products)]
    for i, p in enumerate(train_data.image_product):
        images_of[p].append(i)
    view_weights = [_view_weights(train_data, p, 3.0) for p in range(train_data.products)]
    captions = torch.from_numpy(train_data.caption_vectors.astype(np.float32))
    colours = torch.from_numpy(train_data.features[:, -48:].copy())
    heads = [p for n, p in model.named_parameters() if n.split(".")[0] not in ("blocks", "head", "bn")]
    if mode == "tune":
        state = torch.load(WORK / start)
        blocks = sum(1 for k in state if k.startswith("blocks.") and k.endswith("._project_conv.weight"))
        if blocks != len(model.blocks):
            # heads trained on another cut's frozen features: the same ImageNet blocks, so keep the heads only
            state = {k: v for k, v in state.items() if k.split(".")[0] not in ("blocks", "head", "bn")}
        model.load_state_dict(state, strict=False)
        groups = [{"params": tail, "lr": tail_lr}, {"params": heads, "lr": 3e-4}]
    else:
        for p in tail:
            p.requires_grad_(False)
        groups = [{"params": heads, "lr": 1e-3}]
        frozen = [pooled_of(train_act, view) for view in (0, 1)]
    optimiser = torch.optim.AdamW(groups, weight_decay=0.01)
    print("start", evaluate(), flush=True)
    for epoch in range(1, epochs + 1):
        started, total, order = time.time(), 0.0, rng.permutation(trainable)
        for s in range(0, len(order), 512):
            batch = order[s:s + 512]
            image_ids = np.asarray([rng.choice(images_of[p]) for p in batch])
            views = rng.integers(0, 2, len(batch))
            caption_ids = np.asarray([rng.choice(train_data.views[p], p=view_weights[p]) for p in batch])
            model.train()
            for module in (model.blocks, model.head, model.bn):
                module.eval()  # batch-norm statistics stay as ImageNet left them
            if mode == "tune":
                pooled = model.pooled(torch.from_numpy(acts[train_act[image_ids], views].astype(np.float32)))
            else:
                pooled = torch.where(torch.from_numpy(views)[:, None] == 0, frozen[0][image_ids], frozen[1][image_ids])
            logits = model.logit_scale.exp().clamp(max=100) * model.image(pooled, colours[image_ids]) @ \
                model.texts(captions[caption_ids]).T
            describes = torch.from_numpy(describes_matrix(train_data.views, batch, caption_ids))
            loss = (nn.functional.cross_entropy(logits, describes / describes.sum(1, keepdim=True))
                    + nn.functional.cross_entropy(logits.T, describes.T / describes.T.sum(1, keepdim=True))) / 2
            optimiser.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            optimiser.step()
            total += float(loss.item())
        print(epoch, round(total, 2), evaluate(), f"{time.time() - started:.0f} s", flush=True)
        torch.save(model.state_dict(), WORK / (out or f"{mode}.pt"))


def export(state: str) -> None:
    """The tuned blocks, head convolution and batch norm of `state` as the fashion model's packaged tail."""
    import torch

    from vitrine.models.image_encoder import tail_modules
    from vitrine.models.registry import PACKAGED_MODELS

    tuned = image_model_spec("efficientnet-lite0-fashion")
    assert tuned.tuned_tail is not None and tuned.tuned_from_block == CUT
    saved = torch.load(WORK / state)
    tail = {k: v.numpy().astype(np.float16 if v.is_floating_point() else np.int64) for k, v in saved.items()
            if k.split(".")[0] in ("blocks", "head", "bn")}
    expected = tail_modules(_torch_feature_model(SPEC).backbone, CUT).state_dict()
    assert set(tail) == set(expected), "the state's tail does not name the backbone's tail"
    target = PACKAGED_MODELS / tuned.tuned_tail
    np.savez_compressed(target, **tail)  # type: ignore[arg-type]
    print(f"{target}: {sum(v.size for v in tail.values()):,} numbers, {target.stat().st_size:,} bytes")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=("extract", "frozen", "tune", "export"))
    parser.add_argument("state", nargs="?", default="tune.pt", help="export: the tuned state in the work folder")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--tail-lr", type=float, default=1e-4)
    parser.add_argument("--start", default="frozen.pt", help="tune from this state (a file in the work folder)")
    parser.add_argument("--out", default="", help="save each epoch here (default: <mode>.pt)")
    parser.add_argument("--cut", type=int, default=CUT, help="train blocks from this one on (extract for it first)")
    args = parser.parse_args()
    if args.mode == "extract":
        extract(args.cut)
    elif args.mode == "export":
        export(args.state)
    else:
        train(args.mode, args.epochs, args.tail_lr, args.start, args.out, args.cut)


if __name__ == "__main__":
    sys.exit(main())
