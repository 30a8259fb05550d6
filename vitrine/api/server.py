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
