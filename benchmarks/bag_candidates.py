"""Bags in street photos: how far candidate boxes around the hands, scored in two stages, get (not shipped).

A bag has no body region, so shop the look cannot place it from the landmarks as it places a top. This
measures a detector built from what can run here, on the ccp street photos' own split (train / dev, as
`vitrine eval-look`):

1. **Candidates.** Boxes around each person's wrists, elbows and hips: offsets in torso lengths and the
   8 typical bag shapes (k-means on the train bags), about 7,000 a photo.
2. **Stage 1, the segmentation.** A carried bag is mostly "person" pixels that the body's landmarks do
   not explain. Each candidate gets the shares of person, leftover and body pixels inside it and in a
   ring around it (integral images), its offset and shape. A boosted-tree classifier scores them; the
   best 20 after non-maximum suppression go on.
3. **Stage 2, the photo.** Each of the 20 crops is encoded by the built-in image model. Its zero-shot
   shares of the garment groups' words, its colour descriptor, 64 principal components of its CNN
   features and the stage-1 score go into a logistic regression; the photo's best crop is its bag.

Recall and precision at IoU >= 0.5, one bag a photo, at three thresholds (every photo's best crop, the
better half, the best 30%), on dev. Both stages learn from train only.

    python benchmarks/bag_candidates.py      # ~10 min on 2 cores; results/bag_candidates.json
"""

from __future__ import annotations

import io
import json
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from common import DATA, bench_settings, save
from PIL import Image

from vitrine.engine import Engine
from vitrine.models.labels import ZeroShotLabeller
from vitrine.vision.evaluation import DATASET_GROUPS, photo_split
from vitrine.vision.garments import GROUP_WORDS, iou
from vitrine.vision.people import PeopleDetector, Person

HOME = Path("/tmp/vitrine-bags")
NOSE, LS, RS, LE, RE, LW, RW, LH, RH, LK, RK, LA, RA = 0, 11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28
ANCHORS = (LW, RW, LH, RH, LE, RE)
LIMBS = ((LS, LE), (LE, LW), (RS, RE), (RE, RW), (LH, LK), (LK, LA), (RH, RK), (RK, RA))
DX = np.arange(-0.5, 0.51, 0.1)  # candidate centres from an anchor, in torso lengths
DY = np.arange(-0.5, 0.71, 0.1)
SHAPES = 8
TOP = 20  # crops a photo that stage 2 reads
COMPONENTS = 64
QUANTILES = (0.0, 0.5, 0.7)  # thresholds: every photo's best crop, the better half, the best 30%


def torso(lm: np.ndarray) -> float:
    shoulders, hips = (lm[LS][:2] + lm[RS][:2]) / 2, (lm[LH][:2] + lm[RH][:2]) / 2
    return max(float(np.hypot(*(shoulders - hips))), 8.0)


def body_mask(lm: np.ndarray, h: int, w: int) -> np.ndarray:
    """The pixels the landmarks explain: torso, thick limbs, head."""
    m = np.zeros((h, w), np.uint8)

    def p(i: int) -> tuple[int, int]:
        return int(lm[i][0]), int(lm[i][1])

    width = float(np.hypot(*(np.array(p(LS)) - np.array(p(RS))))) + 1
    cv2.fillPoly(m, [np.array([p(LS), p(RS), p(RH), p(LH)], np.int32)], 1)
    for a, b in LIMBS:
        cv2.line(m, p(a), p(b), 1, thickness=max(2, int(0.3 * width)))
    cv2.circle(m, p(NOSE), int(0.6 * width), 1, -1)
    return cv2.dilate(m, np.ones((max(3, int(0.1 * width)),) * 2, np.uint8)).astype(bool)


def learn_shapes(photos: list[dict[str, Any]]) -> np.ndarray:
    """Typical bag sizes in torso lengths: k-means (log space) on the train bags near a hand or hip."""
    sizes = []
    for photo in photos:
        for bag in photo["bags"]:
            centre = np.array([(bag[0] + bag[2]) / 2, (bag[1] + bag[3]) / 2])
            near = [(np.hypot(*(centre - person.landmarks[a][:2])) / torso(person.landmarks), torso(person.landmarks))
                    for person in photo["people"] for a in ANCHORS]
            if near and min(near)[0] < 1.5:
                length = min(near)[1]
                sizes.append([(bag[2] - bag[0]) / length, (bag[3] - bag[1]) / length])
    logs = np.log(np.array(sizes))
    centres = logs[np.random.default_rng(0).choice(len(logs), SHAPES, replace=False)]
    for _ in range(50):
        nearest = np.argmin(((logs[:, None] - centres[None]) ** 2).sum(-1), 1)
        centres = np.array([logs[nearest == k].mean(0) if (nearest == k).any() else centres[k] for k in range(SHAPES)])
    return np.exp(centres)


def candidates(person: Person, shapes: np.ndarray, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Boxes (N, 4) and their stage-1 features (N, 19) for one person."""
    lm = person.landmarks
    length = torso(lm)
    body = body_mask(lm, h, w)
    left = person.mask & ~body
    sums = [cv2.integral(m.astype(np.uint8)) for m in (person.mask, left, body)]
    boxes, rows = [], []
    for anchor_index, anchor in enumerate(ANCHORS):
        ax, ay, visible = lm[anchor]
        if visible < 0.3:
            continue
        for dx in DX:
            for dy in DY:
                for sw, sh in shapes:
                    cx, cy, bw, bh = ax + dx * length, ay + dy * length, sw * length, sh * length
                    x0, y0, x1, y1 = int(cx - bw / 2), int(cy - bh / 2), int(cx + bw / 2), int(cy + bh / 2)
                    if x0 < 0 or y0 < 0 or x1 > w or y1 > h or x1 - x0 < 6 or y1 - y0 < 6:
                        continue
                    pw, ph = (x1 - x0) // 3, (y1 - y0) // 3
                    X0, Y0, X1, Y1 = max(0, x0 - pw), max(0, y0 - ph), min(w, x1 + pw), min(h, y1 + ph)
                    area = (x1 - x0) * (y1 - y0)
                    ring = max((X1 - X0) * (Y1 - Y0) - area, 1)
                    inside = [s[y1, x1] - s[y0, x1] - s[y1, x0] + s[y0, x0] for s in sums]
                    outer = [s[Y1, X1] - s[Y0, X1] - s[Y1, X0] + s[Y0, X0] for s in sums]
                    m, r, b = (v / area for v in inside)
                    ring_m, ring_r = (outer[0] - inside[0]) / ring, (outer[1] - inside[1]) / ring
                    boxes.append((x0, y0, x1, y1))
                    rows.append([m, r, b, ring_m, ring_r, r - ring_r, m - ring_m, dx, dy, abs(dx), sw, sh,
                                 np.log(sw / sh)] + [float(anchor_index == k) for k in range(len(ANCHORS))])
    return np.array(boxes, np.int64).reshape(-1, 4), np.array(rows, np.float32).reshape(-1, 19)


def best_apart(boxes: np.ndarray, scores: np.ndarray, k: int) -> list[int]:
    keep: list[int] = []
    for i in np.argsort(-scores)[:3000]:
        if all(iou(tuple(boxes[i]), tuple(boxes[j])) < 0.5 for j in keep):
            keep.append(int(i))
        if len(keep) >= k:
            break
    return keep


def read_people() -> list[dict[str, Any]]:
    detector = PeopleDetector()
    photos = []
    for entry in json.loads((DATA / "ccp" / "boxes.json").read_text()):
        rgb = np.asarray(Image.open(DATA / "ccp" / entry["image"]).convert("RGB"))
        bags = [b["bbox_xyxy"] for b in entry["boxes"] if DATASET_GROUPS.get(b["label"]) == "bag"]
        photos.append({"image": entry["image"], "split": photo_split(entry["image"]), "bags": bags, "rgb": rgb,
                       "people": detector.detect(rgb)})
    return photos


def measure(photos: list[dict[str, Any]], picks: list[tuple[float, tuple[int, ...]]]) -> dict[str, Any]:
    total = sum(len(p["bags"]) for p in photos)
    out: dict[str, Any] = {"bags": total, "photos": len(photos)}
    for q in QUANTILES:
        threshold = np.quantile([s for s, _ in picks], q)
        chosen = [(box, p["bags"]) for (s, box), p in zip(picks, photos, strict=True) if s >= threshold]
        found = sum(any(iou(box, tuple(g)) >= 0.5 for g in bags) for box, bags in chosen)
        out[f"best_{round(100 * (1 - q))}pct"] = {"recall": round(found / total, 3),
                                                   "precision": round(found / max(len(chosen), 1), 3)}
    return out


def main() -> None:
    from sklearn.decomposition import PCA
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression

    started = time.perf_counter()
    photos = [p for p in read_people() if p["people"]]
    train = [p for p in photos if p["split"] == "train"]
    shapes = learn_shapes(train)
    for photo in photos:
        h, w = photo["rgb"].shape[:2]
        found = [candidates(person, shapes, h, w) for person in photo["people"]]
        photo["boxes"] = np.concatenate([b for b, _ in found])
        photo["x"] = np.concatenate([x for _, x in found])
        photo["iou"] = np.array([max((iou(tuple(b), tuple(g)) for g in photo["bags"]), default=0.0)
                                 for b in photo["boxes"]])
    photos = [p for p in photos if len(p["boxes"])]
    train = [p for p in photos if p["split"] == "train"]
    dev = [p for p in photos if p["split"] == "dev"]
    print(f"candidates: {np.mean([len(p['boxes']) for p in photos]):.0f} a photo "
          f"({time.perf_counter() - started:.0f} s)", flush=True)

    rng = np.random.default_rng(0)
    x, y = [], []
    for p in train:
        positive, negative = np.flatnonzero(p["iou"] >= 0.5), np.flatnonzero(p["iou"] < 0.3)
        negative = rng.choice(negative, min(len(negative), 300), replace=False)
        x += [p["x"][positive], p["x"][negative]]
        y += [np.ones(len(positive)), np.zeros(len(negative))]
    stage1 = HistGradientBoostingClassifier(max_iter=300, learning_rate=0.1, random_state=0)
    stage1.fit(np.vstack(x), np.concatenate(y))

    words = [w for g in GROUP_WORDS for w in GROUP_WORDS[g]] + ["person", "face", "hair", "skin", "street"]
    with Engine(bench_settings(HOME)) as engine:
        labeller = ZeroShotLabeller(engine.labeller(None).heads, engine.text_encoder, {"category": words}, {})
        for photo in photos:
            scores = stage1.predict_proba(photo["x"])[:, 1]
            keep = best_apart(photo["boxes"], scores, TOP)
            blobs = []
            for x0, y0, x1, y1 in photo["boxes"][keep]:
                buffer = io.BytesIO()
                Image.fromarray(photo["rgb"][y0:y1, x0:x1]).save(buffer, "PNG")
                blobs.append(buffer.getvalue())
            arrays = engine.embedder.preprocess_many(blobs)
            raw = engine.embedder.encode_arrays([a for a in arrays if isinstance(a, np.ndarray)])
            shares = []
            for row in raw:
                labels = labeller.label(row, top=len(words))[0]["category"]
                shares.append([sum(x.confidence for x in labels if x.value in GROUP_WORDS[g]) for g in GROUP_WORDS])
            photo["top"] = {"boxes": photo["boxes"][keep], "s1": scores[keep], "iou": photo["iou"][keep],
                            "raw": raw, "shares": np.array(shares)}
    print(f"crops read ({time.perf_counter() - started:.0f} s)", flush=True)

    pca = PCA(COMPONENTS, random_state=0).fit(np.vstack([p["top"]["raw"][:, :-48] for p in train]))

    def second(p: dict[str, Any]) -> np.ndarray:
        t = p["top"]
        rank = np.arange(len(t["s1"]))[:, None] / TOP
        return np.hstack([t["s1"][:, None], np.log(t["s1"][:, None] + 1e-4), t["shares"], rank,
                          t["raw"][:, -48:], pca.transform(t["raw"][:, :-48])])

    x2 = np.vstack([second(p) for p in train])
    y2 = np.concatenate([p["top"]["iou"] >= 0.5 for p in train])
    mean, std = x2.mean(0), x2.std(0) + 1e-6
    stage2 = LogisticRegression(C=0.03, max_iter=3000).fit((x2 - mean) / std, y2)

    results: dict[str, Any] = {"candidates_per_photo": round(float(np.mean([len(p["boxes"]) for p in photos]))),
                               "seconds": round(time.perf_counter() - started)}
    bag_group = list(GROUP_WORDS).index("bag")
    for split, part in (("train", train), ("dev", dev)):
        with_bags = [p for p in part if p["bags"]]
        results[split] = {
            "photos_with_a_bag_reachable_in_top": {
                str(k): round(float(np.mean([(p["top"]["iou"][:k] >= 0.5).any() for p in with_bags])), 3)
                for k in (1, 5, 20)},
        }
        for name, score in (
            ("stage1_only", lambda p: p["top"]["s1"]),
            ("zero_shot_bag_share_only", lambda p: p["top"]["shares"][:, bag_group]),
            ("two_stages", lambda p: stage2.predict_proba((second(p) - mean) / std)[:, 1]),
        ):
            picks = []
            for p in part:
                s = score(p)
                i = int(np.argmax(s))
                picks.append((float(s[i]), tuple(int(v) for v in p["top"]["boxes"][i])))
            results[split][name] = measure(part, picks)
        print(split, results[split], flush=True)
    print(f"saved {save('bag_candidates', results)}")


if __name__ == "__main__":
    main()
