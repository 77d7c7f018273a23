"""Redis failures under the response cache: down at start, stopped mid-traffic, restarted."""

from __future__ import annotations

from typing import Iterator

import httpx
import pytest

from tests.conftest import gateway_client
from tests.support.cache import (
    LogWindow,
    chat_body,
    post_chat,
    redis_error_lines,
    non_access_lines,
    stream_chat,
    wait_until_stored,
)
from tests.support.gateway import unique_prompt
from tests.support.processes import RedisProcess, free_port

pytestmark = pytest.mark.slow

REQUESTS_WHILE_DOWN = 30
# Log lines (messages and traceback lines, not access-log lines) allowed while
# REQUESTS_WHILE_DOWN requests run without Redis: fewer than one per request. LiteLLM logs
# each failed Redis call until its circuit breaker opens after 5 failures, then stays quiet
# until it probes Redis again 60 s later.
MAX_LOG_LINES_WHILE_DOWN = 20
# The breaker probes Redis again 60 s after it opened; allow for the proxy's own pace on top.
RESUME_SECONDS = 100


@pytest.fixture
def own_redis(tmp_path) -> Iterator[RedisProcess]:
    """A Redis of this test's own on a fixed port, not started yet."""
    server = RedisProcess(tmp_path / "redis", port=free_port())
    yield server
    server.stop()


def _send_without_redis(client: httpx.Client, upstream) -> None:
    """Send plain and streaming requests that all succeed from the upstream while Redis is down."""
    calls_before = len(upstream.chat_requests())
    for _ in range(REQUESTS_WHILE_DOWN):
        post_chat(client, chat_body("gpt-4o", unique_prompt("redis down")))
    _, events = stream_chat(client, chat_body("gpt-4o", unique_prompt("redis down stream")))

    assert events[-1] == "[DONE]", events[-3:]
    calls = len(upstream.chat_requests()) - calls_before
    assert calls == REQUESTS_WHILE_DOWN + 1, f"upstream received {calls} calls"


def _assert_error_logged_without_flood(window: LogWindow, logged_in: str) -> None:
    """Check that `logged_in` reports the Redis error and that the window has few log lines."""
    lines = non_access_lines(window.text())
    assert redis_error_lines(logged_in), f"no Redis error in the proxy log:\n{logged_in[-3000:]}"
    assert len(lines) <= MAX_LOG_LINES_WHILE_DOWN, f"{len(lines)} log lines for {REQUESTS_WHILE_DOWN} requests:\n" + "\n".join(lines)


def test_redis_down_at_start_then_cache_resumes(start_proxy, own_redis, upstream):
    """With Redis down at start, the proxy starts and serves every request, then caches once Redis is up."""
    proxy = start_proxy({"REDIS_PORT": str(own_redis.port)})

    with gateway_client(proxy) as client:
        window = LogWindow(proxy)
        _send_without_redis(client, upstream)
        _assert_error_logged_without_flood(window, proxy.log())

        own_redis.start()
        key = wait_until_stored(own_redis, client, "gpt-4o", "redis up", RESUME_SECONDS)

    assert own_redis.client().ttl(key) > 0


def test_redis_stopped_mid_traffic_then_restarted(start_proxy, own_redis, upstream):
    """When Redis stops under traffic every request still succeeds, and caching resumes after a restart."""
    own_redis.start()
    proxy = start_proxy({"REDIS_PORT": str(own_redis.port)})

    with gateway_client(proxy) as client:
        wait_until_stored(own_redis, client, "gpt-4o", "before stop", 10)

        own_redis.stop()
        window = LogWindow(proxy)
        _send_without_redis(client, upstream)
        _assert_error_logged_without_flood(window, window.text())

        own_redis.start()
        key = wait_until_stored(own_redis, client, "gpt-4o", "after restart", RESUME_SECONDS)

    assert own_redis.client().ttl(key) > 0
