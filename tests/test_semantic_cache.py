"""The semantic cache (IMQA_CACHE_TYPE=redis-semantic): similar prompts share an entry."""

from __future__ import annotations

import math
import os
import uuid
from typing import Iterator
from urllib.parse import urlsplit

import pytest
import redis

from tests.conftest import VERCEL_KEY, gateway_client
from tests.support.cache import (
    LOOPBACK_HOSTS,
    VECTOR_REDIS_BINARY,
    VECTOR_REDIS_URL_VARIABLE,
    VectorRedisProcess,
    chat_body,
    is_cache_hit,
    message_text,
    post_chat,
)
from tests.support.gateway import unique_prompt
from tests.support.mock_upstream import EMBEDDING_DIMENSIONS, embed_text
from tests.support.processes import ProxyProcess, eventually, free_port

pytestmark = pytest.mark.slow

VECTOR_REDIS_PASSWORD = "test-vector-redis-password-0001"
SKIP_REASON = (
    f"needs a Redis with vector search (Redis 8 or Redis Stack): put {VECTOR_REDIS_BINARY} on PATH "
    f"(scripts/install_redis_stack) or set {VECTOR_REDIS_URL_VARIABLE} to one on 127.0.0.1"
)


@pytest.fixture(scope="module")
def vector_redis(tmp_path_factory) -> Iterator[dict[str, str]]:
    """Return the REDIS_* variables of a Redis with vector search: the one given, or one started here."""
    url = os.environ.get(VECTOR_REDIS_URL_VARIABLE)
    if url:
        parts = urlsplit(url)
        if parts.hostname not in LOOPBACK_HOSTS:
            pytest.fail(f"{VECTOR_REDIS_URL_VARIABLE} must point at 127.0.0.1, not {parts.hostname!r}")
        yield {
            "REDIS_HOST": parts.hostname or "127.0.0.1",
            "REDIS_PORT": str(parts.port or 6379),
            "REDIS_PASSWORD": parts.password or "",
        }
        return

    if VectorRedisProcess.binary() is None:
        pytest.skip(SKIP_REASON)
    server = VectorRedisProcess(tmp_path_factory.mktemp("vector-redis"), password=VECTOR_REDIS_PASSWORD, port=free_port())
    server.start()
    try:
        assert server.has_vector_search(), f"{VECTOR_REDIS_BINARY} started without the search module"
        yield {"REDIS_HOST": "127.0.0.1", "REDIS_PORT": str(server.port), "REDIS_PASSWORD": VECTOR_REDIS_PASSWORD}
    finally:
        server.stop()


@pytest.fixture(scope="module")
def semantic_proxy(vector_redis, gateway_env, tmp_path_factory):
    """A proxy with the repo's config and IMQA_CACHE_TYPE=redis-semantic, on the vector-search Redis."""
    env = {k: v for k, v in gateway_env.items() if not k.startswith("REDIS_")}
    env.update(vector_redis)
    env["IMQA_CACHE_TYPE"] = "redis-semantic"
    process = ProxyProcess(env, tmp_path_factory.mktemp("semantic") / "litellm.log").start()
    yield process
    process.stop()


def _stored_entries(redis_env: dict[str, str]) -> int:
    """Return the number of documents in the vector Redis's search indexes (the semantic cache's entries)."""
    client = redis.Redis(
        host=redis_env["REDIS_HOST"],
        port=int(redis_env["REDIS_PORT"]),
        password=redis_env["REDIS_PASSWORD"] or None,
        socket_timeout=2,
    )
    total = 0
    for name in client.execute_command("FT._LIST"):
        index_name = name.decode() if isinstance(name, bytes) else name
        total += int(client.ft(index_name).info()["num_docs"])
    return total


def _similarity(first: str, second: str) -> float:
    return math.fsum(a * b for a, b in zip(embed_text(first), embed_text(second)))


def test_similar_prompt_served_from_semantic_cache(semantic_proxy, vector_redis, upstream):
    """A reworded prompt is served the entry of a similar earlier prompt, and a different prompt is not."""
    tag = uuid.uuid4().hex
    original = f"What is the capital city of France? Request {tag}"
    reworded = f"what is the capital city of France?? request {tag}"
    different = f"Name three rivers that flow through Germany. Request {uuid.uuid4().hex}"
    assert _similarity(original, reworded) > 0.95, "premise: the mock embeds the reworded prompt close by"
    assert _similarity(original, different) < 0.8, "premise: the mock embeds the different prompt far away"

    with gateway_client(semantic_proxy) as client:
        entries_before = _stored_entries(vector_redis)
        first = post_chat(client, chat_body("gpt-4o", original))
        # The proxy stores the entry after it has answered, so wait for it before the lookup.
        eventually(lambda: _stored_entries(vector_redis), lambda count: count > entries_before, 10)
        similar = post_chat(client, chat_body("gpt-4o", reworded))
        calls_after_similar = len(upstream.chat_requests())
        other = post_chat(client, chat_body("gpt-4o", different))

    assert not is_cache_hit(first), dict(first.headers)
    assert is_cache_hit(similar), f"reworded prompt missed: {dict(similar.headers)}"
    assert message_text(similar) == message_text(first)
    assert calls_after_similar == 1, [r.body["messages"] for r in upstream.chat_requests()]
    assert not is_cache_hit(other), f"unrelated prompt served from the cache: {message_text(other)}"
    assert len(upstream.chat_requests()) == 2


def test_semantic_cache_embeds_through_gateway_alias(semantic_proxy, upstream):
    """The prompt's embedding is requested from Vercel as openai/text-embedding-3-small with the gateway's key."""
    with gateway_client(semantic_proxy) as client:
        post_chat(client, chat_body("gpt-4o", f"Embedding route check {uuid.uuid4().hex}"))

    embeddings = [r for r in upstream.requests() if r.path.endswith("/embeddings")]
    assert embeddings, "no embedding request reached the upstream"
    assert {(r.provider, r.model) for r in embeddings} == {("vercel", "openai/text-embedding-3-small")}
    assert all(r.authorization == f"Bearer {VERCEL_KEY}" for r in embeddings)



def test_embedding_alias_falls_back_to_openrouter(client, upstream):
    """With Vercel's embeddings failing, text-embedding-3-small is served by OpenRouter's same model."""
    upstream.fail("500", provider="vercel", model="openai/text-embedding-3-small")

    prompt = unique_prompt("embed")
    response = client.post("/v1/embeddings", json={"model": "text-embedding-3-small", "input": prompt})

    assert response.status_code == 200, response.text
    assert len(response.json()["data"][0]["embedding"]) == EMBEDDING_DIMENSIONS
    # Only this request's calls: a semantic-cache proxy of another test may still be embedding.
    calls = [(r.provider, r.model) for r in upstream.requests() if r.path.endswith("/embeddings") and prompt in str(r.body)]
    assert calls == [("vercel", "openai/text-embedding-3-small"), ("openrouter", "openai/text-embedding-3-small")], calls
