"""Refuses URLs that would make Vitrine fetch from anything but globally reachable addresses.

The check resolves the host once and returns the address it approved; the fetch then connects to
that very address (with the original host name for the Host header and TLS), so a DNS answer that
changes between check and connect (DNS rebinding) cannot steer a request to a private address.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

from vitrine.errors import InvalidInput, UnsafeSource

Resolver = Callable[[str, int], list[str]]  # (host, port) -> IP addresses
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    return [str(info[4][0]) for info in infos]


@dataclass(frozen=True)
class CheckedUrl:
    """A URL whose host was resolved and approved: `address` is the one to connect to."""

    url: str
    host: str
    address: str


def is_public_address(address: str) -> bool:
    """Globally reachable, also for the IPv4 address inside IPv4-mapped, 6to4, Teredo and NAT64 ones."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = [ip.ipv4_mapped, ip.sixtofour, *(ip.teredo or ())]
        if ip in _NAT64:
            embedded.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
        if any(v4 is not None and not _global(v4) for v4 in embedded):
            return False
        if ip.ipv4_mapped is not None:
            return _global(ip.ipv4_mapped)
    return _global(ip)


def _global(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    # is_global is False for private, loopback, link-local, shared (100.64/10), benchmarking, reserved...
    return ip.is_global and not ip.is_multicast


def split_url(url: str, *, field: str = "url") -> SplitResult:
    """The URL's parts, or InvalidInput for one that is malformed (bad host, bad port, spaces)."""
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        raise InvalidInput("the URL holds spaces or control characters", field=field)
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError as exc:
        raise InvalidInput(f"malformed URL: {exc}", field=field) from None
    return parts


def check_url(url: str, *, allow_private: bool, field: str = "url",
              resolve: Resolver = system_resolver) -> CheckedUrl:
    """Raises UnsafeSource unless `url` is http(s) and every address its host resolves to is public."""
    parts = split_url(url, field=field)
    if parts.scheme not in ("http", "https"):
        raise UnsafeSource(f"only http and https URLs are fetched, not {parts.scheme or 'no scheme'!r}", field=field)
    host = parts.hostname
    if not host:
        raise UnsafeSource("the URL has no host", field=field)
    try:
        addresses = resolve(host, parts.port or (443 if parts.scheme == "https" else 80))
    except (OSError, UnicodeError) as exc:
        raise UnsafeSource(f"cannot resolve host {host!r}: {exc}", field=field) from None
    if not addresses:
        raise UnsafeSource(f"cannot resolve host {host!r}", field=field)
    for address in addresses:
        if not allow_private and not is_public_address(address):
            raise UnsafeSource(
                f"refusing to fetch {host!r}: it resolves to the non-public address {address} "
                "(set VITRINE_ALLOW_PRIVATE_URLS=true to allow)",
                field=field,
            )
    return CheckedUrl(url=url, host=host, address=addresses[0])
