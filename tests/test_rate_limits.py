"""Per-deployment quotas and the per-worker cap on requests in flight, on the running proxy.

LiteLLM counts quota usage per deployment and minute in Redis, so each test's proxies use
that test's own Redis (start_proxy): a shared Redis would carry one test's usage into the next.
"""

from __future__ import annotations

import datetime
import threading
from typing import Callable

import httpx
import pytest
import yaml

from tests.conftest import MASTER_KEY, gateway_client
from tests.support.gateway import chat
from tests.support.processes import CONFIG_PATH, ProxyProcess, eventually

GPT_4O_PRIMARY = ("vercel", "openai/gpt-4o")
GPT_4O_SECOND = ("openrouter", "openai/gpt-4o")


@pytest.fixture
def start_quota_proxy(start_proxy: Callable[..., ProxyProcess]) -> Callable[..., ProxyProcess]:
    """Start a proxy on this test's own Redis (see start_proxy), with the given quota variables set."""

    def start(**quotas: str) -> ProxyProcess:
        return start_proxy(quotas)

    return start


def wait_for_minute_start() -> None:
    """Wait until at most 40 s of the current UTC minute have passed.

    LiteLLM counts quota usage per calendar minute, so a test that sent its requests across
    a minute boundary would see its count start again from zero halfway through.
    """
    eventually(lambda: datetime.datetime.now(datetime.timezone.utc).second, lambda second: second <= 40, 25)


def deployment_id(response: httpx.Response) -> str | None:
    return response.headers.get("x-litellm-model-id")


def test_deployment_at_quota_falls_back_to_next_entry(start_quota_proxy, upstream):
    """With Vercel's quota at 2 requests a minute, the third gpt-4o request is served by OpenRouter."""
    proxy = start_quota_proxy(VERCEL_AI_GATEWAY_RPM="2")
    wait_for_minute_start()

    with gateway_client(proxy) as client:
        responses = [chat(client, "gpt-4o") for _ in range(3)]

    statuses = [r.status_code for r in responses]
    assert statuses == [200, 200, 200], [r.text for r in responses]
    served = [deployment_id(r) for r in responses]
    assert served == ["gpt-4o.vercel", "gpt-4o.vercel", "gpt-4o.openrouter"]
    primary_calls = upstream.chat_requests(provider=GPT_4O_PRIMARY[0], model=GPT_4O_PRIMARY[1])
    assert len(primary_calls) == 2, "the primary was called past its quota"


def test_token_quota_moves_traffic_to_next_entry(start_quota_proxy, upstream):
    """Once a deployment has used its tokens for the minute, the next request goes down the chain."""
    proxy = start_quota_proxy(VERCEL_AI_GATEWAY_TPM="10")
    wait_for_minute_start()

    with gateway_client(proxy) as client:
        first = chat(client, "gpt-4o")
        assert first.status_code == 200, first.text
        assert deployment_id(first) == "gpt-4o.vercel"
        # The token count of a call is added after the response is sent, so the next
        # request may still see the old count; keep asking until the quota shows.
        later = eventually(lambda: chat(client, "gpt-4o"), lambda r: deployment_id(r) != "gpt-4o.vercel", 10)

    assert later.status_code == 200, later.text
    assert deployment_id(later) == "gpt-4o.openrouter"


def test_chain_at_quota_returns_429_without_calling_provider(start_quota_proxy, upstream):
    """When every entry of a chain is at its quota, the client gets a 429 and no provider is called."""
    proxy = start_quota_proxy(VERCEL_AI_GATEWAY_RPM="1", OPENROUTER_RPM="1")
    wait_for_minute_start()

    with gateway_client(proxy) as client:
        served = [deployment_id(chat(client, "gpt-4o")) for _ in range(2)]
        calls_before = len(upstream.chat_requests())
        rejected = chat(client, "gpt-4o")

    assert served == ["gpt-4o.vercel", "gpt-4o.openrouter"]
    assert rejected.status_code == 429, rejected.text
    assert "rate limit" in rejected.json()["error"]["message"].lower(), rejected.text
    assert len(upstream.chat_requests()) == calls_before, "a provider was called past its quota"


def test_quota_usage_shared_between_replicas(start_quota_proxy, upstream):
    """Requests counted on one proxy count on another that shares its Redis."""
    first = start_quota_proxy(VERCEL_AI_GATEWAY_RPM="2")
    second = start_quota_proxy(VERCEL_AI_GATEWAY_RPM="2")
    wait_for_minute_start()

    with gateway_client(first) as client:
        served_by_first = [deployment_id(chat(client, "gpt-4o")) for _ in range(2)]
    with gateway_client(second) as client:
        response = chat(client, "gpt-4o")

    assert served_by_first == ["gpt-4o.vercel", "gpt-4o.vercel"]
    assert response.status_code == 200, response.text
    assert deployment_id(response) == "gpt-4o.openrouter", "the second proxy did not see the first one's usage"
    primary_calls = upstream.chat_requests(provider=GPT_4O_PRIMARY[0], model=GPT_4O_PRIMARY[1])
    assert len(primary_calls) == 2


def test_quota_unset_means_no_limit(start_quota_proxy, upstream):
    """Without quota variables a deployment serves every request itself."""
    proxy = start_quota_proxy()
    with gateway_client(proxy) as client:
        served = [deployment_id(chat(client, "gpt-4o")) for _ in range(5)]
    assert served == ["gpt-4o.vercel"] * 5


def configured_admission_limits() -> tuple[int, int]:
    """Read the per-worker cap and queue from the config, only to size the load that must exceed them."""
    settings = yaml.safe_load(CONFIG_PATH.read_text())["general_settings"]
    return int(settings["max_in_flight_requests_per_worker"]), int(settings["max_queued_requests_per_worker"])


def send_concurrently(proxy: ProxyProcess, model: str, total: int) -> list[httpx.Response]:
    """Send `total` chat requests at once, each on its own connection, and return every response."""
    responses: list[httpx.Response] = []
    lock = threading.Lock()
    limits = httpx.Limits(max_connections=total, max_keepalive_connections=0)
    with httpx.Client(
        base_url=proxy.url,
        headers={"Authorization": f"Bearer {MASTER_KEY}"},
        timeout=60,
        limits=limits,
        trust_env=False,
    ) as client:

        def send() -> None:
            response = chat(client, model)
            with lock:
                responses.append(response)

        threads = [threading.Thread(target=send) for _ in range(total)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=90)
    return responses


def test_parallel_cap_returns_503_with_retry_after(start_quota_proxy, upstream):
    """Past the per-worker cap and its queue, the client gets a 503 that says the worker is at capacity."""
    cap, queue = configured_admission_limits()
    proxy = start_quota_proxy()
    # Hold every upstream answer long enough for all the requests to be in flight at once.
    upstream.fail("slow", provider="vercel", model="google/gemini-2.5-flash", delay=15)

    total = cap + queue + 20
    responses = send_concurrently(proxy, "gemini-2.5-flash", total)

    statuses = sorted({r.status_code for r in responses})
    rejected = [r for r in responses if r.status_code == 503]
    assert len(responses) == total, f"{total - len(responses)} requests did not finish"
    assert statuses == [200, 503], statuses
    assert len(rejected) >= total - cap - queue, f"only {len(rejected)} of {total} rejected past {cap} + {queue}"
    assert len(rejected) <= total - cap, f"{len(rejected)} of {total} rejected under a cap of {cap}"
    error = rejected[0].json()["error"]
    assert error["type"] == "overloaded_error", error
    assert "Worker at capacity" in error["message"], error
    assert rejected[0].headers.get("retry-after") == "1", dict(rejected[0].headers)


def test_parallel_cap_admits_load_within_it(start_quota_proxy, upstream):
    """Requests within the cap are all served, however fast they come and go."""
    cap, _ = configured_admission_limits()
    proxy = start_quota_proxy()
    upstream.fail("slow", provider="vercel", model="google/gemini-2.5-flash", delay=0.2)

    rounds = [send_concurrently(proxy, "gemini-2.5-flash", cap // 2) for _ in range(4)]

    statuses = [r.status_code for responses in rounds for r in responses]
    assert statuses == [200] * len(statuses), sorted(set(statuses))
