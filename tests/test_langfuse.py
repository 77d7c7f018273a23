"""Langfuse tracing: on with both Langfuse keys set, silent without them."""

from __future__ import annotations

import base64
import dataclasses
import http.server
import importlib.util
import threading
from typing import Iterator

import pytest

from tests.conftest import MASTER_KEY, OPENROUTER_KEY, VERCEL_KEY, gateway_client
from tests.support.gateway import chat, unique_prompt
from tests.support.processes import eventually

PUBLIC_KEY = "pk-lf-test-public-0001"
SECRET_KEY = "sk-lf-test-secret-0001"
TRACES_PATH = "/api/public/otel/v1/traces"

OTLP_INSTALLED = all(
    importlib.util.find_spec(module) is not None
    for module in ("opentelemetry.sdk", "opentelemetry.exporter.otlp.proto.http")
)


@dataclasses.dataclass
class Export:
    path: str
    authorization: str | None
    body: bytes


class LangfuseStandIn:
    """A local stand-in for Langfuse's OpenTelemetry ingestion endpoint that records each export."""

    def __init__(self) -> None:
        self.exports: list[Export] = []
        stand_in = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (the name http.server calls)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                stand_in.exports.append(Export(self.path, self.headers.get("Authorization"), body))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> "LangfuseStandIn":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


@pytest.fixture
def langfuse() -> Iterator[LangfuseStandIn]:
    stand_in = LangfuseStandIn().start()
    yield stand_in
    stand_in.stop()


@pytest.mark.skipif(
    not OTLP_INSTALLED,
    reason="opentelemetry-sdk or opentelemetry-exporter-otlp-proto-http is not installed (requirements.in lists them)",
)
def test_trace_sent_when_keys_set(langfuse, start_proxy, upstream):
    """With both Langfuse keys set, a request's trace reaches LANGFUSE_HOST without any API key in it."""
    proxy = start_proxy(
        {"LANGFUSE_PUBLIC_KEY": PUBLIC_KEY, "LANGFUSE_SECRET_KEY": SECRET_KEY, "LANGFUSE_HOST": langfuse.url}
    )
    prompt = unique_prompt("traced")
    with gateway_client(proxy) as client:
        response = chat(client, "gpt-4o-mini", prompt)
    assert response.status_code == 200, response.text

    def traces_with_prompt() -> list[Export]:
        return [export for export in langfuse.exports if prompt.encode() in export.body]

    (export,) = eventually(traces_with_prompt, lambda exports: len(exports) >= 1, 30, interval=0.5)
    expected_authorization = "Basic " + base64.b64encode(f"{PUBLIC_KEY}:{SECRET_KEY}".encode()).decode()
    assert export.path == TRACES_PATH
    assert export.authorization == expected_authorization
    for key in (MASTER_KEY, VERCEL_KEY, OPENROUTER_KEY):
        assert key.encode() not in export.body, "the trace contains an API key"


def test_no_langfuse_keys_no_errors(langfuse, start_proxy, upstream):
    """Without Langfuse keys the proxy serves requests, sends no traces and logs no error."""
    proxy = start_proxy({"LANGFUSE_HOST": langfuse.url})
    with gateway_client(proxy) as client:
        response = chat(client, "gpt-4o-mini")
    assert response.status_code == 200, response.text

    error_lines = [line for line in proxy.log().splitlines() if "ERROR" in line or "Traceback" in line]
    langfuse_lines = [line for line in proxy.log().splitlines() if "langfuse" in line.lower()]
    assert error_lines == []
    assert langfuse_lines == []
    assert langfuse.exports == []
