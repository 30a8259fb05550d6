"""Multipart form parts, read the same way by every route that takes them."""

from __future__ import annotations

from typing import TypeVar

from fastapi import UploadFile
from pydantic import BaseModel, ValidationError

from vitrine.errors import InvalidInput, TooLarge

M = TypeVar("M", bound=BaseModel)


def read_upload(upload: UploadFile, limit: int, *, field: str = "image") -> bytes:
    """The uploaded file's bytes; TooLarge (413) past `limit`, without reading more than limit + 1."""
    data = upload.file.read(limit + 1)
    if len(data) > limit:
        name = f" {upload.filename!r}" if upload.filename else ""
        raise TooLarge(f"upload{name} is over {limit} bytes", field=field)
    return data


def parse_json_part(model: type[M], text: str, *, field: str = "options") -> M:
    """A JSON form part as a pydantic model; a bad one names the field inside it that is wrong."""
    try:
        return model.model_validate_json(text)
    except ValidationError as exc:
        first = exc.errors()[0]
        inner = ".".join(str(p) for p in first["loc"])
        raise InvalidInput(first["msg"], field=f"{field}.{inner}" if inner else field) from None
