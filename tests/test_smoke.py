"""scripts/smoke, the post-deploy check, run against the real proxy as an operator runs it."""

from __future__ import annotations

import http.server
import re
import socket
import subprocess
import sys
import threading
import time
from typing import Iterator

import httpx
import pytest

from tests.conftest import MASTER_KEY
from tests.support.gateway import CHAINS, walk
from tests.support.processes import REPO_ROOT, RedisProcess, isolated_environment

SMOKE = REPO_ROOT / "scripts" / "smoke"
LINE = re.compile(r"^(?P<name>.+?)\s+(?P<status>PASS|FAIL)\s+(?P<seconds>\d+\.\d+)s  (?P<detail>.*)$")
TIER_CHECKS = ["chat gemini-3-pro (tier 1)", "chat fast-model (tier 2)", "chat reasoning-model (tier 3)"]
OTHER_CHECKS = ["liveness", "readiness", "models", "stream fast-model", "cache fast-model", "metrics", "wrong key"]


def run_smoke(url: str, *args: str, key: str | None = MASTER_KEY, timeout: float = 180) -> subprocess.CompletedProcess:
    """Run scripts/smoke with the URL and key in the variables IMQA apps use."""
    variables = {"LITELLM_API_URL": url}
    if key is not None:
        variables["LITELLM_API_KEY"] = key
    return subprocess.run(
        [sys.executable, str(SMOKE), *args],
        env=isolated_environment(variables),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def checks(output: str) -> dict[str, dict[str, str]]:
    """Parse the table scripts/smoke prints into {check name: {status, seconds, detail}}."""
    rows = {}
    for line in output.splitlines():
        match = LINE.match(line)
        if match:
            rows[match["name"]] = {"status": match["status"], "seconds": match["seconds"], "detail": match["detail"]}
    return rows


def smoke_prompts(upstream, label: str) -> list[str]:
    """Return the prompts of the smoke requests with this label that reached the upstream."""
    prompts = []
    for request in upstream.chat_requests():
        content = str((request.body.get("messages") or [{}])[0].get("content", ""))
        if content.startswith(f"imqa smoke {label} "):
            prompts.append(content)
    return prompts


# --- local stand-ins for a broken deployment ------------------------------------------------
class _ReadinessDownHandler(http.server.BaseHTTPRequestHandler):
    """Return 503 for /health/readiness and forward every other request to the real proxy."""

    target: str = ""

    def _forward(self) -> None:
        if self.path == "/health/readiness":
            self._send(503, b'{"status": "unhealthy", "error": "stand-in for a failing probe"}', "application/json")
            return
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
        with httpx.Client(trust_env=False, timeout=60) as client:
            upstream = client.request(self.command, self.target + self.path, headers=headers, content=body)
        self._send(upstream.status_code, upstream.content, upstream.headers.get("content-type", "text/plain"),
                   {k: v for k, v in upstream.headers.items() if k.lower().startswith("x-litellm")})  # fmt: skip

    def _send(self, status: int, body: bytes, content_type: str, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _forward

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def readiness_down(proxy) -> Iterator[str]:
    """A gateway URL whose readiness probe fails while everything else works."""
    handler = type("Handler", (_ReadinessDownHandler,), {"target": proxy.url})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


@pytest.fixture
def own_redis(tmp_path) -> Iterator[RedisProcess]:
    """A Redis of this test's own, because proxies that share a Redis share their cooldowns."""
    server = RedisProcess(tmp_path / "redis").start()
    yield server
    server.stop()


@pytest.fixture
def silent_gateway() -> Iterator[str]:
    """A URL that accepts TCP connections and never responds."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


# --- tests ---------------------------------------------------------------------------------
def test_smoke_healthy_gateway_passes(proxy, upstream):
    """Against a healthy gateway every check passes, one chat per tier, and the exit status is 0."""
    result = run_smoke(proxy.url)
    rows = checks(result.stdout)

    assert result.returncode == 0, result.stdout + result.stderr
    assert list(rows) == OTHER_CHECKS[:3] + TIER_CHECKS + OTHER_CHECKS[3:], result.stdout
    failed = {name: row for name, row in rows.items() if row["status"] != "PASS"}
    assert not failed, result.stdout
    # The first request and each repeat that missed the cache reach the upstream; the hit does not.
    repeat = int(re.match(r"repeat (\d+) served from the cache", rows["cache fast-model"]["detail"])[1])
    assert len(smoke_prompts(upstream, "cache")) == repeat, rows["cache fast-model"]
    assert MASTER_KEY not in result.stdout + result.stderr


def test_smoke_all_calls_every_alias(proxy, upstream):
    """With --all every alias of the config gets its own request, each served by its primary."""
    result = run_smoke(proxy.url, "--all")
    rows = checks(result.stdout)

    assert result.returncode == 0, result.stdout + result.stderr
    for alias in CHAINS:
        assert rows.get(f"chat {alias}", {}).get("status") == "PASS", result.stdout
        assert f"served by {alias}." in rows[f"chat {alias}"]["detail"], rows[f"chat {alias}"]
    assert len(smoke_prompts(upstream, "chat")) >= len(CHAINS), result.stdout


def test_smoke_alias_chain_down_fails(start_proxy, own_redis, upstream):
    """When every entry of gemini-3-pro's chain returns 503, its check fails and names the status."""
    own_proxy = start_proxy({"REDIS_PORT": str(own_redis.port)})
    for model in {model for _, model in walk("gemini-3-pro")}:
        upstream.fail("503", model=model)

    result = run_smoke(own_proxy.url)
    rows = checks(result.stdout)

    assert result.returncode == 1, result.stdout + result.stderr
    failing = rows["chat gemini-3-pro (tier 1)"]
    assert failing["status"] == "FAIL", result.stdout
    assert failing["detail"].startswith("expected 200 from a chat completion on gemini-3-pro, got 5"), failing
    others = {name: row["status"] for name, row in rows.items() if name != "chat gemini-3-pro (tier 1)"}
    assert set(others.values()) == {"PASS"}, result.stdout
    assert "1 of 10 checks failed: chat gemini-3-pro (tier 1)" in result.stdout


def test_smoke_readiness_probe_failing_fails(readiness_down):
    """A readiness probe that returns 503 fails the readiness check with the status it got."""
    result = run_smoke(readiness_down)
    rows = checks(result.stdout)

    assert result.returncode == 1, result.stdout + result.stderr
    assert rows["readiness"]["status"] == "FAIL", result.stdout
    assert rows["readiness"]["detail"].startswith(
        "expected 200 from GET /health/readiness without a key, got 503"
    ), rows["readiness"]
    assert rows["liveness"]["status"] == "PASS", result.stdout
    assert "1 of 10 checks failed: readiness" in result.stdout


def test_smoke_wrong_key_fails(proxy):
    """With a key the gateway rejects, the authenticated checks fail with 401 and the key is not printed."""
    wrong_key = "sk-imqa-smoke-test-rejected-key-0001"
    result = run_smoke(proxy.url, key=wrong_key)
    rows = checks(result.stdout)

    assert result.returncode == 1, result.stdout + result.stderr
    assert rows["models"]["status"] == "FAIL", result.stdout
    assert "got 401" in rows["models"]["detail"], rows["models"]
    assert "check LITELLM_API_KEY" in rows["models"]["detail"], rows["models"]
    assert rows["wrong key"]["status"] == "PASS", result.stdout
    assert wrong_key not in result.stdout + result.stderr


def test_smoke_timeout_bounds_each_check(silent_gateway):
    """Against a gateway that never responds, each check gives up after --timeout seconds."""
    started = time.monotonic()
    result = run_smoke(silent_gateway, "--timeout", "1")
    elapsed = time.monotonic() - started
    rows = checks(result.stdout)

    assert result.returncode == 1, result.stdout + result.stderr
    assert len(rows) == 10, result.stdout
    for name, row in rows.items():
        assert row["detail"] == "timed out after 1 s", (name, row)
        assert float(row["seconds"]) < 1.5, (name, row)
    assert elapsed < 30, f"smoke took {elapsed:.1f} s against a silent gateway"


def test_smoke_missing_key_is_usage_error(proxy):
    """Without a key in LITELLM_API_KEY or --key, smoke exits 2 and names the variable to set."""
    result = run_smoke(proxy.url, key=None)

    assert result.returncode == 2, result.stdout + result.stderr
    assert "no gateway key: set LITELLM_API_KEY" in result.stderr
