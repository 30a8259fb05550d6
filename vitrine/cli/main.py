"""`vitrine`: ingest catalogs, search them, manage collections. Parses, calls the engine, prints."""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from vitrine import __version__
from vitrine.catalog.columns import parse_mapping
from vitrine.catalog.formats import FORMATS
from vitrine.catalog.sources import is_url
from vitrine.cli import look_commands, merch_commands, model_commands, worker_commands
from vitrine.cli.format import format_collections, format_report, format_response, table
from vitrine.engine import Engine, open_engine
from vitrine.errors import Conflict, InvalidInput, ModelUnavailable, NotFound, VitrineError
from vitrine.index.store import Filters, RangeFilter
from vitrine.keys import SCHEMA as KEYS
from vitrine.keys import KeyStore
from vitrine.logs import configure_logging
from vitrine.search.query import SORTS, Query
from vitrine.settings import Settings

EXIT_CODES: dict[type[VitrineError], int] = {InvalidInput: 2, NotFound: 3, ModelUnavailable: 4, Conflict: 5}
EXIT_ROWS_FAILED = 6  # `ingest`: the products were stored, but some rows of the catalog failed


def _print(text: str = "") -> None:
    sys.stdout.write(text + "\n")


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


def parse_filters(equals: Sequence[str], ranges: Sequence[str], min_price: float | None,
                  max_price: float | None) -> Filters:
    """`field=a,b` (one of) and `field=low:high` (either end may be empty) to Filters."""
    eq: dict[str, tuple[str, ...]] = {}
    for item in equals:
        name, sep, values = item.partition("=")
        parts = tuple(v.strip() for v in values.split(",") if v.strip())
        if not sep or not name.strip() or not parts:
            raise InvalidInput(f"filter {item!r} is not of the form field=value[,value...]", field="filter")
        eq[name.strip()] = eq.get(name.strip(), ()) + parts
    rng: dict[str, RangeFilter] = {}
    for item in ranges:
        name, sep, bounds = item.partition("=")
        low, colon, high = bounds.partition(":")
        try:
            if not sep or not colon or not name.strip():
                raise ValueError
            rng[name.strip()] = RangeFilter(float(low) if low.strip() else None, float(high) if high.strip() else None)
        except ValueError:
            raise InvalidInput(f"range {item!r} is not of the form field=low:high", field="range") from None
    if min_price is not None or max_price is not None:
        rng["price"] = RangeFilter(min_price, max_price)
    return Filters(equals=eq, ranges=rng)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vitrine", description="Fashion search over your product catalogs.")
    parser.add_argument("--version", action="version", version=f"vitrine {__version__}")
    parser.add_argument("--home", type=Path, help="data home (default: $VITRINE_HOME or ~/.local/share/vitrine)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details (JSON lines on stderr)")
    sub = parser.add_subparsers(dest="command", required=True)

    ingest = sub.add_parser("ingest", help="add or update a collection from a catalog or a shop's export")
    ingest.add_argument("catalog", help="a CSV/TSV/JSON/JSONL file, a Shopify, WooCommerce, Magento, Etsy, Google "
                                        "Merchant or schema.org export, a zip, an http(s) URL, or a Shopify "
                                        "store's https://shop/products.json")
    ingest.add_argument("--collection", "-c", required=True)
    ingest.add_argument("--map", action="append", default=[], metavar="FIELD=COLUMN",
                        help="map a product field (id, title, description, category, colour, price, images) to a "
                             "column or a dotted path into nested JSON (price=variants.0.price)")
    ingest.add_argument("--format", choices=FORMATS, help="detected from the content when left out")
    ingest.add_argument("--media-root", metavar="FOLDER_OR_URL",
                        help="where a Magento export's image paths (/m/h/...) are: pub/media/catalog/product, or "
                             "its base URL")
    ingest.add_argument("--allow-failures", action="store_true",
                        help=f"exit 0 even when rows failed (otherwise exit {EXIT_ROWS_FAILED})")
    ingest.add_argument("--prune", action="store_true", help="delete products that are no longer in the file")
    ingest.add_argument("--encoder", metavar="ENCODER",
                        help="for a new collection: builtin (default), a built-in model's name, clip:<directory> "
                             "of a local CLIP/SigLIP checkpoint, or the name of one `vitrine models pull` brought "
                             "(fashion-clip)")
    ingest.add_argument("--report", type=Path, help="also write the validation report (JSON) here")
    ingest.add_argument("--json", action="store_true", help="print the report as JSON")
    ingest.add_argument("--no-progress", action="store_true")

    def add_search_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--filter", "-f", action="append", default=[], metavar="FIELD=V1[,V2]",
                       help="keep products whose FIELD is one of the values (case-insensitive)")
        p.add_argument("--range", action="append", default=[], metavar="FIELD=LOW:HIGH")
        p.add_argument("--min-price", type=float)
        p.add_argument("--max-price", type=float)
        p.add_argument("--top-k", "-k", type=int, default=10)
        p.add_argument("--offset", type=int, default=0)
        p.add_argument("--min-score", type=float)
        p.add_argument("--sort", choices=SORTS, default="relevance",
                       help="relevance, or every result by price or newest first (no text or photo: browse)")
        p.add_argument("--no-understand", dest="understand", action="store_false",
                       help="take the words as they are: no price phrases, facet words, typo fixes or synonyms")
        p.add_argument("--json", action="store_true")

    search = sub.add_parser("search", help="search by text, image, or both; with neither, list the collection")
    search.add_argument("collection", nargs="?", help="collection to search (default: all of them)")
    search.add_argument("--text", "-t")
    search.add_argument("--image", "-i", help="path or http(s) URL of a query photo")
    search.add_argument("--alpha", type=float, help="weight of the image when both are given (1 = image only)")
    add_search_options(search)

    similar = sub.add_parser("similar", help="products like a given product")
    similar.add_argument("collection")
    similar.add_argument("product_id")
    similar.add_argument("--alpha", type=float, help="weight of the images against the product text")
    add_search_options(similar)

    collections = sub.add_parser("collections", help="list, inspect or delete collections")
    csub = collections.add_subparsers(dest="action")
    clist = csub.add_parser("list")
    clist.add_argument("--json", action="store_true")
    cinfo = csub.add_parser("info")
    cinfo.add_argument("name")
    cinfo.add_argument("--json", action="store_true")
    cdel = csub.add_parser("delete")
    cdel.add_argument("name")

    keys = sub.add_parser("keys", help="API keys: create, list, revoke")
    ksub = keys.add_subparsers(dest="action", required=True)
    kcreate = ksub.add_parser("create")
    kcreate.add_argument("name")
    kcreate.add_argument("--scope", choices=["read", "write", "admin"], default="read")
    klist = ksub.add_parser("list")
    klist.add_argument("--json", action="store_true")
    krevoke = ksub.add_parser("revoke")
    krevoke.add_argument("key_id")

    serve = sub.add_parser("serve", help="run the HTTP API (ingests the demo catalog into an empty home)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--no-demo", action="store_true", help="do not ingest the demo catalog into an empty home")
    serve.add_argument("--workers", type=int, help="server processes (default: VITRINE_HTTP_WORKERS, 1); "
                                                   "searches are CPU-bound, so one per core serves the most")
    serve.add_argument("--no-jobs", action="store_true",
                       help="queue jobs without running them (for `vitrine worker` processes)")

    model_commands.add_parsers(sub)
    look_commands.add_parsers(sub)
    merch_commands.add_parsers(sub)
    worker_commands.add_parsers(sub)

    demo = sub.add_parser("demo", help="ingest the demo catalog (if needed) and run example searches")
    demo.add_argument("--catalog", type=Path, help="demo catalog (default: <data_dir>/luma/catalog.csv)")
    return parser


def _progress_bar(enabled: bool) -> Any:
    if not enabled:
        return None, None
    from tqdm import tqdm

    bar = tqdm(total=0, unit="product", dynamic_ncols=True, file=sys.stderr, smoothing=0.1)

    def update(done: int, total: int, images: int) -> None:
        bar.total = total
        bar.n = done
        bar.set_postfix(images=images, refresh=False)
        bar.refresh()

    return bar, update


def cmd_ingest(engine: Engine, args: argparse.Namespace) -> int:
    bar, update = _progress_bar(not args.no_progress and not args.json and sys.stderr.isatty())
    try:
        mapping = parse_mapping(args.map)
        if is_url(args.catalog):
            catalog = engine.fetch_catalog(args.catalog, mapping=mapping or None, fmt=args.format)
        elif args.catalog.lower().endswith(".zip"):
            # Unpacked under the home, where its photos stay: the store serves them from there.
            with Path(args.catalog).open("rb") as fh:
                catalog = engine.save_catalog_upload(fh, Path(args.catalog).name, mapping=mapping or None,
                                                     fmt=args.format)
        else:
            catalog = Path(args.catalog)
        report = engine.ingest(args.collection, catalog, mapping=mapping, fmt=args.format, prune=args.prune,
                               progress=update, encoder=args.encoder, media_root=args.media_root)
    finally:
        if bar is not None:
            bar.close()
    saved = engine.store(args.collection).meta().get("last_ingest_report")
    if args.report:
        report.save(args.report)
    if args.json:
        _print_json({**report.as_dict(), "report_path": saved})
    else:
        _print(format_report(report, path=saved))
    if report.failed and not args.allow_failures:
        sys.stderr.write(f"error: {report.failed} rows failed (see the report); --allow-failures accepts them\n")
        return EXIT_ROWS_FAILED
    return 0


def _query(args: argparse.Namespace, **kwargs: Any) -> Query:
    return Query(
        filters=parse_filters(args.filter, args.range, args.min_price, args.max_price),
        top_k=args.top_k, offset=args.offset, min_score=args.min_score, alpha=args.alpha, sort=args.sort,
        understand=args.understand, **kwargs,
    )


def cmd_search(engine: Engine, args: argparse.Namespace) -> int:
    if args.collection:
        engine.store(args.collection)  # unknown collection: a clear error before any model loads
    image = engine.load_query_image(args.image) if args.image else None
    response = engine.search(_query(args, text=args.text, image=image, collection=args.collection))
    if args.json:
        _print_json(response.as_dict())
    else:
        _print(format_response(response, show_collection=not args.collection))
    return 0


def cmd_similar(engine: Engine, args: argparse.Namespace) -> int:
    engine.get_product(args.collection, args.product_id)
    response = engine.search(_query(args, product_id=args.product_id, collection=args.collection))
    if args.json:
        _print_json(response.as_dict())
    else:
        _print(format_response(response, show_collection=False))
    return 0


def cmd_collections(engine: Engine, args: argparse.Namespace) -> int:
    action = args.action or "list"
    if action == "list":
        infos = engine.collections()
        _print_json(infos) if getattr(args, "json", False) else _print(format_collections(infos))
    elif action == "info":
        info = engine.collection_info(args.name)
        _print_json(info) if args.json else _print("\n".join(f"{k}: {v}" for k, v in info.items()))
    elif action == "delete":
        engine.delete_collection(args.name)
        _print(f"deleted collection {args.name}")
    return 0


def cmd_demo(engine: Engine, args: argparse.Namespace) -> int:
    catalog = args.catalog or engine.settings.demo_catalog_path
    if not catalog.is_file():
        raise InvalidInput(f"demo catalog not found at {catalog}; set VITRINE_DATA_DIR or pass --catalog",
                           field="catalog")
    bar, update = _progress_bar(sys.stderr.isatty())
    try:
        report = engine.ingest("demo", catalog, progress=update)
    finally:
        if bar is not None:
            bar.close()
    _print(format_report(report, path=None, max_problems=5))
    first_image = engine.get_product("demo", engine.vectors("demo").product_ids()[0]).main_image
    examples: list[tuple[str, Query]] = [
        ('text "black hoodie"', Query(text="black hoodie", collection="demo", top_k=5)),
        ('text "yoga pants" under 50', Query(text="yoga pants", collection="demo", top_k=5,
                                              filters=Filters(ranges={"price": RangeFilter(None, 50)}))),
    ]
    if first_image is not None:
        examples.append((f"photo {first_image.ref}", Query(image=engine.photos.get(first_image.path),
                                                           collection="demo", top_k=5)))
    examples.append(("more like MH01", Query(product_id="MH01", collection="demo", top_k=5)))
    width = shutil.get_terminal_size((100, 20)).columns
    for title, query in examples:
        _print("\n" + f"== {title} ".ljust(min(width, 100), "="))
        try:
            _print(format_response(engine.search(query), show_collection=False))
        except NotFound as exc:
            _print(f"skipped: {exc}")
    return 0


def cmd_keys(engine: Engine, args: argparse.Namespace) -> int:
    store = KeyStore(engine.backend.tables("keys", KEYS))
    try:
        if args.action == "create":
            key, token = store.create(args.name, args.scope)
            _print(f"created key {key.id} ({key.name}, scope {key.scope}); keep this token, it is not shown again:")
            _print(token)
        elif args.action == "list":
            keys = store.all()
            if args.json:
                _print_json([k.__dict__ for k in keys])
            else:
                rows = [[k.id, k.name, k.scope, "revoked" if k.revoked_at else "active"] for k in keys]
                _print(table(["id", "name", "scope", "state"], rows, [12, 30, 6, 8]) if rows else "no keys")
        else:
            _print(f"revoked key {store.revoke(args.key_id).id}")
    finally:
        store.close()
    return 0


def cmd_serve(engine: Engine, args: argparse.Namespace) -> int:
    import uvicorn

    from vitrine.api.app import create_app

    if not args.no_demo and not engine.collection_names():
        catalog = engine.settings.demo_catalog_path
        if catalog.is_file():
            sys.stderr.write(f"empty home: ingesting the demo catalog {catalog} as collection 'demo'\n")
            bar, update = _progress_bar(sys.stderr.isatty())
            try:
                engine.ingest("demo", catalog, progress=update)
            finally:
                if bar is not None:
                    bar.close()
    sys.stderr.write(f"Vitrine on http://{args.host}:{args.port}  (API docs: http://{args.host}:{args.port}/docs)\n")
    workers = args.workers or engine.settings.http_workers
    if workers < 1:
        raise InvalidInput("--workers must be at least 1", field="workers")
    s = engine.settings
    # X-Forwarded-For is believed only from configured proxies (uvicorn's default trusts loopback,
    # which let any local client pick its own rate-limit identity).
    server_options: dict[str, Any] = {
        "host": args.host, "port": args.port, "log_level": "warning", "limit_concurrency": s.max_connections,
        "proxy_headers": bool(s.trusted_proxies), "forwarded_allow_ips": ",".join(s.trusted_proxies) or "",
        "http": "vitrine.api.server:GuardedH11Protocol",
    }
    if args.no_jobs:
        os.environ["VITRINE_RUN_JOBS"] = "false"  # read by the worker processes' settings
    if workers == 1:
        settings = s.model_copy(update={"run_jobs": False}) if args.no_jobs else s
        uvicorn.run(create_app(settings, engine=engine), **server_options)
        return 0
    # The worker processes read their settings from the environment. Each gets its share of the cores
    # for ONNX Runtime and BLAS, so that requests run side by side instead of splitting one request
    # across cores (on 2 cores: about 1.4x the text searches/s at 4 clients, docs/benchmarks.md).
    share = str(max(1, (os.cpu_count() or 1) // workers))
    os.environ["VITRINE_HOME"] = str(engine.home)
    if "VITRINE_THREADS" not in os.environ:
        os.environ["VITRINE_THREADS"] = share
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(name, share)
    engine.close()
    uvicorn.run("vitrine.api.app:app_from_environment", factory=True, workers=workers,
                loop="vitrine.api.server:FairAcceptLoop", **server_options)
    return 0


COMMANDS = {"ingest": cmd_ingest, "search": cmd_search, "similar": cmd_similar,
            "collections": cmd_collections, "demo": cmd_demo, "serve": cmd_serve, "keys": cmd_keys,
            **model_commands.COMMANDS, **look_commands.COMMANDS,
            **merch_commands.COMMANDS, **worker_commands.COMMANDS}


LONG_RUNNING = frozenset({"serve", "worker"})


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(logging.INFO if args.verbose else logging.WARNING)
    try:
        settings = Settings(**({"home": args.home} if args.home else {}))
    except ValidationError as exc:
        first = exc.errors()[0]
        sys.stderr.write(f"error: setting {'.'.join(map(str, first['loc']))}: {first['msg']}\n")
        return 2
    try:
        # a server or worker serves the last build during a bulk change's rebuild; a one-shot command waits
        with open_engine(settings, serve_stale=args.command in LONG_RUNNING) as engine:
            return COMMANDS[args.command](engine, args)
    except VitrineError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return next((code for cls, code in EXIT_CODES.items() if isinstance(exc, cls)), 1)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130


if __name__ == "__main__":
    sys.exit(main())
