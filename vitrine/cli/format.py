"""Readable terminal output: tables for hits, collections and ingest reports."""

from __future__ import annotations

from typing import Any

from vitrine.catalog.report import IngestReport
from vitrine.search.query import SearchResponse


def _cut(text: str, width: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def table(headers: list[str], rows: list[list[Any]], widths: list[int]) -> str:
    lines = ["  ".join(_cut(h, w).ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    for row in rows:
        lines.append("  ".join(_cut("" if v is None else v, w).ljust(w) for v, w in zip(row, widths, strict=True)))
    return "\n".join(lines)


def format_response(response: SearchResponse, *, show_collection: bool) -> str:
    headers = ["#", "score", "id", "title", "category", "colour", "price", "matched image"]
    widths = [3, 6, 12, 34, 22, 16, 8, 32]
    if show_collection:
        headers.insert(2, "collection")
        widths.insert(2, 10)
    rows = []
    for rank, hit in enumerate(response.hits, start=response.offset + 1):
        row: list[Any] = [rank, f"{hit.score:.3f}", hit.id, hit.title, hit.category, hit.colour,
                          "" if hit.price is None else f"{hit.price:.2f}", hit.matched_image or ""]
        if show_collection:
            row.insert(2, hit.collection)
        rows.append(row)
    out = [table(headers, rows, widths) if rows else "no results"]
    if response.understood:
        out.insert(0, f"understood: {format_understood(response.understood)}  (searched: "
                      f"{response.searched_text or '(browse)'!r}; --no-understand to turn off)\n")
    out.append(f"\n{response.total} matching products; {response.timing_ms['total']:.1f} ms")
    for name, counts in response.facets.items():
        top = ", ".join(f"{v} ({n})" for v, n in list(counts.items())[:8])
        out.append(f"{name}: {top}")
    return "\n".join(out)


def format_understood(understood: dict[str, Any]) -> str:
    parts = []
    for kind, value in understood.items():
        if kind == "price":
            low, high = value.get("low"), value.get("high")
            parts.append(f"price {low:g}-{high:g}" if low is not None and high is not None
                         else f"price <= {high:g}" if high is not None else f"price >= {low:g}")
        elif isinstance(value, dict):
            parts.append(f"{kind} " + ", ".join(f"{k} -> {v}" for k, v in value.items()))
        else:
            parts.append(f"{kind} " + " | ".join(value))
        if isinstance(value, dict) and value.get("words"):
            parts[-1] += f" ({value['words']})"
    return "; ".join(parts)


def format_report(report: IngestReport, *, path: str | None, max_problems: int = 20) -> str:
    lines = [
        f"collection {report.collection}: {report.rows} rows read, {report.valid} valid "
        f"({report.added} added, {report.updated} updated, {report.unchanged} unchanged), "
        f"{report.failed} failed, {report.deleted} deleted",
        f"images: {report.images} stored, {report.images_encoded} encoded, {report.images_cached} from cache; "
        f"{report.elapsed_s:.1f} s",
    ]
    if report.format:
        variants = f", {report.variants} variants" if report.variants else ""
        lines.append(f"format: {report.format}{variants}")
    if report.field_sources:
        lines.append("fields: " + "; ".join(f"{k} <- {v}" for k, v in report.field_sources.items()))
    if report.shares:
        lines.append("products with: " + ", ".join(f"{k} {v:.0%}" for k, v in report.shares.items()))
    lines += [f"warning: {w}" for w in report.warnings]
    if report.problems:
        lines.append(f"{len(report.problems)} problems:")
        for p in report.problems[:max_problems]:
            lines.append(f"  row {p.row} [{p.severity}] id={p.product_id or '-'} {p.field}: {p.message}")
        if len(report.problems) > max_problems:
            lines.append(f"  ... and {len(report.problems) - max_problems} more (see the JSON report)")
    if path:
        lines.append(f"report: {path}")
    return "\n".join(lines)


def format_collections(infos: list[dict[str, Any]]) -> str:
    if not infos:
        return "no collections"
    rows = [[i["name"], i["products"], i["images"], i.get("image_model", ""), i.get("text_model", "")] for i in infos]
    return table(["name", "products", "images", "image model", "text model"], rows, [20, 9, 8, 20, 18])
