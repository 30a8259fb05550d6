"""Search: queries, pure scoring functions, and the searcher that ties store, index and encoders."""
