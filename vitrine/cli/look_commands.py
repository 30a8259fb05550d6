"""`vitrine look` (shop the look for one photo) and `vitrine eval-look` (detection quality)."""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from vitrine.cli.progress import count_bar
from vitrine.engine import Engine

GROUP_COLOURS = {"top": (230, 57, 70), "bottom": (29, 120, 196), "dress": (155, 89, 182),
                 "outerwear": (230, 126, 34), "shoes": (39, 174, 96), "bag": (127, 140, 141)}


def add_parsers(sub: Any) -> None:
    look = sub.add_parser("look", help="shop the look: find the garments in a photo and their closest products")
    look.add_argument("photo", help="path or http(s) URL of a photo of one or more people")
    look.add_argument("--collection", "-c", help="collection to match garments in (none: labels only)")
    look.add_argument("--top-k", "-k", type=int, default=5)
    look.add_argument("--draw", type=Path, metavar="PNG", help="save the photo with the garment boxes drawn")
    look.add_argument("--box", action="append", type=drawn_box, default=[], metavar="X0,Y0,X1,Y1[=GROUP]",
                      help="also shop the garment inside this box of the photo (pixels), one the look may miss: a "
                           "bag, say; =GROUP says what it is (top, bottom, dress, outerwear, shoes, bag), else it is "
                           "read. Repeatable")
    look.add_argument("--index", action="store_true", help="also add the garments to the collection as products")
    look.add_argument("--json", action="store_true")

    evaluate = sub.add_parser("eval-look", help="garment detection quality against a boxes file (ccp/boxes.json)")
    evaluate.add_argument("boxes", type=Path)
    evaluate.add_argument("--limit", type=int, help="only the first N photos")
    evaluate.add_argument("--split", choices=("all", "train", "dev"), default="all",
                          help="dev: the quarter of the photos that nothing here learns from")
    evaluate.add_argument("--unmoved", action="store_true",
                          help="leave the boxes where the body's landmarks put them (no learned box edges), to compare")
    evaluate.add_argument("--json", action="store_true")
    evaluate.add_argument("--no-progress", action="store_true")

    train = sub.add_parser("train-look", help="learn shop the look's garment decisions, where their boxes end, and "
                                              "what a drawn box holds, from the train split of a boxes file "
                                              "(ccp/boxes.json)")
    train.add_argument("boxes", type=Path)
    train.add_argument("--out", type=Path, help="where to write the decisions (default: the package's); the "
                                                "box edge and drawn-box models go beside them")
    train.add_argument("--limit", type=int, help="only the first N train photos")
    train.add_argument("--json", action="store_true")
    train.add_argument("--no-progress", action="store_true")


def drawn_box(text: str) -> tuple[list[int], str | None]:
    """X0,Y0,X1,Y1[=GROUP] -> ([x0, y0, x1, y1], group or None)."""
    corners, _, group = text.partition("=")
    try:
        box = [int(v) for v in corners.split(",")]
    except ValueError:
        box = []
    if len(box) != 4:
        raise argparse.ArgumentTypeError(f"{text!r}: a box is four whole numbers X0,Y0,X1,Y1, then =GROUP if known")
    return box, group.strip().lower() or None


def draw_look(photo: bytes, look: dict[str, Any]) -> Image.Image:
    image = Image.open(io.BytesIO(photo)).convert("RGB")
    pen = ImageDraw.Draw(image)
    width = max(2, round(max(image.size) / 250))
    placed: list[tuple[float, float, float, float]] = []
    for garment in look["garments"]:
        colour = GROUP_COLOURS.get(garment["group"], (52, 73, 94))
        x0, y0, x1, y1 = garment["box"]
        pen.rectangle((x0, y0, x1, y1), outline=colour, width=width)
        labels = garment["labels"]
        text = f"{garment['group']}: {labels['colour'][0]['value']} {labels['category'][0]['value']}"
        at = (x0 + width, y0 + width)
        left, top, right, bottom = pen.textbbox(at, text)
        if any(left < pr and pl < right and top < pb and pt < bottom for pl, pt, pr, pb in placed):
            at = (x0 + width, y1 - width - (bottom - top) - 4)  # nested boxes share a corner: label at the bottom
            left, top, right, bottom = pen.textbbox(at, text)
        placed.append((left - 2, top - 2, right + 2, bottom + 2))
        pen.rectangle(placed[-1], fill=colour)
        pen.text(at, text, fill=(255, 255, 255))
    return image


def cmd_look(engine: Engine, args: argparse.Namespace) -> int:
    from vitrine.vision.service import LookService

    if args.collection:
        engine.store(args.collection)
    photo = engine.load_query_image(args.photo)
    service = LookService(engine)
    look_id, _ = service.save_photo(photo)
    look = service.run(look_id, collection=args.collection, top_k=args.top_k)
    for box, group in args.box:
        service.add(look_id, box, group=group)
    if args.box:
        look = service.get(look_id)
    if args.index and args.collection:
        look["indexed"] = service.index(look_id, args.collection)
    if args.draw:
        args.draw.parent.mkdir(parents=True, exist_ok=True)
        draw_look(photo, look).save(args.draw)
    if args.json:
        sys.stdout.write(json.dumps(look, indent=2, default=str) + "\n")
        return 0
    out = [f"look {look_id}: {look['people']} people, {len(look['garments'])} garments"]
    if look.get("reason"):
        out.append(f"  {look['reason']}")
    for g in look["garments"]:
        labels = g["labels"]
        summary = ", ".join(f"{labels[k][0]['value']} ({labels[k][0]['confidence']:.0%})" for k in labels)
        drawn = " (drawn)" if g["person"] is None else ""
        out.append(f"- {g['group']:<9} box {g['box']}{drawn}  {summary}")
        for m in g["matches"]:
            out.append(f"    {m['score']:.3f}  {m['id']:<14} {m['title']}")
        if g.get("unmatched"):
            out.append(f"    no matches: {g['unmatched']}")
    if args.draw:
        out.append(f"drawn: {args.draw}")
    sys.stdout.write("\n".join(out) + "\n")
    return 0


def cmd_eval_look(engine: Engine, args: argparse.Namespace) -> int:
    from vitrine.vision.evaluation import evaluate_looks
    from vitrine.vision.look import LookFinder

    with count_bar(not args.no_progress and not args.json, "photo") as progress:
        result = evaluate_looks(LookFinder(engine, move_edges=not args.unmoved), args.boxes, limit=args.limit,
                                split=args.split, progress=progress)
    if args.json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
        return 0
    lines = [f"{result['photos']} photos ({result['split']}), IoU >= {result['iou']}, "
             f"{result['photos_per_s']} photos/s",
             f"{'group':<10}{'boxes':>7}{'found':>7}{'recall':>8}{'precision':>10}"]
    for group, m in result["groups"].items():
        recall = "-" if m["recall"] is None else f"{m['recall']:.3f}"
        precision = "-" if m["precision"] is None else f"{m['precision']:.3f}"
        lines.append(f"{group:<10}{m['boxes']:>7}{m['predicted']:>7}{recall:>8}{precision:>10}")
    lines.append(f"group label accuracy on matched boxes: {result['group_label_accuracy']}")
    people = result["people_found"]
    lines.append(f"somebody found in {people['found']} of the {people['photos']} photos with garments"
                 + (f"; not in {', '.join(people['missed'])}" if people["missed"] else ""))
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


def cmd_train_look(engine: Engine, args: argparse.Namespace) -> int:
    from vitrine.vision import bags, box_edges, drawn_boxes
    from vitrine.vision.bag_training import train_bags
    from vitrine.vision.box_edge_training import train_box_edges
    from vitrine.vision.decision_training import gather, train_decisions
    from vitrine.vision.decisions import MODEL_FILE
    from vitrine.vision.drawn_box_training import train_drawn_boxes
    from vitrine.vision.look import LookFinder

    started = time.perf_counter()
    out = args.out or MODEL_FILE
    edges_out, drawn_out = out.parent / box_edges.MODEL_FILE.name, out.parent / drawn_boxes.MODEL_FILE.name
    bags_out = out.parent / bags.MODEL_FILE.name
    finder = LookFinder(engine)
    with count_bar(not args.no_progress and not args.json, "photo") as progress:
        photos, people = gather(finder, args.boxes, limit=args.limit, progress=progress)
    # The bags first: with no bag boxes among the photos it refuses them, before minutes of the other models.
    with count_bar(not args.no_progress and not args.json, "photo") as progress:
        bag_model = train_bags(photos, people, args.boxes, image_model=finder.engine.image_encoder.spec.name,
                               model_dir=engine.home / "models", threads=engine.settings.threads,
                               max_pixels=engine.settings.max_image_pixels, progress=progress)
    model = train_decisions(finder, args.boxes, photos, people)
    edges = train_box_edges(photos, people, model, args.boxes)
    with count_bar(not args.no_progress and not args.json, "photo") as progress:
        drawn = train_drawn_boxes(finder, args.boxes, limit=args.limit, progress=progress)
    model.save(out)
    edges.save(edges_out)
    drawn.save(drawn_out)
    bag_model.save(bags_out)
    card = dict(model.card, thresholds=model.thresholds.__dict__, path=str(out),
                box_edges=dict(edges.card, path=str(edges_out)), drawn_boxes=dict(drawn.card, path=str(drawn_out)),
                bags=dict(bag_model.card, threshold=bag_model.threshold, path=str(bags_out)),
                total_seconds=round(time.perf_counter() - started, 1))
    if args.json:
        sys.stdout.write(json.dumps(card, indent=2) + "\n")
        return 0
    lines = [f"learned from {card['people']} people in {card['photos']} train photos in {card['total_seconds']} s: "
             f"{out}",
             f"out of fold, mean F1 {card['out_of_fold']['mean_f1']}:"]
    for group, m in card["out_of_fold"]["groups"].items():
        lines.append(f"  {group:<10} recall {m['recall']}  precision {m['precision']}")
    moved = edges.card["out_of_fold_recall"]
    lines.append("where their boxes end, out of fold, recall unmoved -> moved: " + ", ".join(
        f"{g} {moved['unmoved'][g]} -> {moved['moved'][g]}" for g in moved["moved"]) + f": {edges_out}")
    lines.append(f"what a drawn box holds, out of fold: {drawn.card['out_of_fold_accuracy']['all']} of "
                 f"{sum(drawn.card['boxes'].values())} boxes read right: {drawn_out}")
    chosen = bag_model.card["out_of_fold"][str(bag_model.threshold)]
    lines.append(f"bags, out of fold at threshold {bag_model.threshold}: recall {chosen['recall']}  precision "
                 f"{chosen['precision']}: {bags_out}")
    lines.append(f"measure it on the dev split: vitrine eval-look {args.boxes} --split dev")
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


COMMANDS = {"look": cmd_look, "eval-look": cmd_eval_look, "train-look": cmd_train_look}
