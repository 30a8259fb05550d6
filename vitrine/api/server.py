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
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

# Defaults; the app's lifespan state carries the settings (VITRINE_HEADER_TIMEOUT_S, ..._BODY_IDLE_TIMEOUT_S).
HEADER_TIMEOUT_S = 10.0  # a request's head must arrive within this
BODY_IDLE_TIMEOUT_S = 30.0  # a request body may pause this long between chunks


class GuardedH11Protocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol with Nagle off (see above) and the bounds it lacks: at most
    `limit_concurrency` open connections (beyond it a new connection is closed at once, where uvicorn
    would keep it and answer 503 only once it sends a request), a deadline for the request head
    (uvicorn has none: a client sending a byte a second held its connection forever), and an idle
    timeout while a body is being received."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._seen_cycle: object = None
        self._header_timeout_s = float(self.app_state.get("header_timeout_s", HEADER_TIMEOUT_S))
        self._body_idle_timeout_s = float(self.app_state.get("body_idle_timeout_s", BODY_IDLE_TIMEOUT_S))

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        limit = self.config.limit_concurrency
        super().connection_made(transport)
        if limit is not None and len(self.connections) > limit:
            self.connections.discard(self)
            transport.abort()
            return
        self._arm(self._header_timeout_s)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.transport.is_closing():
            return
        if self.cycle is not None and self.cycle is not self._seen_cycle:
            self._seen_cycle = self.cycle  # a new request's head arrived: its deadline is met
            self._disarm()
        if self.cycle is not None and not self.cycle.response_complete and self.conn.their_state == h11.SEND_BODY:
            self._arm(self._body_idle_timeout_s)  # re-armed by every chunk of the body
        elif self.cycle is None or self.cycle.response_complete:
            if self._deadline is None:
                self._arm(self._header_timeout_s)  # bytes of a next request on a kept-alive connection
        else:
            self._disarm()

    def _arm(self, delay_s: float) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(delay_s, self._expire)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            self.transport.close()


class FairAcceptLoop(asyncio.SelectorEventLoop):
    """An event loop that accepts one connection at a time, then gives the other processes a turn.

    asyncio accepts every waiting connection at once (up to uvicorn's backlog of 2048). The worker
    processes of `vitrine serve --workers N` share one listening socket, so a burst of connections
    went to whichever process woke first: 16 keep-alive clients often all landed on one of two
    processes, which halved throughput. After each accept this loop stops listening for
    ACCEPT_PAUSE_S (at most 1,000 new connections a second per process; requests on open
    connections are not delayed), so that another process takes the next connection.
    """

    ACCEPT_PAUSE_S = 0.001

    def _accept_connection(self, protocol_factory, sock, sslcontext=None, server=None,  # type: ignore[no-untyped-def]
                           backlog=100, *args):
        super()._accept_connection(protocol_factory, sock, sslcontext, server, 1, *args)  # type: ignore[misc]
        if sock.fileno() == -1:
            return
        self.remove_reader(sock.fileno())
        self.call_later(self.ACCEPT_PAUSE_S, self._resume_accepting, protocol_factory, sock, sslcontext, server,
                        backlog, *args)

    def _resume_accepting(self, protocol_factory, sock, sslcontext, server, backlog, *args):  # type: ignore[no-untyped-def]
        if sock.fileno() == -1 or (server is not None and not server.is_serving()):
            return  # closed meanwhile (shutdown)
        self.add_reader(sock.fileno(), self._accept_connection, protocol_factory, sock, sslcontext, server,
                        backlog, *args)
