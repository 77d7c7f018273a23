"""A local stand-in for the gateway's OpenAI-compatible upstreams.

One HTTP server on 127.0.0.1 speaks the chat-completions and embeddings API of each
provider under its own path prefix (/vercel/v1, /openrouter/v1). It records every request
it receives and fails on demand, per model or for the next N requests, so a test can
take a provider down and see what the gateway does.

Run it alone for the gateway's offline demo mode:
    python -m tests.support.mock_upstream --port 8787
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import hashlib
import itertools
import json
import math
import random
import threading
import time
from typing import Any

from aiohttp import web

PROVIDERS = ("vercel", "openrouter")

# Failures a test can inject. A status fault returns that HTTP status with an
# OpenAI-style error body; "timeout" keeps the request open without a response;
# "reset" drops the TCP connection without a response; "context_length" returns
# the 400 that OpenAI sends for a prompt longer than the model's context window.
# "echo_key" returns a 401 whose message repeats the API key the request carried, as a
# careless provider might. A test then checks that the gateway never passes the key on.
# The body faults start a 200 and break it. "stall" sends the first part of the body
# (the role chunk and one content chunk of a stream, half the JSON otherwise), keeps the
# connection open for `delay` seconds and then drops it. "reset_mid_body" sends a few
# chunks of a stream, or half the JSON, and drops the connection at once.
# "malformed_json" sends a complete body that is not valid JSON (for a stream, an event
# whose data is not JSON). "empty_200" sends a 200 with no body at all.
FAULT_KINDS = (
    "400",
    "401",
    "403",
    "429",
    "500",
    "502",
    "503",
    "context_length",
    "timeout",
    "reset",
    "slow",
    "stall",
    "reset_mid_body",
    "malformed_json",
    "empty_200",
    "echo_key",
)
_BODY_FAULTS = ("stall", "reset_mid_body", "malformed_json", "empty_200")
# Content chunks a stream sends before "reset_mid_body" drops the connection.
_CHUNKS_BEFORE_RESET = 3

EMBEDDING_DIMENSIONS = 64


@dataclasses.dataclass
class RecordedRequest:
    """One request as the upstream received it."""

    provider: str
    path: str
    model: str | None
    authorization: str | None
    body: dict[str, Any]
    headers: dict[str, str]

    @property
    def stream(self) -> bool:
        return bool(self.body.get("stream"))


@dataclasses.dataclass
class Fault:
    kind: str
    provider: str | None
    model: str | None
    remaining: int | None
    # Seconds to wait: before each stream chunk for "slow", before responding for "timeout",
    # after the first part of the body for "stall".
    delay: float
    # The Retry-After header of a 429, in seconds; None sends the 429 without one.
    retry_after: int | None


class MockUpstream:
    """The mock server, run on its own event loop in a background thread."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self._requested_port = port
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._faults: list[Fault] = []
        self._counter = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self.handler_errors: list[str] = []
        # Settings for benchmarks and load runs, applied to requests that no fault matches:
        # seconds before a response (and before each stream chunk), the share of requests
        # that fail with `random_fault`, and whether requests are recorded at all (a long
        # run would otherwise keep every body in memory).
        self.delay = 0.0
        self.fail_ratio = 0.0
        self.random_fault = "500"
        self.record = True
        # Per-model delays that replace `delay`, matched on the end of the upstream model name
        # because each gateway prefixes it differently ("openai/bench-slow", "bench-slow").
        self.model_delays: dict[str, float] = {}

    # --- lifecycle ----------------------------------------------------------------
    def start(self) -> "MockUpstream":
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="mock-upstream", daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._serve(), self._loop).result(timeout=10)
        return self

    def stop(self) -> None:
        if self._loop is None:
            return
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._loop = None

    async def _serve(self) -> None:
        app = build_app(self)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self._requested_port)
        await site.start()
        self.port = self._runner.addresses[0][1]

    # --- what a test uses -----------------------------------------------------------
    def base_url(self, provider: str) -> str:
        """Return the OpenAI-style base URL (ending in /v1) that a provider is served at."""
        if provider not in PROVIDERS:
            raise ValueError(f"unknown provider {provider!r}; expected one of {PROVIDERS}")
        return f"http://{self.host}:{self.port}/{provider}/v1"

    def fail(
        self,
        kind: str,
        *,
        model: str | None = None,
        provider: str | None = None,
        times: int | None = None,
        delay: float = 600.0,
        retry_after: int | None = 1,
    ) -> None:
        """Make matching requests fail with `kind` (all of them, or the next `times`)."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; expected one of {FAULT_KINDS}")
        fault = Fault(kind, provider, model, times, delay, retry_after)
        with self._lock:
            self._faults.append(fault)

    def heal(self, *, model: str | None = None, provider: str | None = None) -> None:
        """Remove the faults set for this model and provider (all faults when both are None)."""
        with self._lock:
            self._faults = [
                f
                for f in self._faults
                if not ((model is None or f.model == model) and (provider is None or f.provider == provider))
            ]

    def reset(self) -> None:
        with self._lock:
            self._faults.clear()
            self._requests.clear()
            self.handler_errors.clear()

    def requests(self, *, provider: str | None = None, model: str | None = None) -> list[RecordedRequest]:
        with self._lock:
            return [
                r
                for r in self._requests
                if (provider is None or r.provider == provider) and (model is None or r.model == model)
            ]

    def chat_requests(self, **filters: Any) -> list[RecordedRequest]:
        return [r for r in self.requests(**filters) if r.path.endswith("/chat/completions")]

    # --- used by the handlers -----------------------------------------------------------
    def delay_for(self, model: str | None) -> float:
        for suffix, seconds in self.model_delays.items():
            if isinstance(model, str) and model.endswith(suffix):
                return seconds
        return self.delay

    def _record(self, request: RecordedRequest) -> None:
        if not self.record:
            return
        with self._lock:
            self._requests.append(request)

    def _take_fault(self, provider: str, model: str | None) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.provider not in (None, provider) or fault.model not in (None, model):
                    continue
                if fault.remaining is not None:
                    if fault.remaining <= 0:
                        continue
                    fault.remaining -= 1
                return fault
        if self.fail_ratio and random.random() < self.fail_ratio:
            return Fault(self.random_fault, None, None, None, delay=600.0, retry_after=1)
        return None

    def _next_number(self) -> int:
        with self._lock:
            return next(self._counter)


# --- HTTP handlers -------------------------------------------------------------------------
def build_app(mock: MockUpstream) -> web.Application:
    app = web.Application(client_max_size=64 * 1024 * 1024)

    async def chat(request: web.Request) -> web.StreamResponse:
        return await _handle(mock, request, _chat_response)

    async def embeddings(request: web.Request) -> web.StreamResponse:
        return await _handle(mock, request, _embeddings_response)

    async def health(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    for provider in PROVIDERS:
        app.router.add_post(f"/{provider}/v1/chat/completions", chat)
        app.router.add_post(f"/{provider}/v1/embeddings", embeddings)
    app.router.add_get("/health", health)
    return app


async def _handle(mock: MockUpstream, request: web.Request, respond) -> web.StreamResponse:
    provider = request.path.split("/")[1]
    try:
        body = await request.json()
    except json.JSONDecodeError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    model = body.get("model")
    mock._record(
        RecordedRequest(
            provider=provider,
            path=request.path,
            model=model,
            authorization=request.headers.get("Authorization"),
            body=body,
            headers=dict(request.headers),
        )
    )
    try:
        if request.path.endswith("/chat/completions"):
            problem = validate_chat_body(body)
            if problem is not None:
                return web.json_response(_error_body(problem, "invalid_request_error"), status=400)
        fault = mock._take_fault(provider, model)
        if fault is not None and fault.kind != "slow":
            return await _fault_response(request, fault)
        delay = fault.delay if fault is not None else mock.delay_for(model)
        return await respond(mock, request, provider, body, delay)
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception as exc:  # a bug in the mock must fail the test, not hide in a 500
        mock.handler_errors.append(f"{request.path}: {exc!r}")
        raise


_ROLES = ("system", "developer", "user", "assistant", "tool", "function")


def validate_chat_body(body: dict) -> str | None:
    """Return the 400 message OpenAI's API gives for an invalid chat body, or None if it is valid."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "Invalid value for 'messages': expected a non-empty array."
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in _ROLES:
            return f"Invalid value for 'messages[{index}].role': expected one of {', '.join(_ROLES)}."
    temperature = body.get("temperature")
    if temperature is not None and (isinstance(temperature, bool) or not isinstance(temperature, (int, float))):
        return "Invalid type for 'temperature': expected a number, but got a string instead."
    max_tokens = body.get("max_tokens")
    if max_tokens is not None and (isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1):
        return "Invalid value for 'max_tokens': expected an integer of at least 1."
    return None


def _error_body(message: str, error_type: str, code: str | None = None, param: str | None = None) -> dict:
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


async def _fault_response(request: web.Request, fault: Fault) -> web.StreamResponse:
    if fault.kind == "timeout":
        await asyncio.sleep(fault.delay)
        return web.json_response(_error_body("mock upstream held the request", "timeout"), status=504)
    if fault.kind == "reset":
        if request.transport is not None:
            request.transport.abort()
        raise ConnectionResetError("mock upstream dropped the connection")
    if fault.kind == "context_length":
        body = _error_body(
            "This model's maximum context length is 128000 tokens. However, your messages resulted in "
            "200000 tokens. Please reduce the length of the messages.",
            "invalid_request_error",
            code="context_length_exceeded",
            param="messages",
        )
        return web.json_response(body, status=400)
    if fault.kind == "echo_key":
        authorization = request.headers.get("Authorization", "")
        key = authorization.removeprefix("Bearer ").strip()
        body = _error_body(f"Incorrect API key provided: {key}.", "authentication_error", code="invalid_api_key")
        return web.json_response(body, status=401)
    if fault.kind in _BODY_FAULTS:
        return await _broken_chat_response(request, fault)

    status = int(fault.kind)
    messages = {
        400: ("Invalid request sent to the mock upstream.", "invalid_request_error"),
        401: ("Incorrect API key provided.", "authentication_error"),
        403: ("This key is not allowed to use this model.", "permission_error"),
        429: ("Rate limit reached for requests.", "rate_limit_error"),
        500: ("The server had an error while processing your request.", "server_error"),
        502: ("Bad gateway.", "server_error"),
        503: ("The engine is currently overloaded.", "server_error"),
    }
    message, error_type = messages[status]
    headers = {"Retry-After": str(fault.retry_after)} if status == 429 and fault.retry_after is not None else None
    return web.json_response(_error_body(message, error_type), status=status, headers=headers)


async def _broken_chat_response(request: web.Request, fault: Fault) -> web.StreamResponse:
    """Start a 200 chat response and break it as `fault.kind` specifies."""
    body = await request.json()  # aiohttp keeps the body it read in _handle, so this reads no socket
    provider = request.path.split("/")[1]
    model = body.get("model") or "unknown"
    stream = bool(body.get("stream"))
    content_type = "text/event-stream" if stream else "application/json"

    if fault.kind == "empty_200":
        return web.Response(status=200, body=b"", content_type=content_type)
    if fault.kind == "malformed_json":
        text = "Partial answer, never finished"
        if stream:
            return web.Response(status=200, text=f'data: {{"id": "{text}\n\ndata: [DONE]\n\n', content_type=content_type)
        return web.Response(status=200, text=f'{{"id": "chatcmpl-mock-broken", "choices": [{{"message": "{text}', content_type=content_type)

    answer = f"Partial answer from {provider} {model}, cut off by the mock upstream before its end."
    if stream:
        chunks = [_stream_chunk("chatcmpl-mock-broken", model, {"role": "assistant", "content": ""})]
        count = 1 if fault.kind == "stall" else _CHUNKS_BEFORE_RESET
        chunks += [_stream_chunk("chatcmpl-mock-broken", model, {"content": word + " "}) for word in answer.split(" ")[:count]]
        first_part = b"".join(chunks)
        response = web.StreamResponse(headers={"Content-Type": content_type, "Cache-Control": "no-cache"})
    else:
        whole = json.dumps(_completion("chatcmpl-mock-broken", model, answer, {})).encode()
        first_part = whole[: len(whole) // 2]
        response = web.StreamResponse(headers={"Content-Type": content_type})
        response.content_length = len(whole)
    await response.prepare(request)
    await response.write(first_part)

    if fault.kind == "stall":
        await asyncio.sleep(fault.delay)
    if request.transport is not None:
        request.transport.abort()
    raise ConnectionResetError(f"mock upstream dropped the connection mid-body ({fault.kind})")


def _last_user_text(body: dict) -> str:
    for message in reversed(body.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


def _count_tokens(text: str) -> int:
    return max(1, len(text.split()))


def _completion(completion_id: str, model: str, answer: str, usage: dict) -> dict:
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": answer},
                "finish_reason": "stop",
            }
        ],
        "usage": usage,
    }


def _stream_chunk(completion_id: str, model: str, delta: dict, finish_reason: str | None = None) -> bytes:
    payload = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }
    return f"data: {json.dumps(payload)}\n\n".encode()


async def _chat_response(
    mock: MockUpstream, request: web.Request, provider: str, body: dict, delay: float
) -> web.StreamResponse:
    number = mock._next_number()
    model = body.get("model") or "unknown"
    prompt = _last_user_text(body)
    answer = f"Mock answer {number} from {provider} {model}. You said: {prompt[:80]}"
    completion_id = f"chatcmpl-mock-{number}"
    created = int(time.time())
    prompt_tokens = sum(_count_tokens(json.dumps(m)) for m in body.get("messages") or [])
    completion_tokens = _count_tokens(answer)
    usage = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }

    if not body.get("stream"):
        if delay:
            await asyncio.sleep(delay)
        return web.json_response(_completion(completion_id, model, answer, usage))

    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await response.prepare(request)

    await response.write(_stream_chunk(completion_id, model, {"role": "assistant", "content": ""}))
    for word in answer.split(" "):
        if delay:
            await asyncio.sleep(delay)
        await response.write(_stream_chunk(completion_id, model, {"content": word + " "}))
    await response.write(_stream_chunk(completion_id, model, {}, "stop"))
    if (body.get("stream_options") or {}).get("include_usage"):
        payload = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [],
            "usage": usage,
        }
        await response.write(f"data: {json.dumps(payload)}\n\n".encode())
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response


def embed_text(text: str) -> list[float]:
    """Map text to a unit vector of hashed character trigrams, so similar texts are near."""
    vector = [0.0] * EMBEDDING_DIMENSIONS
    normalized = " ".join(text.lower().split())
    for i in range(max(1, len(normalized) - 2)):
        trigram = normalized[i : i + 3]
        digest = hashlib.blake2b(trigram.encode(), digest_size=4).digest()
        vector[int.from_bytes(digest, "big") % EMBEDDING_DIMENSIONS] += 1.0
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [v / norm for v in vector]


async def _embeddings_response(
    mock: MockUpstream, request: web.Request, provider: str, body: dict, delay: float
) -> web.StreamResponse:
    inputs = body.get("input")
    texts = [inputs] if isinstance(inputs, str) else list(inputs or [])
    data = [
        {"object": "embedding", "index": i, "embedding": embed_text(str(text))} for i, text in enumerate(texts)
    ]
    tokens = sum(_count_tokens(str(t)) for t in texts)
    return web.json_response(
        {
            "object": "list",
            "data": data,
            "model": body.get("model"),
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve the mock OpenAI-compatible upstream on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=8787, help="TCP port to listen on (default: 8787)")
    parser.add_argument(
        "--delay", type=float, default=0.0, help="seconds to wait before a response and before each stream chunk"
    )
    parser.add_argument(
        "--fail-ratio", type=float, default=0.0, help="share of requests, 0 to 1, that fail at random (default: 0)"
    )
    parser.add_argument(
        "--fail-kind", choices=FAULT_KINDS, default="500", help="how a random failure fails (default: 500)"
    )
    parser.add_argument(
        "--model-delay",
        action="append",
        default=[],
        metavar="MODEL=SECONDS",
        help="a delay for models whose name ends with MODEL, in place of --delay (repeatable)",
    )
    parser.add_argument("--no-record", action="store_true", help="keep no request log, for long load runs")
    args = parser.parse_args()
    model_delays = {}
    for item in args.model_delay:
        name, _, seconds = item.partition("=")
        try:
            model_delays[name] = float(seconds)
        except ValueError:
            parser.error(f"--model-delay expects MODEL=SECONDS, got {item!r}")
    if not 0.0 <= args.fail_ratio <= 1.0:
        parser.error(f"--fail-ratio must be between 0 and 1, got {args.fail_ratio}")
    mock = MockUpstream(port=args.port)
    mock.delay = args.delay
    mock.fail_ratio = args.fail_ratio
    mock.random_fault = args.fail_kind
    mock.record = not args.no_record
    mock.model_delays = model_delays
    mock.start()
    for provider in PROVIDERS:
        print(f"mock upstream: {provider} at {mock.base_url(provider)}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        mock.stop()


if __name__ == "__main__":
    main()
