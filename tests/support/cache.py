"""Helpers for the response-cache tests: telling hits from misses, reading Redis, counting log lines."""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
from typing import Any

import httpx

from tests.support.gateway import unique_prompt
from tests.support.processes import ProxyProcess, RedisProcess, eventually

# LiteLLM 1.108.7 sets this header only on a response served from the cache; its value is
# the cache entry's key in Redis.
CACHE_KEY_HEADER = "x-litellm-cache-key"

_REDIS = re.compile(r"redis", re.IGNORECASE)
_LOG_LEVEL = re.compile(r" - (LiteLLM|LiteLLM Proxy|LiteLLM Router):(ERROR|WARNING|CRITICAL)")
# Uvicorn's access-log lines, such as: INFO:     127.0.0.1:51312 - "POST /v1/chat/completions HTTP/1.1" 200 OK
_ACCESS_LINE = re.compile(r'^INFO: +[\d.:]+ - "')


def is_cache_hit(response: httpx.Response) -> bool:
    return CACHE_KEY_HEADER in response.headers


def chat_body(model: str, prompt: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": prompt}], **extra}


def post_chat(client: httpx.Client, body: dict[str, Any]) -> httpx.Response:
    response = client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    return response


def stream_chat(client: httpx.Client, body: dict[str, Any]) -> tuple[httpx.Response, list[str]]:
    """Send a streaming request; return the response and its SSE data payloads, [DONE] included."""
    with client.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as response:
        assert response.status_code == 200, response.read()
        events = [line[len("data: ") :] for line in response.iter_lines() if line.startswith("data: ")]
    return response, events


def streamed_text(events: list[str]) -> str:
    chunks = [json.loads(event) for event in events if event != "[DONE]"]
    return "".join((chunk["choices"][0]["delta"].get("content") or "") for chunk in chunks if chunk.get("choices"))


def message_text(response: httpx.Response) -> str:
    return response.json()["choices"][0]["message"]["content"]


def redis_ttl(redis: RedisProcess, key: str) -> int:
    """Return the key's TTL in seconds (-2 when the key does not exist, -1 when it never expires)."""
    return int(redis.client().ttl(key))


def stored_entry(redis: RedisProcess, key: str) -> dict[str, Any] | None:
    """Return a value LiteLLM stored in Redis: JSON, or a Python literal for some router values."""
    raw = redis.client().get(key)
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return ast.literal_eval(raw.decode())


def redis_error_lines(log: str) -> list[str]:
    """Return the warning and error lines of a proxy log that mention Redis."""
    return [line for line in log.splitlines() if _LOG_LEVEL.search(line) and _REDIS.search(line)]


def non_access_lines(log: str) -> list[str]:
    """Return the log's messages and traceback lines, leaving out access-log lines and blank lines."""
    return [line for line in log.splitlines() if line.strip() and not _ACCESS_LINE.search(line)]


class LogWindow:
    """The part of a proxy's log written after a given moment."""

    def __init__(self, proxy: ProxyProcess) -> None:
        self.proxy = proxy
        self.start = len(proxy.log())

    def text(self) -> str:
        return self.proxy.log()[self.start :]


def wait_until_stored(redis: RedisProcess, client: httpx.Client, model: str, label: str, seconds: float) -> str:
    """Send fresh prompts until one's response lands in Redis; return that entry's key.

    A hit from the second request carries the key in its header, and the key must exist in
    Redis itself: the proxy also keeps a copy of each entry in its own memory.
    """

    def attempt() -> str | None:
        body = chat_body(model, unique_prompt(label))
        post_chat(client, body)
        second = post_chat(client, body)
        key = second.headers.get(CACHE_KEY_HEADER)
        if key is None or not redis.ping() or redis.client().exists(key) == 0:
            return None
        return key

    key = eventually(attempt, lambda value: value is not None, seconds, interval=1.0)
    assert key is not None
    return key


# --- Redis with vector search, for the semantic cache -------------------------------------------
VECTOR_REDIS_BINARY = "redis-stack-server"
VECTOR_REDIS_URL_VARIABLE = "IMQA_TEST_VECTOR_REDIS_URL"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


class VectorRedisProcess(RedisProcess):
    """A throwaway Redis Stack server (Redis with the search module) on a free loopback port."""

    @staticmethod
    def binary() -> str | None:
        return shutil.which(VECTOR_REDIS_BINARY)

    def start(self, timeout: float = 15.0) -> "VectorRedisProcess":
        binary = self.binary()
        if binary is None:
            raise RuntimeError(f"{VECTOR_REDIS_BINARY} not found on PATH; install it with scripts/install_redis_stack.")
        self.workdir.mkdir(parents=True, exist_ok=True)
        # No empty arguments: redis-stack-server wrappers may pass their arguments on unquoted.
        command = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--appendonly", "no", "--dir", str(self.workdir)]
        if self.password:
            command += ["--requirepass", self.password]
        with open(self.workdir / "redis.log", "ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        eventually(self.ping, bool, timeout)
        return self

    def has_vector_search(self) -> bool:
        names = {module[b"name"].decode().lower() for module in self.client().module_list()}
        return "search" in names
