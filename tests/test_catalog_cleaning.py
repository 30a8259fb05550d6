"""The cell-level rules shop exports need: HTML to text, prices as locales write them, category
paths, dotted --map paths, content-based format detection, and what the report and the CLI say."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
import shop_exports as shop
from conftest import HM_JEANS, LUMA, hm_catalog, luma_rows, make_settings, write_catalog
from test_cli import run_main

from vitrine.catalog.cleaning import Money, html_to_text, parse_money
from vitrine.catalog.columns import detect_columns, lookup
from vitrine.catalog.formats import detect_format
from vitrine.catalog.records import choose_category, derived_genders, to_record
from vitrine.engine import Engine
from vitrine.errors import CatalogError
from vitrine.index.sqlite_store import SqliteStore
from vitrine.index.store import Filters
from vitrine.search.query import Query


def test_html_becomes_text() -> None:
    html = ('<p>Warm &amp; soft.</p><ul><li>Two-tone</li><li>Machine&nbsp;wash</li></ul>'
            '<script>alert(1)</script><style>p{}</style><p>Caf&eacute; &#8364;5<br>next line</p>')
    assert html_to_text(html) == "Warm & soft.\n• Two-tone\n• Machine wash\nCafé €5\nnext line"
    assert html_to_text("<b>Chaz</b>  Hoodie", single_line=True) == "Chaz Hoodie"
    assert html_to_text("5 < 6 and 7 > 3") == "5 < 6 and 7 > 3"  # not markup: left alone
    assert html_to_text("Tom & Jerry tee") == "Tom & Jerry tee"


@pytest.mark.parametrize(("cell", "money"), [
    ("52", Money(52.0, None)),
    (52, Money(52.0, None)),
    ("$1,299.00", Money(1299.0, None)),  # "$" is several currencies: none is guessed
    ("1.299,00 EUR", Money(1299.0, "EUR")),
    ("1 299,00 €", Money(1299.0, "EUR")),
    ("52,00 €", Money(52.0, "EUR")),
    ("15.00 USD", Money(15.0, "USD")),
    ("GBP 1,299", Money(1299.0, "GBP")),
    ("1.299.000 KRW", Money(1299000.0, "KRW")),
    ("0.5", Money(0.5, None)),
])
def test_prices_as_locales_write_them(cell: object, money: Money) -> None:
    assert parse_money(cell) == money


@pytest.mark.parametrize("cell", ["free", "-5", "1.2.3", "nan", True])
def test_bad_prices_are_refused(cell: object) -> None:
    with pytest.raises(ValueError):
        parse_money(cell)


def test_the_most_specific_category_outside_merchandising_branches() -> None:
    paths = ["Default Category/Collections/Eco Friendly", "Default Category/Men/Tops/Hoodies & Sweatshirts",
             "Default Category/Men"]
    assert choose_category(paths) == "Hoodies & Sweatshirts"
    assert choose_category(["Home > Sale", "Home > Women > Dresses"]) == "Dresses"
    assert choose_category(["Collections/New Luma Yoga Collection"]) == "New Luma Yoga Collection"


def test_dotted_paths_reach_into_nested_json(tmp_path: Path) -> None:
    row = {"id": "A", "variants": [{"price": "19.50"}, {"price": "21"}], "offers": [{"price": 7}], "a.b": 1}
    assert lookup(row, "variants.0.price") == "19.50" and lookup(row, "variants.1.price") == "21"
    assert lookup(row, "offers.price") == 7 and lookup(row, "a.b") == 1 and lookup(row, "variants.9.price") is None
    columns = detect_columns(row.keys(), {"price": "variants.1.price"})
    record, _ = to_record(1, row, columns)
    assert record is not None and record.price == 21.0
    with pytest.raises(CatalogError, match="not in the catalog"):
        detect_columns(row.keys(), {"price": "nothing.0.price"})


def test_formats_are_detected_from_the_content(tmp_path: Path) -> None:
    items = shop.google_items(shop.shop_products()[:1], "http://shop.example")
    cases = {
        "feed.txt": (shop.google_tsv(items), "google-tsv"),
        "feed.csv": (shop.google_tsv(items), "google-tsv"),  # tab-separated, whatever its name says
        "export.txt": (shop.shopify_csv(shop.shop_products()[:1], "http://x"), "shopify-csv"),
        "feed": (shop.google_rss(items), "google-xml"),
        "products.json": (json.dumps({"products": shop.shopify_products_json(shop.shop_products()[:1], "x")}),
                          "shopify-json"),
        "plain.json": (json.dumps([{"id": 1}]), "json"),
        "plain.txt": ("id\ttitle\n1\tTee\n", "tsv"),
        "plain.csv": ("id,title\n1,Tee\n", "csv"),
        "lines.data": ('{"id": 1}\n{"id": 2}\n', "jsonl"),
    }
    for name, (text, expected) in cases.items():
        assert detect_format(shop.write(tmp_path, name, text)) == expected, name
    with pytest.raises(CatalogError, match="neither a Google Merchant feed"):
        detect_format(shop.write(tmp_path, "page.html", "<html><body>no data</body></html>"))


def test_markup_never_reaches_the_keyword_index(engine: Engine, tmp_path: Path) -> None:
    products = shop.shop_products()
    items = shop.shopify_products_json(products, ".")  # photos beside the catalog
    folder = write_catalog(tmp_path / "c", [r for r in luma_rows() if r["product_id"] in shop.PICKED]).parent
    catalog = shop.write(folder, "products.json", json.dumps({"products": items}))
    report = engine.ingest("html", catalog)
    assert report.added == 5
    for markup in ("ul li", "amp nbsp", "p"):
        hits = engine.search(Query(text=markup, collection="html")).hits
        assert len(hits) == 5 and all(h.scores["keyword"] == 0 for h in hits), markup
    assert "<" not in engine.get_product("html", "chaz-kangeroo-hoodie").description
    # The shape of a Shopify export read as plain JSON, with its price mapped by a dotted path.
    plain = engine.ingest("plain", catalog, fmt="json", mapping={"price": "variants.1.price", "id": "handle"})
    assert plain.added == 5 and plain.field_sources["price"] == "variants.1.price"
    assert engine.get_product("plain", "chaz-kangeroo-hoodie").price == 57.0
    # A mapping on a detected platform is checked against its canonical rows, then wins over the reader.
    mapped = engine.ingest("mapped", catalog, mapping={"price": "variants.1.price"})
    assert mapped.format == "shopify-json" and engine.get_product("mapped", "chaz-kangeroo-hoodie").price == 57.0
    with pytest.raises(CatalogError, match="not in the catalog"):
        engine.ingest("mapped", catalog, mapping={"price": "Variant Price"})


def test_variants_of_any_json_catalog(tmp_path: Path) -> None:
    row = {"id": "T1", "title": "Tee", "variants": [
        {"sku": "T1-R", "options": {"Color": "Red", "Size": "M"}, "price": "9,99 €", "in_stock": "yes"},
        {"sku": "T1-B", "color": "Blue", "size": "L", "price": "12", "availability": "out of stock",
         "options": ["not", "a", "mapping"]},
        {"price": "free"}, "not a variant"]}
    record, problems = to_record(1, row, detect_columns(row.keys()))
    assert record is not None and [p.field for p in problems] == ["variants", "images"]
    red, blue, third = record.variants
    assert (red.options, red.price, red.available) == ({"colour": "Red", "size": "M"}, 9.99, True)
    assert (blue.options, blue.price, blue.available) == ({"colour": "Blue", "size": "L"}, 12.0, False)
    assert third.sku == "T1-3" and third.price is None
    assert (record.price, record.colour, record.attributes["currency"]) == (9.99, "Red", "EUR")


def test_the_report_says_where_fields_came_from_and_what_is_missing(engine: Engine, tmp_path: Path) -> None:
    rows = [{"sku": r["product_id"], "name": r["title"], "images": r["images"]} for r in luma_rows()[:4]]
    catalog = write_catalog(tmp_path / "c", rows)
    report = engine.ingest("bare", catalog)
    assert report.field_sources == {"id": "sku", "title": "name", "images": "images"}
    assert report.shares == {"price": 0.0, "colour": 0.0, "category": 0.0, "images": 1.0}
    assert "no product has a price (no column found for it; map one with --map)" in report.warnings
    saved = json.loads(Path(engine.store("bare").meta()["last_ingest_report"]).read_text())
    assert saved["warnings"] == report.warnings and saved["format"] == "csv"


def test_cli_exits_6_when_rows_failed(capsys: pytest.CaptureFixture[str], tmp_path: Path, settings: object) -> None:
    rows = [r for r in luma_rows() if r["product_id"] in ("MH01", "MH02")]
    catalog = write_catalog(tmp_path / "c", rows)
    with catalog.open("a") as fh:
        fh.write(",".join(["", "no id"] + [""] * (len(rows[0]) - 2)) + "\n")
    home = settings.home  # type: ignore[attr-defined]
    code, out, err = run_main(capsys, home, "ingest", str(catalog), "-c", "shop", "--no-progress")
    assert code == 6 and "1 rows failed" in err and "format: csv" in out and "products with: price 100%" in out
    assert Engine(settings).store("shop").count() == 2  # type: ignore[arg-type]  # the good rows were kept
    code, out, err = run_main(capsys, home, "ingest", str(catalog), "-c", "shop", "--no-progress",
                              "--allow-failures")
    assert code == 0


@pytest.mark.parametrize(("attributes", "genders"), [
    ({"section": "Menswear"}, ["Men"]),
    ({"section": "Ladieswear"}, ["Women"]),
    ({"Department": "Women's Shoes"}, ["Women"]),
    ({"section": "Baby/Children"}, ["Baby", "Kids"]),
    ({"section": "Divided"}, []),  # H&M's young line: no gender in the name
    ({"material": "Menswear fabric"}, []),  # not a department
])
def test_a_department_attribute_gives_a_gender(attributes: dict[str, str], genders: list[str]) -> None:
    assert derived_genders(["Trousers"], attributes) == genders
    assert derived_genders(["Men/Bottoms/Pants"], attributes) == ["Men"]  # a gendered category path comes first


def test_collections_of_schema_7_gain_genders_from_their_departments(tmp_path: Path, models_dir: Path) -> None:
    """Opened by this Vitrine, a schema 7 store gives H&M rows their `section`'s gender, and a snapshot
    saved before (of the same generation, without them) does not hide it: the migration is a write."""
    settings = make_settings(tmp_path / "home", models_dir, snapshot_min_products=0)
    with Engine(settings) as engine:
        engine.ingest("old", hm_catalog(tmp_path / "hm", {*HM_JEANS["Menswear"], *HM_JEANS["Divided"]}))
        path = engine.store("old").path
    with sqlite3.connect(path) as db:
        db.execute("DELETE FROM product_values WHERE field='gender'")  # as schema 7 stored H&M rows
    with Engine(settings) as engine:
        assert engine.search(Query(collection="old", facets=("gender",))).facets["gender"] == {}  # snapshot saved
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version=7")
    with Engine(settings) as engine:
        assert engine.search(Query(collection="old", facets=("gender",))).facets["gender"] == {"Men": 3}
        response = engine.search(Query(text="mens jeans", collection="old", top_k=6))
        assert response.understood == {"gender": ["Men"]}
        assert {h.id for h in response.hits[:3]} == set(HM_JEANS["Menswear"])
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone() == (8,)


def test_collections_of_the_previous_schema_open_and_gain_variants(tmp_path: Path, settings: object) -> None:
    rows = [r for r in luma_rows() if r["product_id"] in ("MH01",)]
    catalog = write_catalog(tmp_path / "c", rows)
    with Engine(settings) as engine:  # type: ignore[arg-type]
        engine.ingest("old", catalog)
        path = engine.store("old").path
    db = sqlite3.connect(path)
    db.execute("ALTER TABLE products DROP COLUMN variants")
    db.execute("DROP INDEX products_by_change")  # nor a change log (schema 5)
    db.execute("ALTER TABLE products DROP COLUMN changed")
    db.execute("DROP TABLE removed")
    # as schema 2 and 3 stored them: the `sizes` column under its own name, no gender from category paths
    db.execute("UPDATE product_values SET field='sizes' WHERE field='size'")
    db.execute("DELETE FROM product_values WHERE field='gender'")
    db.execute("PRAGMA user_version=2")
    db.commit()
    db.close()
    store = SqliteStore(path, name="old")
    try:
        (product,) = store.get_products(["MH01"])
        assert product.title == "Chaz Kangeroo Hoodie" and product.variants == ()
        # schema 4: "Men/Tops/Hoodies & Sweatshirts" gives the gender, and `sizes` is filtered as `size`
        assert len(store.filter_rows(Filters(equals={"gender": ("men",), "size": ("XL",)}))) == 1
        assert len(store.filter_rows(Filters(equals={"sizes": ("XL",)}))) == 1
    finally:
        store.close()
    assert LUMA.is_dir()
