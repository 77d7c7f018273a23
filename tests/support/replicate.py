"""A local stand-in for Replicate's prediction API, reached at https://api.replicate.com.

LiteLLM 1.108.7 always calls https://api.replicate.com for `replicate/...` models and ignores
any base URL, so this mock sits behind an intercepting HTTPS proxy (tests/support/tls_proxy.py)
instead of a base URL. Start the gateway with `ReplicateMock.gateway_env()` merged into its
environment: HTTPS_PROXY points at the proxy, SSL_CERT_FILE at the test certificate authority.

The API follows Replicate's. Creating a prediction returns 201 with status "starting" and
`urls.get`. Each GET of that URL counts as one poll and returns "processing" until the model's
configured number of processing polls has passed, then "succeeded" with the output as a list of
tokens, or "failed" with an error. A model configured to never finish stays "processing".
Predictions start from POST /v1/models/<owner>/<model>/predictions, the same path under
/v1/deployments, or POST /v1/predictions with a model's `version`. An unknown model gets 404 (or
the status set in `unknown_model_status`), an unknown version 422 and a wrong token 401, all with
Replicate's problem-details body.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import itertools
import re
import threading
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.support.tls_proxy import InterceptingProxy

REPLICATE_HOST = "api.replicate.com"
API_ROOT = f"https://{REPLICATE_HOST}/v1"
OUTCOMES = ("succeeded", "failed", "never")
# The parsed JSON body of a request, stored on it by the middleware.
REQUEST_BODY = web.RequestKey("body", dict)


@dataclasses.dataclass
class ModelBehaviour:
    """How the predictions of one mock model run and end."""

    outcome: str = "succeeded"
    # Polls that return status "processing" (and part of the output) before the outcome.
    processing_polls: int = 1
    # Output tokens; None returns an answer that names the model and repeats the prompt.
    output: list[str] | None = None
    error: str = "CUDA out of memory. Tried to allocate 2.00 GiB"
    # A version id that POST /v1/predictions accepts for this model.
    version: str | None = None


# Models every test starts with, named by what their predictions do.
ECHO_VERSION = "5c7d5dc6dd8bf75c1acaa8565735e7986bc5b66206b55cca93cb72c9bf15ccaa"
DEFAULT_MODELS = {
    "imqa-test/echo": ModelBehaviour(version=ECHO_VERSION),
    "imqa-test/instant": ModelBehaviour(processing_polls=0),
    "imqa-test/crash": ModelBehaviour(outcome="failed", processing_polls=0),
    "imqa-test/stuck": ModelBehaviour(outcome="never"),
}


@dataclasses.dataclass
class RecordedCall:
    """One request as the mock received it."""

    method: str
    path: str
    authorization: str | None
    body: dict[str, Any] | None
    # time.monotonic() when the request arrived, to measure the gaps between polls.
    received_at: float


@dataclasses.dataclass
class Prediction:
    id: str
    model: str
    input: dict[str, Any]
    created_at: str
    polls: int = 0
    canceled: bool = False


def answer_tokens(model: str, prompt: str) -> list[str]:
    """Split the echo model's output text into tokens that join back into the whole text."""
    return re.findall(r"\S+\s*", f"Replicate answer from {model}. You said: {prompt[-200:]}")


class ReplicateMock:
    """The Replicate API server and its intercepting proxy, on one event loop in a background thread."""

    def __init__(self, token: str, workdir: Path) -> None:
        """Accept `token` as the only valid API token; write the test CA certificate into `workdir`.

        A test may set `token` to another value to make the gateway's key invalid, and
        `unknown_model_status` to 422; reset() restores both.
        """
        self.token = token
        self._initial_token = token
        self.ca_path = workdir / "replicate-test-ca.pem"
        self.unknown_model_status = 404
        self.handler_errors: list[str] = []
        self._lock = threading.Lock()
        self._models = dict(DEFAULT_MODELS)
        self._calls: list[RecordedCall] = []
        self._predictions: dict[str, Prediction] = {}
        self._counter = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self.proxy: InterceptingProxy | None = None

    # --- lifecycle ----------------------------------------------------------------
    def start(self) -> "ReplicateMock":
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="mock-replicate", daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._serve(), self._loop).result(timeout=10)
        return self

    def stop(self) -> None:
        if self._loop is None:
            return
        if self.proxy is not None:
            asyncio.run_coroutine_threadsafe(self.proxy.stop(), self._loop).result(timeout=10)
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._loop = None

    async def _serve(self) -> None:
        self._runner = web.AppRunner(build_app(self), handle_signals=False, shutdown_timeout=1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        api_port = self._runner.addresses[0][1]
        self.proxy = InterceptingProxy({REPLICATE_HOST: api_port}, self.ca_path)
        await self.proxy.start()

    # --- what a test uses -----------------------------------------------------------
    def gateway_env(self) -> dict[str, str]:
        """Return the variables that send the gateway's Replicate calls here and nowhere else."""
        assert self.proxy is not None, "start the mock first"
        return {"HTTPS_PROXY": self.proxy.url, "SSL_CERT_FILE": str(self.ca_path)}

    def add_model(self, name: str, **behaviour: Any) -> None:
        """Serve model `name` ("owner/model") with the given ModelBehaviour fields."""
        model = ModelBehaviour(**behaviour)
        if model.outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {model.outcome!r}; expected one of {OUTCOMES}")
        with self._lock:
            self._models[name] = model

    def reset(self) -> None:
        with self._lock:
            self._models = dict(DEFAULT_MODELS)
            self._calls.clear()
            self._predictions.clear()
            self._counter = itertools.count(1)
            self.handler_errors.clear()
            self.unknown_model_status = 404
            self.token = self._initial_token
        if self.proxy is not None:
            self.proxy.reset()

    def calls(self, method: str | None = None) -> list[RecordedCall]:
        with self._lock:
            return [c for c in self._calls if method is None or c.method == method]

    def creates(self) -> list[RecordedCall]:
        """Return the requests that created a prediction."""
        return [c for c in self.calls("POST") if c.path.endswith("/predictions")]

    def polls(self) -> list[RecordedCall]:
        """Return the GET requests for a prediction's status."""
        return [c for c in self.calls("GET") if c.path.startswith("/v1/predictions/")]

    def cancels(self) -> list[RecordedCall]:
        return [c for c in self.calls("POST") if c.path.endswith("/cancel")]

    # --- used by the handlers -------------------------------------------------------
    def _record(self, call: RecordedCall) -> None:
        with self._lock:
            self._calls.append(call)

    def _model(self, name: str) -> ModelBehaviour | None:
        with self._lock:
            return self._models.get(name)

    def _model_name_of_version(self, version: str) -> str | None:
        with self._lock:
            return next((name for name, model in self._models.items() if model.version == version), None)

    def _create(self, model: str, model_input: dict[str, Any]) -> Prediction:
        with self._lock:
            prediction = Prediction(
                id=f"mockpred{next(self._counter):04d}", model=model, input=model_input, created_at=_now()
            )
            self._predictions[prediction.id] = prediction
            return prediction

    def _poll(self, prediction_id: str) -> Prediction | None:
        with self._lock:
            prediction = self._predictions.get(prediction_id)
            if prediction is not None:
                prediction.polls += 1
            return prediction

    def _cancel(self, prediction_id: str) -> Prediction | None:
        with self._lock:
            prediction = self._predictions.get(prediction_id)
            if prediction is not None:
                prediction.canceled = True
            return prediction


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat().replace("+00:00", "Z")


def _problem(status: int, title: str, detail: str) -> web.Response:
    """Return an error in Replicate's problem-details form."""
    return web.json_response({"title": title, "detail": detail, "status": status}, status=status)


def _invalid_version() -> web.Response:
    return _problem(
        422,
        "Invalid version or not permitted",
        "The specified version does not exist (or perhaps you don't have permission to use it?)",
    )


def _prediction_body(prediction: Prediction, status: str, output: list[str] | None, error: str | None) -> dict:
    done = status in ("succeeded", "failed", "canceled")
    body: dict[str, Any] = {
        "id": prediction.id,
        "model": prediction.model,
        "version": "mock-version",
        "input": prediction.input,
        "logs": "",
        "output": output,
        "data_removed": False,
        "error": error,
        "status": status,
        "source": "api",
        "created_at": prediction.created_at,
        "started_at": prediction.created_at if status != "starting" else None,
        "completed_at": _now() if done else None,
        "urls": {
            "get": f"{API_ROOT}/predictions/{prediction.id}",
            "cancel": f"{API_ROOT}/predictions/{prediction.id}/cancel",
        },
    }
    if done:
        body["metrics"] = {"predict_time": 0.01}
    return body


def _state(prediction: Prediction, model: ModelBehaviour) -> tuple[str, list[str] | None, str | None]:
    """Return (status, output, error) of a prediction after its latest poll."""
    tokens = model.output if model.output is not None else answer_tokens(prediction.model, str(prediction.input.get("prompt", "")))
    if prediction.canceled:
        return "canceled", None, None
    if model.outcome == "never":
        return "processing", tokens[: min(prediction.polls, len(tokens) - 1)], None
    if prediction.polls <= model.processing_polls:
        return "processing", tokens[: len(tokens) * prediction.polls // (model.processing_polls + 1)], None
    if model.outcome == "failed":
        return "failed", None, model.error
    return "succeeded", tokens, None


# --- HTTP handlers -------------------------------------------------------------------------
def build_app(mock: ReplicateMock) -> web.Application:
    @web.middleware
    async def record_and_authenticate(request: web.Request, handler) -> web.StreamResponse:
        body = None
        if request.can_read_body:
            try:
                body = await request.json()
            except ValueError:
                body = {"unparsed": await request.text()}
        mock._record(
            RecordedCall(request.method, request.path, request.headers.get("Authorization"), body, time.monotonic())
        )
        request[REQUEST_BODY] = body if isinstance(body, dict) else {}

        scheme, _, token = (request.headers.get("Authorization") or "").partition(" ")
        if scheme not in ("Token", "Bearer") or token != mock.token:
            return _problem(401, "Unauthenticated", "You did not pass a valid authentication token")
        try:
            return await handler(request)
        except web.HTTPException:
            raise
        except Exception as exc:  # a bug in the mock must fail the test, not hide in a 500
            mock.handler_errors.append(f"{request.method} {request.path}: {exc!r}")
            raise

    async def create(request: web.Request) -> web.Response:
        name = f"{request.match_info['owner']}/{request.match_info['name']}"
        if mock._model(name) is None:
            if mock.unknown_model_status == 422:
                return _invalid_version()
            return _problem(mock.unknown_model_status, "Not found", "The requested resource could not be found.")
        return _start(name, request[REQUEST_BODY])

    async def create_from_version(request: web.Request) -> web.Response:
        name = mock._model_name_of_version(str(request[REQUEST_BODY].get("version")))
        if name is None:
            return _invalid_version()
        return _start(name, request[REQUEST_BODY])

    def _start(name: str, body: dict[str, Any]) -> web.Response:
        model_input = body.get("input")
        if not isinstance(model_input, dict):
            return _problem(422, "Input validation failed", "- input: input is required")
        prediction = mock._create(name, model_input)
        return web.json_response(_prediction_body(prediction, "starting", None, None), status=201)

    async def get(request: web.Request) -> web.Response:
        prediction = mock._poll(request.match_info["id"])
        model = mock._model(prediction.model) if prediction is not None else None
        if prediction is None or model is None:
            return _problem(404, "Not found", "The requested resource could not be found.")
        return web.json_response(_prediction_body(prediction, *_state(prediction, model)))

    async def cancel(request: web.Request) -> web.Response:
        prediction = mock._cancel(request.match_info["id"])
        if prediction is None:
            return _problem(404, "Not found", "The requested resource could not be found.")
        return web.json_response(_prediction_body(prediction, "canceled", None, None))

    async def not_found(request: web.Request) -> web.Response:
        return _problem(404, "Not found", "The requested resource could not be found.")

    app = web.Application(middlewares=[record_and_authenticate])
    app.router.add_post("/v1/models/{owner}/{name}/predictions", create)
    app.router.add_post("/v1/deployments/{owner}/{name}/predictions", create)
    app.router.add_post("/v1/predictions", create_from_version)
    app.router.add_get("/v1/predictions/{id}", get)
    app.router.add_post("/v1/predictions/{id}/cancel", cancel)
    app.router.add_route("*", "/{path:.*}", not_found)
    return app
