"""Webhook destinations and deliveries. Traffic goes to a listener on 127.0.0.1 only; other
ranges are judged through a fake resolver, so nothing is ever sent to them."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from standardwebhooks import Webhook

from speakerscribe.webhooks import WebhookPolicy, WebhookRefused, WebhookSender

SECRET = "whsec_" + base64.b64encode(b"speakerscribe-test-secret-32-byt").decode()

LOOPBACK_SPELLINGS = [
    "http://127.0.0.1/hook",
    "http://127.1/hook",
    "http://2130706433/hook",
    "http://0x7f000001/hook",
    "http://0177.0.0.1/hook",
    "http://localhost/hook",
    "http://[::1]/hook",
    "http://[::ffff:127.0.0.1]/hook",
    "http://[::ffff:7f00:1]/hook",
    "http://0.0.0.0/hook",
]


@pytest.mark.parametrize("url", LOOPBACK_SPELLINGS)
def test_every_loopback_spelling_is_refused(url):
    with pytest.raises(WebhookRefused) as refused:
        WebhookPolicy().check(url)
    assert refused.value.param == "webhook_url" and refused.value.status_code == 400


def fake_dns(answers: dict[str, list[str]]):
    def resolve(host: str, port: int) -> list[str]:
        if host not in answers:
            raise OSError("no such host")
        return answers[host]

    return resolve


@pytest.mark.parametrize(
    "address",
    ["10.1.2.3", "172.16.0.9", "192.168.1.1", "169.254.169.254", "fe80::1", "fc00::5", "224.0.0.1"],
)
def test_names_that_resolve_inside_are_refused(address):
    policy = WebhookPolicy(resolve=fake_dns({"hooks.example.test": [address]}))
    with pytest.raises(WebhookRefused, match="not a public address"):
        policy.check("https://hooks.example.test/done")


def test_one_inside_address_among_public_ones_is_enough_to_refuse():
    resolve = fake_dns({"hooks.example.test": ["93.184.216.34", "10.0.0.1"]})
    with pytest.raises(WebhookRefused):
        WebhookPolicy(resolve=resolve).check("https://hooks.example.test/done")


def test_a_public_name_passes_and_is_pinned_to_its_checked_address():
    resolve = fake_dns({"hooks.example.test": ["93.184.216.34"]})
    destination = WebhookPolicy(resolve=resolve).check("https://hooks.example.test:8443/done")
    assert (destination.host, destination.port, destination.address) == (
        "hooks.example.test",
        8443,
        "93.184.216.34",
    )


@pytest.mark.parametrize(
    "url",
    ["ftp://example.test/x", "http:///x", "http://user:pw@localhost/x", "http://nowhere.invalid/"],
)
def test_malformed_or_unresolvable_urls_are_refused(url):
    with pytest.raises(WebhookRefused):
        WebhookPolicy(resolve=fake_dns({})).check(url)


def test_allow_list_names_hosts_or_networks():
    assert WebhookPolicy(["127.0.0.0/8"]).check("http://127.1:9/x").address == "127.0.0.1"
    assert WebhookPolicy(["localhost"]).check("http://localhost:9/x").host == "localhost"
    with pytest.raises(WebhookRefused):  # the name is allowed, not every loopback spelling
        WebhookPolicy(["localhost"]).check("http://127.0.0.1:9/x")


class Listener:
    """A webhook receiver on 127.0.0.1 that answers each request with the next status."""

    def __init__(self, statuses: list[int], delay_s: float = 0.0):
        self.statuses, self.received = list(statuses), []
        listener = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["content-length"]))
                listener.received.append((dict(self.headers), body.decode()))
                if delay_s:
                    threading.Event().wait(delay_s)
                status = listener.statuses.pop(0) if listener.statuses else 200
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("location", "http://127.0.0.1:9/elsewhere")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


async def _no_wait(_: float) -> None:
    return None


def deliver(listener: Listener, **options):
    sender = WebhookSender(SECRET, WebhookPolicy(["127.0.0.0/8"]), sleep=_no_wait, **options)
    event = {"type": "job.succeeded", "job": {"id": "job_1"}}
    return asyncio.run(sender.deliver(listener.url, "job_1.succeeded", event))


def test_signed_delivery_retried_after_two_500s():
    listener = Listener([500, 500, 200])
    try:
        outcome = deliver(listener)
    finally:
        listener.close()
    assert (outcome.attempts, outcome.last_status) == (3, 200) and outcome.delivered_at
    assert len(listener.received) == 3
    headers, body = listener.received[-1]
    verified = Webhook(SECRET).verify(body, {k.lower(): v for k, v in headers.items()})
    assert verified == {"type": "job.succeeded", "job": {"id": "job_1"}}
    assert headers["webhook-id"] == "job_1.succeeded"
    assert {json.loads(b)["job"]["id"] for _, b in listener.received} == {"job_1"}


@pytest.mark.parametrize("status", [404, 302])
def test_a_4xx_or_a_redirect_is_not_retried_nor_followed(status):
    listener = Listener([status])
    try:
        outcome = deliver(listener)
    finally:
        listener.close()
    assert (outcome.attempts, outcome.last_status, outcome.delivered_at) == (1, status, None)
    assert len(listener.received) == 1


def test_timeouts_are_retried_a_bounded_number_of_times():
    listener = Listener([], delay_s=1.0)
    try:
        outcome = deliver(listener, timeout_s=0.2, max_attempts=2)
    finally:
        listener.close()
    assert (outcome.attempts, outcome.delivered_at) == (2, None)
    assert outcome.error == "TimeoutError"


def test_a_destination_refused_at_delivery_is_never_sent():
    listener = Listener([200])
    try:
        sender = WebhookSender(SECRET, WebhookPolicy(), sleep=_no_wait)
        outcome = asyncio.run(sender.deliver(listener.url, "m", {"type": "job.failed"}))
    finally:
        listener.close()
    assert outcome.delivered_at is None and "not a public address" in (outcome.error or "")
    assert listener.received == []
