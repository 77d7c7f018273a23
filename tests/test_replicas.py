"""Two proxy processes sharing one Redis, as two Railway replicas of the gateway do."""

from __future__ import annotations

import time
from typing import Iterator

import pytest

from tests.conftest import gateway_client
from tests.support.cache import CACHE_KEY_HEADER, chat_body, is_cache_hit, message_text, post_chat, redis_ttl, stored_entry
from tests.support.gateway import chat, unique_prompt
from tests.support.processes import ProxyProcess, RedisProcess, eventually

pytestmark = pytest.mark.slow

PRIMARY = ("vercel", "openai/gpt-4o")
FALLBACK = ("openrouter", "openai/gpt-4o")
COOLDOWN_READ_INTERVAL = 1.0


@pytest.fixture(scope="module")
def shared_redis(tmp_path_factory) -> Iterator[RedisProcess]:
    """The replicas' Redis, apart from the session's: the cooldowns these tests cause stay here."""
    server = RedisProcess(tmp_path_factory.mktemp("replicas-redis")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def replicas(gateway_env, shared_redis, tmp_path_factory) -> Iterator[tuple[ProxyProcess, ProxyProcess]]:
    """Two proxies with the same config and environment, so the same Redis."""
    env = {**gateway_env, "REDIS_PORT": str(shared_redis.port)}
    logs = tmp_path_factory.mktemp("replicas")
    first = ProxyProcess(env, logs / "replica-a.log").start()
    try:
        second = ProxyProcess(env, logs / "replica-b.log").start()
    except Exception:
        first.stop()
        raise
    yield first, second
    first.stop()
    second.stop()


def test_entry_cached_by_one_replica_hits_on_other(replicas, upstream, shared_redis):
    """A response cached through replica A is served from Redis by replica B without an upstream call."""
    replica_a, replica_b = replicas
    body = chat_body("gpt-4o-mini", unique_prompt("replica cache"))

    with gateway_client(replica_a) as client_a, gateway_client(replica_b) as client_b:
        first = post_chat(client_a, body)
        # A's own repeat names the entry's key; A writes it to Redis after it has responded.
        key = post_chat(client_a, body).headers[CACHE_KEY_HEADER]
        eventually(lambda: redis_ttl(shared_redis, key), lambda ttl: ttl > 0, 10)
        second = post_chat(client_b, body)

    assert not is_cache_hit(first), dict(first.headers)
    assert is_cache_hit(second), f"replica B missed A's entry: {dict(second.headers)}"
    assert message_text(second) == message_text(first)
    assert len(upstream.chat_requests()) == 1, [r.model for r in upstream.chat_requests()]


def test_cooldown_on_one_replica_skipped_by_other(replicas, upstream, shared_redis):
    """A primary cooled down by failures seen on replica A gets no traffic from replica B."""
    replica_a, replica_b = replicas
    upstream.fail("500", provider=PRIMARY[0], model=PRIMARY[1])

    with gateway_client(replica_a) as client_a:
        for _ in range(2):
            response = chat(client_a, "gpt-4o")
            assert response.status_code == 200, response.text
    primary_calls = len(upstream.chat_requests(provider=PRIMARY[0], model=PRIMARY[1]))
    assert primary_calls == 2, f"replica A sent {primary_calls} calls to the primary"

    cooldown_key = "deployment:gpt-4o.vercel:cooldown"
    ttl = eventually(lambda: redis_ttl(shared_redis, cooldown_key), lambda value: value > 0, 10)
    assert ttl <= 30, f"cooldown key TTL is {ttl} s, expected the configured 30 s at most"
    # A replica re-reads a cooldown key from Redis at most once a second (LiteLLM's
    # DEFAULT_COOLDOWN_REDIS_READ_INTERVAL_SECONDS), so B sees the cooldown once it is that old.
    written_at = stored_entry(shared_redis, cooldown_key)["timestamp"]
    eventually(time.time, lambda now: now - written_at > COOLDOWN_READ_INTERVAL + 0.5, 5)

    with gateway_client(replica_b) as client_b:
        for _ in range(3):
            response = chat(client_b, "gpt-4o")
            assert response.status_code == 200, response.text
            assert response.headers.get("x-litellm-model-id") == "gpt-4o.openrouter", dict(response.headers)

    primary_calls_after = len(upstream.chat_requests(provider=PRIMARY[0], model=PRIMARY[1]))
    assert primary_calls_after == primary_calls, f"replica B called the cooled-down primary: {primary_calls_after}"
    assert len(upstream.chat_requests(provider=FALLBACK[0], model=FALLBACK[1])) == 5

