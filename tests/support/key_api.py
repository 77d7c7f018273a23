"""A local stand-in for LiteLLM's key-management API, and a runner for scripts/keys.

The stand-in is a real HTTP server on 127.0.0.1 that records every request. It returns the
response shapes of LiteLLM 1.108.7 (/key/generate, /key/list, /key/delete), or the status and
body a test sets. This tests the script's requests and error handling where LiteLLM's database
features cannot start.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import urllib.parse
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.support.processes import REPO_ROOT, isolated_environment

KEYS_SCRIPT = REPO_ROOT / "scripts" / "keys"


@dataclass
class KeyApiRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any


class KeyApiStandIn:
    """Serve canned key-management responses and record what the client sent."""

    def __init__(self) -> None:
        self.requests: list[KeyApiRequest] = []
        # (method, path) -> (status, JSON body); a test overrides entries to inject failures.
        self.responses: dict[tuple[str, str], tuple[int, Any]] = {}
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "the stand-in is not running"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "KeyApiStandIn":
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                parsed = urllib.parse.urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                stand_in.requests.append(
                    KeyApiRequest(
                        method=self.command,
                        path=parsed.path,
                        query=urllib.parse.parse_qs(parsed.query),
                        headers={k.lower(): v for k, v in self.headers.items()},
                        body=json.loads(raw) if raw else None,
                    )
                )
                status, body = stand_in.responses.get((self.command, parsed.path), (404, {"detail": "Not Found"}))
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = _handle
            do_POST = _handle

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="key-api", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def run_keys(*args: str, url: str | None, key: str | None, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run scripts/keys with the given LITELLM_API_URL and LITELLM_API_KEY (None leaves one unset)."""
    variables = {}
    if url is not None:
        variables["LITELLM_API_URL"] = url
    if key is not None:
        variables["LITELLM_API_KEY"] = key
    return subprocess.run(
        [sys.executable, str(KEYS_SCRIPT), *args],
        env=isolated_environment(variables),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
