"""Catalog formats, column detection, and cell parsing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vitrine.catalog.columns import detect_columns, parse_mapping
from vitrine.catalog.readers import BadRow, read_rows
from vitrine.catalog.records import parse_image_refs, parse_price, to_record
from vitrine.errors import CatalogError

PRODUCTS = [
    {"sku": "A1", "name": "Red dress", "color": "Red", "price": "$49.90", "images": ["a.jpg", "b.jpg"], "fit": "slim"},
    {"sku": "A2", "name": "Blue jeans", "color": "Blue", "price": 60, "images": ["c.jpg"], "fit": "regular"},
]


def rows_of(path: Path) -> list[dict[str, object]]:
    return [row for _, row in read_rows(path)]


def test_json_array_wrapper_object_and_jsonl(tmp_path: Path) -> None:
    array = tmp_path / "a.json"
    array.write_text(json.dumps(PRODUCTS))
    wrapped = tmp_path / "b.json"
    wrapped.write_text(json.dumps({"total": 2, "skip": 0, "products": PRODUCTS}))  # DummyJSON's shape
    lines = tmp_path / "c.jsonl"
    lines.write_text("\n".join(json.dumps(p) for p in PRODUCTS) + "\n\n")
    for path in (array, wrapped, lines):
        assert [r["sku"] for r in rows_of(path)] == ["A1", "A2"]


def test_columns_are_detected_and_the_rest_kept_as_attributes(tmp_path: Path) -> None:
    columns = detect_columns(PRODUCTS[0].keys())
    record, problems = to_record(1, PRODUCTS[0], columns)
    assert record is not None and not problems
    assert (record.id, record.title, record.colour, record.price) == ("A1", "Red dress", "Red", 49.9)
    assert record.image_refs == ("a.jpg", "b.jpg")
    assert record.attributes == {"fit": "slim"}


def test_explicit_mapping_is_checked() -> None:
    columns = detect_columns(["ref", "label", "pic"], parse_mapping(["id=ref", "images=pic"]))
    assert columns.source("id") == "ref" and columns.source("images") == "pic"
    with pytest.raises(CatalogError, match="not in the catalog"):
        detect_columns(["ref"], {"id": "reference"})
    with pytest.raises(CatalogError, match="unknown product field"):
        detect_columns(["ref"], {"identifier": "ref"})
    with pytest.raises(CatalogError, match="field=column"):
        parse_mapping(["id"])
    with pytest.raises(CatalogError, match="no id column"):
        detect_columns(["label", "pic"])


def test_malformed_files_name_the_row(tmp_path: Path) -> None:
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text('id,title\n1,ok\n2,"unterminated\n')
    with pytest.raises(CatalogError, match="row 2"):
        rows_of(bad_csv)
    too_many = tmp_path / "cells.csv"
    too_many.write_text("id,title\n1,a,b,c\n")
    with pytest.raises(CatalogError, match="row 1: 4 cells for 2 columns"):
        rows_of(too_many)
    bad_json = tmp_path / "bad.json"
    bad_json.write_text('[{"id": 1}, {"id": 2,,}]')
    with pytest.raises(CatalogError, match="malformed JSON"):
        rows_of(bad_json)
    bad_lines = tmp_path / "bad.jsonl"
    bad_lines.write_text('{"id": 1}\n[1, 2]\n{"id": 3,,}\n{"id": 4}\n')
    # A bad JSONL line is that row's problem; the rows around it are read.
    rows = list(read_rows(bad_lines))
    assert [n for n, _ in rows] == [1, 2, 3, 4] and rows[0][1] == {"id": 1} and rows[3][1] == {"id": 4}
    assert rows[1][1] == BadRow("expected a JSON object, got list")
    assert isinstance(rows[2][1], BadRow) and rows[2][1].message.startswith("malformed JSON")
    not_text = tmp_path / "binary.csv"
    not_text.write_bytes(b"id,title\n1,\xff\xfe\n")
    with pytest.raises(CatalogError, match="UTF-8"):
        rows_of(not_text)


def test_cells() -> None:
    assert parse_image_refs("a.jpg|b.jpg") == ("a.jpg", "b.jpg")
    assert parse_image_refs('["a.jpg", "b.jpg"]') == ("a.jpg", "b.jpg")
    assert parse_image_refs([{"url": "http://x/a.jpg"}, "b.jpg", "b.jpg"]) == ("http://x/a.jpg", "b.jpg")
    assert parse_image_refs("") == ()
    assert parse_price("52,00 €") == 52.0
    assert parse_price("") is None
    for bad in ("cheap", "-3", "nan"):
        with pytest.raises(ValueError):
            parse_price(bad)


def test_row_problems() -> None:
    columns = detect_columns(["id", "title", "price", "image"])
    record, problems = to_record(3, {"id": "", "title": "x"}, columns)
    assert record is None and problems[0].field == "id" and problems[0].row == 3
    record, problems = to_record(4, {"id": "Z", "title": "x", "price": "cheap", "image": "a.jpg"}, columns)
    assert record is not None and record.price is None
    assert [(p.field, p.severity) for p in problems] == [("price", "warning")]
