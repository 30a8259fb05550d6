"""The HTTP API: thin FastAPI routes over the engine (no logic the CLI would need lives here)."""
