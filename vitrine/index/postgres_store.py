"""The scale-out store: every collection in one PostgreSQL database, shared by any number of
`vitrine serve` replicas and `vitrine worker` processes on any number of machines.

Each collection is a schema of its own (`vc_<id>`, listed in `vitrine_collections`): products,
photos, filter values and training pairs in tables, vectors in pgvector columns, keywords in
full-text search columns. Search itself stays in one place (search/, index/vectors.py): a replica
loads a collection's vectors once per generation, as the embedded mode does, so both backends rank
alike. Every write is one transaction that bumps the collection's generation, which tells every
replica to reload.

A collection's id is its incarnation: one deleted and made again under its name gets a new schema,
so a replica still holding the old one is told (CollectionGone), never writes into the new one.
"""

from __future__ import annotations

import logging
import struct
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import psycopg.conninfo
from psycopg import sql
from psycopg.adapt import Dumper
from psycopg.pq import Format
from psycopg_pool import ConnectionPool, PoolTimeout

from vitrine.arrays import Array
from vitrine.errors import CollectionGone, Conflict, NotFound, ServiceDown
from vitrine.files import remove_folder
from vitrine.index.keywords import WORD, PostingCache, Postings, keyword_scores, keyword_scores_of, keyword_words
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

log = logging.getLogger(__name__)

# Versions of the database's own tables and of one collection's schema, both recorded in the database:
# one written by a newer Vitrine is refused, an older one migrated. Collection 2: a change log (the
# generation that last wrote each product, and the rows removed), so indexes update incrementally; and
# filter indexes that hold the product row (an index-only scan instead of a table visit per row).
# Collection 3: trained model versions, which were files on the machine that trained them.
DATABASE_VERSION = 1
COLLECTION_VERSION = 4  # 3: model versions in the store; 4: genders from departments ("Menswear")
_SETUP_LOCK = 7_146_001  # pg_advisory_xact_lock key: one process sets the database up at a time
_CONNECT_TIMEOUT_S = 5
_STREAM_ROWS = 5000
_APP_SCHEMA = "vitrine_app"  # the service's own tables: API keys, jobs, looks, analytics
_TRUST_S = 1.0  # a pooled connection used this recently is lent without a ping
_MIN_STEMMED_BYTES = 3  # as SQLite's FTS5 porter tokenizer

# Stemmed as SQLite's porter tokenizer does, so a query word finds the same products on both backends:
# the Porter stemmer (Snowball's English finds other products for 32 of Luma's 1,986 words; Porter for
# 2, "incredible" and "incredibly", where FTS5's variant of it differs), accents folded, and no stop
# words of its own (keywords.STOPWORDS drops the query's).
_SETUP = """
CREATE EXTENSION IF NOT EXISTS vector;
CREATE EXTENSION IF NOT EXISTS unaccent;
CREATE TABLE IF NOT EXISTS vitrine_database(version integer NOT NULL);
CREATE TABLE IF NOT EXISTS vitrine_collections(
    id serial PRIMARY KEY,
    name text NOT NULL UNIQUE,
    version integer NOT NULL,
    created_at double precision NOT NULL
);
DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_ts_dict WHERE dictname = 'vitrine_stem') THEN
        CREATE TEXT SEARCH DICTIONARY vitrine_stem (TEMPLATE = snowball, Language = porter);
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_ts_config WHERE cfgname = 'vitrine') THEN
        CREATE TEXT SEARCH CONFIGURATION vitrine (COPY = english);
        ALTER TEXT SEARCH CONFIGURATION vitrine
            ALTER MAPPING FOR asciiword, asciihword, hword_asciipart, word, hword, hword_part
            WITH unaccent, vitrine_stem;
    END IF;
END $$;
"""

_COLLECTION_TABLES = """
CREATE TABLE meta(key text PRIMARY KEY, value text NOT NULL);
INSERT INTO meta VALUES('generation', '0');
CREATE TABLE products(
    row_id bigserial PRIMARY KEY,
    id text NOT NULL UNIQUE,
    title text NOT NULL,
    description text NOT NULL,
    category text NOT NULL,
    colour text NOT NULL,
    price double precision,
    attributes text NOT NULL,
    content_hash text NOT NULL,
    text_vector vector NOT NULL,
    updated_at double precision NOT NULL,
    variants text NOT NULL,
    changed bigint NOT NULL DEFAULT 0
);
-- The keyword index, inverted: each stemmed word of a product once, and whether a strong column holds
-- it. A word's products are one index-only range scan (7 ms for 11k of 100k products, where a GIN
-- index over tsvector columns took 75 ms: PostgreSQL rechecks every row it finds).
CREATE TABLE product_words(
    word text NOT NULL,
    product_row bigint NOT NULL REFERENCES products(row_id) ON DELETE CASCADE,
    strong boolean NOT NULL,
    PRIMARY KEY(word, product_row) INCLUDE (strong)
);
CREATE INDEX words_by_row ON product_words(product_row);
CREATE TABLE images(
    product_row bigint NOT NULL REFERENCES products(row_id) ON DELETE CASCADE,
    position integer NOT NULL,
    ref text NOT NULL,
    path text NOT NULL,
    sha256 text NOT NULL,
    features vector NOT NULL,
    PRIMARY KEY(product_row, position)
);
CREATE INDEX images_by_sha ON images(sha256);
CREATE TABLE product_values(
    product_row bigint NOT NULL REFERENCES products(row_id) ON DELETE CASCADE,
    field text NOT NULL,
    value text NOT NULL,
    value_norm text NOT NULL,
    num double precision
);
CREATE INDEX values_by_field ON product_values(field, value_norm) INCLUDE (product_row);
CREATE INDEX values_by_num ON product_values(field, num) INCLUDE (product_row);
CREATE INDEX values_by_row ON product_values(product_row);
CREATE TABLE training_pairs(
    product_id text NOT NULL,
    text text NOT NULL,
    source text NOT NULL,
    created_at double precision NOT NULL,
    PRIMARY KEY(product_id, text)
);
"""
# What a reader holding the collection as of generation g needs to catch up: products written since
# (`changed` > g) and rows removed since.
_CHANGE_LOG = """
CREATE INDEX products_by_change ON products(changed);
CREATE TABLE removed(row_id bigint PRIMARY KEY, generation bigint NOT NULL);
CREATE INDEX removed_by_generation ON removed(generation);
"""
# Trained model versions: every replica and worker finds the version a collection searches with.
_MODELS = """
CREATE TABLE models(
    version integer PRIMARY KEY,
    weights bytea NOT NULL,
    card text NOT NULL,
    created_at double precision NOT NULL
);
"""
# Collection version 1 -> 2. Changes before this generation were not logged: older in-memory indexes cannot catch up.
_MIGRATE_TO_2 = """
ALTER TABLE products ADD COLUMN changed bigint NOT NULL DEFAULT 0;
DROP INDEX values_by_field;
DROP INDEX values_by_num;
CREATE INDEX values_by_field ON product_values(field, value_norm) INCLUDE (product_row);
CREATE INDEX values_by_num ON product_values(field, num) INCLUDE (product_row);
""" + _CHANGE_LOG + """
INSERT INTO meta SELECT 'changes_from', value FROM meta WHERE key = 'generation' ON CONFLICT (key) DO NOTHING;
"""


def _add_missing_genders(conn: psycopg.Connection[Any]) -> None:
    """Version 4's filter values, in the open transaction on the collection's schema: products without a
    gender get their department's ("Menswear"), as new writes do."""
    stored = conn.execute("SELECT row_id, category, attributes FROM products WHERE row_id NOT IN "
                          "(SELECT product_row FROM product_values WHERE field = 'gender')").fetchall()
    added = stored_genders(stored)
    if not added:
        return
    with conn.cursor() as cursor:
        cursor.executemany("INSERT INTO product_values(product_row, field, value, value_norm, num) "
                           "VALUES(%s, 'gender', %s, %s, NULL)", [(row, g, g.lower()) for row, g in added])
        # as a write: a snapshot of an earlier generation catches up with these products' new values
        found = conn.execute("UPDATE meta SET value = (value::bigint + 1)::text WHERE key = 'generation' "
                             "RETURNING value::bigint").fetchone()
        assert found is not None  # every collection has its generation
        rows = sorted({r for r, _ in added})
        cursor.executemany("UPDATE products SET changed = %s WHERE row_id = %s", [(found[0], row) for row in rows])


class _VectorDumper(Dumper):
    """numpy arrays as pgvector's binary input (dimensions, then big-endian float32s); oid 0 lets the
    server take the type from the column written."""

    format = Format.BINARY

    def dump(self, obj: Array) -> bytes:
        values = np.asarray(obj, dtype=">f4").ravel()
        return struct.pack("!hh", len(values), 0) + values.tobytes()


def _vector(blob: bytes) -> Array:
    """A `vector_send()` result as float32."""
    return np.frombuffer(blob, dtype=">f4", offset=4).astype(np.float32)


def _posting(conn: psycopg.Connection[Any], stem: str) -> tuple[Array, Array]:
    """(rows holding `stem`, whether each holds it in a strong column)."""
    (rows, strong), = conn.execute(
        "SELECT coalesce(string_agg(int8send(product_row), ''), ''), coalesce(string_agg(boolsend(strong), ''), '') "
        "FROM product_words WHERE word = %s", (stem,), binary=True).fetchall()
    return np.frombuffer(rows, dtype=">i8").astype(np.int64), np.frombuffer(strong, dtype=bool).copy()


class _Session:
    """What a pooled connection remembers between loans: when it last answered, and the collection
    schema its search path is set to (saving a round trip per operation: a search makes a dozen)."""

    def __init__(self) -> None:
        self.answered = time.monotonic()
        self.schema: str | None = None


_sessions: weakref.WeakKeyDictionary[psycopg.Connection[Any], _Session] = weakref.WeakKeyDictionary()
_sessions_lock = threading.Lock()


def _session(conn: psycopg.Connection[Any]) -> _Session:
    with _sessions_lock:
        return _sessions.setdefault(conn, _Session())


def _distrust_all() -> None:
    """After a failure for want of the database: it may be gone or back, so ping each connection first."""
    with _sessions_lock:
        for session in _sessions.values():
            session.answered = 0.0


def _configure(conn: psycopg.Connection[Any]) -> None:
    conn.adapters.register_dumper(np.ndarray, _VectorDumper)


def _check(conn: psycopg.Connection[Any]) -> None:
    """Before a loan: a connection idle for a while, or lent since a request failed for want of the
    database, is pinged (one gone with a restarted server is replaced instead of failing a request);
    one that answered just now is trusted."""
    session = _session(conn)
    if time.monotonic() - session.answered > _TRUST_S:
        ConnectionPool.check_connection(conn)
    session.answered = time.monotonic()


def _words(text: str) -> tuple[str, list[str]]:
    """Text as SQLite's porter tokenizer sees it: (words to stem, words kept as they are). Words split at
    every other character (PostgreSQL's parser keeps "Men/Tops/Hoodies" whole as a file path, and would
    not find "hoodies" in it); words under 3 bytes are not stemmed ("xs" stays "xs", not "x")."""
    words = WORD.findall(text.lower())
    return " ".join(w for w in words if not _unstemmed(w)), sorted({w for w in words if _unstemmed(w)})


def _unstemmed(word: str) -> bool:
    return len(word.encode()) < _MIN_STEMMED_BYTES


def _place(url: str) -> str:
    """host:port/database of a connection URL, for messages: never its user or password."""
    try:
        parts = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "at VITRINE_DATABASE_URL"
    return f"{parts.get('host', 'localhost')}:{parts.get('port', 5432)}/{parts.get('dbname', '')}"


class PostgresCollections:
    """`StoreBackend` on PostgreSQL + pgvector. A collection's folder under the home keeps what is
    local to a machine: its vector snapshots, ingest reports and fine-tuned model files."""

    def __init__(self, url: str, collections_dir: Path, *, pool_size: int) -> None:
        self.collections_dir = collections_dir
        self._place = _place(url)
        self._pool = ConnectionPool(
            url, min_size=1, max_size=pool_size, kwargs={"autocommit": True, "connect_timeout": _CONNECT_TIMEOUT_S},
            configure=_configure, check=_check, timeout=_CONNECT_TIMEOUT_S,
            name="vitrine", open=False,
        )
        self._pool.open(wait=False)
        self._set_up = False
        self._setup_lock = threading.Lock()

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection; ServiceDown while the database does not answer. The tables are set up
        (or migrated) on first use, so a replica started before its database comes up serves once it is."""
        try:
            with self._pool.connection() as conn:
                if not self._set_up:
                    self._setup(conn)
                yield conn
        except (psycopg.OperationalError, PoolTimeout) as exc:
            _distrust_all()
            raise ServiceDown(f"the database {self._place} is unavailable ({type(exc).__name__}); "
                              "retry when it is back") from exc

    def _setup(self, conn: psycopg.Connection[Any]) -> None:
        with self._setup_lock, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SETUP_LOCK,))
            try:
                conn.execute(_SETUP)
            except psycopg.errors.InsufficientPrivilege as exc:
                raise Conflict("the database lacks the pgvector extension and this user may not create it: "
                               "run `CREATE EXTENSION vector; CREATE EXTENSION unaccent;` as a superuser") from exc
            found = conn.execute("SELECT max(version) FROM vitrine_database").fetchone()
            version = found[0] if found else None
            if version is None:
                conn.execute("INSERT INTO vitrine_database VALUES(%s)", (DATABASE_VERSION,))
            elif version > DATABASE_VERSION:
                raise Conflict(f"the database was set up by a newer Vitrine (version {version}); upgrade this one")
        self._set_up = True

    def names(self) -> list[str]:
        with self.connection() as conn:
            return [n for (n,) in conn.execute("SELECT name FROM vitrine_collections ORDER BY name")]

    def open(self, name: str, *, create: bool) -> PostgresStore:
        with self.connection() as conn, conn.transaction():
            found = conn.execute("SELECT id, version FROM vitrine_collections WHERE name=%s", (name,)).fetchone()
            if found is None and create:
                made = conn.execute(
                    "INSERT INTO vitrine_collections(name, version, created_at) VALUES(%s, %s, %s) "
                    "ON CONFLICT(name) DO NOTHING RETURNING id, version", (name, COLLECTION_VERSION, time.time()),
                ).fetchone()
                if made is not None:
                    conn.execute(sql.SQL("CREATE SCHEMA {}").format(_schema(made[0])))
                    conn.execute(sql.SQL("SET LOCAL search_path TO {}, public").format(_schema(made[0])))
                    conn.execute(_COLLECTION_TABLES + _CHANGE_LOG + _MODELS)
                    found = made
                else:  # made by another process meanwhile
                    found = conn.execute("SELECT id, version FROM vitrine_collections WHERE name=%s",
                                         (name,)).fetchone()
        if found is None:
            raise NotFound(f"no collection named {name!r}", field="collection")
        collection_id, version = found
        if version > COLLECTION_VERSION:
            raise Conflict(f"collection {name!r} was written by a newer Vitrine (version {version})")
        if version < COLLECTION_VERSION:
            self._migrate(collection_id)
        return PostgresStore(self, name=name, collection_id=collection_id)

    def _migrate(self, collection_id: int) -> None:
        """A collection written by an older Vitrine brought to this version, once, in one transaction."""
        with self.connection() as conn, conn.transaction():
            found = conn.execute("SELECT version FROM vitrine_collections WHERE id=%s FOR UPDATE",
                                 (collection_id,)).fetchone()
            if found is None or found[0] >= COLLECTION_VERSION:  # deleted, or migrated by another process meanwhile
                return
            conn.execute(sql.SQL("SET LOCAL search_path TO {}, public").format(_schema(collection_id)))
            if found[0] < 2:
                conn.execute(_MIGRATE_TO_2)
            if found[0] < 3:
                conn.execute(_MODELS)
            if found[0] < 4:
                _add_missing_genders(conn)
            conn.execute("UPDATE vitrine_collections SET version=%s WHERE id=%s", (COLLECTION_VERSION, collection_id))
        log.info("collection migrated", extra={"collection_id": collection_id, "version": COLLECTION_VERSION})

    def current(self, store: CollectionStore) -> bool:
        with self.connection() as conn:
            found = conn.execute("SELECT id FROM vitrine_collections WHERE name=%s", (store.name,)).fetchone()
        return found is not None and found[0] == store.incarnation

    def delete(self, name: str) -> bool:
        with self.connection() as conn, conn.transaction():
            found = conn.execute("DELETE FROM vitrine_collections WHERE name=%s RETURNING id", (name,)).fetchone()
            if found is not None:
                conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(_schema(found[0])))
        folder = self.collections_dir / name
        if (folder / "store.sqlite").exists():  # an embedded collection of this name, from before the home moved
            log.warning("collection folder kept: it holds an embedded store", extra={"collection": name})
        else:
            remove_folder(folder)
        return found is not None

    def tables(self, name: str, schema: str) -> PostgresTables:
        return PostgresTables(self, schema)

    def ready(self) -> bool:
        try:
            with self.connection() as conn:
                conn.execute("SELECT 1")
        except ServiceDown:
            return False
        return True

    def close(self) -> None:
        self._pool.close()


class PostgresTables:
    """`Tables` in the database's `vitrine_app` schema, shared by every replica and worker. Each
    statement is a transaction of its own, as in the SQLite file it replaces."""

    dialect = "postgres"

    def __init__(self, backend: PostgresCollections, schema: str) -> None:
        self._backend = backend
        self._schema_sql = schema
        self._created = False

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        with self._backend.connection() as conn:
            session = _session(conn)
            if not self._created:
                with conn.transaction():
                    conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SETUP_LOCK,))
                    conn.execute(f"CREATE SCHEMA IF NOT EXISTS {_APP_SCHEMA}")
                    conn.execute(f"SET LOCAL search_path TO {_APP_SCHEMA}")
                    conn.execute(self._schema_sql.encode())
                self._created = True
            if session.schema != _APP_SCHEMA:
                conn.execute(f"SET search_path TO {_APP_SCHEMA}, public")
                session.schema = _APP_SCHEMA
            yield conn

    def rows(self, query: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._connection() as conn:
            return conn.execute(query.replace("?", "%s").encode(), params).fetchall()

    def change(self, query: str, params: Sequence[Any] = ()) -> int:
        with self._connection() as conn:
            return conn.execute(query.replace("?", "%s").encode(), params).rowcount

    def close(self) -> None:
        pass  # the connections are the backend's


def _schema(collection_id: int) -> sql.Identifier:
    return sql.Identifier(f"vc_{int(collection_id)}")


def _product_row(row: int, product: ProductWrite, now: float) -> tuple[Any, ...]:
    r = product.record
    return (row, r.id, r.title, r.description, r.category, r.colour, r.price, attributes_json(r), r.content_hash,
            np.asarray(product.text_vector, dtype=np.float32), now, variants_json(r))


def _words_row(row: int, product: ProductWrite) -> tuple[Any, ...]:
    texts = SearchTexts.of(product.record)
    return (row, *_words(f"{texts.strong} {texts.weak}"), *_words(texts.strong))


# Every stemmed word of a product's texts once, strong when its strong columns hold it.
_INSERT_WORDS = """
INSERT INTO product_words(product_row, word, strong)
SELECT %s, w.lexeme, w.lexeme = ANY(strong.words)
FROM unnest(to_tsvector('vitrine', %s) || array_to_tsvector(%s::text[])) w,
     (SELECT tsvector_to_array(to_tsvector('vitrine', %s) || array_to_tsvector(%s::text[])) AS words) strong
"""


class PostgresStore:
    """`CollectionStore` on PostgreSQL: one collection's schema. Thread-safe (pooled connections)."""

    def __init__(self, backend: PostgresCollections, *, name: str, collection_id: int) -> None:
        self.name = name
        self.incarnation = collection_id
        self._backend = backend
        self._schema = _schema(collection_id)
        self._schema_name = f"vc_{int(collection_id)}"
        self._posting_cache = PostingCache()
        self._closed = False
        self._local = threading.local()  # per thread: the generation of its write in progress

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A connection whose search path is this collection's schema. A schema dropped by another
        process (the collection was deleted) answers CollectionGone."""
        if self._closed:
            raise CollectionGone(f"collection {self.name!r} was deleted", field="collection")
        try:
            with self._backend.connection() as conn:
                session = _session(conn)
                if session.schema != self._schema_name:
                    conn.execute(sql.SQL("SET search_path TO {}, public").format(self._schema))
                    session.schema = self._schema_name
                yield conn
        except (psycopg.errors.UndefinedTable, psycopg.errors.InvalidSchemaName) as exc:
            raise CollectionGone(f"collection {self.name!r} was deleted", field="collection") from exc

    @contextmanager
    def _write(self, *, bump: bool = True) -> Iterator[psycopg.Connection[Any]]:
        """One transaction. Writes to products bump the generation first: its row lock makes writers to
        one collection take turns, as SQLite's IMMEDIATE transactions do, so two replicas writing one
        product never race, and every replica sees each write's generation once."""
        with self._connection() as conn, conn.transaction():
            if bump:  # the generation this write makes, which the change log records
                (self._local.generation,), = conn.execute(
                    "UPDATE meta SET value = (value::bigint + 1)::text WHERE key = 'generation' RETURNING value::bigint"
                ).fetchall()
            yield conn

    def _all(self, query: str | sql.Composed, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._connection() as conn:
            return conn.execute(query, params).fetchall()

    def close(self) -> None:
        self._closed = True  # the connections are the backend's

    # -- metadata ---------------------------------------------------------------------------------

    def generation(self) -> int:
        found = self._all("SELECT value FROM meta WHERE key='generation'")
        return int(found[0][0]) if found else 0

    def set_meta(self, key: str, value: str, *, bump: bool = False) -> None:
        """`bump` when the value changes what searches return (the collection's model version)."""
        with self._write(bump=bump) as conn:
            conn.execute("INSERT INTO meta(key, value) VALUES(%s, %s) "
                         "ON CONFLICT(key) DO UPDATE SET value=excluded.value", (key, value))

    def meta(self) -> dict[str, str]:
        return dict(self._all("SELECT key, value FROM meta"))

    def count(self) -> int:
        return int(self._all("SELECT count(*) FROM products")[0][0])

    def info(self) -> dict[str, Any]:
        (products, images), = self._all("SELECT (SELECT count(*) FROM products), (SELECT count(*) FROM images)")
        meta = self.meta()
        return {"name": self.name, "products": int(products), "images": int(images),
                "generation": int(meta.pop("generation", 0)), **meta}

    def product_hashes(self) -> dict[str, str]:
        return dict(self._all("SELECT id, content_hash FROM products ORDER BY row_id"))

    # -- writes -----------------------------------------------------------------------------------

    def upsert(self, products: Sequence[ProductWrite], *, image_model: str | None = None) -> None:
        """One transaction for the batch, in a few pipelined statements (one round trip per product
        made it 430 products/s). A product given twice is written as its last copy, as one after the other."""
        latest = list({p.record.id: p for p in products}.values())
        if not latest:
            return
        now = time.time()
        with self._write() as conn:  # writers to this collection take turns from here (_write)
            check_image_model(conn.execute("SELECT value FROM meta WHERE key='image_model'").fetchone(), image_model,
                              self.name)
            ids = [p.record.id for p in latest]
            rows = dict(conn.execute("SELECT id, row_id FROM products WHERE id = ANY(%s)", (ids,)).fetchall())
            new = [i for i in ids if i not in rows]
            if new:  # an update keeps the product's row id: row ids stay dense, as keyword scoring counts on
                made = conn.execute("SELECT nextval(pg_get_serial_sequence('products', 'row_id')) "
                                    "FROM generate_series(1, %s)", (len(new),)).fetchall()
                rows.update(zip(new, (r for (r,) in made), strict=True))
            conn.execute("DELETE FROM images WHERE product_row = ANY(%s)", (list(rows.values()),))
            conn.execute("DELETE FROM product_values WHERE product_row = ANY(%s)", (list(rows.values()),))
            conn.execute("DELETE FROM product_words WHERE product_row = ANY(%s)", (list(rows.values()),))
            with conn.cursor() as cur:
                cur.executemany(
                    """INSERT INTO products(row_id, id, title, description, category, colour, price, attributes,
                                            content_hash, text_vector, updated_at, variants, changed)
                       VALUES(%s, %s, %s, %s, %s, %s, %s, %s, %s, %b, %s, %s, %s)
                       ON CONFLICT(row_id) DO UPDATE SET title=excluded.title, description=excluded.description,
                         category=excluded.category, colour=excluded.colour, price=excluded.price,
                         attributes=excluded.attributes, content_hash=excluded.content_hash,
                         text_vector=excluded.text_vector, updated_at=excluded.updated_at,
                         variants=excluded.variants, changed=excluded.changed""",
                    [(*_product_row(rows[p.record.id], p, now), self._local.generation) for p in latest],
                )
                cur.executemany(
                    "INSERT INTO images(product_row, position, ref, path, sha256, features) "
                    "VALUES(%s, %s, %s, %s, %s, %b)",
                    [(rows[p.record.id], i, im.ref, im.path, im.sha256, np.asarray(im.features, dtype=np.float32))
                     for p in latest for i, im in enumerate(p.images)],
                )
                cur.executemany(
                    "INSERT INTO product_values(product_row, field, value, value_norm, num) "
                    "VALUES(%s, %s, %s, %s, %s)",
                    [(rows[p.record.id], *v) for p in latest for v in filter_values(p.record)],
                )
                cur.executemany(_INSERT_WORDS, [_words_row(rows[p.record.id], p) for p in latest])

    def delete(self, ids: Iterable[str]) -> int:
        ids = list(ids)
        if not ids:
            return 0
        with self._write() as conn:  # images and filter values go with their product (ON DELETE CASCADE)
            return len(conn.execute(
                "WITH gone AS (DELETE FROM products WHERE id = ANY(%s) RETURNING row_id) "
                "INSERT INTO removed SELECT row_id, %s FROM gone RETURNING row_id", (ids, self._local.generation),
            ).fetchall())

    def add_training_pair(self, product_id: str, text: str, source: str) -> None:
        """A text that describes a product's photos (a label correction, a query that led to a click)."""
        with self._write(bump=False) as conn:
            conn.execute("INSERT INTO training_pairs VALUES(%s, %s, %s, %s) ON CONFLICT(product_id, text) "
                         "DO UPDATE SET source=excluded.source, created_at=excluded.created_at",
                         (product_id, text, source, time.time()))

    def save_model(self, weights: bytes, card: str, *, version: int | None = None) -> int:
        with self._write(bump=False) as conn:
            # Replicas training at once take turns for the next number.
            conn.execute("LOCK TABLE models IN SHARE ROW EXCLUSIVE MODE")
            if version is None:
                (version,), = conn.execute("SELECT coalesce(max(version), 0) + 1 FROM models").fetchall()
            conn.execute("INSERT INTO models VALUES(%s, %s, %s, %s) ON CONFLICT(version) DO NOTHING",
                         (version, weights, card, time.time()))
        return int(version)

    def model(self, version: int) -> tuple[bytes, str] | None:
        found = self._all("SELECT weights, card FROM models WHERE version=%s", (version,))
        return (bytes(found[0][0]), str(found[0][1])) if found else None

    def model_cards(self) -> list[tuple[int, str]]:
        return [(int(v), str(c)) for v, c in self._all("SELECT version, card FROM models ORDER BY version")]

    # -- reads ------------------------------------------------------------------------------------

    def photo_refs(self, *, after: str = "", limit: int = 256) -> list[tuple[str, str]]:
        return [(str(sha), str(path)) for sha, path in self._all(
            "SELECT sha256, min(path) FROM images WHERE sha256 > %s GROUP BY sha256 ORDER BY sha256 LIMIT %s",
            (after, limit))]

    def photo_count(self) -> int:
        return int(self._all("SELECT count(DISTINCT sha256) FROM images")[0][0])

    def swap_image_features(self, features_of: Callable[[list[tuple[str, str]]], Mapping[str, Array]],
                            meta: Mapping[str, str]) -> int:
        with self._write() as conn:  # the generation's row lock holds every other writer until it commits
            def write(rows: list[tuple[Array, int, int]]) -> None:
                with conn.cursor() as cur:
                    cur.executemany("UPDATE images SET features=%b WHERE product_row=%s AND position=%s", rows)

            swapped = swap_in_batches(
                lambda after: conn.execute("SELECT product_row, position, sha256, path FROM images WHERE "
                                           "(product_row, position) > (%s, %s) ORDER BY product_row, position "
                                           "LIMIT %s", (*after, SWAP_BATCH)).fetchall(),
                write, features_of)
            conn.execute("UPDATE products SET changed=%s", (self._local.generation,))
            with conn.cursor() as cur:
                cur.executemany("INSERT INTO meta(key, value) VALUES(%s, %s) ON CONFLICT(key) DO UPDATE SET "
                                "value=excluded.value", list(meta.items()))
        return swapped

    def value_counts(self, field: str, limit: int = 500) -> list[tuple[str, int]]:
        found = self._all("SELECT min(value), count(*) FROM product_values WHERE field=%s GROUP BY value_norm "
                          "ORDER BY count(*) DESC, value_norm LIMIT %s", (normalise_field(field), limit))
        return [(v, int(n)) for v, n in found]

    def vocabulary_texts(self, *, changed_since: int | None = None) -> list[str]:
        """Each product's title, category and colour: the words its shoppers are understood against.
        `changed_since`: only the products written after that generation."""
        scope, args = ("WHERE changed > %s", (changed_since,)) if changed_since is not None else ("", ())
        found = self._all(f"SELECT title || ' ' || category || ' ' || colour FROM products {scope} ORDER BY row_id",
                          args)
        return [t for (t,) in found]

    def product_titles(self) -> list[tuple[str, str]]:
        """(id, title) of every product, for search-as-you-type."""
        return [(i, t) for i, t in self._all("SELECT id, title FROM products ORDER BY row_id")]

    def holds_word(self, word: str) -> bool:
        """Whether any product holds `word` (stemmed, in any indexed field): then it is not a typo."""
        words = keyword_words(word)
        return len(words) == 1 and len(self._postings(words[0])[0]) > 0

    def training_pairs(self) -> list[tuple[str, str, str]]:
        """(collection, product id, text) for every recorded pair whose product still exists."""
        found = self._all("SELECT t.product_id, t.text FROM training_pairs t JOIN products p ON p.id = t.product_id "
                          "ORDER BY t.created_at")
        return [(self.name, pid, text) for pid, text in found]

    def get_products(self, ids: Sequence[str]) -> list[Product]:
        """Products in the order of `ids`; unknown ids are left out."""
        if not ids:
            return []
        with self._connection() as conn:
            rows = conn.execute("SELECT row_id, id, title, description, category, colour, price, attributes, variants "
                                "FROM products WHERE id = ANY(%s)", (list(ids),)).fetchall()
            images: dict[int, list[ProductImage]] = {}
            for prow, pos, ref, path, sha in conn.execute(
                    "SELECT product_row, position, ref, path, sha256 FROM images WHERE product_row = ANY(%s) "
                    "ORDER BY product_row, position", ([r[0] for r in rows],)):
                images.setdefault(prow, []).append(ProductImage(pos, ref, path, sha))
        return products_in_order(ids, rows, images)

    def filter_rows(self, filters: Filters) -> Array:
        """Store rows of the products matching every filter (sorted)."""
        query = filter_sql(filters, "%s")
        sql, params = query if query else ("SELECT row_id FROM products", [])
        found = [r for (r,) in self._all(sql, params)]
        return np.unique(np.asarray(found, dtype=np.int64))

    def stock_rows(self, available: bool) -> Array:
        """Rows of the products known to be in stock (any variant available, or the product's own
        availability), or known to be out of it (`available=False`). Unknown counts as neither."""
        found = self._all("SELECT row_id, attributes, variants FROM products ORDER BY row_id")
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
        def fetch() -> Postings:
            config = "simple" if _unstemmed(word) else "vitrine"
            with self._connection() as conn:
                (stems,), = conn.execute("SELECT tsvector_to_array(to_tsvector(%s::regconfig, %s))",
                                         (config, word)).fetchall()
                # As two packed arrays, not a row per product: 5 ms instead of 10-28 for 25k products.
                found = [_posting(conn, stem) for stem in stems]
            if len(found) == 1:
                rows, strong = found[0]
                return rows, rows[strong]
            if not found:
                return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
            # A word PostgreSQL's parser splits in two ("a_b") is found where both parts are, as SQLite finds it.
            held = [dict(zip(rows.tolist(), strong.tolist(), strict=True)) for rows, strong in found]
            both = np.asarray(sorted(set.intersection(*(set(h) for h in held))), dtype=np.int64)
            strong = np.asarray([all(h[r] for h in held) for r in both.tolist()], dtype=bool)
            return both, both[strong]

        return self._posting_cache.get(word, self.generation(), fetch)

    def load_vectors(self, facet_fields: Sequence[str], *, changed_since: int | None = None) -> VectorData:
        """Everything search holds in memory, read in one snapshot (a repeatable-read transaction),
        streamed through server-side cursors into arrays sized up front. `changed_since`: only the
        products written after that generation."""
        scope, args = ("WHERE changed > %s", (changed_since,)) if changed_since is not None else ("", ())
        with self._connection() as conn, conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            return self._read_vectors(conn, facet_fields, scope, args)

    def vector_batches(self, facet_fields: Sequence[str], *, batch: int = VECTOR_BATCH) -> Iterator[VectorData]:
        """`load_vectors` of every product, a batch at a time, all from one repeatable-read transaction."""
        with self._connection() as conn, conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")

            def next_bound(after: int, size: int) -> int | None:
                found = conn.execute("SELECT row_id FROM products WHERE row_id > %s ORDER BY row_id OFFSET %s LIMIT 1",
                                     (after, size - 1)).fetchone()
                return None if found is None else int(found[0])

            yield from batches_by_row(
                next_bound, lambda after, upto: self._read_vectors(
                    conn, facet_fields, "WHERE row_id > %s AND row_id <= %s", (after, upto)), batch)

    def changed_count(self, generation: int) -> int:
        return int(self._all("SELECT count(*) FROM products WHERE changed > %s", (generation,))[0][0])

    def removed_since(self, generation: int) -> Array | None:
        """Rows of the products deleted after `generation`; None when the log does not reach that far back."""
        with self._connection() as conn:
            found = conn.execute("SELECT value::bigint FROM meta WHERE key='changes_from'").fetchone()
            if found is not None and generation < found[0]:
                return None
            rows = conn.execute("SELECT row_id FROM removed WHERE generation > %s ORDER BY row_id",
                                (generation,)).fetchall()
        return np.asarray([r for (r,) in rows], dtype=np.int64)

    @staticmethod
    def _stream(conn: psycopg.Connection[Any], query: str, params: Sequence[Any] = ()) -> Iterator[tuple[Any, ...]]:
        with conn.cursor(name=f"vitrine_{time.monotonic_ns()}", binary=True) as cur:
            cur.itersize = _STREAM_ROWS
            cur.execute(query, params)
            yield from cur

    def _read_vectors(self, conn: psycopg.Connection[Any], facet_fields: Sequence[str], scope: str,
                      args: tuple[Any, ...]) -> VectorData:
        """The products that `FROM products {scope}` selects, read in the open transaction of `conn`."""
        of_scope = f"product_row IN (SELECT row_id FROM products {scope})" if scope else "true"
        (n_products, text_dim), = conn.execute(
            f"SELECT count(*), coalesce(max(vector_dims(text_vector)), 0) FROM products {scope}", args).fetchall()
        rows = np.empty(n_products, dtype=np.int64)
        prices = np.empty(n_products, dtype=np.float32)
        text = np.zeros((n_products, text_dim), dtype=np.float32)
        ids: list[str] = []
        for i, (row, product_id, vector, price) in enumerate(self._stream(
                conn, f"SELECT row_id, id, vector_send(text_vector), price FROM products {scope} ORDER BY row_id",
                args)):
            rows[i] = row
            ids.append(product_id)
            text[i] = _vector(vector)
            prices[i] = np.nan if price is None else price
        (n_images, feature_dim), = conn.execute(
            f"SELECT count(*), coalesce(max(vector_dims(features)), 0) FROM images WHERE {of_scope}", args).fetchall()
        owners = np.empty(n_images, dtype=np.int64)
        positions = np.empty(n_images, dtype=np.int16)
        features = np.zeros((n_images, feature_dim), dtype=np.float32)
        image_rows = (f"SELECT product_row, position, vector_send(features) FROM images WHERE {of_scope} "
                      "ORDER BY product_row, position")
        for i, (owner, position, blob) in enumerate(self._stream(conn, image_rows, args)):
            owners[i] = owner
            positions[i] = position
            features[i] = _vector(blob)
        facets: dict[str, tuple[Array, Array, list[str]]] = {}
        for field in facet_fields:
            found = conn.execute(f"SELECT product_row, value FROM product_values WHERE field=%s AND {of_scope} "
                                 "ORDER BY product_row", (field, *args)).fetchall()
            values = sorted({value for _, value in found})  # codes in sorted order, as the facet counts expect
            code = {value: rank for rank, value in enumerate(values)}
            facets[field] = (
                np.searchsorted(rows, np.asarray([r for r, _ in found], dtype=np.int64)).astype(np.int32),
                np.asarray([code[v] for _, v in found], dtype=np.int32),
                values,
            )
        return VectorData(
            rows=rows, ids=ids, text_vectors=text, image_features=features,
            image_product=np.searchsorted(rows, owners).astype(np.int32), image_position=positions,
            facets=facets, prices=prices,
        )
