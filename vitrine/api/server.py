"""How `vitrine serve` runs uvicorn with several worker processes.

uvicorn binds the shared socket of its worker processes with `proto=0`, and asyncio then leaves
Nagle's algorithm on for accepted connections (it sets TCP_NODELAY only for `proto=IPPROTO_TCP`).
Small responses then wait for the client's delayed ACK: about 40 ms each (measured: 56 ms round
trips for 9 ms searches). This protocol turns Nagle off on every connection, as a single-process
server already does.
"""

from __future__ import annotations

import asyncio
import socket

from uvicorn.protocols.http.h11_impl import H11Protocol


class NoDelayH11Protocol(H11Protocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)


class FairAcceptLoop(asyncio.SelectorEventLoop):
    """An event loop that accepts one connection per wake-up of the listening socket.

    asyncio accepts up to `backlog` (uvicorn: 2048) waiting connections at once. The worker
    processes of `vitrine serve --workers N` share one listening socket, so the first to wake takes
    every connection of a burst: 16 keep-alive clients often all landed on one of two processes,
    which halved throughput. Taking one at a time lets each process take its turn, and a busy one
    (its loop slower to come round) takes fewer.
    """

    def _accept_connection(self, protocol_factory, sock, sslcontext=None, server=None,  # type: ignore[no-untyped-def]
                           backlog=100, *args, **kwargs):
        super()._accept_connection(protocol_factory, sock, sslcontext, server, 1, *args, **kwargs)  # type: ignore[misc]

