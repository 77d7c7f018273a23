"""No secret appears in the proxy's log, in a response (body or header) or in /metrics/.

A proxy of this module's own gets a mix of traffic: successes, a stream, a cache hit,
provider failures with and without a fallback that recovers, wrong client keys and bad
bodies. One provider's error message repeats the API key it was sent. Then the proxy's whole
log, every response and a /metrics/ scrape are searched for the master key, each provider
key and each key a client sent. The same log shows that the gateway's "upstream call failed"
lines report provider failures only, not the requests the gateway itself rejected.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from tests.conftest import MASTER_KEY, OPENROUTER_KEY, REPLICATE_KEY, VERCEL_KEY, gateway_client
from tests.support.gateway import chat, unique_prompt
from tests.support.mock_upstream import MockUpstream
from tests.support.processes import ProxyProcess, RedisProcess, eventually

# Wrong keys clients send: one in a provider's key format, one in no known format.
WRONG_KEY_LIKE = "sk-client-wrong-key-4f2a9c"
WRONG_KEY_PLAIN = "client-typed-password-8d1e7b"

SECRETS = {
    "master_key": MASTER_KEY,
    "vercel_key": VERCEL_KEY,
    "openrouter_key": OPENROUTER_KEY,
    "replicate_key": REPLICATE_KEY,
    "wrong_key_like": WRONG_KEY_LIKE,
    "wrong_key_plain": WRONG_KEY_PLAIN,
}


@dataclasses.dataclass
class Exchange:
    """One request of the traffic mix and what came back."""

    case: str
    status: int
    headers: dict[str, str]
    body: str


@dataclasses.dataclass
class Traffic:
    exchanges: list[Exchange]
    metrics: str
    log: str

    def by_case(self, case: str) -> Exchange:
        return next(exchange for exchange in self.exchanges if exchange.case == case)


def _record(exchanges: list[Exchange], case: str, response: httpx.Response) -> None:
    exchanges.append(Exchange(case, response.status_code, dict(response.headers), response.text))


def _stream(client: httpx.Client, model: str) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": unique_prompt("secret-stream")}], "stream": True}
    with client.stream("POST", "/v1/chat/completions", json=body) as response:
        response.read()
    return response


def _send_traffic(proxy: ProxyProcess, upstream: MockUpstream) -> list[Exchange]:
    exchanges: list[Exchange] = []
    with gateway_client(proxy) as client:
        _record(exchanges, "success", chat(client, "gpt-4o"))
        _record(exchanges, "stream", _stream(client, "fast-model"))
        prompt = unique_prompt("secret-cache")
        _record(exchanges, "cache_miss", chat(client, "gemini-2.5-flash", prompt))
        _record(exchanges, "cache_hit", chat(client, "gemini-2.5-flash", prompt))

        upstream.fail("500", provider="vercel", model="openai/gpt-4o-mini", times=1)
        _record(exchanges, "fallback_after_500", chat(client, "gpt-4o-mini"))
        upstream.fail("503", model="anthropic/claude-sonnet-4")
        _record(exchanges, "chain_exhausted", chat(client, "claude-4-sonnet"))
        upstream.heal()

        # The provider's error message repeats the key it received: first only the primary, so
        # a fallback serves the request, then every entry of the chain, so the error reaches the client.
        upstream.fail("echo_key", provider="vercel", model="google/gemini-3-pro-preview")
        _record(exchanges, "echo_then_fallback", chat(client, "gemini-3-pro"))
        upstream.fail("echo_key", model="openai/gpt-4o")
        _record(exchanges, "echo_everywhere", chat(client, "gpt-4o"))
        _record(exchanges, "echo_everywhere_stream", _stream(client, "gpt-4o"))
        upstream.heal()

        _record(exchanges, "malformed_json", client.post("/v1/chat/completions", content=b'{"model": "gpt-4o", "mess'))
        _record(exchanges, "wrong_type", chat(client, "gpt-4o", temperature="hot"))
        _record(exchanges, "unknown_model", chat(client, "no-such-model"))
        _record(exchanges, "metrics", client.get("/metrics/"))
    for key in (WRONG_KEY_LIKE, WRONG_KEY_PLAIN):
        with gateway_client(proxy, key=key) as client:
            _record(exchanges, f"wrong_key {key}", chat(client, "gpt-4o"))
            _record(exchanges, f"wrong_key_metrics {key}", client.get("/metrics/"))
    with gateway_client(proxy, key=None) as client:
        _record(
            exchanges, "wrong_key_in_x_api_key", client.post("/v1/chat/completions", json={}, headers={"x-api-key": WRONG_KEY_PLAIN})
        )
    return exchanges


def _echo_failure_lines(log: str) -> int:
    return sum("upstream call failed" in line and "Incorrect API key" in line for line in log.splitlines())


@pytest.fixture(scope="module")
def traffic(
    gateway_env: dict[str, str], upstream: MockUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Traffic]:
    """Run the traffic mix against a proxy of this module's own and collect what it produced."""
    workdir: Path = tmp_path_factory.mktemp("secrets")
    # A Redis of its own: the failures below cool deployments down, which the shared proxy must not see.
    redis = RedisProcess(workdir / "redis").start()
    proxy = ProxyProcess({**gateway_env, "REDIS_PORT": str(redis.port)}, workdir / "litellm.log")
    try:
        proxy.start()
        upstream.reset()
        exchanges = _send_traffic(proxy, upstream)
        upstream.reset()
        # Failure logging runs after the response is sent. A last provider failure, whose line
        # comes after those of every earlier request, marks the end of the log to search.
        upstream.fail("502", provider="vercel", model="xai/grok-4-fast-reasoning", times=1)
        with gateway_client(proxy) as client:
            chat(client, "reasoning-model")
            metrics = client.get("/metrics/").text
        eventually(proxy.log, lambda log: _echo_failure_lines(log) >= 3 and "status=502" in log, seconds=15)
        yield Traffic(exchanges, metrics, proxy.log())
    finally:
        proxy.stop()
        redis.stop()


def _places_with(secret: str, texts: dict[str, str]) -> list[str]:
    return [place for place, text in texts.items() if secret in text]


def test_traffic_mix_complete(traffic):
    """The mix produced the outcomes the secret checks rely on: successes, a hit, failures, rejections."""
    statuses = {exchange.case: exchange.status for exchange in traffic.exchanges}

    assert statuses["success"] == 200, statuses
    assert "x-litellm-cache-key" in traffic.by_case("cache_hit").headers, statuses
    assert statuses["echo_then_fallback"] == 200, statuses
    assert statuses["echo_everywhere"] == 401, statuses
    assert statuses["chain_exhausted"] >= 500, statuses
    assert statuses[f"wrong_key {WRONG_KEY_PLAIN}"] == 401, statuses
    assert statuses["metrics"] == 200, statuses


def test_echoed_key_redacted_in_response(traffic):
    """A provider error that repeats the provider key reaches the client with the key replaced."""
    exchange = traffic.by_case("echo_everywhere")
    message = json.loads(exchange.body)["error"]["message"]

    assert VERCEL_KEY not in message
    assert "Incorrect API key provided" in message
    assert "[redacted]" in message


def test_echoed_key_redacted_in_log(traffic):
    """The log line for the echoing provider names the failure without the key."""
    lines = [line for line in traffic.log.splitlines() if "Incorrect API key provided" in line]

    assert lines, "the provider's echoed error was not logged"
    assert all(VERCEL_KEY not in line and OPENROUTER_KEY not in line for line in lines), lines


def test_rejections_not_logged_as_upstream_failures(traffic):
    """Wrong keys, bad bodies and unknown models get no "upstream call failed" line: no provider was called."""
    lines = [line[:200] for line in traffic.log.splitlines() if "upstream call failed" in line and "ProxyException" in line]

    assert lines == []


def test_provider_failures_logged_as_upstream_failures(traffic):
    """Each provider failure of the mix gets an "upstream call failed" line naming the status."""
    lines = [line for line in traffic.log.splitlines() if "upstream call failed" in line]

    assert any("status=500" in line and "gpt-4o-mini.vercel" in line for line in lines), lines
    assert any("status=503" in line and "claude-4-sonnet.vercel" in line for line in lines), lines
    assert any("status=401" in line and "gemini-3-pro.vercel" in line for line in lines), lines


@pytest.mark.parametrize("name", SECRETS)
def test_log_has_no_secret(name, traffic):
    """The proxy's whole log contains none of the secrets."""
    lines = [line[:200] for line in traffic.log.splitlines() if SECRETS[name] in line]

    assert lines == []


@pytest.mark.parametrize("name", SECRETS)
def test_response_bodies_have_no_secret(name, traffic):
    """No response body of the mix contains the secret."""
    bodies = {exchange.case: exchange.body for exchange in traffic.exchanges}

    assert _places_with(SECRETS[name], bodies) == []


@pytest.mark.parametrize("name", SECRETS)
def test_response_headers_have_no_secret(name, traffic):
    """No response header of the mix contains the secret."""
    headers = {exchange.case: json.dumps(exchange.headers) for exchange in traffic.exchanges}

    assert _places_with(SECRETS[name], headers) == []


@pytest.mark.parametrize("name", SECRETS)
def test_metrics_have_no_secret(name, traffic):
    """The /metrics/ text scraped after the mix contains none of the secrets."""
    assert SECRETS[name] not in traffic.metrics
