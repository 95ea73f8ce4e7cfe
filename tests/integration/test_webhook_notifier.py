"""The webhook notifier against a real receiver on 127.0.0.1: signature, retries, guard.

The receiver (:mod:`tests.support.webhook`) checks the HMAC and counts deliveries;
faults come before its answer (500s, a 400, a hang, a redirect). 127.0.0.0/8 is
allowed explicitly, as downloads allow it in tests; without it nothing is sent.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from ipaddress import ip_network

import pytest

from imgpipe.adapters.webhook_notifier import SIGNATURE_HEADER, WebhookNotifier
from imgpipe.errors import ConfigError
from imgpipe.fetch.netguard import AddressGuard
from tests.support.http_server import FaultServer, Redirect, Serve, Status
from tests.support.webhook import Receiver, verify

LOOPBACK = AddressGuard(allowed_networks=(ip_network("127.0.0.0/8"),))
SECRET = "the receiver's secret"
BODY = json.dumps({"batch_id": "b-42", "counts": {"completed": 3}}).encode()


@pytest.fixture(scope="module")
def server() -> Iterator[FaultServer]:
    with FaultServer() as running:
        yield running


def notifier(url: str, **overrides: object) -> WebhookNotifier:
    options: dict[str, object] = {
        "guard": LOOPBACK,
        "secret": SECRET,
        "timeout": 1.0,
        "retries": 3,
        "backoff_base": 0.01,
        "backoff_max": 0.05,
    }
    options.update(overrides)
    return WebhookNotifier(url, **options)  # type: ignore[arg-type]


def test_a_signed_notice_is_verified_and_delivered_once(server: FaultServer) -> None:
    receiver = Receiver(SECRET)
    url = server.add("/signed", receiver)
    delivery = notifier(url).send(BODY, idempotency_key="b-42")
    assert (delivery.sent, delivery.attempts, delivery.status_code) == (True, 1, 202)
    assert receiver.accepted == [json.loads(BODY)] and receiver.rejected == 0
    (request,) = server.requests("/signed")
    assert request.method == "POST" and request.body == BODY
    assert request.headers["Idempotency-Key"] == "b-42"
    assert request.headers["Content-Type"] == "application/json"
    assert verify(SECRET, request.body, request.headers[SIGNATURE_HEADER])
    assert not verify("another secret", request.body, request.headers[SIGNATURE_HEADER])


def test_a_wrong_secret_is_rejected_by_the_receiver_and_not_retried(server: FaultServer) -> None:
    receiver = Receiver(SECRET)
    url = server.add("/wrong-secret", receiver)
    delivery = notifier(url, secret="not it").send(BODY, idempotency_key="b-42")
    assert (delivery.sent, delivery.attempts, delivery.status_code) == (False, 1, 401)
    assert receiver.rejected == 1 and receiver.accepted == []
    assert delivery.error is not None and url in delivery.error and "HTTP 401" in delivery.error


def test_without_a_secret_nothing_is_signed(server: FaultServer) -> None:
    url = server.add("/unsigned", Receiver())
    assert notifier(url, secret="").send(BODY, idempotency_key="b-42").sent
    (request,) = server.requests("/unsigned")
    assert SIGNATURE_HEADER not in request.headers


def test_500s_and_a_429_are_retried_until_the_receiver_takes_it(server: FaultServer) -> None:
    receiver = Receiver(SECRET, Status(500), Status(503), Status(429, {"Retry-After": "0"}))
    url = server.add("/flaky", receiver)
    delivery = notifier(url).send(BODY, idempotency_key="b-42")
    assert (delivery.sent, delivery.attempts, delivery.status_code) == (True, 4, 202)
    assert server.hits("/flaky") == 4 and len(receiver.accepted) == 1
    # every attempt carries the same key and the same signed bytes
    assert {r.headers["Idempotency-Key"] for r in server.requests("/flaky")} == {"b-42"}
    assert {r.body for r in server.requests("/flaky")} == {BODY}


def test_5xx_until_the_attempts_run_out_is_a_failed_delivery(server: FaultServer) -> None:
    url = server.add("/down", Status(502))
    delivery = notifier(url, retries=2).send(BODY, idempotency_key="b-42")
    assert (delivery.sent, delivery.attempts, delivery.status_code) == (False, 3, 502)
    assert server.hits("/down") == 3
    assert delivery.error == f"notice to {url} answered HTTP 502"


def test_a_400_is_final_not_retried(server: FaultServer) -> None:
    url = server.add("/bad-request", Status(400))
    delivery = notifier(url).send(BODY, idempotency_key="b-42")
    assert (delivery.sent, delivery.attempts, delivery.status_code) == (False, 1, 400)
    assert server.hits("/bad-request") == 1


def test_a_receiver_that_hangs_times_out_on_every_attempt(server: FaultServer) -> None:
    url = server.add("/hang", Serve(b"late", "text/plain", delay=30))
    started = time.monotonic()
    delivery = notifier(url, timeout=0.3, retries=1).send(BODY, idempotency_key="b-42")
    elapsed = time.monotonic() - started
    assert (delivery.sent, delivery.attempts, delivery.status_code) == (False, 2, None)
    assert delivery.error == f"notice to {url} failed: no answer within 0.3 s"
    assert server.hits("/hang") == 2
    assert 0.6 <= elapsed < 3.0  # two bounded attempts, not the receiver's 30 s


def test_a_closed_port_is_retried_then_failed() -> None:
    with FaultServer() as gone:
        url = gone.url("/hook")
    delivery = notifier(url, retries=2).send(BODY, idempotency_key="b-42")
    assert (delivery.sent, delivery.attempts) == (False, 3)
    assert delivery.error is not None and delivery.error.startswith(f"notice to {url} failed: ")


def test_a_redirect_is_not_followed(server: FaultServer) -> None:
    target = server.add("/elsewhere", Receiver())
    url = server.add("/moved", Redirect(target, status=307))
    delivery = notifier(url).send(BODY, idempotency_key="b-42")
    assert (delivery.sent, delivery.attempts, delivery.status_code) == (False, 1, 307)
    assert server.hits("/elsewhere") == 0
    assert delivery.error is not None and "redirects are not followed" in delivery.error


def test_a_loopback_url_is_refused_at_start_unless_allowed(server: FaultServer) -> None:
    url = server.add("/guarded", Receiver())
    with pytest.raises(ConfigError) as refused:
        notifier(url, guard=AddressGuard())
    assert str(refused.value) == (
        f"notice URL {url} is refused: loopback address outside the allowed networks "
        "(allow its network with IMGPIPE_ALLOW_PRIVATE_NETWORKS)"
    )
    with pytest.raises(ConfigError, match="169.254.169.254"):
        notifier("http://169.254.169.254/latest/meta-data/", guard=AddressGuard())
    assert server.hits("/guarded") == 0


def test_a_name_resolving_to_loopback_is_refused_when_sent(server: FaultServer) -> None:
    url = server.url("/by-name", host="localhost")
    server.add("/by-name", Receiver())
    delivery = notifier(url, guard=AddressGuard()).send(BODY, idempotency_key="b-42")
    assert (delivery.sent, delivery.attempts) == (False, 1)  # a refusal is final
    assert delivery.error is not None
    assert delivery.error.startswith(f"notice to {url} failed: refused to connect to localhost")
    assert server.hits("/by-name") == 0


def test_errors_name_the_url_without_its_query_or_credentials(server: FaultServer) -> None:
    server.add("/secretive", Status(404))
    url = server.url("/secretive").replace("://", "://user:pw@") + "?token=hidden"
    delivery = notifier(url).send(BODY, idempotency_key="b-42")
    assert delivery.error == f"notice to {server.url('/secretive')} answered HTTP 404"


@pytest.mark.parametrize("url", ["ftp://example.com/x", "hooks.example.com/in", "http:///path"])
def test_a_url_that_is_not_http_is_a_config_error_naming_it(url: str) -> None:
    with pytest.raises(ConfigError, match="notice URL"):
        notifier(url)
