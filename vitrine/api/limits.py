"""Request-size limit as pure ASGI middleware: refuses before the body is read into memory."""

from __future__ import annotations

import json
import re
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vitrine.api.errors import error_body


class BodySizeLimit:
    def __init__(self, app: ASGIApp, *, max_bytes: int, upload_bytes: int | None = None,
                 upload_path: re.Pattern[str] | None = None) -> None:
        """`upload_bytes` applies instead of `max_bytes` to POSTs whose whole path matches `upload_path`
        (the catalog upload route alone: a suffix match let `PUT .../products/ingest` take 200 MB)."""
        self.app = app
        self.max_bytes = max_bytes
        self.upload_bytes = upload_bytes or max_bytes
        self.upload_path = upload_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        upload = (self.upload_path is not None and scope.get("method") == "POST"
                  and self.upload_path.fullmatch(str(scope.get("path", ""))) is not None)
        limit = self.upload_bytes if upload else self.max_bytes
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._refuse(send, limit)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _TooLarge
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await self._refuse(send, limit)

    async def _refuse(self, send: Send, limit: int) -> None:
        body = json.dumps(error_body("too_large", f"request body is over {limit} bytes")).encode()
        headers: list[Any] = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass
