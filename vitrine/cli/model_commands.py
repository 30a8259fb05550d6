"""`vitrine train | models | label | eval`: the fashion model's commands."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from vitrine.cli.progress import count_bar
from vitrine.engine import IMAGE_MODEL, Engine
from vitrine.errors import InvalidInput
from vitrine.models.training import TrainConfig


def add_parsers(sub: Any) -> None:
    train = sub.add_parser("train", help="train the fashion model on a collection (or the base model)")
    train.add_argument("collection", nargs="?", help="collection whose own model version to train")
    train.add_argument("--base", action="store_true",
                       help="train the packaged base model from scratch on <data_dir>/{fpi,hm,luma}")
    train.add_argument("--out", type=Path, help="with --base: where to write the model (default: the package)")
    train.add_argument("--catalogs", default="fpi,hm,luma", help="with --base: catalogs under the data dir")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    train.add_argument("--json", action="store_true")
    train.add_argument("--no-progress", action="store_true")

    evaluate = sub.add_parser("eval", help="retrieval and label quality of a collection against ground truth")
    evaluate.add_argument("collection")
    evaluate.add_argument("--gt", type=Path, help="ground truth JSON (text_queries, variant_groups)")
    evaluate.add_argument("--modes", default="text,image,fused",
                          help="text query modes: text (product text), image (cross-modal only), fused")
    evaluate.add_argument("--title-queries", type=int, default=1000, metavar="N",
                          help="also query N sampled products' own titles (0: skip)")
    evaluate.add_argument("--image-queries", type=int, default=1000, metavar="N",
                          help="photo -> photo queries (variant groups from --gt, else same-product photos)")
    evaluate.add_argument("--labels", action="append", default=[], metavar="KIND=COLUMN",
                          help="zero-shot label accuracy of KIND (category, colour, pattern) against COLUMN")
    evaluate.add_argument("--label-products", type=int, default=2000, metavar="N")
    evaluate.add_argument("--plot", type=Path, help="write recall@k curves to this PNG")
    evaluate.add_argument("--json", action="store_true")
    evaluate.add_argument("--no-progress", action="store_true")

    label = sub.add_parser("label", help="zero-shot category, colour and pattern of a photo")
    label.add_argument("image", help="path or http(s) URL of a photo")
    label.add_argument("--collection", "-c", help="use this collection's model and add its own values")
    label.add_argument("--json", action="store_true")

    models = sub.add_parser(
        "models", help="list a collection's model versions or switch its active one; `models pull NAME` downloads a "
        "CLIP/SigLIP checkpoint (fashion-clip, marqo-fashionsiglip, or a Hub id) for --encoder NAME")
    models.add_argument("collection", help="a collection, or `pull`")
    models.add_argument("name", nargs="?", help="with pull: fashion-clip, marqo-fashionsiglip or owner/name")
    models.add_argument("--force", action="store_true", help="with pull: download again over a pulled checkpoint")
    models.add_argument("--use", metavar="VERSION", help="make this version active: base or v<N>")
    models.add_argument("--json", action="store_true")

    reindex = sub.add_parser("reindex", help="encode a collection's photos again with another encoder (from the "
                                             "photos it keeps; resumable), then switch it over in one step")
    reindex.add_argument("collection")
    reindex.add_argument("--encoder", default="builtin",
                         help="builtin (the default built-in model), a built-in model's name, "
                              "clip:<checkpoint directory>, or a pulled checkpoint's name (fashion-clip)")
    reindex.add_argument("--json", action="store_true")
    reindex.add_argument("--no-progress", action="store_true")


def _epoch_bar(enabled: bool, total: int) -> tuple[Any, Any]:
    if not enabled:
        return None, None
    from tqdm import tqdm

    bar = tqdm(total=total, unit="epoch", dynamic_ncols=True, file=sys.stderr)

    def update(epoch: int, epochs: int, metrics: dict[str, float]) -> None:
        bar.n = epoch
        bar.set_postfix(heldout=f"{metrics['score']:.3f}", loss=f"{metrics['loss']:.3f}", refresh=False)
        bar.refresh()

    return bar, update


def cmd_train(engine: Engine, args: argparse.Namespace) -> int:
    from vitrine.training import FINE_TUNE_LR, train_base, train_collection

    if args.base == bool(args.collection):
        raise InvalidInput("name a collection to train, or pass --base (not both)", field="collection")
    # A collection's model starts from its active one: fine-tuning takes smaller steps than the base.
    config = TrainConfig(seed=args.seed, epochs=args.epochs, threads=engine.settings.threads,
                         lr=TrainConfig.lr if args.base else FINE_TUNE_LR)
    bar, update = _epoch_bar(not args.no_progress and not args.json and sys.stderr.isatty(), config.epochs)
    try:
        if args.base:
            catalogs = [c.strip() for c in args.catalogs.split(",") if c.strip()]
            card = train_base(engine, data_dir=engine.settings.data_dir, out=args.out, catalogs=catalogs,
                              config=config, progress=update)
        else:
            engine.store(args.collection)
            card = train_collection(engine, args.collection, config=config, progress=update)
    finally:
        if bar is not None:
            bar.close()
    if args.json:
        sys.stdout.write(json.dumps(card, indent=2, default=str) + "\n")
        return 0
    where = card.get("path") or f"collection {args.collection}, version {card['version']} (active)"
    held = card["heldout"]
    sys.stdout.write(
        f"trained {where}\n"
        f"  {card['data']['train_products']} products trained on, {card['data']['heldout_products']} held out; "
        f"best epoch {card['best_epoch']}, {card['train_seconds']} s\n"
        f"  held-out MRR: colour+category captions {held['caption_mrr']:.3f}, titles {held['title_mrr']:.3f}\n"
    )
    before = card.get("heldout_before")
    if before:
        sys.stdout.write(f"  before: colour+category captions {before['caption_mrr']:.3f}, "
                         f"titles {before['title_mrr']:.3f} ({card['started_from']})\n")
    return 0


def cmd_pull(engine: Engine, args: argparse.Namespace) -> int:
    from vitrine.models import hub

    if not args.name:
        raise InvalidInput("name a checkpoint to pull: fashion-clip, marqo-fashionsiglip or a Hub id owner/name",
                           field="name")
    settings = engine.settings
    with count_bar(not args.json, "B", unit_scale=True) as progress:
        pulled = hub.pull(args.name, home=engine.home, hub_url=settings.hub_url, token=settings.hub_token,
                          timeout_s=max(settings.download_timeout_s, 30.0), force=args.force, progress=progress)
    if args.json:
        sys.stdout.write(json.dumps({"name": pulled.name, "repo": pulled.repo, "path": str(pulled.path),
                                     "commit": pulled.commit, "files": pulled.files, "bytes": pulled.bytes}) + "\n")
        return 0
    sys.stdout.write(f"pulled {pulled.repo} ({pulled.files} files, {pulled.bytes / 1e6:.1f} MB) into {pulled.path}\n"
                     f"create a collection on it with: vitrine ingest CATALOG -c NAME --encoder {pulled.name}\n")
    return 0


def cmd_models(engine: Engine, args: argparse.Namespace) -> int:
    if args.collection == "pull":
        return cmd_pull(engine, args)
    if args.name:
        raise InvalidInput(f"unexpected {args.name!r}: `vitrine models COLLECTION` or `vitrine models pull NAME`",
                           field="name")
    if args.use:
        active = engine.use_model(args.collection, args.use)
        sys.stdout.write(f"collection {args.collection} now searches with model {active}\n")
        return 0
    active = engine.active_model(args.collection)
    cards = engine.model_versions(args.collection).cards()
    for card in cards:
        card["active"] = card["version"] == active
    if args.json:
        sys.stdout.write(json.dumps(cards, indent=2, default=str) + "\n")
        return 0
    for card in cards:
        held = card.get("heldout") or {}
        score = f"held-out captions {held['caption_mrr']:.3f} titles {held['title_mrr']:.3f}" if held else ""
        on = f" (on {card['image_model']})" if card.get("image_model") else ""
        sys.stdout.write(f"{'*' if card['active'] else ' '} {card['version']:<6}{on} {score}\n")
    if engine.older_builtin_model(args.collection) is not None:
        sys.stdout.write(f"its photos are encoded with an older built-in model: `vitrine reindex {args.collection}` "
                         f"moves it to {IMAGE_MODEL}\n")
    return 0


def cmd_reindex(engine: Engine, args: argparse.Namespace) -> int:
    from vitrine.reindexing import reindex

    engine.store(args.collection)
    with count_bar(not args.no_progress and not args.json, "photo") as progress:
        result = reindex(engine, args.collection, encoder=args.encoder, progress=progress)
    if args.json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
    elif not result["changed"]:
        sys.stdout.write(f"collection {args.collection} already searches with {result['image_model']}\n")
    else:
        sys.stdout.write(f"collection {args.collection} now searches with {result['image_model']} (was "
                         f"{result['previous']}): {result['photos']} photos, {result['encoded']} encoded, "
                         f"{result['seconds']} s; its model is base again\n")
    return 0


def cmd_eval(engine: Engine, args: argparse.Namespace) -> int:
    from vitrine.search import evaluation as ev

    engine.store(args.collection)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in modes if m not in (*ev.MODES, "fused")]
    if unknown:
        raise InvalidInput(f"unknown mode {unknown[0]!r}; use text, image or fused", field="modes")
    columns = {}
    for item in args.labels:
        kind, sep, column = item.partition("=")
        if not sep or not kind.strip() or not column.strip():
            raise InvalidInput(f"--labels {item!r} is not of the form KIND=COLUMN", field="labels")
        columns[kind.strip()] = column.strip()
    gt = ev.GroundTruth.load(args.gt) if args.gt else ev.GroundTruth()
    bar = None
    progress = None
    if not args.no_progress and not args.json and sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=0, unit="query", dynamic_ncols=True, file=sys.stderr)

        def progress(stage: str, done: int, total: int) -> None:
            bar.set_description(stage, refresh=False)
            bar.total, bar.n = total, done
            bar.refresh()

    results: dict[str, Any] = {"collection": args.collection, "model": engine.active_model(args.collection)}
    try:
        if gt.text_queries:
            results["text_queries"] = ev.evaluate_queries(engine, args.collection, gt.text_queries, modes, progress)
        if args.title_queries > 0:
            titles = ev.title_queries(engine, args.collection, args.title_queries)
            results["title_queries"] = ev.evaluate_queries(engine, args.collection, titles, modes, progress,
                                                           label="titles")
        if args.image_queries > 0:
            results["image_to_image"] = ev.evaluate_image_to_image(
                engine, args.collection, gt.variant_groups or None, args.image_queries)
        if columns:
            results["labels"] = ev.evaluate_labels(engine, args.collection, columns, args.label_products)
    finally:
        if bar is not None:
            bar.close()
    if args.plot:
        ev.plot_curves(results, args.plot, f"{args.collection} ({results['model']})")
    if args.json:
        sys.stdout.write(json.dumps(results, indent=2) + "\n")
    else:
        sys.stdout.write(format_eval(results) + "\n")
    return 0


def format_eval(results: dict[str, Any]) -> str:
    lines = [f"collection {results['collection']}, model {results['model']}"]
    header = f"{'queries':<22}{'mode':<8}{'n':>6}{'R@1':>8}{'R@10':>8}{'MRR':>8}{'P@10':>8}{'nDCG@10':>9}"
    lines.append(header)
    for section in ("text_queries", "title_queries"):
        for mode, m in results.get(section, {}).items():
            lines.append(f"{section.replace('_queries', ''):<22}{mode:<8}{int(m['queries']):>6}{m['r@1']:>8.3f}"
                         f"{m['r@10']:>8.3f}{m['mrr']:>8.3f}{m['p@10']:>8.3f}{m['ndcg@10']:>9.3f}")
    image = results.get("image_to_image", {})
    if image.get("queries"):
        lines.append(f"{'image (' + image['kind'] + ')':<22}{'photo':<8}{int(image['queries']):>6}{image['r@1']:>8.3f}"
                     f"{image['r@10']:>8.3f}{image['mrr']:>8.3f}{image['p@10']:>8.3f}{image['ndcg@10']:>9.3f}")
    for kind, m in results.get("labels", {}).items():
        lines.append(f"label {kind} vs {m['column']}: accuracy {m['accuracy']:.3f}, macro-F1 {m['macro_f1']:.3f} "
                     f"({int(m['products'])} products)")
    return "\n".join(lines)


def cmd_label(engine: Engine, args: argparse.Namespace) -> int:
    if args.collection:
        engine.store(args.collection)
    labels = engine.label_image(engine.load_query_image(args.image), args.collection)
    if args.json:
        payload = {kind: [{"value": x.value, "confidence": x.confidence} for x in found]
                   for kind, found in labels.items()}
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")
        return 0
    for kind, found in labels.items():
        sys.stdout.write(f"{kind:<9} " + ", ".join(f"{x.value} ({x.confidence:.0%})" for x in found) + "\n")
    return 0


COMMANDS = {"train": cmd_train, "models": cmd_models, "eval": cmd_eval, "label": cmd_label, "reindex": cmd_reindex}
