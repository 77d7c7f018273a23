"""The replicate/<owner>/<model> route, end to end against a local Replicate API.

LiteLLM always calls https://api.replicate.com for Replicate, so these tests start a gateway of
their own whose HTTPS_PROXY is a local intercepting proxy (tests/support/tls_proxy.py) that serves
api.replicate.com from the mock in tests/support/replicate.py and rejects every other host.
"""

from __future__ import annotations

import json
import ssl
import time
import uuid
from typing import Iterator

import httpx
import pytest

from tests.conftest import REPLICATE_KEY, gateway_client
from tests.support.gateway import answer_text, chat, unique_prompt
from tests.support.processes import ProxyProcess, eventually
from tests.support.replicate import ECHO_VERSION, REPLICATE_HOST, ReplicateMock, answer_tokens

PROVIDER_AUTHORIZATION = f"Token {REPLICATE_KEY}"
# router_settings.timeout and stream_timeout in imqa_config.yaml.
CONFIGURED_TIMEOUT = 120
CONFIGURED_STREAM_TIMEOUT = 30


@pytest.fixture(scope="module")
def replicate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReplicateMock]:
    mock = ReplicateMock(REPLICATE_KEY, tmp_path_factory.mktemp("replicate")).start()
    yield mock
    mock.stop()


@pytest.fixture(autouse=True)
def clean_replicate(replicate: ReplicateMock) -> Iterator[None]:
    """Give each test the default models, the right token and no recorded requests."""
    replicate.reset()
    yield
    errors = list(replicate.handler_errors)
    replicate.reset()
    assert not errors, f"the Replicate mock raised: {errors}"


@pytest.fixture(scope="module")
def replicate_gateway(
    gateway_env: dict[str, str], replicate: ReplicateMock, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ProxyProcess]:
    """One gateway for the whole module: replicate/* has no fallback, so LiteLLM never cools it down."""
    env = {**gateway_env, **replicate.gateway_env()}
    process = ProxyProcess(env, tmp_path_factory.mktemp("replicate-proxy") / "litellm.log").start()
    yield process
    process.stop()


@pytest.fixture
def replicate_client(replicate_gateway: ProxyProcess) -> Iterator[httpx.Client]:
    with gateway_client(replicate_gateway, timeout=CONFIGURED_TIMEOUT + 30) as http:
        yield http


def stream_events(response: httpx.Response) -> Iterator[dict]:
    """Yield the JSON payload of each server-sent event until [DONE]."""
    for line in response.iter_lines():
        if not line.startswith("data: "):
            continue
        data = line[len("data: ") :]
        if data == "[DONE]":
            return
        yield json.loads(data)


def chunk_text(event: dict) -> str:
    choices = event.get("choices") or [{}]
    return (choices[0].get("delta") or {}).get("content") or ""


def expected_answer(model: str, prompt: str) -> str:
    return "".join(answer_tokens(model, prompt))


def error_message(response: httpx.Response) -> str:
    return response.json()["error"]["message"]


# --- a prediction that succeeds ----------------------------------------------------------
def test_replicate_model_returns_chat_completion(replicate_client, replicate):
    """replicate/<owner>/<model> returns an OpenAI chat completion whose content is the prediction's output."""
    prompt = unique_prompt("replicate")
    response = chat(replicate_client, "replicate/imqa-test/echo", prompt)

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "chat.completion", body
    assert body["model"] == "replicate/imqa-test/echo", body
    assert answer_text(response) == expected_answer("imqa-test/echo", prompt), body
    assert body["choices"][0]["finish_reason"] == "stop", body
    assert body["usage"]["completion_tokens"] > 0, body
    assert response.headers.get("x-litellm-model-id") == "wildcard.replicate", dict(response.headers)


def test_replicate_request_sends_model_path_and_token(replicate_client, replicate):
    """The gateway creates the prediction at the model's path and polls it, with REPLICATE_API_KEY as the token."""
    prompt = unique_prompt("replicate")
    response = chat(replicate_client, "replicate/imqa-test/echo", prompt)
    assert response.status_code == 200, response.text

    (create,) = replicate.creates()
    assert create.path == "/v1/models/imqa-test/echo/predictions", create
    assert create.authorization == PROVIDER_AUTHORIZATION, create
    assert create.body is not None and create.body["input"]["prompt"] == prompt, create

    polls = replicate.polls()
    assert [p.path for p in polls] == ["/v1/predictions/mockpred0001"] * 2, polls
    assert {p.authorization for p in polls} == {PROVIDER_AUTHORIZATION}, polls


def test_replicate_egress_only_replicate_and_huggingface(replicate_client, replicate):
    """Besides api.replicate.com, a Replicate request makes the gateway try only huggingface.co (for a chat template)."""
    response = chat(replicate_client, "replicate/imqa-test/instant")
    assert response.status_code == 200, response.text

    # A tunnel opened by an earlier test may be reused, so the list of new tunnels can be empty.
    assert set(replicate.proxy.tunnelled) <= {f"{REPLICATE_HOST}:443"}, replicate.proxy.tunnelled
    assert {line.split()[1] for line in replicate.proxy.rejected} <= {"huggingface.co:443"}, replicate.proxy.rejected
    assert len(replicate.creates()) == 1, replicate.calls()


def test_replicate_deployment_route_path(replicate_client, replicate):
    """replicate/deployments/<owner>/<name> creates the prediction on Replicate's deployments path."""
    response = chat(replicate_client, "replicate/deployments/imqa-test/instant")

    assert response.status_code == 200, response.text
    assert [c.path for c in replicate.creates()] == ["/v1/deployments/imqa-test/instant/predictions"]


@pytest.mark.xfail(
    strict=True,
    reason="LiteLLM 1.108.7 sends owner/model:<version> to /v1/models/<version>/predictions, which Replicate answers "
    "with 404, so the gateway returns 500 and a version-pinned model cannot be called",
)
def test_replicate_version_pin_creates_prediction(replicate_client, replicate):
    """replicate/<owner>/<model>:<version> creates a prediction of that version."""
    response = chat(replicate_client, f"replicate/imqa-test/echo:{ECHO_VERSION}")

    assert response.status_code == 200, response.text


# --- polling and its cost ----------------------------------------------------------------------
def test_replicate_polls_after_one_then_three_seconds(replicate_client, replicate):
    """LiteLLM polls 1 s after creating a prediction, then waits 2 s longer before each further poll."""
    response = chat(replicate_client, "replicate/imqa-test/echo")
    assert response.status_code == 200, response.text

    times = [replicate.creates()[0].received_at] + [p.received_at for p in replicate.polls()]
    gaps = [round(later - earlier, 2) for earlier, later in zip(times, times[1:])]
    assert len(gaps) == 2, gaps
    assert 0.9 <= gaps[0] < 2.0, gaps
    assert 2.9 <= gaps[1] < 4.5, gaps


def test_replicate_stuck_prediction_ends_in_time(replicate_client, replicate):
    """A prediction that never finishes ends with a JSON 5xx after five polls, well within the 120 s timeout."""
    started = time.monotonic()
    response = chat(replicate_client, "replicate/imqa-test/stuck")
    elapsed = time.monotonic() - started

    assert response.status_code >= 500, response.text
    assert "No response received from Replicate API after max retries" in error_message(response), response.text
    assert len(replicate.polls()) == 5, replicate.polls()
    # 1 + 3 + 5 + 7 + 9 s of waits between the polls.
    assert 24 <= elapsed < CONFIGURED_TIMEOUT, f"took {elapsed:.1f} s"


# --- errors -------------------------------------------------------------------------------------
def test_replicate_failed_prediction_returns_json_error(replicate_client, replicate):
    """A failed prediction returns a JSON error that carries Replicate's error message."""
    response = chat(replicate_client, "replicate/imqa-test/crash")

    assert response.status_code >= 400, response.text
    assert "CUDA out of memory" in error_message(response), response.text
    assert REPLICATE_KEY not in response.text


@pytest.mark.xfail(
    strict=True,
    reason="LiteLLM 1.108.7 turns every prediction that did not succeed into a 422 UnprocessableEntityError",
)
def test_replicate_failed_prediction_returns_5xx(replicate_client, replicate):
    """A prediction that failed on Replicate's side returns a 5xx, not a client error."""
    response = chat(replicate_client, "replicate/imqa-test/crash")

    assert response.status_code >= 500, response.text


@pytest.mark.parametrize("replicate_status", [404, 422])
def test_replicate_unknown_model_returns_json_error(replicate_status, replicate_client, replicate):
    """An unknown model returns a JSON error that names the status Replicate returned."""
    replicate.unknown_model_status = replicate_status
    response = chat(replicate_client, "replicate/nobody/no-such-model")

    assert response.status_code >= 400, response.text
    assert str(replicate_status) in error_message(response), response.text
    assert replicate.polls() == []


@pytest.mark.parametrize(
    "replicate_status",
    [
        pytest.param(
            404,
            marks=pytest.mark.xfail(
                strict=True, reason="LiteLLM 1.108.7 maps Replicate's 404 for an unknown model to a 500 APIError"
            ),
        ),
        422,
    ],
)
def test_replicate_unknown_model_returns_4xx(replicate_status, replicate_client, replicate):
    """An unknown model is the client's mistake, so the gateway returns a 4xx."""
    replicate.unknown_model_status = replicate_status
    response = chat(replicate_client, "replicate/nobody/no-such-model")

    assert 400 <= response.status_code < 500, response.text


def test_replicate_bad_token_returns_401(replicate_client, replicate, replicate_gateway):
    """A token Replicate rejects returns a JSON 401, and neither the response nor the log shows the key."""
    replicate.token = "r8-some-other-token"
    response = chat(replicate_client, "replicate/imqa-test/instant")

    assert response.status_code == 401, response.text
    assert response.json()["error"]["type"] == "authentication_error", response.text
    assert REPLICATE_KEY not in response.text
    assert REPLICATE_KEY not in replicate_gateway.log()


def test_replicate_without_mock_fails_fast(client):
    """In the default test environment a Replicate request goes nowhere and fails at once with a JSON 5xx."""
    started = time.monotonic()
    response = chat(client, "replicate/imqa-test/instant")
    elapsed = time.monotonic() - started

    assert response.status_code >= 500, response.text
    assert "error" in response.json(), response.text
    assert elapsed < 10, f"took {elapsed:.1f} s"


# --- streaming ----------------------------------------------------------------------------------
def test_replicate_stream_returns_output_in_chunks(replicate_client, replicate):
    """Streaming works: the output arrives as chunks, from polls 0.5 s apart, that join into the whole output."""
    prompt = unique_prompt("replicate-stream")
    replicate.add_model("imqa-test/slow-echo", processing_polls=3)
    body = {"model": "replicate/imqa-test/slow-echo", "messages": [{"role": "user", "content": prompt}], "stream": True}

    with replicate_client.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200, response.read()
        events = list(stream_events(response))

    texts = [chunk_text(e) for e in events if chunk_text(e)]
    assert "".join(texts) == expected_answer("imqa-test/slow-echo", prompt), events
    assert len(texts) >= 3, texts
    assert events[-1]["choices"][0]["finish_reason"] == "stop", events[-1]

    times = [p.received_at for p in replicate.polls()]
    gaps = [round(later - earlier, 2) for earlier, later in zip(times, times[1:])]
    assert all(0.4 <= gap < 1.5 for gap in gaps), gaps


def test_replicate_stream_early_failure_json_error(replicate_client, replicate):
    """A streaming prediction that fails before any output returns a plain JSON error, not a stream."""
    body = {"model": "replicate/imqa-test/crash", "messages": [{"role": "user", "content": unique_prompt()}], "stream": True}

    with replicate_client.stream("POST", "/v1/chat/completions", json=body) as response:
        response.read()

    assert response.status_code >= 400, response.text
    assert response.headers.get("content-type") == "application/json", dict(response.headers)
    assert "CUDA out of memory" in error_message(response), response.text


def test_replicate_stream_late_failure_error_event(replicate_client, replicate):
    """A prediction that fails after some output ends its stream with an error event carrying Replicate's message."""
    replicate.add_model("imqa-test/crash-late", outcome="failed", processing_polls=1)
    body = {"model": "replicate/imqa-test/crash-late", "messages": [{"role": "user", "content": unique_prompt()}], "stream": True}

    with replicate_client.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200, response.read()
        events = list(stream_events(response))

    assert any(chunk_text(e) for e in events), events
    errors = [e["error"] for e in events if "error" in e]
    assert len(errors) == 1, events
    assert "CUDA out of memory" in errors[0]["message"], errors


def test_replicate_stream_disconnect_stops_polling(replicate_gateway, replicate):
    """When the client leaves a stream of a prediction that never finishes, the gateway stops polling it."""
    body = {"model": "replicate/imqa-test/stuck", "messages": [{"role": "user", "content": unique_prompt()}], "stream": True}

    with gateway_client(replicate_gateway) as client:
        with client.stream("POST", "/v1/chat/completions", json=body) as response:
            assert response.status_code == 200, response.read()
            first = next(e for e in stream_events(response) if chunk_text(e))
    assert chunk_text(first), first

    last_change = {"count": -1, "at": time.monotonic()}

    def polls_and_quiet_seconds() -> tuple[int, float]:
        count, now = len(replicate.polls()), time.monotonic()
        if count != last_change["count"]:
            last_change.update(count=count, at=now)
        return count, now - last_change["at"]

    # The gateway polls every 0.5 s while the stream is open, so 3 s without a poll means it stopped.
    count, _ = eventually(polls_and_quiet_seconds, lambda value: value[1] >= 3, 20, interval=0.2)
    assert count >= 1, count


@pytest.mark.xfail(strict=True, reason="LiteLLM 1.108.7 never cancels a Replicate prediction it stops waiting for")
def test_replicate_abandoned_prediction_is_cancelled(replicate_gateway, replicate):
    """A prediction whose client left the stream is cancelled on Replicate, so it stops costing money."""
    body = {"model": "replicate/imqa-test/stuck", "messages": [{"role": "user", "content": unique_prompt()}], "stream": True}

    with gateway_client(replicate_gateway) as client:
        with client.stream("POST", "/v1/chat/completions", json=body) as response:
            next(e for e in stream_events(response) if chunk_text(e))

    eventually(replicate.cancels, bool, 5)


@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason="LiteLLM 1.108.7 polls a streaming prediction every 0.5 s with no limit and stream_timeout does not apply, "
    "so a prediction that never finishes holds the stream open until the client leaves",
)
def test_replicate_stuck_stream_ends_in_time(replicate_gateway, replicate):
    """A streaming prediction that never finishes ends (with an error event) within the 30 s stream timeout."""
    body = {"model": "replicate/imqa-test/stuck", "messages": [{"role": "user", "content": unique_prompt()}], "stream": True}
    limit = CONFIGURED_STREAM_TIMEOUT + 10
    started = time.monotonic()
    ended = False

    timeout = httpx.Timeout(10, read=limit)
    with gateway_client(replicate_gateway, timeout=limit) as client:
        with client.stream("POST", "/v1/chat/completions", json=body, timeout=timeout) as response:
            try:
                for _ in stream_events(response):
                    if time.monotonic() - started > limit:
                        break
                else:
                    ended = True
            except httpx.ReadTimeout:
                pass
    elapsed = time.monotonic() - started

    assert ended, f"the stream was still open after {elapsed:.0f} s"


# --- what LiteLLM sends as the prediction's input ----------------------------------------------
def test_replicate_maps_openai_params(replicate_client, replicate):
    """max_tokens, temperature, top_p and stop reach Replicate as max_new_tokens, temperature, top_p, stop_sequences."""
    response = chat(
        replicate_client, "replicate/imqa-test/instant", max_tokens=50, temperature=0.2, top_p=0.5, stop=["END"]
    )
    assert response.status_code == 200, response.text

    (create,) = replicate.creates()
    model_input = create.body["input"]
    assert model_input.get("max_new_tokens") == 50, model_input
    assert model_input.get("temperature") == 0.2, model_input
    assert model_input.get("top_p") == 0.5, model_input
    assert model_input.get("stop_sequences") == ["END"], model_input


def test_replicate_drops_unsupported_params(replicate_client, replicate):
    """seed, presence_penalty, response_format and tools never reach Replicate, and the request still succeeds."""
    tool = {
        "type": "function",
        "function": {"name": "lookup", "description": "Look a word up.", "parameters": {"type": "object", "properties": {}}},
    }
    response = chat(
        replicate_client,
        "replicate/imqa-test/instant",
        seed=7,
        presence_penalty=0.1,
        response_format={"type": "json_object"},
        tools=[tool],
    )
    assert response.status_code == 200, response.text

    (create,) = replicate.creates()
    sent = set(create.body["input"]) | set(create.body)
    dropped = {"seed", "presence_penalty", "response_format", "tools"}
    assert not sent & dropped, create.body
    assert "lookup" not in json.dumps(create.body), create.body


def test_replicate_prompt_joins_messages_without_roles(replicate_client, replicate):
    """With no chat template found, the prompt is the message contents joined by spaces, without roles."""
    marker = uuid.uuid4().hex
    messages = [
        {"role": "system", "content": f"Answer briefly {marker}."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Bye"},
    ]
    response = replicate_client.post(
        "/v1/chat/completions", json={"model": "replicate/imqa-test/instant", "messages": messages}
    )
    assert response.status_code == 200, response.text

    (create,) = replicate.creates()
    assert create.body["input"]["prompt"] == f"Answer briefly {marker}. Hi Hello! Bye", create.body
    assert "system_prompt" not in create.body["input"], create.body


# --- the intercepting proxy itself --------------------------------------------------------------
def test_tls_proxy_rejects_other_hosts(replicate):
    """The test proxy rejects a CONNECT to any host but api.replicate.com with 502 and opens no connection."""
    with httpx.Client(proxy=replicate.proxy.url, trust_env=False, timeout=5) as client:
        with pytest.raises(httpx.ProxyError) as raised:
            client.get("https://not-replicate.invalid/v1/predictions")

    assert "502" in str(raised.value), raised.value
    assert replicate.proxy.rejected == ["CONNECT not-replicate.invalid:443 HTTP/1.1"], replicate.proxy.rejected
    assert replicate.proxy.tunnelled == [], replicate.proxy.tunnelled


def test_tls_proxy_certificate_needs_test_authority(replicate):
    """Only a client given the test authority's certificate accepts the proxy's api.replicate.com certificate."""
    url = f"https://{REPLICATE_HOST}/v1/predictions/none"
    with httpx.Client(proxy=replicate.proxy.url, trust_env=False, timeout=5) as client:
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            client.get(url)

    trusting = ssl.create_default_context(cafile=str(replicate.ca_path))
    with httpx.Client(proxy=replicate.proxy.url, verify=trusting, trust_env=False, timeout=5) as client:
        response = client.get(url, headers={"Authorization": PROVIDER_AUTHORIZATION})
    assert response.status_code == 404, response.text
