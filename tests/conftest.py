"""Shared fixtures: the real litellm proxy with the repo's config, the mock upstream, Redis."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import httpx
import pytest

from tests.support.mock_upstream import MockUpstream
from tests.support.processes import ProxyProcess, RedisProcess, isolated_environment

MASTER_KEY = "sk-imqa-test-master-key"
# Provider keys the mock upstream receives; tests assert on them and that logs never show them.
VERCEL_KEY = "vck-test-vercel-key-0001"
OPENROUTER_KEY = "sk-or-test-openrouter-key-0001"
REPLICATE_KEY = "r8-test-replicate-key-0001"


@pytest.fixture(scope="session")
def upstream() -> Iterator[MockUpstream]:
    mock = MockUpstream().start()
    yield mock
    mock.stop()


@pytest.fixture(autouse=True)
def clean_upstream(request: pytest.FixtureRequest) -> Iterator[None]:
    """Give each test an upstream with no faults and no recorded requests."""
    if "upstream" not in request.fixturenames:
        yield
        return
    mock: MockUpstream = request.getfixturevalue("upstream")
    mock.reset()
    yield
    errors = list(mock.handler_errors)
    mock.reset()
    assert not errors, f"the mock upstream raised: {errors}"


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    server = RedisProcess(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def gateway_env(upstream: MockUpstream, redis_server: RedisProcess) -> dict[str, str]:
    """The environment a test proxy runs with: test keys, mock upstreams, the test Redis."""
    return isolated_environment(
        {
            "LITELLM_MASTER_KEY": MASTER_KEY,
            "VERCEL_AI_GATEWAY_API_KEY": VERCEL_KEY,
            "OPENROUTER_API_KEY": OPENROUTER_KEY,
            "REPLICATE_API_KEY": REPLICATE_KEY,
            "VERCEL_AI_GATEWAY_API_BASE": upstream.base_url("vercel"),
            "OPENROUTER_API_BASE": upstream.base_url("openrouter"),
            "REDIS_HOST": "127.0.0.1",
            "REDIS_PORT": str(redis_server.port),
            "IMQA_CACHE_TYPE": "redis",
            # As on Railway: no browser origin may call the gateway.
            "LITELLM_CORS_ORIGINS": "none",
        }
    )


@pytest.fixture(scope="session")
def proxy(gateway_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyProcess]:
    """One proxy shared by the tests that leave no deployment cooled down."""
    process = ProxyProcess(gateway_env, tmp_path_factory.mktemp("proxy") / "litellm.log").start()
    yield process
    process.stop()
    assert process.process is not None and process.process.poll() is not None, "the proxy did not stop"


@pytest.fixture
def test_redis(tmp_path: Path) -> Iterator[RedisProcess]:
    """A Redis of this test's own, started fresh and stopped with the test."""
    server = RedisProcess(tmp_path / "redis").start()
    yield server
    server.stop()


@pytest.fixture
def start_proxy(
    gateway_env: dict[str, str], test_redis: RedisProcess, tmp_path: Path
) -> Iterator[Callable[..., ProxyProcess]]:
    """Start proxies of this test's own, sharing the test's own Redis.

    The router keeps cooldowns and quota counters in Redis, so a proxy on the session Redis
    would pass the failures this test causes on to the shared `proxy`.
    """
    started: list[ProxyProcess] = []

    def start(env_overrides: dict[str, str] | None = None, config_path: Path | None = None) -> ProxyProcess:
        env = {**gateway_env, "REDIS_PORT": str(test_redis.port), **(env_overrides or {})}
        log_path = tmp_path / f"litellm-{len(started)}.log"
        kwargs = {"config_path": config_path} if config_path else {}
        process = ProxyProcess(env, log_path, **kwargs)
        started.append(process)
        return process.start()

    yield start
    for process in started:
        process.stop()


@pytest.fixture
def fresh_proxy(start_proxy: Callable[..., ProxyProcess]) -> ProxyProcess:
    return start_proxy()


def gateway_client(proxy: ProxyProcess, key: str | None = MASTER_KEY, timeout: float = 30) -> httpx.Client:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=proxy.url, headers=headers, timeout=timeout, trust_env=False)


@pytest.fixture
def client(proxy: ProxyProcess) -> Iterator[httpx.Client]:
    with gateway_client(proxy) as http:
        yield http


@pytest.fixture
def fresh_client(fresh_proxy: ProxyProcess) -> Iterator[httpx.Client]:
    with gateway_client(fresh_proxy) as http:
        yield http
