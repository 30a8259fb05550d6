"""Image sources: confinement to the catalog folder, the URL guard, and real downloads over HTTP."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import LUMA

from vitrine.catalog.netguard import check_url, is_public_address
from vitrine.catalog.sources import FetchPolicy, ImageFetcher, resolve_local
from vitrine.errors import ImageError, UnsafeSource

PHOTO = (LUMA / "images" / "mh01-gray_main.jpg").read_bytes()


def test_paths_cannot_leave_the_catalog_folder(tmp_path: Path) -> None:
    (tmp_path / "cat" / "images").mkdir(parents=True)
    (tmp_path / "secret.jpg").write_bytes(PHOTO)
    assert resolve_local("images/a.jpg", tmp_path / "cat") == (tmp_path / "cat" / "images" / "a.jpg").resolve()
    for ref in ("../../etc/passwd", "../secret.jpg", "/etc/passwd", "images/../../secret.jpg"):
        with pytest.raises(UnsafeSource, match="outside the catalog folder"):
            resolve_local(ref, tmp_path / "cat")
    (tmp_path / "cat" / "images" / "link.jpg").symlink_to(tmp_path / "secret.jpg")
    with pytest.raises(UnsafeSource):
        resolve_local("images/link.jpg", tmp_path / "cat")


@pytest.mark.parametrize("url", [
    "http://127.0.0.1/a.jpg", "http://localhost/a.jpg", "http://10.1.2.3/a.jpg", "http://192.168.0.7/a.jpg",
    "http://169.254.169.254/latest/meta-data", "http://[::1]/a.jpg", "http://[::ffff:127.0.0.1]/a.jpg",
    "http://0.0.0.0/a.jpg",
])
def test_private_addresses_are_refused(url: str) -> None:
    with pytest.raises(UnsafeSource):
        check_url(url, allow_private=False)


def test_only_http_schemes() -> None:
    with pytest.raises(UnsafeSource, match="only http"):
        check_url("file:///etc/passwd", allow_private=True)
    assert is_public_address("93.184.216.34") and not is_public_address("172.16.5.4")


class _Handler(http.server.BaseHTTPRequestHandler):
    routes: dict[str, tuple[int, dict[str, str], bytes]] = {}
    hits: dict[str, int] = {}
    barrier: threading.Barrier | None = None  # when set, responses wait until that many requests came

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        _Handler.hits[self.path] = _Handler.hits.get(self.path, 0) + 1
        if _Handler.barrier is not None:
            _Handler.barrier.wait()
        status, headers, body = _Handler.routes.get(self.path, (404, {}, b"missing"))
        if self.path == "/flaky.jpg" and _Handler.hits[self.path] == 1:
            status, body = 503, b"busy"
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    _Handler.hits = {}
    _Handler.routes = {
        "/a.jpg": (200, {"Content-Type": "image/jpeg"}, PHOTO),
        "/flaky.jpg": (200, {}, PHOTO),
        "/page.jpg": (200, {"Content-Type": "image/jpeg"}, b"<html>a web page, not a photo</html>"),
        "/big.jpg": (200, {}, PHOTO * 20),
        "/moved": (302, {"Location": "/a.jpg"}, b""),
    }
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def fetcher(tmp_path: Path, *, allow_private: bool) -> ImageFetcher:
    policy = FetchPolicy(max_bytes=len(PHOTO) * 5, timeout_s=5, retries=1, allow_private=allow_private)
    return ImageFetcher(base_dir=tmp_path, cache_dir=tmp_path / "downloads", policy=policy)


def test_downloads_are_checked_cached_and_retried(tmp_path: Path, server: str) -> None:
    f = fetcher(tmp_path, allow_private=True)
    assert f.load(f"{server}/a.jpg").data == PHOTO
    assert f.load(f"{server}/a.jpg").data == PHOTO
    assert _Handler.hits["/a.jpg"] == 1  # the second load came from the disk cache
    assert f.load(f"{server}/moved").data == PHOTO
    assert f.load(f"{server}/flaky.jpg").data == PHOTO and _Handler.hits["/flaky.jpg"] == 2
    with pytest.raises(ImageError, match="not return an image"):
        f.load(f"{server}/page.jpg")
    with pytest.raises(ImageError, match="over the cap"):
        f.load(f"{server}/big.jpg")
    with pytest.raises(ImageError, match="HTTP 404"):
        f.load(f"{server}/nothing.jpg")
    f.close()


def test_loopback_server_is_refused_by_default(tmp_path: Path, server: str) -> None:
    f = fetcher(tmp_path, allow_private=False)
    with pytest.raises(UnsafeSource, match="non-public address"):
        f.load(f"{server}/a.jpg")
    assert "/a.jpg" not in _Handler.hits
    f.close()
