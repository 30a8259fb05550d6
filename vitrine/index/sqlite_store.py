"""The embedded store: one SQLite database (WAL) per collection holds products, images, vectors and
a full-text index. Every write is one transaction, so a crash never leaves a product without its
vectors; the `generation` counter tells in-memory indexes when to reload."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from vitrine.arrays import Array
from vitrine.errors import CollectionGone, Conflict, NotFound
from vitrine.files import remove_folder
from vitrine.index.keywords import PostingCache, Postings, keyword_scores, keyword_scores_of, keyword_words
from vitrine.index.rows import (
    SearchTexts,
    attributes_json,
    filter_sql,
    filter_values,
    in_stock,
    products_in_order,
    stored_genders,
    variants_json,
)
from vitrine.index.store import (
    SWAP_BATCH,
    VECTOR_BATCH,
    CollectionStore,
    Filters,
    Product,
    ProductImage,
    ProductWrite,
    VectorData,
    batches_by_row,
    check_image_model,
    normalise_field,
    swap_in_batches,
)
from vitrine.sqlite_files import connect_wal
from vitrine.tables import SqliteTables

# 2: image feature rows end with the colour descriptor; 3: products have variants; 4: `sizes` is
# filtered as `size`, and category paths give a gender ("Men/Tops") to products without one; 5: a change
# log (the generation that last wrote each product, and the rows removed), so indexes update incrementally;
# 6: the filter indexes hold the product row, so a filter's rows are read from the index alone; 7: model
# versions in the store; 8: products without a gender get their department's ("section": "Menswear")
SCHEMA_VERSION = 8
_STRONG_COLUMNS = "{id title category colour}"  # rows.SearchTexts

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS products(
    row INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    title TEXT NOT NULL,
    description TEXT NOT NULL,
    category TEXT NOT NULL,
    colour TEXT NOT NULL,
    price REAL,
    attributes TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    text_vector BLOB NOT NULL,
    updated_at REAL NOT NULL,
    variants TEXT NOT NULL DEFAULT '[]',
    changed INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS images(
    product_row INTEGER NOT NULL REFERENCES products(row) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    ref TEXT NOT NULL,
    path TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    features BLOB NOT NULL,
    PRIMARY KEY(product_row, position)
);
CREATE INDEX IF NOT EXISTS images_by_sha ON images(sha256);
CREATE TABLE IF NOT EXISTS product_values(
    product_row INTEGER NOT NULL REFERENCES products(row) ON DELETE CASCADE,
    field TEXT NOT NULL,
    value TEXT NOT NULL,
    value_norm TEXT NOT NULL,
    num REAL
);
CREATE INDEX IF NOT EXISTS values_by_field_row ON product_values(field, value_norm, product_row);
CREATE INDEX IF NOT EXISTS values_by_num_row ON product_values(field, num, product_row);
CREATE INDEX IF NOT EXISTS values_by_row ON product_values(product_row);
CREATE TABLE IF NOT EXISTS training_pairs(
    product_id TEXT NOT NULL,
    text TEXT NOT NULL,
    source TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY(product_id, text)
);
CREATE VIRTUAL TABLE IF NOT EXISTS products_fts USING fts5(
    id, title, category, colour, description, attributes, tokenize='porter unicode61 remove_diacritics 2'
);
"""
# What a reader holding the collection as of generation g needs to catch up: products written since
# (`changed` > g) and rows removed since. Schema 5; a store migrated to it knows changes from then on.
_CHANGE_LOG = """
CREATE INDEX IF NOT EXISTS products_by_change ON products(changed);
CREATE TABLE IF NOT EXISTS removed(row INTEGER PRIMARY KEY, generation INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS removed_by_generation ON removed(generation);
"""
# Schema 7: trained model versions live in the store, so that a replica or worker on another machine
# finds the version a collection searches with (they were files in the collection's folder before).
_MODELS = """
CREATE TABLE IF NOT EXISTS models(
    version INTEGER PRIMARY KEY,
    weights BLOB NOT NULL,
    card TEXT NOT NULL,
    created_at REAL NOT NULL
);
"""
# Schema 6. A filter on a colour held by 56k of 1M products read each row through the table: 80-110 ms,
# against 11-13 ms from an index that holds the row.
_COVERING_FILTERS = """
DROP INDEX IF EXISTS values_by_field;
DROP INDEX IF EXISTS values_by_num;
CREATE INDEX IF NOT EXISTS values_by_field_row ON product_values(field, value_norm, product_row);
CREATE INDEX IF NOT EXISTS values_by_num_row ON product_values(field, num, product_row);
"""


class SqliteStore:
    """`CollectionStore` on SQLite. Thread-safe: a write connection and a read connection, each behind
    its own lock. Reads run in WAL read transactions, so they neither wait for a write in progress (a
    reindex's swap holds one for seconds) nor see it before it commits."""

    def __init__(self, path: Path, *, name: str) -> None:
        self.name = name
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._closed = False
        self._writing = 0  # the generation of the write in progress (under the lock)
        self._posting_cache = PostingCache()
        self._db = connect_wal(path)
        self.incarnation = path.stat().st_ino
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._migrate()
        self._read_lock = threading.RLock()
        self._reader = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._reader.execute("PRAGMA busy_timeout=10000")
        self._reader.execute("PRAGMA query_only=ON")

    def _migrate(self) -> None:
        with self._locked():
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise RuntimeError(f"{self.path} was written by a newer Vitrine (schema {version})")
            if version == 1 and self._db.execute("SELECT 1 FROM images LIMIT 1").fetchone():
                raise Conflict(
                    f"collection {self.name!r} was built by an older Vitrine whose image features lack colour; "
                    "delete it and ingest its catalog again"
                )
            if version in (2, 3, 4, 5, 6, 7):
                self._db.execute("BEGIN")
                if version == 2:  # products gained variants: old rows have none
                    self._db.execute("ALTER TABLE products ADD COLUMN variants TEXT NOT NULL DEFAULT '[]'")
                if version in (2, 3):
                    self._migrate_values()
                columns = {c[1] for c in self._db.execute("PRAGMA table_info(products)")}
                if "changed" not in columns:
                    self._db.execute("ALTER TABLE products ADD COLUMN changed INTEGER NOT NULL DEFAULT 0")
                for statement in filter(str.strip, (_CHANGE_LOG + _COVERING_FILTERS + _MODELS).split(";")):
                    self._db.execute(statement)
                self._add_missing_genders()
                if version < 5:  # changes before this generation were not logged: older indexes cannot catch up
                    self._db.execute("INSERT OR REPLACE INTO meta(key, value) SELECT 'changes_from', "
                                     "coalesce((SELECT value FROM meta WHERE key='generation'), '0')")
                self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                self._db.execute("COMMIT")
            elif version < SCHEMA_VERSION:
                self._db.executescript(f"BEGIN; {_SCHEMA} {_CHANGE_LOG} {_MODELS} "
                                       f"PRAGMA user_version={SCHEMA_VERSION}; COMMIT;")

    def _migrate_values(self) -> None:
        """Schema 4's filter values, in the open transaction: `sizes` rows become `size` ones."""
        db = self._db
        db.execute("DELETE FROM product_values WHERE field='sizes' AND EXISTS (SELECT 1 FROM product_values s "
                   "WHERE s.field='size' AND s.product_row=product_values.product_row "
                   "AND s.value_norm=product_values.value_norm)")
        db.execute("UPDATE product_values SET field='size' WHERE field='sizes'")

    def _add_missing_genders(self) -> None:
        """Schema 4's and 8's filter values, in the open transaction: products without a gender get their
        category path's, else their department's, as `rows.filter_values` gives them now."""
        db = self._db
        stored = db.execute("SELECT row, category, attributes FROM products WHERE row NOT IN "
                            "(SELECT product_row FROM product_values WHERE field='gender')").fetchall()
        added = stored_genders(stored)
        if not added:
            return
        db.executemany("INSERT INTO product_values(product_row, field, value, value_norm, num) "
                       "VALUES(?, 'gender', ?, ?, NULL)", [(row, g, g.lower()) for row, g in added])
        # as a write: a snapshot of an earlier generation catches up with these products' new values
        generation = int(db.execute("INSERT INTO meta(key, value) VALUES('generation', '1') ON CONFLICT(key) "
                                    "DO UPDATE SET value = CAST(value AS INTEGER) + 1 RETURNING value").fetchone()[0])
        rows = sorted({r for r, _ in added})
        db.executemany("UPDATE products SET changed=? WHERE row=?", [(generation, row) for row in rows])

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """The connection, for one operation; CollectionGone once the collection was deleted (the
        engine closes the store then), instead of sqlite3's "closed database"."""
        with self._lock:
            if self._closed:
                raise CollectionGone(f"collection {self.name!r} was deleted", field="collection")
            yield

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        """The read connection, in one read transaction (one snapshot) for the outermost use."""
        with self._read_lock:
            if self._closed:
                raise CollectionGone(f"collection {self.name!r} was deleted", field="collection")
            outermost = not self._reader.in_transaction
            if outermost:
                self._reader.execute("BEGIN")
            try:
                yield self._reader
            finally:
                if outermost:
                    self._reader.execute("COMMIT")

    @contextmanager
    def _write(self, *, bump: bool = True) -> Iterator[sqlite3.Connection]:
        """One IMMEDIATE transaction, rolled back on any error. Writes to products bump the
        generation, which tells in-memory indexes to reload. A collection deleted by another process
        (its file gone or replaced) is refused, so nothing is written into a deleted file."""
        with self._locked():
            if self._file_inode() != self.incarnation:
                raise CollectionGone(f"collection {self.name!r} was deleted", field="collection")
            self._db.execute("BEGIN IMMEDIATE")
            try:
                if bump:  # the generation this write makes, which the change log records
                    self._writing = int(self._db.execute(
                        "INSERT INTO meta(key, value) VALUES('generation', '1') ON CONFLICT(key) "
                        "DO UPDATE SET value = CAST(value AS INTEGER) + 1 RETURNING value"
                    ).fetchone()[0])
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def _file_inode(self) -> int | None:
        try:
            return self.path.stat().st_ino
        except FileNotFoundError:
            return None

    def close(self) -> None:
        with self._lock, self._read_lock:
            self._closed = True
            self._reader.close()
            self._db.close()

    # -- metadata ---------------------------------------------------------------------------------

    def generation(self) -> int:
        with self._reading() as db:
            row = db.execute("SELECT value FROM meta WHERE key='generation'").fetchone()
        return int(row[0]) if row else 0

    def set_meta(self, key: str, value: str, *, bump: bool = False) -> None:
        """`bump` when the value changes what searches return (the collection's model version)."""
        with self._write(bump=bump) as db:
            db.execute("INSERT INTO meta(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                       (key, value))

    def meta(self) -> dict[str, str]:
        with self._reading() as db:
            return dict(db.execute("SELECT key, value FROM meta").fetchall())

    def count(self) -> int:
        with self._reading() as db:
            return int(db.execute("SELECT count(*) FROM products").fetchone()[0])

    def info(self) -> dict[str, Any]:
        with self._reading() as db:
            images = int(db.execute("SELECT count(*) FROM images").fetchone()[0])
        meta = self.meta()
        return {
            "name": self.name,
            "products": self.count(),
            "images": images,
            "generation": int(meta.pop("generation", 0)),
            **meta,
        }

    def product_hashes(self) -> dict[str, str]:
        with self._reading() as db:
            return dict(db.execute("SELECT id, content_hash FROM products").fetchall())

    # -- writes -----------------------------------------------------------------------------------

    def upsert(self, products: Sequence[ProductWrite], *, image_model: str | None = None) -> None:
        if not products:
            return
        now = time.time()
        with self._write() as db:
            check_image_model(db.execute("SELECT value FROM meta WHERE key='image_model'").fetchone(), image_model,
                              self.name)
            for product in products:
                r = product.record
                row = db.execute(
                    """INSERT INTO products(id, title, description, category, colour, price, attributes,
                                            content_hash, text_vector, updated_at, variants, changed)
                       VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                       ON CONFLICT(id) DO UPDATE SET title=excluded.title, description=excluded.description,
                         category=excluded.category, colour=excluded.colour, price=excluded.price,
                         attributes=excluded.attributes, content_hash=excluded.content_hash,
                         text_vector=excluded.text_vector, updated_at=excluded.updated_at,
                         variants=excluded.variants, changed=excluded.changed
                       RETURNING row""",
                    (r.id, r.title, r.description, r.category, r.colour, r.price,
                     attributes_json(r), r.content_hash,
                     np.asarray(product.text_vector, dtype=np.float32).tobytes(), now, variants_json(r),
                     self._writing),
                ).fetchone()[0]
                self._clear_children(db, row)
                db.executemany(
                    "INSERT INTO images(product_row, position, ref, path, sha256, features) VALUES(?, ?, ?, ?, ?, ?)",
                    [(row, i, im.ref, im.path, im.sha256, np.asarray(im.features, dtype=np.float32).tobytes())
                     for i, im in enumerate(product.images)],
                )
                db.executemany(
                    "INSERT INTO product_values(product_row, field, value, value_norm, num) VALUES(?, ?, ?, ?, ?)",
                    [(row, *v) for v in filter_values(r)],
                )
                texts = SearchTexts.of(r)
                db.execute(
                    "INSERT INTO products_fts(rowid, id, title, category, colour, description, attributes) "
                    "VALUES(?, ?, ?, ?, ?, ?, ?)",
                    (row, texts.id, texts.title, texts.category, texts.colour, texts.description, texts.attributes),
                )

    @staticmethod
    def _clear_children(db: sqlite3.Connection, row: int) -> None:
        db.execute("DELETE FROM images WHERE product_row=?", (row,))
        db.execute("DELETE FROM product_values WHERE product_row=?", (row,))
        db.execute("DELETE FROM products_fts WHERE rowid=?", (row,))

    def delete(self, ids: Iterable[str]) -> int:
        ids = list(ids)
        if not ids:
            return 0
        deleted = 0
        with self._write() as db:
            for product_id in ids:
                found = db.execute("SELECT row FROM products WHERE id=?", (product_id,)).fetchone()
                if found:
                    self._clear_children(db, found[0])
                    db.execute("DELETE FROM products WHERE row=?", (found[0],))
                    db.execute("INSERT OR REPLACE INTO removed(row, generation) VALUES(?, ?)",
                               (found[0], self._writing))
                    deleted += 1
        return deleted

    def add_training_pair(self, product_id: str, text: str, source: str) -> None:
        """A text that describes a product's photos (a label correction, a query that led to a click)."""
        with self._write(bump=False) as db:
            db.execute("INSERT OR REPLACE INTO training_pairs VALUES(?, ?, ?, ?)",
                       (product_id, text, source, time.time()))

    def save_model(self, weights: bytes, card: str, *, version: int | None = None) -> int:
        with self._write(bump=False) as db:
            if version is None:
                version = int(db.execute("SELECT coalesce(max(version), 0) + 1 FROM models").fetchone()[0])
            db.execute("INSERT OR IGNORE INTO models VALUES(?, ?, ?, ?)", (version, weights, card, time.time()))
        return version

    def model(self, version: int) -> tuple[bytes, str] | None:
        with self._reading() as db:
            found = db.execute("SELECT weights, card FROM models WHERE version=?", (version,)).fetchone()
        return (bytes(found[0]), str(found[1])) if found else None

    def model_cards(self) -> list[tuple[int, str]]:
        with self._reading() as db:
            return [(int(v), str(c)) for v, c in db.execute("SELECT version, card FROM models ORDER BY version")]

    def photo_refs(self, *, after: str = "", limit: int = 256) -> list[tuple[str, str]]:
        with self._reading() as db:
            return [(str(sha), str(path)) for sha, path in db.execute(
                "SELECT sha256, min(path) FROM images WHERE sha256 > ? GROUP BY sha256 ORDER BY sha256 LIMIT ?",
                (after, limit))]

    def photo_count(self) -> int:
        with self._reading() as db:
            return int(db.execute("SELECT count(DISTINCT sha256) FROM images").fetchone()[0])

    def swap_image_features(self, features_of: Callable[[list[tuple[str, str]]], Mapping[str, Array]],
                            meta: Mapping[str, str]) -> int:
        with self._write() as db:
            swapped = swap_in_batches(
                lambda after: db.execute("SELECT product_row, position, sha256, path FROM images WHERE "
                                         "(product_row, position) > (?, ?) ORDER BY product_row, position LIMIT ?",
                                         (*after, SWAP_BATCH)).fetchall(),
                lambda rows: db.executemany("UPDATE images SET features=? WHERE product_row=? AND position=?",
                                            [(f.tobytes(), row, position) for f, row, position in rows]),
                features_of)
            db.execute("UPDATE products SET changed=?", (self._writing,))
            db.executemany("INSERT INTO meta(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET "
                           "value=excluded.value", list(meta.items()))
        return swapped

    def value_counts(self, field: str, limit: int = 500) -> list[tuple[str, int]]:
        with self._reading() as db:
            found = db.execute(
                "SELECT min(value), count(*) FROM product_values WHERE field=? GROUP BY value_norm "
                "ORDER BY count(*) DESC, value_norm LIMIT ?", (normalise_field(field), limit),
            ).fetchall()
        return [(v, int(n)) for v, n in found]

    def vocabulary_texts(self, *, changed_since: int | None = None) -> list[str]:
        """Each product's title, category and colour: the words its shoppers are understood against.
        `changed_since`: only the products written after that generation."""
        scope, args = ("INDEXED BY products_by_change WHERE changed > ?", (changed_since,)) \
            if changed_since is not None else ("", ())
        with self._reading() as db:
            found = db.execute(f"SELECT title || ' ' || category || ' ' || colour FROM products {scope}",
                                     args).fetchall()
        return [t for (t,) in found]

    def product_titles(self) -> list[tuple[str, str]]:
        """(id, title) of every product, for search-as-you-type."""
        with self._reading() as db:
            return [(i, t) for i, t in db.execute("SELECT id, title FROM products")]

    def holds_word(self, word: str) -> bool:
        """Whether any product holds `word` (stemmed, in any indexed field): then it is not a typo."""
        words = keyword_words(word)
        return len(words) == 1 and len(self._postings(words[0])[0]) > 0

    def training_pairs(self) -> list[tuple[str, str, str]]:
        """(collection, product id, text) for every recorded pair whose product still exists."""
        with self._reading() as db:
            found = db.execute(
                "SELECT t.product_id, t.text FROM training_pairs t JOIN products p ON p.id = t.product_id"
            ).fetchall()
        return [(self.name, pid, text) for pid, text in found]

    # -- reads ------------------------------------------------------------------------------------

    def get_products(self, ids: Sequence[str]) -> list[Product]:
        """Products in the order of `ids`; unknown ids are left out."""
        if not ids:
            return []
        with self._reading() as db:
            marks = ",".join("?" * len(ids))
            rows = db.execute(
                f"SELECT row, id, title, description, category, colour, price, attributes, variants FROM products "
                f"WHERE id IN ({marks})", list(ids),
            ).fetchall()
            by_row = {r[0]: r for r in rows}
            images: dict[int, list[ProductImage]] = {}
            if by_row:
                for prow, pos, ref, path, sha in db.execute(
                    f"SELECT product_row, position, ref, path, sha256 FROM images WHERE product_row IN "
                    f"({','.join('?' * len(by_row))}) ORDER BY product_row, position", list(by_row),
                ):
                    images.setdefault(prow, []).append(ProductImage(pos, ref, path, sha))
        return products_in_order(ids, rows, images)

    def filter_rows(self, filters: Filters) -> Array:
        """Store rows of the products matching every filter (sorted)."""
        query = filter_sql(filters, "?")
        sql, params = query if query else ("SELECT row FROM products", [])
        with self._reading() as db:
            found = [r[0] for r in db.execute(sql, params)]
        return np.unique(np.asarray(found, dtype=np.int64))

    def stock_rows(self, available: bool) -> Array:
        """Rows of the products known to be in stock (any variant available, or the product's own
        availability), or known to be out of it (`available=False`). Unknown counts as neither."""
        with self._reading() as db:
            found = db.execute("SELECT row, attributes, variants FROM products").fetchall()
        return np.asarray([row for row, attributes, variants in found if in_stock(attributes, variants) is available],
                          dtype=np.int64)

    def keyword_scores(self, query: str) -> tuple[Array, Array]:
        """(rows, scores in (0, 1]) of the products holding any word of `query` (index/keywords.py)."""
        return keyword_scores(keyword_words(query), self._postings)

    def keyword_scores_of(self, query: str, rows: Array) -> Array:
        """The keyword scores of the given rows (0 for a row that holds no word of `query`)."""
        return keyword_scores_of(keyword_words(query), self._postings, rows)

    def _postings(self, word: str) -> Postings:
        """(rows holding `word` anywhere, rows holding it in a strong column), stemmed."""
        def rows(match: str) -> Array:
            # As one string, parsed by numpy: a common word of a million products (250k rows) is read in
            # 45 ms, where stepping the cursor row by row took 70.
            with self._reading() as db:
                (joined,), = db.execute(
                    "SELECT group_concat(rowid) FROM products_fts WHERE products_fts MATCH ?", (match,)).fetchall()
            return np.fromstring(joined or "", dtype=np.int64, sep=",")

        term = f'"{word}"'
        return self._posting_cache.get(word, self.generation(),
                                       lambda: (rows(term), rows(f"{_STRONG_COLUMNS}: {term}")))

    def load_vectors(self, facet_fields: Sequence[str], *, changed_since: int | None = None) -> VectorData:
        """Everything search holds in memory, read in one snapshot (a read transaction) row by row into
        arrays sized up front: loading peaks at the arrays themselves, where holding every row's blob as
        a Python object, then joining and copying them, took twice as much again (27 KB a product).
        `changed_since`: only the products written after that generation."""
        # Of a few changed products: through their index (the planner would scan every row in `row` order)
        scope, args = ("INDEXED BY products_by_change WHERE changed > ?", (changed_since,)) \
            if changed_since is not None else ("", ())
        with self._reading() as db:
            return _read_vectors(db, facet_fields, scope, args)

    def vector_batches(self, facet_fields: Sequence[str], *, batch: int = VECTOR_BATCH) -> Iterator[VectorData]:
        """`load_vectors` of every product, a batch at a time, from one read transaction of a connection of
        its own: a WAL reader sees none of the writes committed after it began, and neither holds up the
        other (a rebuild in the background reads for a minute at a million products)."""
        with self._reading():  # CollectionGone once deleted
            pass
        db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA busy_timeout=10000")
            db.execute("BEGIN")

            def next_bound(after: int, size: int) -> int | None:
                found = db.execute("SELECT row FROM products WHERE row > ? ORDER BY row LIMIT 1 OFFSET ?",
                                   (after, size - 1)).fetchone()
                return None if found is None else int(found[0])

            yield from batches_by_row(
                next_bound, lambda after, upto: _read_vectors(db, facet_fields, "WHERE row > ? AND row <= ?",
                                                              (after, upto)), batch)
        finally:
            db.close()  # ends the read transaction

    def changed_count(self, generation: int) -> int:
        with self._reading() as db:
            return int(db.execute("SELECT count(*) FROM products INDEXED BY products_by_change WHERE changed > ?",
                                        (generation,)).fetchone()[0])

    def removed_since(self, generation: int) -> Array | None:
        """Rows of the products deleted after `generation`; None when the log does not reach that far back."""
        with self._reading() as db:
            found = db.execute("SELECT value FROM meta WHERE key='changes_from'").fetchone()
            if found is not None and generation < int(found[0]):
                return None
            rows = db.execute("SELECT row FROM removed WHERE generation > ? ORDER BY row", (generation,))
            return np.asarray([r for (r,) in rows], dtype=np.int64)


def _read_vectors(db: sqlite3.Connection, facet_fields: Sequence[str], scope: str,
                  args: tuple[Any, ...]) -> VectorData:
    """The products that `FROM products {scope}` selects, read in the open transaction of `db`."""
    of_scope = f"product_row IN (SELECT row FROM products {scope})" if scope else ""
    owned = f"WHERE {of_scope}" if scope else ""
    n_products, text_bytes = db.execute(
        f"SELECT count(*), max(length(text_vector)) FROM products {scope}", args).fetchone()
    rows = np.empty(n_products, dtype=np.int64)
    prices = np.empty(n_products, dtype=np.float32)
    text = np.zeros((n_products, (text_bytes or 0) // 4), dtype=np.float32)
    ids: list[str] = []
    for i, (row, product_id, vector, price) in enumerate(
            db.execute(f"SELECT row, id, text_vector, price FROM products {scope} ORDER BY row", args)):
        rows[i] = row
        ids.append(product_id)
        text[i] = np.frombuffer(vector, dtype=np.float32)
        prices[i] = np.nan if price is None else price
    n_images, feature_bytes = db.execute(
        f"SELECT count(*), max(length(features)) FROM images {owned}", args).fetchone()
    owners = np.empty(n_images, dtype=np.int64)
    positions = np.empty(n_images, dtype=np.int16)
    features = np.zeros((n_images, (feature_bytes or 0) // 4), dtype=np.float32)
    for i, (owner, position, blob) in enumerate(db.execute(
            f"SELECT product_row, position, features FROM images {owned} ORDER BY product_row, position", args)):
        owners[i] = owner
        positions[i] = position
        features[i] = np.frombuffer(blob, dtype=np.float32)
    facets: dict[str, tuple[Array, Array, list[str]]] = {}
    for field in facet_fields:
        owner_rows: list[int] = []
        codes: list[int] = []
        code: dict[str, int] = {}
        # Of some products, their rows' values (`+field`: not the index of every product's)
        where = f"+field=? AND {of_scope}" if scope else "field=?"
        for row, value in db.execute(f"SELECT product_row, value FROM product_values WHERE {where}",
                                     (field, *args)):
            owner_rows.append(row)
            codes.append(code.setdefault(value, len(code)))
        values = sorted(code)  # codes in sorted order of the values, as the facet counts expect
        recode = np.empty(len(code), dtype=np.int32)
        for rank, value in enumerate(values):
            recode[code[value]] = rank
        facets[field] = (
            np.searchsorted(rows, np.asarray(owner_rows, dtype=np.int64)).astype(np.int32),
            recode[np.asarray(codes, dtype=np.int64)] if codes else np.zeros(0, dtype=np.int32),
            values,
        )
    return VectorData(
        rows=rows, ids=ids, text_vectors=text, image_features=features,
        image_product=np.searchsorted(rows, owners).astype(np.int32), image_position=positions,
        facets=facets, prices=prices,
    )


class SqliteCollections:
    """`StoreBackend` of the embedded mode: `<home>/collections/<name>/store.sqlite`."""

    def __init__(self, collections_dir: Path) -> None:
        self.collections_dir = collections_dir
        collections_dir.mkdir(parents=True, exist_ok=True)

    def _path(self, name: str) -> Path:
        return self.collections_dir / name / "store.sqlite"

    def names(self) -> list[str]:
        return sorted(p.parent.name for p in self.collections_dir.glob("*/store.sqlite")
                      if not p.parent.name.startswith("."))

    def open(self, name: str, *, create: bool) -> SqliteStore:
        if not create and not self._path(name).is_file():
            raise NotFound(f"no collection named {name!r}", field="collection")
        return SqliteStore(self._path(name), name=name)

    def current(self, store: CollectionStore) -> bool:
        try:
            return self._path(store.name).stat().st_ino == store.incarnation
        except FileNotFoundError:
            return False

    def delete(self, name: str) -> bool:
        if not self._path(name).is_file():
            return False
        remove_folder(self.collections_dir / name)
        return True

    def tables(self, name: str, schema: str) -> SqliteTables:
        return SqliteTables(self.collections_dir.parent / f"{name}.sqlite", schema)

    def ready(self) -> bool:
        return os.access(self.collections_dir, os.W_OK)

    def close(self) -> None:
        pass
