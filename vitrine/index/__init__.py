"""Storage and vector indexes: one small store interface, SQLite + numpy/faiss behind it by default."""
