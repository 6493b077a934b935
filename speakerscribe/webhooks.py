"""Job webhooks that cannot be turned against the cluster, signed as Standard Webhooks say.

Anyone who can submit a job names a URL that the server will call, so the destination is
checked twice: at submission (a 400 naming ``webhook_url``) and again at delivery, since DNS
can change in between. The host is resolved once per try and the connection goes to the
address that passed, whatever a second lookup would say; redirects are not followed.
Only public (globally routable) addresses pass, unless ``webhook_allow`` names the host or
a network that holds the address: loopback, private, link-local, multicast, unspecified and
reserved ranges are refused, IPv4-mapped IPv6 forms are judged by their IPv4 address, and
numeric spellings (``2130706433``, ``127.1``) resolve to what they mean before the check.

Deliveries carry ``webhook-id``, ``webhook-timestamp`` and ``webhook-signature`` (the
``standardwebhooks`` package: HMAC-SHA256 over ``id.timestamp.body``); 5xx answers,
timeouts and connection failures are retried with backoff, a bounded number of times.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from standardwebhooks import Webhook

from speakerscribe.errors import InvalidRequestError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolve = Callable[[str, int], Sequence[str]]


class WebhookRefused(InvalidRequestError):
    """A destination the policy does not allow; at submission it is a 400 on ``webhook_url``."""

    code = "webhook_url_refused"

    def __init__(self, message: str):
        super().__init__(message, param="webhook_url")


def resolve_host(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (numeric spellings as the C library reads them)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


def _effective(address: IPAddress) -> IPAddress:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@dataclass(frozen=True)
class Destination:
    """A checked webhook target: connect to ``address``, send ``Host``/SNI for ``host``."""

    url: str
    host: str
    port: int
    address: str


class WebhookPolicy:
    """Which webhook destinations are allowed; ``allow`` holds host names and networks."""

    def __init__(self, allow: Sequence[str] = (), resolve: Resolve = resolve_host):
        self._hosts = {a.lower() for a in allow if not _is_network(a)}
        self._networks = [ipaddress.ip_network(a, strict=False) for a in allow if _is_network(a)]
        self._resolve = resolve

    def check(self, url: str) -> Destination:
        """The destination ``url`` names, with the address to connect to; else WebhookRefused."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise WebhookRefused("webhook_url must be an absolute http(s) URL")
        if parts.username or parts.password:
            raise WebhookRefused("webhook_url must not carry credentials")
        host = parts.hostname.lower().rstrip(".")
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise WebhookRefused("webhook_url has an invalid port") from None
        try:
            addresses = self._resolve(host, port)
        except (OSError, UnicodeError):
            raise WebhookRefused(f"webhook_url host {host!r} does not resolve") from None
        if not addresses:
            raise WebhookRefused(f"webhook_url host {host!r} does not resolve")
        named = host in self._hosts
        for text in addresses:
            address = _effective(ipaddress.ip_address(text.split("%", 1)[0]))
            if not (named or _public(address) or self._allowed_network(address)):
                raise WebhookRefused(
                    f"webhook_url resolves to {address}, which is not a public address; "
                    f"webhooks only go to public hosts (or those in webhook_allow)"
                )
        return Destination(url=url, host=host, port=port, address=addresses[0])

    def _allowed_network(self, address: IPAddress) -> bool:
        return any(address.version == n.version and address in n for n in self._networks)


def _public(address: IPAddress) -> bool:
    """Globally routable unicast: ``is_global`` alone still admits multicast ranges."""
    return address.is_global and not address.is_multicast


def _is_network(entry: str) -> bool:
    try:
        ipaddress.ip_network(entry, strict=False)
    except ValueError:
        return False
    return True


class _PinnedResolver(AbstractResolver):
    """aiohttp resolver that answers the checked address only: no second DNS lookup."""

    def __init__(self, destination: Destination):
        self._destination = destination

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        address = self._destination.address
        version = ipaddress.ip_address(address).version
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if version == 6 else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
        ]

    async def close(self) -> None:
        return None


@dataclass
class DeliveryOutcome:
    """What became of a webhook, as recorded on the job."""

    attempts: int = 0
    last_status: int | None = None
    delivered_at: float | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "attempts": self.attempts,
            "last_status": self.last_status,
            "delivered_at": None if self.delivered_at is None else int(self.delivered_at),
            "error": self.error,
        }


class WebhookSender:
    """Signs and delivers job events with retries; every try re-checks the destination."""

    def __init__(
        self,
        secret: str,
        policy: WebhookPolicy,
        *,
        max_attempts: int = 3,
        timeout_s: float = 5.0,
        backoff_s: float = 1.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ):
        self._signer = Webhook(secret)
        self.policy = policy
        self.max_attempts = max_attempts
        self.timeout_s = timeout_s
        self.backoff_s = backoff_s
        self._sleep = sleep

    def headers(self, message_id: str, body: str, now: dt.datetime) -> dict[str, str]:
        return {
            "content-type": "application/json",
            "webhook-id": message_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": self._signer.sign(message_id, now, body),
        }

    async def deliver(self, url: str, message_id: str, event: dict[str, Any]) -> DeliveryOutcome:
        """POST ``event`` until a 2xx, a refusal, a 4xx, or the tries run out."""
        body = json.dumps(event, separators=(",", ":"))
        outcome = DeliveryOutcome()
        for attempt in range(1, self.max_attempts + 1):
            if attempt > 1:
                await self._sleep(self.backoff_s * 2 ** (attempt - 2))
            outcome.attempts = attempt
            try:
                destination = await asyncio.to_thread(self.policy.check, url)
            except WebhookRefused as refusal:
                outcome.error = refusal.message
                return outcome  # nothing is sent to a refused address
            now = dt.datetime.now(tz=dt.UTC)
            try:
                status = await self._post(destination, self.headers(message_id, body, now), body)
            except (TimeoutError, aiohttp.ClientError, OSError) as failure:
                outcome.last_status, outcome.error = None, type(failure).__name__
                continue
            outcome.last_status = status
            if 200 <= status < 300:
                outcome.delivered_at, outcome.error = time.time(), None
                return outcome
            outcome.error = f"HTTP {status}"
            if status < 500:  # the receiver said no (or redirected): trying again won't help
                return outcome
        return outcome

    async def _post(self, destination: Destination, headers: dict[str, str], body: str) -> int:
        connector = aiohttp.TCPConnector(resolver=_PinnedResolver(destination), use_dns_cache=False)
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            async with session.post(
                destination.url, data=body.encode(), headers=headers, allow_redirects=False
            ) as response:
                return response.status
