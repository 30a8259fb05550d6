"""Refuses URLs that would make Vitrine fetch from loopback, private, link-local or reserved addresses."""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from vitrine.errors import UnsafeSource


def is_public_address(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not (
        ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_reserved
        or ip.is_unspecified
    )


def check_url(url: str, *, allow_private: bool) -> None:
    """Raises UnsafeSource unless `url` is http(s) and every address its host resolves to is public."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise UnsafeSource(f"only http and https URLs are fetched, not {parts.scheme or 'no scheme'!r}", field="url")
    host = parts.hostname
    if not host:
        raise UnsafeSource("the URL has no host", field="url")
    if allow_private:
        return
    try:
        infos = socket.getaddrinfo(host, parts.port or (443 if parts.scheme == "https" else 80),
                                   proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as exc:
        raise UnsafeSource(f"cannot resolve host {host!r}: {exc}", field="url") from exc
    for info in infos:
        address = str(info[4][0])
        if not is_public_address(address):
            raise UnsafeSource(
                f"refusing to fetch {host!r}: it resolves to the non-public address {address} "
                "(set VITRINE_ALLOW_PRIVATE_URLS=true to allow)",
                field="url",
            )
