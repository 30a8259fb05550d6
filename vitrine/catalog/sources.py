"""Reads product images: local files confined to the catalog's folder, or http(s) URLs fetched safely."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urljoin

import httpx

from vitrine.catalog.netguard import CheckedUrl, Resolver, check_url, system_resolver
from vitrine.errors import ImageError, InvalidInput, UnsafeSource
from vitrine.files import write_atomic
from vitrine.models.imaging import sniff_image_type

_RETRY_STATUS = {429, 500, 502, 503, 504}
_MAX_REDIRECTS = 5


@dataclass(frozen=True)
class FetchPolicy:
    max_bytes: int
    timeout_s: float
    retries: int
    allow_private: bool
    resolve: Resolver = field(default=system_resolver, compare=False)


@dataclass(frozen=True)
class LoadedImage:
    ref: str
    path: Path  # where the bytes can be read again (the file, or the download cache)
    data: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def is_url(ref: str) -> bool:
    return ref.lower().startswith(("http://", "https://"))


def resolve_local(ref: str, base_dir: Path, extra_roots: tuple[Path, ...] = ()) -> Path:
    """The file `ref` names, relative to `base_dir`; refuses anything outside that folder (symlinks too)
    and outside `extra_roots` (folders the user named, such as a Magento media folder)."""
    if "\x00" in ref:
        raise UnsafeSource("path holds a NUL byte", field="images")
    ref = ref.removeprefix("file://")
    base = base_dir.resolve()
    path = (base / ref).resolve()
    if not any(path.is_relative_to(root) for root in (base, *(r.resolve() for r in extra_roots))):
        raise UnsafeSource(f"path {ref!r} points outside the catalog folder", field="images")
    return path


class ImageFetcher:
    """Loads image bytes for catalog refs. URL downloads are cached on disk by URL."""

    def __init__(self, *, base_dir: Path, cache_dir: Path, policy: FetchPolicy,
                 extra_roots: tuple[Path, ...] = ()) -> None:
        self.base_dir = base_dir
        self.extra_roots = extra_roots
        self.cache_dir = cache_dir
        self.policy = policy
        self._client: httpx.Client | None = None

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def load(self, ref: str) -> LoadedImage:
        """Bytes of one image, checked to be an image within the size cap; raises ImageError/UnsafeSource."""
        if is_url(ref):
            path = self._download(ref)
        else:
            path = resolve_local(ref, self.base_dir, self.extra_roots)
            if not path.is_file():
                raise ImageError(f"image file not found: {ref}", field="images")
        size = path.stat().st_size
        if size > self.policy.max_bytes:
            raise ImageError(f"image {ref!r} is {size} bytes, over the cap of {self.policy.max_bytes}", field="images")
        data = path.read_bytes()
        if sniff_image_type(data) is None:
            raise ImageError(f"{ref!r} is not an image", field="images")
        return LoadedImage(ref=ref, path=path, data=data)

    def _download(self, url: str) -> Path:
        # The guard runs before the cache is read: a URL fetched while private addresses were allowed
        # must not be served from the cache once they are not.
        check_url(url, allow_private=self.policy.allow_private, field="images", resolve=self.policy.resolve)
        target = self.cache_dir / hashlib.sha256(url.encode()).hexdigest()
        if target.is_file():
            return target
        attempt = 0
        while True:
            try:
                data = self._fetch(url)
                break
            except _Retryable as exc:
                if attempt >= self.policy.retries:
                    raise ImageError(f"download of {url!r} failed: {exc}", field="images") from None
                time.sleep(min(0.25 * 2**attempt, 2.0))  # back off before retrying a flaky host
                attempt += 1
        write_atomic(target, data)  # download threads may fetch one URL at once (variants sharing a photo)
        return target

    def _fetch(self, url: str) -> bytes:
        if self._client is None:
            self._client = new_client(self.policy)
        data = fetch_url(self._client, url, self.policy)
        if sniff_image_type(data) is None:
            raise ImageError(f"{url!r} did not return an image", field="images")
        return data


def new_client(policy: FetchPolicy) -> httpx.Client:
    """Redirects are followed by `fetch_url` itself, so that every hop passes the guard."""
    return httpx.Client(timeout=policy.timeout_s, follow_redirects=False, trust_env=False)


def fetch_url(client: httpx.Client, url: str, policy: FetchPolicy, *, field: str = "images") -> bytes:
    """GET with the address guard on every redirect hop and a size cap. Raises ImageError/UnsafeSource/
    InvalidInput for what the URL or its server did, _Retryable for 429, 5xx and network failures."""
    for _ in range(_MAX_REDIRECTS + 1):
        # Every hop is checked: a public URL may redirect to a private one.
        checked = check_url(url, allow_private=policy.allow_private, field=field, resolve=policy.resolve)
        try:
            return _get(client, checked, policy, field=field)
        except _Redirect as hop:
            url = urljoin(url, hop.location)
        except httpx.TransportError as exc:
            raise _Retryable(f"{type(exc).__name__}: {exc}") from None
        except (httpx.InvalidURL, httpx.UnsupportedProtocol, httpx.LocalProtocolError, UnicodeError) as exc:
            raise InvalidInput(f"malformed URL: {exc}", field=field) from None
    raise ImageError(f"{url!r} redirected more than {_MAX_REDIRECTS} times", field=field)


def _pinned(checked: CheckedUrl) -> tuple[httpx.URL, dict[str, str], dict[str, str]]:
    """The request URL with the approved address as its host, the Host header, and TLS's server name."""
    original = httpx.URL(checked.url)
    headers = {"User-Agent": "vitrine/0.1", "Host": original.netloc.decode("ascii")}
    extensions = {"sni_hostname": original.host} if original.scheme == "https" else {}
    return original.copy_with(host=checked.address), headers, extensions


def _get(client: httpx.Client, checked: CheckedUrl, policy: FetchPolicy, *, field: str) -> bytes:
    url, headers, extensions = _pinned(checked)
    shown = checked.url
    with client.stream("GET", url, headers=headers, extensions=extensions) as response:
        if response.is_redirect:
            raise _Redirect(response.headers.get("location", ""))
        if response.status_code in _RETRY_STATUS:
            raise _Retryable(f"HTTP {response.status_code}")
        if response.status_code != 200:
            raise ImageError(f"download of {shown!r} answered HTTP {response.status_code}", field=field)
        declared = response.headers.get("content-length") or "0"
        if declared.isdigit() and int(declared) > policy.max_bytes:
            raise ImageError(f"{shown!r} is {declared} bytes, over the cap", field=field)
        chunks: list[bytes] = []
        received = 0
        for chunk in response.iter_bytes():
            received += len(chunk)
            if received > policy.max_bytes:
                raise ImageError(f"{shown!r} is over the cap of {policy.max_bytes} bytes", field=field)
            chunks.append(chunk)
        return b"".join(chunks)


def fetch_once(url: str, policy: FetchPolicy, *, field: str) -> bytes:
    """One download with its own client, nothing cached (a query photo, a catalog); failures are
    InvalidInput/ImageError naming `field`."""
    with new_client(policy) as client:
        try:
            return fetch_url(client, url, policy, field=field)
        except _Retryable as exc:
            raise ImageError(f"download of {url!r} failed: {exc}", field=field) from None


class _Redirect(Exception):
    def __init__(self, location: str) -> None:
        super().__init__(location)
        self.location = location


class _Retryable(Exception):
    pass
