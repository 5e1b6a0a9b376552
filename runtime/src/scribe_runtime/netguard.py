"""Refuse URLs that would make a service reach hosts it should not (SSRF guard).

A remote audio URL must be `http(s)://`, and every address its host resolves to must be
public: loopback, private, link-local (cloud metadata at 169.254.169.254), multicast,
reserved and unspecified addresses are refused. Callers connect to the address this module
resolved (pinning), so a DNS answer that changes between check and use cannot slip through.

Exceptions, and only these: the configured S3 endpoint (an object store inside the
cluster serving presigned URLs) and the `host:port` pairs of
`SCRIBE_ALLOWED_PRIVATE_ENDPOINTS`. They are matched on the URL's own host and port, as
written; everything else private stays refused.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit, urlunsplit

from scribe_runtime.objectstore import endpoint_url
from scribe_runtime.settings import SharedSettings

ALLOWED_SCHEMES: Final = frozenset({"http", "https"})
DEFAULT_PORTS: Final = {"http": 80, "https": 443}


class ForbiddenUrlError(ValueError):
    """The URL may not be fetched: scheme, host or resolved address refused."""

    def __init__(self, reason: str, *, code: str = "source_unreachable") -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


@dataclass(frozen=True, slots=True)
class ResolvedUrl:
    """A URL whose host resolved to public addresses only."""

    url: str
    scheme: str
    host: str
    port: int
    addresses: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PinnedUrl:
    """One resolved address of a `ResolvedUrl`, as a request to it is written."""

    url: str
    """The URL with that address in place of the host: the client connects there."""
    host_header: str
    """`Host`, as the URL named it (virtual hosts keep working)."""
    sni_hostname: str | None
    """For https: the name TLS sends and the certificate must match (not the address)."""


def pinned_urls(target: ResolvedUrl) -> list[PinnedUrl]:
    """A request per address the guard checked, in resolution order.

    Connecting to these, never to the host name, is what makes the check hold: a client
    resolving the name again could get another answer (DNS rebinding).
    """
    parts = urlsplit(target.url)
    default = target.port == DEFAULT_PORTS[target.scheme]
    host = f"[{target.host}]" if ":" in target.host else target.host
    host_header = host if default else f"{host}:{target.port}"
    pinned = []
    for address in target.addresses:
        netloc = f"[{address}]:{target.port}" if ":" in address else f"{address}:{target.port}"
        url = urlunsplit((target.scheme, netloc, parts.path or "/", parts.query, ""))
        sni = target.host if target.scheme == "https" else None
        pinned.append(PinnedUrl(url=url, host_header=host_header, sni_hostname=sni))
    return pinned


def is_public_address(address: str) -> bool:
    """True only for globally routable unicast addresses."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not (
        ip.is_multicast or ip.is_reserved or ip.is_loopback or ip.is_link_local
    )


def parse_remote_url(url: str) -> tuple[str, str, int]:
    """Scheme, host and port of an `http(s)://` URL; refuses anything else."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        raise ForbiddenUrlError(f"scheme {scheme or '(none)'!r} is not allowed; use http or https")
    if parts.username or parts.password:
        raise ForbiddenUrlError("credentials in URLs are not allowed")
    host = parts.hostname
    if not host:
        raise ForbiddenUrlError("URL has no host")
    try:
        port = parts.port or DEFAULT_PORTS[scheme]
    except ValueError as exc:
        raise ForbiddenUrlError(f"bad port: {exc}") from None
    return scheme, host, port


Endpoint = tuple[str, int]
"""A lower-case host name (or address) and a port."""


def endpoint_of(url: str) -> Endpoint:
    """The `(host, port)` of an `http(s)://` URL or a bare `host:port`."""
    if "://" not in url:
        url = f"http://{url}"
    _scheme, host, port = parse_remote_url(url)
    return host.lower(), port


def allowed_private_endpoints(shared: SharedSettings) -> frozenset[Endpoint]:
    """The configured S3 endpoint and `allowed_private_endpoints`: private, but permitted."""
    allowed = {endpoint_of(entry) for entry in shared.allowed_private_endpoints}
    store = endpoint_url()
    if store and shared.media().is_s3:
        allowed.add(endpoint_of(store))
    return frozenset(allowed)


async def resolve_public_url(
    url: str, *, allowed: frozenset[Endpoint] = frozenset()
) -> ResolvedUrl:
    """Resolve the URL's host; refuse it unless every address is public (or it is `allowed`)."""
    scheme, host, port = parse_remote_url(url)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )
    except socket.gaierror as exc:
        raise ForbiddenUrlError(f"host {host!r} does not resolve: {exc.strerror}") from None
    addresses = tuple(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise ForbiddenUrlError(f"host {host!r} has no addresses")
    refused = [a for a in addresses if not is_public_address(a)]
    if refused and (host.lower(), port) not in allowed:
        raise ForbiddenUrlError(
            f"host {host!r} resolves to a non-public address ({', '.join(refused)})"
        )
    return ResolvedUrl(url=url, scheme=scheme, host=host, port=port, addresses=addresses)


async def resolve_allowed_url(url: str, allowed_hosts: frozenset[str]) -> ResolvedUrl:
    """`resolve_public_url`, except that a host in `allowed_hosts` may be private.

    The allow-list names hosts as the URL writes them (`127.0.0.1`, `hooks.internal`), so
    a test or a private deployment reaches chosen internal receivers and nothing else.
    """
    scheme, host, port = parse_remote_url(url)
    if host.lower() not in allowed_hosts:
        return await resolve_public_url(url)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )
    except socket.gaierror as exc:
        raise ForbiddenUrlError(f"host {host!r} does not resolve: {exc.strerror}") from None
    addresses = tuple(dict.fromkeys(str(info[4][0]) for info in infos))
    return ResolvedUrl(url=url, scheme=scheme, host=host, port=port, addresses=addresses)
