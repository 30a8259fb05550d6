"""Magento 2's `catalog_product` export (System > Export).

A configurable product names its children in `configurable_variations`
(`sku=MH01-XS-Black,size=XS,color=Black|sku=...`); the children are simple products listed on rows
of their own, anywhere in the file, and become the parent's variants. Rows with a
`store_view_code` are one store view's translations and are skipped. Image paths
(`/m/h/mh01-black_main.jpg`) are relative to the media folder (`pub/media/catalog/product`),
given by `--media-root` as a folder or a base URL; without it, to the catalog's folder.
"""

from __future__ import annotations

from pathlib import Path

from vitrine.catalog.formats.base import Platform, ReadOptions, Rows, kept, present, split_list
from vitrine.catalog.readers import BadRow, Row, read_rows
from vitrine.catalog.records import option_name

_USED = ("sku", "store_view_code", "product_type", "categories", "name", "description", "price", "base_image",
         "additional_images", "additional_attributes", "configurable_variations", "is_in_stock", "qty",
         "small_image", "thumbnail_image", "swatch_image")


def parse_pairs(cell: object, *, pair_separator: str = ",") -> dict[str, str]:
    """`color=Black,size=M` -> {'color': 'Black', 'size': 'M'}; a part without `=` belongs to the value before."""
    pairs: dict[str, str] = {}
    last = None
    for part in str(cell or "").split(pair_separator):
        key, sep, value = part.partition("=")
        if sep and key.strip():
            last = key.strip()
            pairs[last] = value.strip()
        elif last is not None and part.strip():
            pairs[last] += pair_separator + part
    return pairs


def image_ref(path: str, media_root: str | None) -> str:
    path = path.strip()
    if path.lower().startswith(("http://", "https://")):
        return path
    if media_root is None:
        return path.lstrip("/")
    return media_root.rstrip("/") + "/" + path.lstrip("/")


def read(path: Path, options: ReadOptions) -> Rows:
    rows: list[tuple[int, Row | BadRow]] = []
    by_sku: dict[str, Row] = {}
    for number, row in read_rows(path, "csv"):
        if not isinstance(row, BadRow) and present(row.get("store_view_code")):
            continue
        rows.append((number, row))
        if not isinstance(row, BadRow) and present(row.get("sku")):
            by_sku[str(row["sku"]).strip()] = row
    children: set[str] = set()
    variants: dict[str, list[Row]] = {}
    for _, row in rows:
        if isinstance(row, BadRow) or not present(row.get("configurable_variations")):
            continue
        found = variants.setdefault(str(row.get("sku")).strip(), [])
        for spec in str(row["configurable_variations"]).split("|"):
            pairs = parse_pairs(spec)
            sku = pairs.pop("sku", "").strip()
            if not sku:
                continue
            children.add(sku)
            found.append(_variant(sku, pairs, by_sku.get(sku), options.media_root))
    for number, row in rows:
        if isinstance(row, BadRow):
            yield number, row
        elif str(row.get("sku") or "").strip() not in children:
            yield number, _product(row, variants.get(str(row.get("sku") or "").strip(), []), options.media_root)


def _images(row: Row, media_root: str | None) -> list[str]:
    paths = [row.get("base_image"), *split_list(row.get("additional_images")), row.get("small_image")]
    return list(dict.fromkeys(image_ref(str(p), media_root) for p in paths if present(p)))


def _available(row: Row | None) -> bool | None:
    if row is None or not present(row.get("is_in_stock")):
        return None
    return str(row["is_in_stock"]).strip() in ("1", "true", "yes")


def _variant(sku: str, options: dict[str, str], child: Row | None, media_root: str | None) -> Row:
    variant: Row = {"sku": sku, "options": {option_name(k): v for k, v in options.items() if v}}
    if child is not None:
        variant.update({"title": child.get("name"), "price": child.get("price"), "available": _available(child),
                        "images": _images(child, media_root), "qty": child.get("qty")})
    return variant


def _product(row: Row, variants: list[Row], media_root: str | None) -> Row:
    attributes = {option_name(k): v for k, v in parse_pairs(row.get("additional_attributes")).items() if v}
    product: Row = {
        "id": row.get("sku"), "title": row.get("name"), "description": row.get("description"),
        "categories": split_list(row.get("categories")), "price": row.get("price"),
        "images": _images(row, media_root), "variants": variants, "available": _available(row),
        "product_type": row.get("product_type"),
    }
    product.update(attributes)
    product.update(kept(row, _USED))
    return {k: v for k, v in product.items() if present(v)}


PLATFORM = Platform("magento", "Magento 2 catalog_product export", {
    "id": "sku", "title": "name", "description": "description", "category": "categories (most specific)",
    "colour": "additional_attributes color= / configurable_variations", "price": "price",
    "images": "base_image, additional_images (under --media-root)",
}, read)
