"""Shop exports ingested as a shop owner would: each format in the exact shape of its platform's
export, photos fetched from a local HTTP server, then fields, variants, prices, photos and a few
searches checked. One engine (and its feature cache) serves the module: the photos repeat."""

from __future__ import annotations

import http.server
import json
import shutil
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import shop_exports as shop
from conftest import LUMA, admin_token, make_settings, wait_for
from fastapi.testclient import TestClient

from vitrine.api.app import create_app
from vitrine.catalog.formats import detect_format
from vitrine.engine import Engine
from vitrine.index.store import Filters, RangeFilter
from vitrine.search.query import Query

PRODUCTS = shop.shop_products()
BY_SKU = {p.sku: p for p in PRODUCTS}


class _Shop(http.server.SimpleHTTPRequestHandler):
    """Luma's photos under /images/, and a Shopify store's paged /store/products.json."""

    pages: list[list[dict[str, Any]]] = []
    requested: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        parts = urlsplit(self.path)
        if parts.path.startswith("/media/"):  # a Magento media server: /media/m/h/mh01-black_main.jpg
            self.path = "/images/" + parts.path.rsplit("/", 1)[-1]
        if parts.path == "/store/products.json":
            type(self).requested.append(self.path)
            query = parse_qs(parts.query)
            page = int(query.get("page", ["1"])[0])
            limit = int(query.get("limit", ["30"])[0])
            items = self.pages[page - 1] if page <= len(self.pages) else []
            body = json.dumps({"products": items[:limit]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        super().do_GET()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def base() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(_Shop, directory=str(LUMA)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(scope="module")
def shop_engine(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Iterator[Engine]:
    home = tmp_path_factory.mktemp("shop-home")
    with Engine(make_settings(home, models_dir, allow_private_urls=True)) as engine:
        yield engine


def _search(engine: Engine, collection: str, text: str | None = None, **kwargs: Any) -> list[Any]:
    return engine.search(Query(text=text, collection=collection, top_k=10, **kwargs)).hits


def _check_variant_search(engine: Engine, collection: str) -> None:
    """What every format with variants must give: one hit per product, the asked-for variant shown,
    filters and price ranges on variant values."""
    hits = _search(engine, collection, "red hoodie")
    ids = [h.id for h in hits]
    assert len(ids) == len(set(ids)), "a product is found once, not once per variant"
    teton = next(h for h in hits if h.id in ("MH02", BY_SKU["MH02"].handle))
    assert teton.variant is not None and teton.variant.colour == "Red" and teton.colour == "Red"
    assert teton.main_image is not None and "-red_" in teton.main_image  # the red variant's photo
    assert teton.variants == 6

    # colour=Purple: only MH02 (Black/Purple/Red) and MP01 (Black/Gray/Purple) come in purple
    purple = _search(engine, collection, "clothes", filters=Filters(equals={"colour": ("Purple",)}))
    assert {sku_of(h.id) for h in purple} == {"MH02", "MP01"}
    assert all(h.variant is not None and h.variant.colour == "Purple" for h in purple)
    # facets count products, once each, by every variant's values
    facets = engine.search(Query(text="clothes", collection=collection, facets=("colour", "size"))).facets
    assert facets["colour"]["Purple"] == 2 and facets["colour"]["Black"] == 3 and facets["size"]["M"] == 5


def sku_of(product_id: str) -> str:
    return next(p.sku for p in PRODUCTS if product_id in (p.sku, p.handle))


# -- Shopify ---------------------------------------------------------------------------------------

def test_shopify_store_is_read_page_by_page(shop_engine: Engine, base: str) -> None:
    items = shop.shopify_products_json(PRODUCTS, base)
    _Shop.pages, _Shop.requested = [items[:3], items[3:]], []
    catalog = shop_engine.fetch_catalog(f"{base}/store/products.json")
    assert [q.split("?")[1] for q in _Shop.requested] == ["limit=250&page=1", "limit=250&page=2", "limit=250&page=3"]
    assert detect_format(catalog) == "shopify-json"
    report = shop_engine.ingest("shopify", catalog)
    assert (report.format, report.added, report.failed, report.variants) == ("shopify-json", 5, 0, 30)
    assert report.shares == {"price": 1.0, "colour": 1.0, "category": 1.0, "images": 1.0} and not report.warnings
    hoodie = shop_engine.get_product("shopify", "chaz-kangeroo-hoodie")
    assert hoodie.title == "Chaz Kangeroo Hoodie" and hoodie.category == "Hoodies & Sweatshirts"
    assert hoodie.price == 52.0 and hoodie.colour == "Black"  # the lowest variant price, the first colour
    assert "<" not in hoodie.description and "& more" in hoodie.description and "\n• " in hoodie.description
    assert len(hoodie.variants) == 6 and len(hoodie.images) == len(items[0]["images"])
    medium = next(v for v in hoodie.variants if v.sku == "MH01-M-Gray")
    assert (medium.options, medium.price, medium.available) == ({"colour": "Gray", "size": "M"}, 57.0, True)
    assert medium.image_refs == (f"{base}/images/mh01-gray_main.jpg",)
    assert hoodie.variants[-1].available is False
    assert hoodie.attributes["brand"] == "Luma" and hoodie.attributes["tags"] == ["luma", "wool"]
    _check_variant_search(shop_engine, "shopify")
    # a photo of the orange hoodie finds the hoodie, shown as its orange variant with that photo
    photo = (LUMA / "images" / "mh01-orange_main.jpg").read_bytes()
    (hit,) = shop_engine.search(Query(image=photo, collection="shopify", top_k=1)).hits
    assert hit.id == "chaz-kangeroo-hoodie" and hit.variant is not None and hit.variant.colour == "Orange"
    assert hit.main_image == hit.matched_image == f"{base}/images/mh01-orange_main.jpg"
    # a price range matches any variant's price: 55-60 is only a medium's price (52 + 5, 35 + 5 no)
    ranged = _search(shop_engine, "shopify", "hoodie", filters=Filters(ranges={"price": RangeFilter(55, 60)}))
    assert {h.id for h in ranged} == {"chaz-kangeroo-hoodie"}
    assert ranged[0].variant is not None and ranged[0].variant.options["size"] == "M" and ranged[0].price == 57.0


def test_shopify_product_csv(shop_engine: Engine, base: str, tmp_path: Path) -> None:
    catalog = shop.write(tmp_path, "products_export_1.csv", shop.shopify_csv(PRODUCTS, base))
    assert detect_format(catalog) == "shopify-csv"
    report = shop_engine.ingest("shopify-csv", catalog)
    assert (report.added, report.failed, report.variants) == (5, 0, 30)
    assert report.field_sources["price"] == "Variant Price" and report.field_sources["images"].startswith("Image Src")
    jacket = shop_engine.get_product("shopify-csv", "stellar-solar-jacket")
    assert jacket.price == 75.0 and jacket.category == "Jackets"
    assert [im.ref.rsplit("/", 1)[-1] for im in jacket.images] == [
        ref.rsplit("/", 1)[-1] for c in BY_SKU["WJ01"].colours for ref in BY_SKU["WJ01"].photos[c]]
    assert {v.colour for v in jacket.variants} == {"Blue", "Red", "Yellow"}
    _check_variant_search(shop_engine, "shopify-csv")
    # "more like this" never returns the product's own variants: they are not products
    similar = shop_engine.search(Query(product_id="chaz-kangeroo-hoodie", collection="shopify-csv", top_k=10)).hits
    assert "chaz-kangeroo-hoodie" not in [h.id for h in similar] and len(similar) == 4


# -- WooCommerce -----------------------------------------------------------------------------------

def test_woocommerce_csv(shop_engine: Engine, base: str, tmp_path: Path) -> None:
    catalog = shop.write(tmp_path, "wc-product-export-5-12-2026.csv", shop.woocommerce_csv(PRODUCTS, base))
    assert detect_format(catalog) == "woocommerce"
    report = shop_engine.ingest("woo", catalog)
    assert (report.rows, report.added, report.failed, report.variants) == (5, 5, 0, 30)
    hoodie = shop_engine.get_product("woo", "MH01")
    assert len(hoodie.images) == 5  # "Images" holds five comma-separated URLs
    assert hoodie.price == 52.0  # Regular price, not the sale price of the black variations
    assert hoodie.category == "Hoodies & Sweatshirts"  # not the "Collections > Eco Friendly" branch
    black = next(v for v in hoodie.variants if v.colour == "Black")
    assert black.attributes["sale_price"] == "42.00" and black.price == 52.0
    assert hoodie.attributes["size"] == "S|M"
    _check_variant_search(shop_engine, "woo")
    eco = _search(shop_engine, "woo", "top", filters=Filters(equals={"category": ("Eco Friendly",)}))
    assert len(eco) == 5  # every category path is filterable


# -- Magento 2 -------------------------------------------------------------------------------------

def _magento_media(folder: Path) -> Path:
    for p in PRODUCTS:
        for refs in p.photos.values():
            for ref in refs:
                target = folder / shop.magento_media_path(ref).lstrip("/")
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(LUMA / ref, target)
    return folder


def test_magento_export_with_a_media_folder(shop_engine: Engine, tmp_path: Path) -> None:
    media = _magento_media(tmp_path / "pub" / "media" / "catalog" / "product")
    catalog = shop.write(tmp_path / "export", "catalog_product_20261205.csv", shop.magento_csv(PRODUCTS))
    assert detect_format(catalog) == "magento"
    report = shop_engine.ingest("magento", catalog, media_root=str(media))
    # the children are variants, not products; the store view's translation row is not a product
    assert (report.rows, report.added, report.failed, report.variants) == (5, 5, 0, 30)
    hoodie = shop_engine.get_product("magento", "MH01")
    assert hoodie.category == "Hoodies & Sweatshirts" and hoodie.title == "Chaz Kangeroo Hoodie"
    assert hoodie.attributes["material"] == "Wool" and len(hoodie.images) == 5
    assert {(v.sku, v.options["colour"], v.price) for v in hoodie.variants} >= {("MH01-S-Black", "Black", 52.0)}
    _check_variant_search(shop_engine, "magento")


def test_magento_export_with_a_media_url(shop_engine: Engine, base: str, tmp_path: Path) -> None:
    catalog = shop.write(tmp_path, "catalog_product.csv", shop.magento_csv(PRODUCTS[:2]))
    report = shop_engine.ingest("magento-url", catalog, media_root=f"{base}/media/")
    assert (report.added, report.failed, report.images) == (2, 0, 10)
    hoodie = shop_engine.get_product("magento-url", "MH01")
    assert hoodie.images[0].ref == f"{base}/media/m/h/mh01-black_main.jpg"


def test_magento_paths_outside_the_media_root_are_refused(shop_engine: Engine, tmp_path: Path) -> None:
    media = tmp_path / "media"
    media.mkdir()
    catalog = shop.write(tmp_path / "export", "catalog_product.csv", shop.magento_csv(PRODUCTS[:1]).replace(
        "/m/h/mh01-black_main.jpg", "/../../../etc/passwd"))
    report = shop_engine.ingest("magento-outside", catalog, media_root=str(media))
    assert report.failed == 1 and any("outside the catalog folder" in p.message for p in report.problems)


# -- Google Merchant Center ------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["rss", "atom", "tsv"])
def test_google_merchant_feeds(shop_engine: Engine, base: str, tmp_path: Path, kind: str) -> None:
    items = shop.google_items(PRODUCTS, base)
    text = {"rss": shop.google_rss, "atom": shop.google_atom, "tsv": shop.google_tsv}[kind](items)
    catalog = shop.write(tmp_path, "feed.txt" if kind == "tsv" else "feed.xml", text)
    assert detect_format(catalog) == ("google-tsv" if kind == "tsv" else "google-xml")
    collection = f"google-{kind}"
    report = shop_engine.ingest(collection, catalog)
    assert (report.rows, report.added, report.failed, report.variants) == (5, 5, 0, 30)
    pant = shop_engine.get_product(collection, "MP01")
    assert pant.title == "Caesar Warm-Up Pant"  # the words every item's title starts with
    assert pant.price == 35.0 and pant.attributes["currency"] == "USD"
    assert pant.category == "Pants" and len(pant.images) == 4  # image_link + additional_image_link, all items
    assert pant.variants[0].available is True and pant.variants[0].options["size"] == "S"
    _check_variant_search(shop_engine, collection)


def test_google_feed_entities_are_refused(shop_engine: Engine, tmp_path: Path) -> None:
    bomb = ('<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]>'
            '<rss xmlns:g="http://base.google.com/ns/1.0"><channel><item><g:id>1</g:id><g:title>&b;</g:title>'
            "</item></channel></rss>")
    catalog = shop.write(tmp_path, "feed.xml", bomb)
    from vitrine.errors import CatalogError

    with pytest.raises(CatalogError, match="entities"):
        shop_engine.ingest("google-bomb", catalog)
    assert "google-bomb" not in shop_engine.collection_names()


# -- schema.org ------------------------------------------------------------------------------------

def test_schemaorg_json_ld(shop_engine: Engine, base: str, tmp_path: Path) -> None:
    listing = {"@context": "https://schema.org", "@type": "ItemList", "itemListElement": [
        {"@type": "ListItem", "position": i + 1, "item": shop.schemaorg_product(p, base)}
        for i, p in enumerate(PRODUCTS[2:])]}
    catalog = shop.write(tmp_path, "products.jsonld", json.dumps(
        [shop.schemaorg_group(PRODUCTS[0], base), shop.schemaorg_group(PRODUCTS[1], base), listing]))
    assert detect_format(catalog) == "schemaorg"
    report = shop_engine.ingest("schemaorg", catalog)
    assert (report.rows, report.added, report.failed, report.variants) == (5, 5, 0, 12)
    jacket = shop_engine.get_product("schemaorg", "WJ01")
    assert jacket.price == 75.0 and jacket.attributes["currency"] == "EUR" and jacket.attributes["brand"] == "Luma"
    assert jacket.colour == "Blue|Red|Yellow" and jacket.category == "Jackets"
    group = shop_engine.get_product("schemaorg", "MH02")
    assert len(group.variants) == 6 and group.price == 70.0
    assert {v.price for v in group.variants} == {70.0, 73.0}
    red = _search(shop_engine, "schemaorg", "jacket", filters=Filters(equals={"colour": ("Red",)}))
    assert "WJ01" in [h.id for h in red]  # "Blue, Red, Yellow" is three filterable colours


def test_schemaorg_from_saved_product_pages(shop_engine: Engine, base: str, tmp_path: Path) -> None:
    page = shop.write(tmp_path, "teton-pullover-hoodie.html", shop.product_page(PRODUCTS[1], base))
    assert detect_format(page) == "schemaorg"
    report = shop_engine.ingest("pages", page)
    assert (report.added, report.variants) == (1, 6)
    assert shop_engine.get_product("pages", "MH02").title == "Teton Pullover Hoodie"


# -- Etsy ------------------------------------------------------------------------------------------

def test_etsy_listings_csv(shop_engine: Engine, base: str, tmp_path: Path) -> None:
    catalog = shop.write(tmp_path, "EtsyListingsDownload.csv", shop.etsy_csv(PRODUCTS, base))
    assert detect_format(catalog) == "etsy"
    report = shop_engine.ingest("etsy", catalog)
    assert (report.added, report.failed) == (5, 0)  # listings without a SKU get a stable id
    ids = set(shop_engine.store("etsy").product_hashes())
    assert {"MH01", "WJ01", "WS03"} <= ids and len([i for i in ids if i.startswith("etsy-")]) == 2
    again = shop_engine.ingest("etsy", catalog)
    assert again.unchanged == 5  # the derived ids are the same next time
    hoodie = shop_engine.get_product("etsy", "MH01")
    assert len(hoodie.images) == 5 and hoodie.price == 52.0 and hoodie.attributes["currency"] == "USD"
    assert hoodie.colour == "Black|Gray|Orange" and hoodie.attributes["size"] == "S|M"


# -- Over HTTP -------------------------------------------------------------------------------------

def test_api_ingests_a_shopify_store_by_url_and_serves_variants(shop_engine: Engine, base: str) -> None:
    _Shop.pages = [shop.shopify_products_json(PRODUCTS[:2], base)]
    token = admin_token(shop_engine.home)
    with TestClient(create_app(engine=shop_engine), headers={"Authorization": f"Bearer {token}"}) as client:
        store = f"{base}/store/products.json"
        bad = client.post("/collections/api/ingest/url", json={"url": store, "format": "xls"})
        assert bad.status_code == 422 and bad.json()["error"]["field"].endswith("format")
        local = client.post("/collections/api/ingest/url",
                            json={"url": f"{base}/store/products.json", "media_root": "/etc"})
        assert local.status_code == 422 and local.json()["error"]["field"].endswith("media_root")
        accepted = client.post("/collections/api/ingest/url", json={"url": f"{base}/store/products.json"})
        assert accepted.status_code == 202, accepted.text
        job_id = accepted.json()["id"]
        job = wait_for(lambda: client.get(f"/jobs/{job_id}").json(), lambda j: j["state"] not in ("QUEUED", "RUNNING"))
        assert job["state"] == "COMPLETE" and job["result"]["format"] == "shopify-json", job
        product = client.get("/collections/api/products/teton-pullover-hoodie").json()
        assert len(product["variants"]) == 6 and product["variants"][0]["options"] == {"colour": "Black", "size": "S"}
        found = client.post("/search", json={"text": "purple hoodie", "collection": "api", "top_k": 1}).json()
        hit = found["hits"][0]
        assert hit["id"] == "teton-pullover-hoodie" and hit["variant"]["options"]["colour"] == "Purple"
        assert hit["variants"] == 6 and hit["colour"] == "Purple"
        photo = client.get(hit["main_image_url"])
        assert photo.status_code == 200 and photo.content == (LUMA / "images" / "mh02-purple_main.jpg").read_bytes()
