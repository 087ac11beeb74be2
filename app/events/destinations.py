"""The SSRF guard of webhook destinations: which URLs a subscription may name, which addresses
a delivery may connect to, and the connection that goes to exactly the address checked.

A URL is https (plain http only with ``HUB_WEBHOOK_ALLOW_HTTP``, for the demo stack), has a
host and no credentials, and every address its host resolves to is public: not loopback,
private, link-local, shared, reserved, multicast, unspecified, or a cloud metadata address,
unless it lies in ``HUB_WEBHOOK_ALLOWED_NETWORKS``. Numeric hosts in any form but the dotted
quad (``2130706433``, ``0x7f.1``, ``017700000001``) are refused outright: resolvers read them
as addresses, and a reviewer reading the subscription would not.

The check runs when a subscription is created and again before every delivery attempt. The
delivery resolves the name once, checks every address, and connects to the checked address
itself, sending the name as the Host header and (https) as SNI and the name the certificate
must carry: a DNS answer that changes between the check and the connection (rebinding) cannot
steer the request elsewhere. Redirects are never followed.

A maintained library does this for ``requests`` (``requests-hardened``'s SSRF filter), but it
is not among the hub's pinned dependencies; urllib3's connection pools take the address to
connect to and the TLS name separately, which is all this module needs.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import ssl
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

import urllib3

from app.settings import Settings, SettingsError

MAX_URL_LENGTH = 2000
METADATA_ADDRESSES = frozenset({ipaddress.ip_address("169.254.169.254"),
                                ipaddress.ip_address("fd00:ec2::254")})
# Hosts a resolver would read as an IPv4 address though they are not dotted quads.
_NUMERIC_HOST = re.compile(r"^(0x[0-9a-f]+|[0-9]+)(\.(0x[0-9a-f]+|[0-9]+)){0,3}\.?$", re.I)

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Iterable[str]]


class DestinationRefused(ValueError):
    """A webhook URL or the address it resolves to is not allowed. The message is safe to show
    the subscription's owner and to log (it names no address of the hub's network)."""


@dataclass(frozen=True)
class Destination:
    """A checked webhook URL: where to connect (``address``) and what to call it (``host``)."""

    scheme: str
    host: str
    port: int
    target: str
    address: str

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        name = f"[{self.host}]" if ":" in self.host else self.host
        return name if self.port == default else f"{name}:{self.port}"


def parse_networks(text: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """Read ``HUB_WEBHOOK_ALLOWED_NETWORKS`` (CIDRs, comma-separated)."""
    try:
        return tuple(ipaddress.ip_network(part.strip(), strict=False)
                     for part in text.split(",") if part.strip())
    except ValueError:
        raise ValueError("HUB_WEBHOOK_ALLOWED_NETWORKS holds CIDRs, comma-separated") from None


def check_webhook_settings(settings: Settings) -> None:
    """Refuse to start with a malformed ``HUB_WEBHOOK_ALLOWED_NETWORKS`` (a typo must not
    surface as every delivery failing) or retry settings that cannot work."""
    try:
        parse_networks(settings.hub_webhook_allowed_networks)
    except ValueError as invalid:
        raise SettingsError(str(invalid)) from None
    if settings.hub_webhook_retry_base_seconds <= 0 or \
            settings.hub_webhook_retry_max_seconds < settings.hub_webhook_retry_base_seconds:
        raise SettingsError("HUB_WEBHOOK_RETRY_BASE_SECONDS must be positive and at most "
                            "HUB_WEBHOOK_RETRY_MAX_SECONDS")
    if settings.hub_webhook_timeout_seconds <= 0 or settings.hub_webhook_pause_after_failures < 1:
        raise SettingsError("HUB_WEBHOOK_TIMEOUT_SECONDS and HUB_WEBHOOK_PAUSE_AFTER_FAILURES "
                            "must be positive")


def _system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [info[4][0] for info in infos]


def _refused_reason(address: Address) -> str | None:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return _refused_reason(address.ipv4_mapped)
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_multicast:
        return "a multicast address"
    if address.is_unspecified:
        return "an unspecified address"
    if address.is_private or not address.is_global:
        return "a private or reserved address"
    return None


def check_address(address: str, *, allowed_networks: Iterable) -> None:
    """Raise :class:`DestinationRefused` unless the hub may connect to ``address``."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if any(ip in network for network in allowed_networks):
        return
    reason = _refused_reason(ip)
    if reason is not None:
        raise DestinationRefused(f"The URL's host resolves to {reason}; webhooks are sent to "
                                 "public addresses only.")


def check_url(url: str, *, allow_http: bool) -> tuple[str, str, int, str]:
    """Check a webhook URL's form; return (scheme, host, port, path and query)."""
    if not isinstance(url, str) or len(url) > MAX_URL_LENGTH or not url.isascii() \
            or any(char.isspace() or ord(char) < 32 for char in url):
        raise DestinationRefused("Not a URL the hub can deliver to.")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http") or (scheme == "http" and not allow_http):
        raise DestinationRefused("Webhook URLs must use https.")
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        raise DestinationRefused("The URL's port is not valid.") from None
    if not host:
        raise DestinationRefused("The URL has no host.")
    if parts.username is not None or parts.password is not None:
        raise DestinationRefused("Webhook URLs may not carry credentials.")
    if parts.fragment:
        raise DestinationRefused("Webhook URLs may not have a fragment.")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if _NUMERIC_HOST.match(host):
            raise DestinationRefused("The URL's host is a number that is not a dotted IPv4 "
                                     "address.") from None
    port = port or (443 if scheme == "https" else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return scheme, host, port, target


def resolve(url: str, *, allow_http: bool, allowed_networks: Iterable,
            resolver: Resolver = _system_resolver) -> Destination:
    """Check ``url`` and resolve its host once; every address must be allowed (a name with one
    public and one private address is refused). Returns the destination to connect to."""
    scheme, host, port, target = check_url(url, allow_http=allow_http)
    networks = tuple(allowed_networks)
    try:
        addresses = list(dict.fromkeys(resolver(host, port)))
    except (OSError, UnicodeError):
        raise DestinationRefused("The URL's host name does not resolve.") from None
    if not addresses:
        raise DestinationRefused("The URL's host name does not resolve.")
    for address in addresses:
        check_address(address, allowed_networks=networks)
    return Destination(scheme=scheme, host=host, port=port, target=target,
                       address=addresses[0].split("%", 1)[0])


@dataclass(frozen=True)
class Answer:
    """What a receiver answered: its status code (the body is never kept)."""

    status: int


def post(destination: Destination, *, body: bytes, headers: dict[str, str],
         timeout: float) -> Answer:
    """POST ``body`` to the checked address of ``destination``, never following a redirect.

    Raises urllib3's errors (timeouts, refused connections, TLS failures) to the caller."""
    common = {"port": destination.port, "maxsize": 1, "retries": False,
              "timeout": urllib3.Timeout(connect=timeout, read=timeout)}
    if destination.scheme == "https":
        context = ssl.create_default_context()
        pool = urllib3.HTTPSConnectionPool(
            destination.address, server_hostname=destination.host,
            assert_hostname=destination.host, ssl_context=context,
            cert_reqs=ssl.CERT_REQUIRED, **common)
    else:
        pool = urllib3.HTTPConnectionPool(destination.address, **common)
    try:
        response = pool.urlopen("POST", destination.target, body=body,
                                headers={**headers, "Host": destination.host_header},
                                redirect=False, retries=False, preload_content=False,
                                assert_same_host=False)
        try:
            # Read a little, so the connection ends cleanly; what the receiver says is not kept.
            response.read(4096)
        finally:
            response.release_conn()
        return Answer(status=response.status)
    finally:
        pool.close()
