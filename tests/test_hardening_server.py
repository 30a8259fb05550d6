"""The outside tester's reproductions against a real `vitrine serve` over real sockets: each answers
4xx, the server stays up, its memory stays under 1 GB, and what uvicorn alone left open (idle and
slow connections, a forged X-Forwarded-For) is bounded."""

from __future__ import annotations

import io
import socket
import time
from pathlib import Path

import httpx
from conftest import admin_token, served
from PIL import Image

from vitrine.engine import Engine
from vitrine.settings import Settings


def _rss_bytes(port: int) -> int:
    """Resident memory of the process listening on `port` (found through /proc, as `ss -p` would)."""
    inode = _listening_inode(port)
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            fds = list((proc / "fd").iterdir())
            if any(fd.readlink().name == f"socket:[{inode}]" for fd in fds):
                status = (proc / "status").read_text()
                return int(status.split("VmRSS:")[1].split()[0]) * 1024
        except OSError:
            continue
    raise AssertionError(f"no process listens on port {port}")


def _listening_inode(port: int) -> str:
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port and fields[3] == "0A":  # 0A: LISTEN
            return fields[9]
    raise AssertionError(f"nothing listens on port {port}")


def _closed_by_server(sock: socket.socket, timeout_s: float) -> bool:
    """Whether the server closes `sock` (recv answers EOF or a reset) within `timeout_s`."""
    sock.settimeout(timeout_s)
    try:
        return sock.recv(1024) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def _one_bit_png(side: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("1", (side, side)).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def test_reproductions_against_a_real_server(settings: Settings, small_luma: Path) -> None:
    home = settings.home
    with Engine(settings) as engine:
        engine.ingest("shop", small_luma)
    token = admin_token(home)
    write = {"X-API-Key": token}
    env = {"VITRINE_RATE_LIMIT_PER_MINUTE": "60", "VITRINE_RATE_LIMIT_BURST": "30", "VITRINE_HEADER_TIMEOUT_S": "1",
           "VITRINE_BODY_IDLE_TIMEOUT_S": "2", "VITRINE_MAX_CONNECTIONS": "20"}
    with served(home, env=env) as base, httpx.Client(base_url=base, timeout=60) as http:
        port = int(base.rsplit(":", 1)[1])

        # F1, F2: the catalogs that crashed the server or took it to 22 GB.
        huge_number = b'[{"id":"a","price":' + b"9" * 5000 + b"}]"
        deep = b'[{"id":"a","x":' + b"[" * 100_000 + b"]" * 100_000 + b"}]"
        for body in (huge_number, deep):
            response = http.post("/collections/x/ingest", headers=write, files={"file": ("b.json", body)})
            assert response.status_code == 422 and response.json()["error"]["code"] == "invalid_catalog"
        # F4, F5: a lone surrogate, malformed photo URLs.
        surrogate = http.post("/search", content=b'{"text":"x","filters":{"colour":"\\ud800"}}',
                              headers={"content-type": "application/json"})
        assert surrogate.status_code == 422
        for url in ("http://[zz]/", "http://127.0.0.1:99999/x.jpg", "http://a\tb/x.jpg"):
            assert http.post("/search", json={"image_url": url}).status_code == 422
        # Decoding amplification: a few KB of PNG declaring 40 Mpx is refused by its header.
        bomb = _one_bit_png(6320)
        assert len(bomb) < 10_000
        refused = http.post("/search/upload", files={"image": ("p.png", bomb)})
        assert refused.status_code == 422 and "over the limit" in refused.json()["error"]["message"]
        assert http.get("/healthz").status_code == 200
        assert _rss_bytes(port) < 1_000_000_000

        # F15: a forged X-Forwarded-For from loopback no longer buys a fresh rate-limit bucket.
        statuses = [http.get("/collections", headers={"X-Forwarded-For": f"203.0.113.{i % 250}"}).status_code
                    for i in range(40)]
        assert 429 in statuses

        # A request head must arrive within VITRINE_HEADER_TIMEOUT_S, however slowly its bytes come.
        slow = socket.create_connection(("127.0.0.1", port))
        slow.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        assert _closed_by_server(slow, timeout_s=15)
        assert time.monotonic() - started < 10
        slow.close()
        idle = socket.create_connection(("127.0.0.1", port))
        assert _closed_by_server(idle, timeout_s=15)
        idle.close()
        # A body may pause at most VITRINE_BODY_IDLE_TIMEOUT_S between chunks: a trickle keeps it open,
        # silence closes it (the head arrived at once, so only the body's timer runs).
        stalled = socket.create_connection(("127.0.0.1", port))
        stalled.sendall(b"POST /search HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                        b"Content-Length: 100\r\n\r\n{")
        assert not _closed_by_server(stalled, timeout_s=1.2)  # past the head deadline: the body's timer runs
        stalled.sendall(b'"text"')
        assert not _closed_by_server(stalled, timeout_s=1.2)  # 2.4 s in, but never 2 s without a byte
        assert _closed_by_server(stalled, timeout_s=15)
        stalled.close()

        # At most VITRINE_MAX_CONNECTIONS open connections; the rest are closed at once.
        held = [socket.create_connection(("127.0.0.1", port)) for _ in range(30)]
        try:
            held[0].sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            closed = sum(_closed_by_server(s, timeout_s=0.5) for s in held[20:])
            assert closed >= 10  # (the client above may still hold a kept-alive connection)
        finally:
            for s in held:
                s.close()
        assert _closed_by_server(socket.create_connection(("127.0.0.1", port)), timeout_s=15)
        assert httpx.get(f"{base}/healthz", timeout=10).status_code == 200
        assert _rss_bytes(port) < 1_000_000_000
