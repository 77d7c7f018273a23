"""The Redis response cache, on the running proxy with the repo's config and a real Redis."""

from __future__ import annotations

from typing import Any, Iterator

import httpx
import pytest

from tests.conftest import gateway_client
from tests.support.cache import (
    CACHE_KEY_HEADER,
    chat_body,
    is_cache_hit,
    message_text,
    post_chat,
    redis_ttl,
    stored_entry,
    stream_chat,
    streamed_text,
)
from tests.support.gateway import unique_prompt
from tests.support.processes import ProxyProcess, RedisProcess, eventually, isolated_environment

CONFIG_TTL = 3600
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def test_identical_request_served_from_cache(client, upstream, redis_server):
    """A repeated request gets the first response back, and the upstream receives one call."""
    body = chat_body("gpt-4o", unique_prompt("repeat"))

    first = post_chat(client, body)
    second = post_chat(client, body)

    assert not is_cache_hit(first), f"first response already a hit: {dict(first.headers)}"
    assert is_cache_hit(second), f"second response not a hit: {dict(second.headers)}"
    assert second.json()["id"] == first.json()["id"]
    assert message_text(second) == message_text(first)
    assert len(upstream.chat_requests()) == 1, [r.body for r in upstream.chat_requests()]


def test_cache_entry_in_redis_with_one_hour_ttl(client, redis_server):
    """The entry a response creates lives in Redis under the hit's key, with a TTL of 3600 s."""
    body = chat_body("gpt-4o", unique_prompt("ttl"))
    first = post_chat(client, body)
    key = post_chat(client, body).headers[CACHE_KEY_HEADER]

    ttl = redis_ttl(redis_server, key)
    entry = stored_entry(redis_server, key)

    assert CONFIG_TTL - 60 < ttl <= CONFIG_TTL, f"TTL of {key} is {ttl} s"
    assert entry is not None, f"key {key} not in Redis"
    assert first.json()["id"] in str(entry), entry


def test_long_chat_cached(client, upstream):
    """A chat with history (7 messages, above LiteLLM's default limit of 4) is cached too."""
    messages: list[dict[str, Any]] = [{"role": "system", "content": "You are terse."}]
    for turn in range(3):
        messages += [
            {"role": "user", "content": f"question {turn}"},
            {"role": "assistant", "content": f"answer {turn}"},
        ]
    messages[-1] = {"role": "user", "content": unique_prompt("long chat")}
    body = {"model": "gpt-4o", "messages": messages}

    first = post_chat(client, body)
    second = post_chat(client, body)

    assert len(messages) == 7
    assert is_cache_hit(second), f"7-message chat not served from cache: {dict(second.headers)}"
    assert message_text(second) == message_text(first)
    assert len(upstream.chat_requests()) == 1


# Each case changes one thing about the base request, so none may be served the base's entry.
VARIANTS: dict[str, dict[str, Any]] = {
    "model": {"model": "gpt-4o-mini"},
    "system_message": {"system": "Answer in French."},
    "temperature": {"temperature": 0.2},
    "max_tokens": {"max_tokens": 50},
    "top_p": {"top_p": 0.5},
    "stop": {"stop": ["END"]},
    "presence_penalty": {"presence_penalty": 0.5},
    "frequency_penalty": {"frequency_penalty": 0.5},
    "seed": {"seed": 7},
    "n": {"n": 2},
    "tools": {"tools": [WEATHER_TOOL]},
    "tool_choice": {"tools": [WEATHER_TOOL], "tool_choice": "none"},
    "response_format": {"response_format": {"type": "json_object"}},
    "logit_bias": {"logit_bias": {"50256": -100}},
    "user": {"user": "app-user-7"},
}


def _variant_body(prompt: str, change: dict[str, Any]) -> dict[str, Any]:
    change = dict(change)
    body = chat_body(change.pop("model", "gpt-4o"), prompt)
    system = change.pop("system", None)
    if system is not None:
        body["messages"] = [{"role": "system", "content": system}, *body["messages"]]
    return {**body, **change}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_request_differing_in_one_parameter_misses(variant, client, upstream):
    """A request that differs from a cached one in a single parameter is sent upstream, then cached itself."""
    prompt = unique_prompt(f"variant {variant}")
    post_chat(client, chat_body("gpt-4o", prompt))
    if variant == "tool_choice":
        post_chat(client, _variant_body(prompt, {"tools": [WEATHER_TOOL]}))
    calls_before = len(upstream.chat_requests())

    changed = post_chat(client, _variant_body(prompt, VARIANTS[variant]))
    repeated = post_chat(client, _variant_body(prompt, VARIANTS[variant]))

    assert not is_cache_hit(changed), f"{variant}: served from another request's entry"
    assert len(upstream.chat_requests()) == calls_before + 1, f"{variant}: upstream calls {upstream.chat_requests()}"
    assert is_cache_hit(repeated), f"{variant}: the changed request was not cached itself"


def test_no_cache_control_skips_lookup(client, upstream):
    """"cache": {"no-cache": true} sends the request upstream even when an entry exists, and stores the answer."""
    prompt = unique_prompt("no-cache")
    post_chat(client, chat_body("gpt-4o", prompt))

    fresh = post_chat(client, chat_body("gpt-4o", prompt, cache={"no-cache": True}))
    after = post_chat(client, chat_body("gpt-4o", prompt))

    assert not is_cache_hit(fresh), dict(fresh.headers)
    assert len(upstream.chat_requests()) == 2
    assert is_cache_hit(after), dict(after.headers)
    assert message_text(after) == message_text(fresh), "the no-cache answer was not stored"


def test_no_store_control_skips_write(client, upstream):
    """"cache": {"no-store": true} fetches from upstream and stores nothing for the next request."""
    prompt = unique_prompt("no-store")
    post_chat(client, chat_body("gpt-4o", prompt, cache={"no-store": True}))

    after = post_chat(client, chat_body("gpt-4o", prompt))

    assert not is_cache_hit(after), dict(after.headers)
    assert len(upstream.chat_requests()) == 2


def test_ttl_control_sets_key_ttl_and_expires(client, upstream, redis_server):
    """"cache": {"ttl": N} stores the entry for N seconds, and after that the request goes upstream again."""
    body = chat_body("gpt-4o", unique_prompt("ttl control"), cache={"ttl": 3})
    post_chat(client, body)
    key = post_chat(client, body).headers[CACHE_KEY_HEADER]

    ttl = redis_ttl(redis_server, key)
    assert 0 < ttl <= 3, f"TTL of {key} is {ttl} s"

    eventually(lambda: redis_ttl(redis_server, key), lambda value: value == -2, 10)
    after = post_chat(client, body)
    assert not is_cache_hit(after), dict(after.headers)
    assert len(upstream.chat_requests()) == 2


def test_s_maxage_control_rejects_older_entry(client, upstream):
    """"cache": {"s-maxage": N} accepts an entry only while it is at most N seconds old."""
    prompt = unique_prompt("s-maxage")
    post_chat(client, chat_body("gpt-4o", prompt))

    young = post_chat(client, chat_body("gpt-4o", prompt, cache={"s-maxage": 600}))
    assert is_cache_hit(young), dict(young.headers)
    assert len(upstream.chat_requests()) == 1

    stale = eventually(
        lambda: post_chat(client, chat_body("gpt-4o", prompt, cache={"s-maxage": 1, "no-store": True})),
        lambda response: not is_cache_hit(response),
        10,
        interval=0.5,
    )
    assert not is_cache_hit(stale)
    assert len(upstream.chat_requests()) == 2


def test_stream_replayed_from_cache(client, upstream):
    """A repeated streaming request is served from the cache as a stream with the same text."""
    body = chat_body("gpt-4o", unique_prompt("stream"))

    first, first_events = stream_chat(client, body)
    second, second_events = stream_chat(client, body)

    assert not is_cache_hit(first), dict(first.headers)
    assert is_cache_hit(second), dict(second.headers)
    assert second_events[-1] == "[DONE]", second_events[-3:]
    assert len(second_events) > 2, second_events
    assert streamed_text(second_events) == streamed_text(first_events)
    assert len(upstream.chat_requests()) == 1


def test_stream_and_plain_request_do_not_share_entry(client, upstream):
    """A streaming request never gets a plain request's entry, so each client receives its own format."""
    prompt = unique_prompt("stream vs plain")
    post_chat(client, chat_body("gpt-4o", prompt))

    response, events = stream_chat(client, chat_body("gpt-4o", prompt))

    assert not is_cache_hit(response), dict(response.headers)
    assert events[-1] == "[DONE]"
    assert len(upstream.chat_requests()) == 2


# --- Redis addresses as Railway gives them ----------------------------------------------------
REDIS_PASSWORD = "test-redis-password-0001"


@pytest.fixture(scope="module")
def password_redis(tmp_path_factory) -> Iterator[RedisProcess]:
    server = RedisProcess(tmp_path_factory.mktemp("redis-password"), password=REDIS_PASSWORD).start()
    yield server
    server.stop()


def _redis_env(gateway_env: dict[str, str], redis: dict[str, str]) -> dict[str, str]:
    """The test environment with its Redis variables replaced by `redis`."""
    base = {k: v for k, v in gateway_env.items() if not k.startswith("REDIS_")}
    return isolated_environment({**base, **redis})


@pytest.fixture
def proxy_with_redis_env(gateway_env, tmp_path) -> Iterator[Any]:
    started: list[ProxyProcess] = []

    def start(redis: dict[str, str]) -> ProxyProcess:
        process = ProxyProcess(_redis_env(gateway_env, redis), tmp_path / f"litellm-{len(started)}.log")
        started.append(process)
        return process.start()

    yield start
    for process in started:
        process.stop()


def _assert_cached_in(redis: RedisProcess, client: httpx.Client, upstream) -> None:
    body = chat_body("gpt-4o", unique_prompt("redis address"))
    post_chat(client, body)
    second = post_chat(client, body)

    assert is_cache_hit(second), dict(second.headers)
    assert redis_ttl(redis, second.headers[CACHE_KEY_HEADER]) > 0, "entry not stored in the password-protected Redis"
    assert len(upstream.chat_requests()) == 1


@pytest.mark.slow
def test_cache_uses_redis_host_port_password(proxy_with_redis_env, password_redis, upstream):
    """With REDIS_HOST, REDIS_PORT and REDIS_PASSWORD, entries land in that password-protected Redis."""
    proxy = proxy_with_redis_env(
        {"REDIS_HOST": "127.0.0.1", "REDIS_PORT": str(password_redis.port), "REDIS_PASSWORD": REDIS_PASSWORD}
    )
    with gateway_client(proxy) as client:
        _assert_cached_in(password_redis, client, upstream)
    assert REDIS_PASSWORD not in proxy.log(), "the proxy logged the Redis password"


@pytest.mark.slow
def test_cache_uses_redis_url(proxy_with_redis_env, password_redis, upstream):
    """With only REDIS_URL (redis://default:<password>@host:port, as Railway sets it), entries land in that Redis."""
    url = f"redis://default:{REDIS_PASSWORD}@127.0.0.1:{password_redis.port}"
    proxy = proxy_with_redis_env({"REDIS_URL": url})
    with gateway_client(proxy) as client:
        _assert_cached_in(password_redis, client, upstream)
    assert REDIS_PASSWORD not in proxy.log(), "the proxy logged the Redis password"

