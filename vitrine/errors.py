"""One small error tree. Interfaces (CLI, HTTP) map these once; the core never exits or prints."""

from __future__ import annotations


class VitrineError(Exception):
    """Base of every error Vitrine raises on purpose."""

    code = "error"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


class InvalidInput(VitrineError):
    """The caller sent something we cannot use (a query, a file, a field)."""

    code = "invalid_input"


class CatalogError(InvalidInput):
    """The catalog file as a whole cannot be ingested (malformed, bad mapping)."""

    code = "invalid_catalog"

    def __init__(self, message: str, *, field: str | None = None, row: int | None = None) -> None:
        super().__init__(message if row is None else f"row {row}: {message}", field=field)
        self.row = row


class ImageError(InvalidInput):
    """An image is missing, corrupt, too large or not an image."""

    code = "invalid_image"


class UnsafeSource(InvalidInput):
    """A path escapes its catalog folder, or a URL points at a refused address."""

    code = "unsafe_source"


class TooLarge(InvalidInput):
    """A body, upload or image over a configured size limit."""

    code = "too_large"


class NotFound(VitrineError):
    """An unknown collection or product."""

    code = "not_found"


class CollectionGone(NotFound):
    """The collection was deleted (here or by another process) while it was being read or written."""


class ModelUnavailable(VitrineError):
    """A model's files cannot be found or loaded."""

    code = "model_unavailable"


class ServiceDown(VitrineError):
    """A service Vitrine depends on (PostgreSQL, the job queue's Redis) does not answer; it resumes by itself."""

    code = "service_unavailable"


class Busy(VitrineError):
    """The server is at its limit for this kind of work (decoding photos); retry in `retry_after_s`."""

    code = "busy"

    def __init__(self, message: str, *, retry_after_s: int = 2) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class RateLimited(Busy):
    """This caller used up its quota for a kind of work."""

    code = "rate_limited"


class Conflict(VitrineError):
    """The request is sound but stored state refuses it (an outdated collection, a busy one)."""

    code = "conflict"
