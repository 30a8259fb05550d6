"""Catalogs in: reading CSV/JSON/JSONL, mapping columns, fetching images safely, ingesting."""
