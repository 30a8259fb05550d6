"""Small catalogs in the exact shape of real shop exports, built from Luma products and photos.

Each writer follows the platform's documented export (column names, nesting, one product over
several rows, HTML descriptions, image URLs); photos are Luma's, by colour, under `base` (a URL of
a local test server, or a folder).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from conftest import LUMA, luma_rows

PICKED = ("MH01", "MH02", "WJ01", "MP01", "WS03")
SIZES = ("S", "M")


@dataclass(frozen=True)
class ShopProduct:
    sku: str
    title: str
    description: str
    category: str  # Luma's path, e.g. Men/Tops/Hoodies & Sweatshirts
    price: float
    material: str
    colours: tuple[str, ...]
    photos: dict[str, tuple[str, ...]]  # colour -> Luma image paths (images/mh01-black_main.jpg)

    @property
    def handle(self) -> str:
        return self.title.lower().replace(" ", "-")

    @property
    def html(self) -> str:
        sentences = [s.strip() for s in self.description.split("•")]
        items = "".join(f"<li>{escape(s)}</li>" for s in sentences[1:] if s)
        return f"<p>{escape(sentences[0])} &amp; more</p><ul>{items}</ul>"

    def sku_of(self, colour: str, size: str) -> str:
        return f"{self.sku}-{size}-{colour}"

    def variants(self) -> list[tuple[str, str]]:
        return [(colour, size) for colour in self.colours for size in SIZES]


def shop_products() -> list[ShopProduct]:
    found = []
    for row in luma_rows():
        if row["product_id"] not in PICKED:
            continue
        refs = row["images"].split("|")
        colours = tuple(row["colours"].split("|"))
        photos = {c: tuple(r for r in refs if f"-{c.lower()}_" in r) for c in colours}
        found.append(ShopProduct(row["product_id"], row["title"], row["description"], row["category"],
                                 float(row["price"]), row["material"], colours, photos))
    return sorted(found, key=lambda p: PICKED.index(p.sku))


def url(base: str, ref: str) -> str:
    return f"{base.rstrip('/')}/{ref}"


def _csv(rows: list[dict[str, Any]], columns: list[str], delimiter: str = ",") -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, delimiter=delimiter, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: row.get(c, "") for c in columns})
    return out.getvalue()


# -- Shopify ---------------------------------------------------------------------------------------

def shopify_products_json(products: list[ShopProduct], base: str) -> list[dict[str, Any]]:
    """The storefront's /products.json items."""
    items = []
    for n, p in enumerate(products, start=1):
        images, image_ids = [], {}
        for colour in p.colours:
            for ref in p.photos[colour]:
                image_id = 1000 * n + len(images) + 1
                image_ids.setdefault(colour, image_id)
                images.append({"id": image_id, "position": len(images) + 1, "src": url(base, ref), "variant_ids": [],
                               "width": 1000, "height": 1240, "product_id": n})
        variants = []
        for v, (colour, size) in enumerate(p.variants(), start=1):
            image = next(im for im in images if im["id"] == image_ids[colour])
            variants.append({
                "id": 100 * n + v, "title": f"{colour} / {size}", "option1": colour, "option2": size, "option3": None,
                "sku": p.sku_of(colour, size), "requires_shipping": True, "taxable": True,
                "featured_image": image, "available": not (colour == p.colours[-1] and size == "M"),
                "price": f"{p.price + (5 if size == 'M' else 0):.2f}", "grams": 500, "compare_at_price": None,
                "position": v, "product_id": n,
            })
        items.append({
            "id": n, "title": p.title, "handle": p.handle, "body_html": p.html, "vendor": "Luma",
            "product_type": p.category.rsplit("/", 1)[-1], "tags": ["luma", p.material.lower()],
            "published_at": "2026-01-02T10:00:00-05:00", "created_at": "2026-01-01T10:00:00-05:00",
            "variants": variants, "images": images,
            "options": [{"name": "Color", "position": 1, "values": list(p.colours)},
                        {"name": "Size", "position": 2, "values": list(SIZES)}],
        })
    return items


SHOPIFY_CSV_COLUMNS = [
    "Handle", "Title", "Body (HTML)", "Vendor", "Product Category", "Type", "Tags", "Published", "Option1 Name",
    "Option1 Value", "Option2 Name", "Option2 Value", "Option3 Name", "Option3 Value", "Variant SKU", "Variant Grams",
    "Variant Inventory Tracker", "Variant Inventory Qty", "Variant Inventory Policy", "Variant Fulfillment Service",
    "Variant Price", "Variant Compare At Price", "Variant Requires Shipping", "Variant Taxable", "Variant Barcode",
    "Image Src", "Image Position", "Image Alt Text", "Gift Card", "SEO Title", "SEO Description", "Variant Image",
    "Variant Weight Unit", "Variant Tax Code", "Cost per item", "Status",
]


def shopify_csv(products: list[ShopProduct], base: str) -> str:
    """The admin's product export: a product's first row, then variant rows, then photo-only rows."""
    rows: list[dict[str, Any]] = []
    for p in products:
        photos = [ref for colour in p.colours for ref in p.photos[colour]]
        variant_rows = []
        for colour, size in p.variants():
            variant_rows.append({
                "Handle": p.handle, "Option1 Value": colour, "Option2 Value": size,
                "Variant SKU": p.sku_of(colour, size),
                "Variant Grams": "500", "Variant Inventory Tracker": "shopify", "Variant Inventory Qty": "3",
                "Variant Inventory Policy": "deny", "Variant Fulfillment Service": "manual",
                "Variant Price": f"{p.price:.2f}", "Variant Requires Shipping": "TRUE", "Variant Taxable": "TRUE",
                "Variant Image": url(base, p.photos[colour][0]), "Variant Weight Unit": "kg",
            })
        first = variant_rows[0]
        first.update({
            "Title": p.title, "Body (HTML)": p.html, "Vendor": "Luma",
            "Product Category": "Apparel & Accessories > Clothing", "Type": p.category.rsplit("/", 1)[-1],
            "Tags": f"luma, {p.material.lower()}", "Published": "TRUE", "Option1 Name": "Color", "Option2 Name": "Size",
            "Gift Card": "FALSE", "Status": "active",
        })
        for position, ref in enumerate(photos, start=1):
            if position <= len(variant_rows):
                variant_rows[position - 1].update({"Image Src": url(base, ref), "Image Position": str(position)})
            else:
                variant_rows.append({"Handle": p.handle, "Image Src": url(base, ref), "Image Position": str(position)})
        rows += variant_rows
    return _csv(rows, SHOPIFY_CSV_COLUMNS)


# -- WooCommerce -----------------------------------------------------------------------------------

WOO_COLUMNS = [
    "ID", "Type", "SKU", "Name", "Published", "Is featured?", "Visibility in catalog", "Short description",
    "Description", "Date sale price starts", "Date sale price ends", "Tax status", "Tax class", "In stock?", "Stock",
    "Backorders allowed?", "Sold individually?", "Weight (kg)", "Allow customer reviews?", "Purchase note",
    "Sale price", "Regular price", "Categories", "Tags", "Shipping class", "Images", "Parent", "Grouped products",
    "Upsells", "Cross-sells", "External URL", "Button text", "Position", "Attribute 1 name", "Attribute 1 value(s)",
    "Attribute 1 visible", "Attribute 1 global", "Attribute 2 name", "Attribute 2 value(s)", "Attribute 2 visible",
    "Attribute 2 global",
]


def woocommerce_csv(products: list[ShopProduct], base: str) -> str:
    """Variable products with their variations as rows of their own, after the parents."""
    parents: list[dict[str, Any]] = []
    variations: list[dict[str, Any]] = []
    next_id = 100
    for p in products:
        next_id += 1
        parent_id = next_id
        categories = p.category.replace("/", " > ") + ", Collections > Eco Friendly"
        parents.append({
            "ID": parent_id, "Type": "variable", "SKU": p.sku, "Name": p.title, "Published": "1", "Is featured?": "0",
            "Visibility in catalog": "visible", "Short description": p.title, "Description": p.html,
            "Tax status": "taxable", "In stock?": "1", "Sale price": "", "Regular price": f"{p.price:.2f}",
            "Categories": categories, "Tags": f"luma, {p.material.lower()}",
            "Images": ", ".join(url(base, ref) for colour in p.colours for ref in p.photos[colour]),
            "Attribute 1 name": "Color", "Attribute 1 value(s)": ", ".join(p.colours), "Attribute 1 visible": "1",
            "Attribute 1 global": "1", "Attribute 2 name": "Size", "Attribute 2 value(s)": ", ".join(SIZES),
            "Attribute 2 visible": "1", "Attribute 2 global": "1",
        })
        for colour, size in p.variants():
            next_id += 1
            variations.append({
                "ID": next_id, "Type": "variation", "SKU": p.sku_of(colour, size),
                "Name": f"{p.title} - {colour}, {size}",
                "Published": "1", "In stock?": "1", "Stock": "4", "Regular price": f"{p.price:.2f}",
                "Sale price": f"{p.price - 10:.2f}" if colour == p.colours[0] else "",
                "Images": url(base, p.photos[colour][0]), "Parent": f"id:{parent_id}", "Position": "0",
                "Attribute 1 name": "Color", "Attribute 1 value(s)": colour, "Attribute 1 global": "1",
                "Attribute 2 name": "Size", "Attribute 2 value(s)": size, "Attribute 2 global": "1",
            })
    return _csv(parents + variations, WOO_COLUMNS)


# -- Magento 2 -------------------------------------------------------------------------------------

MAGENTO_COLUMNS = [
    "sku", "store_view_code", "attribute_set_code", "product_type", "categories", "product_websites", "name",
    "description", "short_description", "weight", "product_online", "tax_class_name", "visibility", "price",
    "special_price", "url_key", "meta_title", "base_image", "base_image_label", "small_image", "thumbnail_image",
    "swatch_image", "created_at", "updated_at", "additional_attributes", "qty", "is_in_stock", "additional_images",
    "configurable_variations", "configurable_variation_labels",
]


def magento_media_path(ref: str) -> str:
    """images/mh01-black_main.jpg -> /m/h/mh01-black_main.jpg (Magento's dispersion folders)."""
    name = ref.rsplit("/", 1)[-1]
    return f"/{name[0]}/{name[1]}/{name}"


def magento_csv(products: list[ShopProduct]) -> str:
    """Simple children first, then their configurable parent; one store-view row of translations."""
    rows: list[dict[str, Any]] = []
    for p in products:
        categories = f"Default Category/{p.category},Default Category/Collections/Eco Friendly"
        specs = []
        for colour, size in p.variants():
            sku = p.sku_of(colour, size)
            specs.append(f"sku={sku},size={size},color={colour}")
            rows.append({
                "sku": sku, "attribute_set_code": "Top", "product_type": "simple", "categories": categories,
                "product_websites": "base", "name": f"{p.title}-{size}-{colour}", "weight": "1", "product_online": "1",
                "visibility": "Not Visible Individually", "price": f"{p.price:.2f}",
                "base_image": magento_media_path(p.photos[colour][0]),
                "small_image": magento_media_path(p.photos[colour][0]),
                "additional_attributes": f"color={colour},size={size}", "qty": "10", "is_in_stock": "1",
            })
        all_photos = [magento_media_path(ref) for colour in p.colours for ref in p.photos[colour]]
        rows.append({
            "sku": p.sku, "attribute_set_code": "Top", "product_type": "configurable", "categories": categories,
            "product_websites": "base", "name": p.title, "description": p.html, "short_description": "",
            "product_online": "1", "visibility": "Catalog, Search", "price": f"{p.price:.2f}",
            "url_key": p.handle, "base_image": all_photos[0], "small_image": all_photos[0],
            "additional_attributes": f"material={p.material},eco_collection=1", "is_in_stock": "1",
            "additional_images": ",".join(all_photos[1:]), "configurable_variations": "|".join(specs),
            "configurable_variation_labels": "color=Color,size=Size",
        })
        rows.append({"sku": p.sku, "store_view_code": "de", "name": f"{p.title} (DE)", "product_type": "configurable"})
    return _csv(rows, MAGENTO_COLUMNS)


# -- Google Merchant Center ------------------------------------------------------------------------

def google_items(products: list[ShopProduct], base: str) -> list[dict[str, Any]]:
    """One item per colour x size, grouped by item_group_id (Google's rule for variants)."""
    items = []
    for p in products:
        for colour, size in p.variants():
            photos = [url(base, ref) for ref in p.photos[colour]]
            items.append({
                "id": p.sku_of(colour, size), "title": f"{p.title} - {colour} - {size}", "description": p.html,
                "link": f"https://shop.example/{p.handle}", "image_link": photos[0],
                "additional_image_link": photos[1:], "availability": "in_stock",
                "price": f"{p.price:.2f} USD", "brand": "Luma", "condition": "new",
                "google_product_category": "Apparel & Accessories > Clothing",
                "product_type": f"Home > {p.category.replace('/', ' > ')}", "item_group_id": p.sku,
                "color": colour, "size": size, "gender": "male" if p.sku.startswith("M") else "female",
                "age_group": "adult", "material": p.material,
            })
    return items


def _g_fields(item: dict[str, Any], skip: tuple[str, ...] = ()) -> list[str]:
    """An item's fields as `g:` elements, a repeated one (a list) once per value."""
    return [f"<g:{key}>{escape(str(one))}</g:{key}>" for key, value in item.items() if key not in skip
            for one in (value if isinstance(value, list) else [value])]


def google_rss(items: list[dict[str, Any]]) -> str:
    out = ['<?xml version="1.0" encoding="UTF-8"?>',
           '<rss xmlns:g="http://base.google.com/ns/1.0" version="2.0"><channel>',
           "<title>Luma</title><link>https://shop.example</link><description>Luma feed</description>"]
    for item in items:
        out.append("<item>")
        out.append(f"<title>{escape(item['title'])}</title>")
        out += _g_fields(item)
        out.append("<g:shipping><g:country>US</g:country><g:price>4.95 USD</g:price></g:shipping>")
        out.append("</item>")
    out.append("</channel></rss>")
    return "\n".join(out)


def google_atom(items: list[dict[str, Any]]) -> str:
    out = ['<?xml version="1.0"?>',
           '<feed xmlns="http://www.w3.org/2005/Atom" xmlns:g="http://base.google.com/ns/1.0">',
           "<title>Luma</title><link rel=\"self\" href=\"https://shop.example\"/><updated>2026-12-01T00:00:00Z</updated>"]
    for item in items:
        out.append("<entry>")
        out.append(f"<title>{escape(item['title'])}</title><summary>{escape(item['description'])}</summary>")
        out.append(f"<link href=\"{escape(item['link'])}\"/>")
        out += _g_fields(item, skip=("title", "description", "link"))
        out.append("</entry>")
    out.append("</feed>")
    return "\n".join(out)


def google_tsv(items: list[dict[str, Any]]) -> str:
    columns = list(items[0])
    rows = [{k: ",".join(v) if isinstance(v, list) else v for k, v in item.items()} for item in items]
    for row in rows:
        row["description"] = str(row["description"]).replace("\n", " ")
    return _csv(rows, columns, delimiter="\t")


# -- schema.org ------------------------------------------------------------------------------------

def schemaorg_product(p: ShopProduct, base: str) -> dict[str, Any]:
    """A Product with offers as a list, the brand as an object, and every colour in one `color`."""
    return {
        "@context": "https://schema.org/", "@type": "Product", "name": p.title, "sku": p.sku,
        "description": p.html, "image": [url(base, ref) for colour in p.colours for ref in p.photos[colour]],
        "brand": {"@type": "Brand", "name": "Luma"}, "color": ", ".join(p.colours), "material": p.material,
        "category": p.category.replace("/", " > "),
        "offers": [{"@type": "Offer", "price": f"{p.price:.2f}", "priceCurrency": "EUR",
                    "availability": "https://schema.org/InStock", "url": f"https://shop.example/{p.handle}"}],
    }


def schemaorg_group(p: ShopProduct, base: str) -> dict[str, Any]:
    return {
        "@context": "https://schema.org/", "@type": "ProductGroup", "name": p.title, "productGroupID": p.sku,
        "description": p.html, "brand": {"@type": "Brand", "name": "Luma"}, "category": p.category,
        "variesBy": ["https://schema.org/color", "https://schema.org/size"],
        "hasVariant": [{
            "@type": "Product", "sku": p.sku_of(colour, size), "name": f"{p.title} {colour} {size}", "color": colour,
            "size": size, "image": url(base, p.photos[colour][0]),
            "offers": {"@type": "Offer", "price": p.price + (3 if size == "M" else 0), "priceCurrency": "EUR",
                       "availability": "https://schema.org/InStock"},
        } for colour, size in p.variants()],
    }


def product_page(p: ShopProduct, base: str) -> str:
    data = json.dumps(schemaorg_group(p, base))
    return (f"<!DOCTYPE html><html><head><title>{escape(p.title)}</title>"
            f'<script type="application/ld+json">{data}</script>'
            '<script type="application/ld+json">{"@context": "https://schema.org", "@type": "BreadcrumbList", '
            '"itemListElement": []}</script></head>'
            f"<body><h1>{escape(p.title)}</h1></body></html>")


# -- Etsy ------------------------------------------------------------------------------------------

ETSY_COLUMNS = ["TITLE", "DESCRIPTION", "PRICE", "CURRENCY_CODE", "QUANTITY", "TAGS", "MATERIALS",
                *[f"IMAGE{i}" for i in range(1, 11)], "VARIATION 1 TYPE", "VARIATION 1 NAME", "VARIATION 1 VALUES",
                "VARIATION 2 TYPE", "VARIATION 2 NAME", "VARIATION 2 VALUES", "SKU"]


def etsy_csv(products: list[ShopProduct], base: str) -> str:
    rows = []
    for n, p in enumerate(products):
        photos = [url(base, ref) for colour in p.colours for ref in p.photos[colour]][:10]
        row: dict[str, Any] = {
            "TITLE": p.title, "DESCRIPTION": p.description, "PRICE": f"{p.price:.2f}", "CURRENCY_CODE": "USD",
            "QUANTITY": "5", "TAGS": f"luma,{p.material.lower()}", "MATERIALS": p.material,
            "VARIATION 1 TYPE": "Primary color", "VARIATION 1 NAME": "Color", "VARIATION 1 VALUES": ",".join(p.colours),
            "VARIATION 2 TYPE": "Size", "VARIATION 2 NAME": "Size", "VARIATION 2 VALUES": ",".join(SIZES),
            "SKU": p.sku if n % 2 == 0 else "",  # most Etsy listings have no SKU
        }
        row.update({f"IMAGE{i}": ref for i, ref in enumerate(photos, start=1)})
        rows.append(row)
    return _csv(rows, ETSY_COLUMNS)


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


__all__ = ["LUMA"]
