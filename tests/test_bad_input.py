"""Bad input to POST /v1/chat/completions never gets a 5xx: it gets a JSON 4xx that names the problem.

A corpus of broken bodies, wrong field types, wrong headers and oversized bodies goes through
the shared proxy with the master key. Each case states the status it must get and a word the
error message must contain: the field, header or limit at fault. A hypothesis fuzz then sends
chat bodies with wrong types and random structure. Requests name gpt-4o-mini, whose upstream
is the mock, so a body that happens to be valid gets a completion from the mock.

Checks that the gateway adds live in imqa_auth.py (headers, body size, encoding, nesting,
Content-Type) and imqa_chat_schema.py (field types); the rest are LiteLLM's own.
"""

from __future__ import annotations

import json
import string
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from tests.conftest import MASTER_KEY
from tests.support.gateway import unique_prompt

MODEL = "gpt-4o-mini"
CHAT_PATH = "/v1/chat/completions"
# The body size limit that imqa_auth.py enforces. The tests do not import it, because
# importing imqa_auth imports LiteLLM, which fetches its price list from GitHub.
MAX_REQUEST_BODY_BYTES = 16 * 1024 * 1024


def _body(**fields: Any) -> dict[str, Any]:
    """Return a valid chat body for MODEL with `fields` added or replaced."""
    return {"model": MODEL, "messages": [{"role": "user", "content": unique_prompt("bad-input")}], **fields}


def _message(**fields: Any) -> dict[str, Any]:
    """Return a chat body whose single message is `fields`."""
    return {"model": MODEL, "messages": [fields]}


def _post(client: httpx.Client, content: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    return client.post(CHAT_PATH, content=content, headers={"Content-Type": "application/json", **(headers or {})})


def _error_message(response: httpx.Response) -> str:
    """Return the JSON error message of `response`, or its raw text when it is not one."""
    try:
        return str(response.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return f"<not a JSON error> {response.text[:300]}"


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


# (case, raw body, status, a word the error message contains)
MALFORMED_BODIES = [
    ("malformed_json", b'{"model": "gpt-4o-mini", "messages": [', 400, "Invalid JSON"),
    ("truncated_json", json.dumps(_body()).encode()[:-7], 400, "Invalid JSON"),
    ("trailing_garbage", json.dumps(_body()).encode() + b" trailing", 400, "Invalid JSON"),
    ("single_quotes", b"{'model': 'gpt-4o-mini'}", 400, "Invalid JSON"),
    ("empty_body", b"", 400, "Empty request body"),
    ("whitespace_body", b"  \n ", 400, "input data is empty"),
    ("not_utf8", b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "\xff\xfe"}]}', 400, "UTF-8"),
    ("lone_surrogate_escape", b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "\\ud800"}]}', 400, "Invalid JSON"),
    ("nested_10000_levels", _nested(10_000), 400, "nested deeper than 1024"),
    (
        "nested_10000_levels_in_field",
        b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "metadata": {"x": '
        + _nested(10_000)
        + b"}}",
        400,
        "nested deeper than 1024",
    ),
    ("nested_objects_5000_levels", b'{"a": ' * 5_000 + b"1" + b"}" * 5_000, 400, "nested deeper than 1024"),
]  # fmt: skip

# JSON that is valid but not an object: LiteLLM fails on it before any config hook runs.
NOT_AN_OBJECT = pytest.mark.xfail(
    strict=True,
    reason="LiteLLM 1.108.7: a JSON body that is not an object fails in pre_db_read_auth_checks "
    "(AttributeError: '<type>' object has no attribute 'get') and gets a 500 'Internal server error'",
)
NON_OBJECT_BODIES = [
    pytest.param(b'[{"model": "gpt-4o-mini"}]', id="array_of_objects", marks=NOT_AN_OBJECT),
    pytest.param(b'"hello"', id="string", marks=NOT_AN_OBJECT),
    pytest.param(b"42", id="number", marks=NOT_AN_OBJECT),
    pytest.param(b"null", id="null", marks=NOT_AN_OBJECT),
    pytest.param(b"true", id="boolean", marks=NOT_AN_OBJECT),
]

# (case, body, the field the error message names)
WRONG_FIELDS = [
    ("model_number", _body(model=5), "model"),
    ("model_array", _body(model=["gpt-4o"]), "model"),
    ("messages_missing", {"model": MODEL}, "messages"),
    ("messages_string", _body(messages="hello"), "messages"),
    ("messages_number", _body(messages=5), "messages"),
    ("messages_object", _body(messages={"role": "user", "content": "hi"}), "messages"),
    ("messages_empty", _body(messages=[]), "messages"),
    ("message_string", _body(messages=["hello"]), "messages[0]"),
    ("message_null", _body(messages=[None]), "messages[0]"),
    ("role_missing", _message(content="hi"), "messages[0].role"),
    ("role_unknown", _message(role="robot", content="hi"), "messages[0].role"),
    ("role_number", _message(role=1, content="hi"), "messages[0].role"),
    ("content_missing", _message(role="user"), "messages[0].content"),
    ("content_number", _message(role="user", content=5), "messages[0].content"),
    ("content_object", _message(role="user", content={"text": "hi"}), "messages[0].content"),
    ("content_part_number", _message(role="user", content=[5]), "messages[0].content[0]"),
    ("content_part_without_type", _message(role="user", content=[{"text": "hi"}]), "messages[0].content[0]"),
    ("content_text_part_number", _message(role="user", content=[{"type": "text", "text": 5}]), "messages[0].content[0].text"),
    ("message_name_number", _message(role="user", content="hi", name=5), "messages[0].name"),
    ("tool_calls_string", _message(role="assistant", tool_calls="call"), "messages[0].tool_calls"),
    ("temperature_string", _body(temperature="hot"), "temperature"),
    ("temperature_boolean", _body(temperature=True), "temperature"),
    ("temperature_array", _body(temperature=[1]), "temperature"),
    ("top_p_string", _body(top_p="high"), "top_p"),
    ("top_p_object", _body(top_p={}), "top_p"),
    ("max_tokens_string", _body(max_tokens="100"), "max_tokens"),
    ("max_tokens_fraction", _body(max_tokens=1.5), "max_tokens"),
    ("max_tokens_zero", _body(max_tokens=0), "max_tokens"),
    ("max_tokens_negative", _body(max_tokens=-5), "max_tokens"),
    ("max_completion_tokens_string", _body(max_completion_tokens="9"), "max_completion_tokens"),
    ("n_string", _body(n="2"), "n"),
    ("n_zero", _body(n=0), "n"),
    ("stream_string", _body(stream="yes"), "stream"),
    ("stream_number", _body(stream=1), "stream"),
    ("stop_number", _body(stop=5), "stop"),
    ("stop_object", _body(stop={"at": "END"}), "stop"),
    ("stop_array_of_numbers", _body(stop=[1, 2]), "stop"),
    ("tools_string", _body(tools="weather"), "tools"),
    ("tools_array_of_numbers", _body(tools=[5]), "tools[0]"),
    ("tool_without_function", _body(tools=[{"type": "function"}]), "tools[0].function"),
    ("tool_function_name_number", _body(tools=[{"type": "function", "function": {"name": 5}}]), "tools[0].function.name"),
    ("tool_choice_number", _body(tool_choice=5), "tool_choice"),
    ("tool_choice_unknown_mode", _body(tool_choice="sometimes"), "tool_choice"),
    ("response_format_string", _body(response_format="json"), "response_format"),
    ("response_format_unknown_type", _body(response_format={"type": "yaml"}), "response_format.type"),
    ("response_format_schema_missing", _body(response_format={"type": "json_schema"}), "response_format.json_schema"),
    ("user_number", _body(user=5), "user"),
    ("seed_string", _body(seed="7"), "seed"),
    ("seed_fraction", _body(seed=7.5), "seed"),
    ("presence_penalty_string", _body(presence_penalty="x"), "presence_penalty"),
    ("frequency_penalty_string", _body(frequency_penalty="x"), "frequency_penalty"),
    ("logit_bias_string", _body(logit_bias="x"), "logit_bias"),
    ("logit_bias_string_values", _body(logit_bias={"50256": "ban"}), "logit_bias"),
    ("logprobs_string", _body(logprobs="yes"), "logprobs"),
    ("top_logprobs_negative", _body(top_logprobs=-1), "top_logprobs"),
    ("parallel_tool_calls_string", _body(parallel_tool_calls="no"), "parallel_tool_calls"),
    ("stream_options_string", _body(stream_options="usage"), "stream_options"),
    ("cache_string", _body(cache="no-cache"), "cache"),
    ("timeout_string", _body(timeout="soon"), "timeout"),
    ("modalities_string", _body(modalities="text"), "modalities"),
    ("reasoning_effort_number", _body(reasoning_effort=3), "reasoning_effort"),
]  # fmt: skip

LONG_KEY = "sk-" + "a" * 32_000
# (case, Authorization header values, a word the error message contains)
BAD_AUTHORIZATION = [
    ("key_without_bearer", [MASTER_KEY], "no Bearer key"),
    ("empty", [""], "Missing API key"),
    ("bearer_without_key", ["Bearer"], "Missing API key"),
    ("basic_scheme", ["Basic dXNlcjpwYXNz"], "Invalid API key"),
    ("two_keys_in_one_header", [f"Bearer {MASTER_KEY}, Bearer {MASTER_KEY}"], "more than one value"),
    ("two_keys_space_separated", [f"Bearer {MASTER_KEY} {MASTER_KEY}"], "more than one value"),
    ("two_headers", [f"Bearer {MASTER_KEY}", f"Bearer {MASTER_KEY}"], "2 of them"),
    ("wrong_key", ["Bearer sk-not-the-master-key"], "Invalid API key"),
    ("long_key_32_kb", [f"Bearer {LONG_KEY}"], "Invalid API key"),
]


@pytest.mark.parametrize(("case", "body", "status", "word"), MALFORMED_BODIES, ids=[c[0] for c in MALFORMED_BODIES])
def test_malformed_body_named(case, body, status, word, client, upstream):
    """A body that is not a usable JSON object gets a 4xx whose message names what is wrong with it."""
    response = _post(client, body)

    assert response.status_code < 500, f"{case}: {response.status_code} {response.text[:300]}"
    assert response.status_code == status, f"{case}: {response.status_code} {response.text[:300]}"
    assert word in _error_message(response), f"{case}: {response.text[:300]}"
    assert upstream.requests() == []


@pytest.mark.parametrize("body", NON_OBJECT_BODIES)
def test_non_object_body_4xx(body, proxy):
    """JSON that is not an object gets a 400 whose message requests an object."""
    # A fresh connection per case: the proxy closes the connection after its 500.
    with httpx.Client(base_url=proxy.url, headers={"Authorization": f"Bearer {MASTER_KEY}"}, trust_env=False) as client:
        response = _post(client, body)

    assert response.status_code < 500, f"{response.status_code} {response.text[:300]}"
    assert response.status_code == 400, response.text[:300]
    assert "object" in _error_message(response), response.text[:300]


@pytest.mark.parametrize(("case", "body", "field"), WRONG_FIELDS, ids=[c[0] for c in WRONG_FIELDS])
def test_wrong_field_named(case, body, field, client, upstream):
    """A chat body field of the wrong type or value gets a 400 naming the field, before any provider call."""
    response = client.post(CHAT_PATH, json=body)

    assert response.status_code < 500, f"{case}: {response.status_code} {response.text[:300]}"
    assert response.status_code == 400, f"{case}: {response.status_code} {response.text[:300]}"
    assert f"'{field}'" in _error_message(response), f"{case}: {response.text[:300]}"
    assert upstream.requests() == []


def test_wrong_type_error_quotes_value(client):
    """The error for a wrong type quotes the value sent, so the client can find it."""
    response = client.post(CHAT_PATH, json=_body(temperature="very hot"))

    assert '"very hot"' in _error_message(response), response.text


def test_wrong_type_error_in_param(client):
    """The error's param field names the field at fault, as OpenAI's errors do."""
    response = client.post(CHAT_PATH, json=_message(role="user", content=5))

    assert response.json()["error"]["param"] == "messages[0].content", response.text


def test_form_body_rejected_415(client, upstream):
    """JSON sent as a form (curl -d without a Content-Type) gets a 415 naming the Content-Type to use."""
    response = _post(client, json.dumps(_body()).encode(), {"Content-Type": "application/x-www-form-urlencoded"})

    assert response.status_code == 415, response.text
    assert "Content-Type: application/json" in _error_message(response), response.text
    assert upstream.requests() == []


def test_multipart_without_boundary_400(client, upstream):
    """A multipart body without a boundary gets LiteLLM's 400 naming the missing boundary."""
    response = _post(client, b"--x\r\n", {"Content-Type": "multipart/form-data"})

    assert response.status_code == 400, response.text
    assert "boundary" in _error_message(response), response.text
    assert upstream.requests() == []


def test_text_plain_body_parsed_as_json(client, upstream):
    """A JSON body labelled text/plain is read as JSON, as LiteLLM reads every non-form body."""
    response = _post(client, json.dumps(_body()).encode(), {"Content-Type": "text/plain"})

    assert response.status_code == 200, response.text
    assert len(upstream.chat_requests()) == 1


@pytest.mark.parametrize(("case", "values", "word"), BAD_AUTHORIZATION, ids=[c[0] for c in BAD_AUTHORIZATION])
def test_bad_authorization_named(case, values, word, proxy, upstream):
    """A malformed or wrong Authorization header gets a 401 that names what is wrong with it."""
    headers = [("Authorization", value) for value in values] + [("Content-Type", "application/json")]
    with httpx.Client(base_url=proxy.url, trust_env=False, timeout=30) as client:
        response = client.post(CHAT_PATH, content=json.dumps(_body()).encode(), headers=headers)

    assert response.status_code < 500, f"{case}: {response.status_code} {response.text[:300]}"
    assert response.status_code == 401, f"{case}: {response.status_code} {response.text[:300]}"
    assert word in _error_message(response), f"{case}: {response.text[:300]}"
    assert upstream.requests() == []


@pytest.mark.parametrize("encoding", ["utf-8", "latin-1"])
def test_non_ascii_key_named(encoding, proxy, upstream):
    """A key with non-ASCII bytes gets a 401 saying keys are printable ASCII."""
    value = "Bearer sk-clé-€".encode(encoding, errors="replace")
    with httpx.Client(base_url=proxy.url, trust_env=False, timeout=30) as client:
        response = client.post(CHAT_PATH, json=_body(), headers={"Authorization": value})

    assert response.status_code == 401, response.text
    assert "printable ASCII" in _error_message(response), response.text
    assert upstream.requests() == []


def test_header_over_64_kb_never_5xx(proxy, upstream):
    """A 200 kB Authorization header is refused with a 4xx or a closed connection, never a 5xx.

    uvicorn (h11) buffers at most 16 KiB of an incomplete request head. A head that arrives
    in one read (up to about 64 kB here) is parsed whole and gets the gateway's 401. A longer
    one gets uvicorn's plain-text 400 "Invalid HTTP request received.", or the connection is
    reset while the client still sends, depending on timing.
    """
    outcomes = []
    for _ in range(3):
        with httpx.Client(base_url=proxy.url, trust_env=False, timeout=30) as client:
            try:
                response = client.post(CHAT_PATH, json=_body(), headers={"Authorization": "Bearer sk-" + "a" * 200_000})
            except httpx.TransportError as error:
                outcomes.append(type(error).__name__)
            else:
                outcomes.append(response.status_code)

    assert all(outcome in (400, 401, "ReadError", "RemoteProtocolError", "WriteError") for outcome in outcomes), outcomes
    assert upstream.requests() == []


def _body_of_size(size: int) -> bytes:
    """Return a valid chat body of exactly `size` bytes, padded in the prompt."""
    body = _body(cache={"no-store": True}, messages=[{"role": "user", "content": ""}])
    padding = size - len(json.dumps(body).encode())
    body["messages"][0]["content"] = "x" * padding
    return json.dumps(body).encode()


def test_body_at_limit_served(client, upstream):
    """A valid body of exactly the size limit (16 MiB) reaches the provider."""
    response = _post(client, _body_of_size(MAX_REQUEST_BODY_BYTES))

    assert response.status_code == 200, response.text[:300]
    assert len(upstream.chat_requests()) == 1


def test_body_over_limit_413(client, upstream):
    """A body one byte over the limit gets a 413 that names the limit, and no provider call."""
    response = _post(client, _body_of_size(MAX_REQUEST_BODY_BYTES + 1))

    assert response.status_code == 413, response.text[:300]
    assert "limit of 16 MiB" in _error_message(response), response.text[:300]
    assert upstream.requests() == []


def test_chunked_body_over_limit_413(client, upstream):
    """A body over the limit sent without Content-Length (chunked) also gets the 413."""
    body = _body_of_size(MAX_REQUEST_BODY_BYTES + 1)
    chunk_size = 1 << 20
    chunks = (body[start : start + chunk_size] for start in range(0, len(body), chunk_size))
    response = client.post(CHAT_PATH, content=chunks, headers={"Content-Type": "application/json"})

    assert "content-length" not in {name.lower() for name in response.request.headers}
    assert response.status_code == 413, response.text[:300]
    assert upstream.requests() == []


# --- fuzz ------------------------------------------------------------------------------------

OPENAI_FIELDS = [
    "model", "messages", "temperature", "top_p", "max_tokens", "max_completion_tokens", "n", "stream",
    "stop", "tools", "tool_choice", "response_format", "user", "seed", "presence_penalty",
    "frequency_penalty", "logit_bias", "logprobs", "top_logprobs", "parallel_tool_calls",
    "stream_options", "metadata", "modalities", "reasoning_effort",
]  # fmt: skip

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
valid_roles = st.sampled_from(["system", "developer", "user", "assistant", "tool", "function"])
valid_messages = st.lists(st.fixed_dictionaries({"role": valid_roles, "content": st.text(max_size=30)}), min_size=1, max_size=3)
fuzzed_messages = st.lists(
    st.fixed_dictionaries(
        {"role": valid_roles | json_values},
        optional={"content": st.text(max_size=30) | json_values, "name": json_values, "tool_calls": json_values},
    ),
    max_size=3,
)
# one_of picks each branch about equally often, so most bodies name the mock's model and a
# well-formed message list, and the fuzz reaches the other fields.
chat_bodies = st.fixed_dictionaries(
    {
        "model": st.one_of(st.just(MODEL), st.just(MODEL), st.just(MODEL), json_values),
        "messages": st.one_of(valid_messages, valid_messages, fuzzed_messages, json_values),
    },
    optional={
        **{field: json_values for field in OPENAI_FIELDS if field not in ("model", "messages")},
        "extra": st.dictionaries(st.text(string.ascii_lowercase, min_size=1, max_size=10), json_values, max_size=3),
    },
)


def _names_body_field(error: dict[str, Any], body: dict[str, Any]) -> bool:
    """Tell whether the error's param is a field of `body` (or a path into one) or the body itself."""
    param = error.get("param")
    if not isinstance(param, str):
        return False
    root = param.split(".", 1)[0].split("[", 1)[0]
    return root in body or param == "request_body"


@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=chat_bodies)
def test_fuzzed_body_never_5xx(body, client):
    """A chat body with random types and structure gets a 2xx, or a 4xx JSON error that names something."""
    body = {**body.pop("extra", {}), **body}
    note(f"body: {json.dumps(body)[:2000]}")
    response = client.post(CHAT_PATH, json=body)
    note(f"response: {response.status_code} {response.text[:500]}")

    assert response.status_code < 500
    if response.status_code >= 400:
        error = response.json()["error"]
        assert isinstance(error["message"], str) and error["message"]
        assert _names_body_field(error, body), "the error's param names no field of the body"
