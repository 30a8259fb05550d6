"""Scope checks as dependencies: 401 for a missing or bad key, 403 for a key without the scope."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from vitrine.errors import VitrineError
from vitrine.keys import ApiKey, KeyStore
from vitrine.settings import Settings

_bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer vtr_...`")
_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="An API key, as a header")


class Unauthorized(VitrineError):
    code = "unauthorized"


class Forbidden(VitrineError):
    code = "forbidden"


def is_public(scope: str, settings: Settings) -> bool:
    """Whether `scope` needs no key (the public_reads / public_writes settings)."""
    return (scope == "read" and settings.public_reads) or (scope != "admin" and settings.public_writes)


def demand(scope: str, key: ApiKey | None, settings: Settings) -> None:
    """Within a route open to a lesser scope, the check `require(scope)` makes, for a key already verified (None: no
    key given): a route whose body decides how much it changes."""
    _allow(scope, key, is_public(scope, settings))


def _allow(scope: str, key: ApiKey | None, open_scope: bool) -> None:
    """Raises unless the scope is open or `key` (verified; None: none given) holds it."""
    if open_scope or (key is not None and key.allows(scope)):
        return
    if key is None:
        raise Unauthorized(f"this needs an API key with the {scope!r} scope", field="authorization")
    raise Forbidden(f"key {key.id!r} has the {key.scope!r} scope; this needs {scope!r}", field="authorization")


def require(scope: str, *, public: Callable[[Settings], bool] | None = None) -> Callable[..., ApiKey | None]:
    """`public` decides whether the scope needs no key (default: the public_reads / public_writes settings)."""

    def check(
        request: Request,
        bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
        header: Annotated[str | None, Depends(_header)],
    ) -> ApiKey | None:
        settings = request.app.state.engine.settings
        open_scope = public(settings) if public is not None else is_public(scope, settings)
        token = bearer.credentials if bearer else header
        if not token:
            _allow(scope, None, open_scope)
            return None
        keys: KeyStore = request.app.state.keys
        key = keys.verify(token)
        if key is None:
            raise Unauthorized("unknown or revoked API key", field="authorization")
        _allow(scope, key, open_scope)
        return key

    return check


Read = Depends(require("read"))
ReadDocs = Depends(require("read", public=lambda settings: settings.docs_public))
Write = Depends(require("write"))
Admin = Depends(require("admin"))
