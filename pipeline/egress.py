"""Where a fetch may connect: which addresses are public, and the guarded connection.

A URL the admin configured is fetched wherever it points: the admin chose it, an intranet
calendar or a feed on this very machine included. A redirect is the server's choice, so it may
lead to any public address, and to a non-public one (loopback, private, link-local, multicast,
reserved, shared 100.64/10, unique-local, site-local, or the IPv4-mapped, NAT64 and 6to4 forms
of these) only when it stays on the very host and port of the configured URL. Otherwise a feed
on the internet could send trnews to the admin pages of the machine it runs on, to another
host of the office network or to a cloud's metadata service (169.254.169.254), and the answer
would be mailed to every subscriber and shown in the public archive.

The rule is kept where connections are made, so that it holds for every fetch (feeds,
calendars, discovery, and whatever fetches later): each configured host:port has its own httpx
client (`client`), whose connections go through `GuardedBackend`. A connection to the client's
own host:port goes through as it is; one to any other host:port (only a redirect leads there)
has its name resolved once, is refused if any of the addresses is not public, and is made to
the very addresses that were checked, so that a DNS answer that changes between the check and
the connect (DNS rebinding) cannot slip through. Refusing when any address is not public,
rather than only when all are, keeps a name that mixes a public and an internal address (a
rebinding setup, or a misconfiguration) from ever reaching the internal one. TLS is unchanged:
httpcore passes the host name to `start_tls` apart from the address, so SNI and the certificate
check are on the name.

Proxies from the environment (HTTP_PROXY, HTTPS_PROXY, ALL_PROXY) are not used: a proxy
resolves and connects on its own, where no check of ours can reach, so it would carry a
redirect anywhere. ~/.netrc is not read either (`trust_env=False`); SSL_CERT_FILE and
SSL_CERT_DIR still choose the certificate authorities (see `pipeline.collect`).
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import threading
from collections.abc import Awaitable, Callable, Iterable
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address
from typing import Any

import httpcore
import httpx

IPAddress = IPv4Address | IPv6Address
Resolver = Callable[[str, int], Awaitable[list[IPAddress]]]
"""(host, port) → every address the name has; OSError when it has none."""

_SHARED = IPv4Network("100.64.0.0/10")
_NAT64 = IPv6Network("64:ff9b::/96")
_UNIQUE_LOCAL = IPv6Network("fc00::/7")


def why_not_public(address: IPAddress) -> str | None:
    """What kind of non-public address this is ("loopback", "private", …), or None when it is
    public: an address anyone on the internet reaches as the same host."""
    if isinstance(address, IPv6Address):
        embedded = address.ipv4_mapped
        if embedded is None and address in _NAT64:
            embedded = IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is None:
            embedded = address.sixtofour
        if embedded is not None:
            return why_not_public(embedded)  # the address printed shows the IPv6 form
    checks = (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("shared (carrier-grade NAT)", address in _SHARED),
        ("unique-local", isinstance(address, IPv6Address) and address in _UNIQUE_LOCAL),
        ("site-local", isinstance(address, IPv6Address) and address.is_site_local),
        ("private", address.is_private),
        ("reserved", address.is_reserved),
        ("non-public", not address.is_global),
    )
    return next((why for why, found in checks if found), None)


def is_public(address: IPAddress) -> bool:
    return why_not_public(address) is None


def origin(url: str | httpx.URL) -> tuple[str, int]:
    """(host, port) of a URL as httpcore connects to it: the host IDNA-encoded and in lower
    case, without the brackets of an IPv6 address; the port filled in from the scheme."""
    parsed = httpx.URL(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    return parsed.raw_host.decode("ascii").lower(), port


async def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address of `host`, looked up once, off the event loop (the system's resolver runs
    in a thread); a literal address is its own answer."""
    try:
        return [ip_address(host)]
    except ValueError:
        pass
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    found = [ip_address(info[4][0]) for info in infos]
    return list(dict.fromkeys(found))


class NotPublic(httpx.RequestError):
    """A redirect led to a non-public address on another host:port than the configured one,
    and was not followed. `request` (set by httpx) is the request that was refused."""

    def __init__(self, host: str, address: IPAddress, kind: str) -> None:
        self.host = host
        self.address = address
        self.kind = kind
        article = "an" if kind == "unspecified" else "a"
        what = f"{article} {kind} address on another host:port than the configured URL"
        if host == str(address):
            super().__init__(f"{host} is {what}")
        else:
            super().__init__(f"{host} resolves to {address}, {what}")


async def checked(host: str, port: int, resolver: Resolver = resolve) -> list[IPAddress]:
    """The addresses of `host` for a connection the configured URL did not name; NotPublic
    when any of them is not public."""
    addresses = await resolver(host, port)
    for address in addresses:
        kind = why_not_public(address)
        if kind is not None:
            raise NotPublic(host, address, kind)
    return addresses


async def refusal(
    url: str, configured: str, *, resolver: Resolver = resolve, timeout: float = 10.0
) -> str | None:
    """Why trnews would not follow a redirect from `configured` to `url`, or None when it
    would: for a URL found in a page, before it is suggested as a feed."""
    try:
        host, port = origin(url)
    except httpx.InvalidURL as e:
        return f"it is not a URL trnews can fetch ({e})"
    if (host, port) == origin(configured):
        return None
    try:
        async with asyncio.timeout(timeout):
            await checked(host, port, resolver)
    except NotPublic as e:
        return str(e)
    except TimeoutError:
        return f"{host} did not resolve within {timeout:g} s, so where it leads is unknown"
    except OSError as e:
        return f"{host} does not resolve ({e.strerror or e}), so where it leads is unknown"
    return None


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend for one configured host:port: connections elsewhere only to
    the public addresses it checked (see the module's docstring)."""

    def __init__(
        self,
        own: tuple[str, int],
        *,
        resolver: Resolver = resolve,
        inner: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        self.own = own
        self.resolver = resolver
        self.inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        if (host.lower(), port) == self.own:
            return await self.inner.connect_tcp(
                host, port, timeout, local_address=local_address, socket_options=socket_options
            )
        try:
            async with asyncio.timeout(timeout):
                addresses = await checked(host, port, self.resolver)
        except TimeoutError as e:
            raise httpcore.ConnectTimeout(f"no address for {host} within {timeout} s") from e
        except OSError as e:  # the name does not resolve
            raise httpcore.ConnectError(str(e)) from e
        failure: Exception | None = None
        for address in addresses:
            try:
                return await self.inner.connect_tcp(
                    str(address),
                    port,
                    timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as e:
                failure = e
        assert failure is not None  # a resolver answers with at least one address
        raise failure

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


class LazyTrust(ssl.SSLContext):
    """The TLS context of every fetch: certificates checked as `httpx.create_ssl_context()`
    checks them (SSL_CERT_FILE, else SSL_CERT_DIR, else certifi's bundle), the certificate
    authorities read at the first handshake instead of at the start of a run. Reading them
    costs 35 ms and more on every collect, and a run of plain-http feeds never needs them.

    Every handshake goes through `wrap_socket` or `wrap_bio`, which read them first; before
    that the context trusts nothing, so a handshake could only fail, never pass unchecked.
    """

    _lock = threading.Lock()

    def _trust(self) -> None:
        with self._lock:
            if getattr(self, "_trusted", False):
                return
            if os.environ.get("SSL_CERT_FILE"):
                self.load_verify_locations(cafile=os.environ["SSL_CERT_FILE"])
            elif os.environ.get("SSL_CERT_DIR"):
                self.load_verify_locations(capath=os.environ["SSL_CERT_DIR"])
            else:
                import certifi

                self.load_verify_locations(cafile=certifi.where())
            self._trusted = True

    def wrap_socket(self, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        self._trust()
        return super().wrap_socket(*args, **kwargs)

    def wrap_bio(self, *args: Any, **kwargs: Any) -> ssl.SSLObject:
        self._trust()
        return super().wrap_bio(*args, **kwargs)


def tls_context() -> ssl.SSLContext:
    """A client context for the fetches of one run: host names and certificates checked
    (PROTOCOL_TLS_CLIENT's defaults), its authorities read when first needed."""
    return LazyTrust(ssl.PROTOCOL_TLS_CLIENT)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's own transport, with its connections made by a GuardedBackend."""

    def __init__(
        self,
        configured: str,
        *,
        tls: ssl.SSLContext,
        limits: httpx.Limits,
        resolver: Resolver = resolve,
    ) -> None:
        super().__init__(verify=tls, limits=limits)
        # httpx 0.28 takes no network backend: the same pool as its own, with ours in it.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=tls,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=GuardedBackend(origin(configured), resolver=resolver),
        )


def client(
    configured: str,
    *,
    tls: ssl.SSLContext,
    limits: httpx.Limits,
    timeout: httpx.Timeout,
    headers: dict[str, str],
    max_redirects: int,
) -> httpx.AsyncClient:
    """An httpx client for the URLs of one configured host:port (`configured` is one of them)
    that follows redirects, elsewhere to public addresses only, and uses no proxy from the
    environment."""
    return httpx.AsyncClient(
        transport=GuardedTransport(configured, tls=tls, limits=limits),
        trust_env=False,
        follow_redirects=True,
        max_redirects=max_redirects,
        timeout=timeout,
        headers=headers,
    )
