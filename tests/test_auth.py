"""The gateway's own key: every model route needs one, and a bad one gets a clear 401."""

from __future__ import annotations

import pytest

from tests.conftest import MASTER_KEY, gateway_client
from tests.support.gateway import chat

PROTECTED_ROUTES = [
    ("POST", "/v1/chat/completions"),
    ("POST", "/chat/completions"),
    ("POST", "/v1/embeddings"),
    ("GET", "/v1/models"),
]


def _call(client, method: str, path: str):
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "input": "hi"}
    return client.request(method, path, json=body if method == "POST" else None)


@pytest.mark.parametrize(("method", "path"), PROTECTED_ROUTES)
def test_missing_key_gets_401(method, path, proxy, upstream):
    """A request with no Authorization header gets a JSON 401 reporting the missing key."""
    with gateway_client(proxy, key=None) as client:
        response = _call(client, method, path)

    assert response.status_code == 401, response.text
    assert "missing api key" in response.json()["error"]["message"].lower()
    assert upstream.requests() == []


@pytest.mark.parametrize(("method", "path"), PROTECTED_ROUTES)
def test_wrong_key_gets_401(method, path, proxy, upstream):
    """A key that is not the master key (and no database of virtual keys) gets a JSON 401."""
    with gateway_client(proxy, key="sk-not-the-master-key") as client:
        response = _call(client, method, path)

    assert response.status_code == 401, response.text
    assert "invalid api key" in response.json()["error"]["message"].lower()
    assert upstream.requests() == []


def test_wrong_key_not_echoed(proxy):
    """The 401 body does not repeat the key the client sent."""
    with gateway_client(proxy, key="sk-echo-check-123456") as client:
        response = chat(client, "gpt-4o")

    assert "sk-echo-check-123456" not in response.text


def test_master_key_works(client):
    """The master key from LITELLM_MASTER_KEY is accepted."""
    response = chat(client, "gpt-4o")

    assert response.status_code == 200, response.text


def test_keys_never_logged(proxy):
    """After authenticated and rejected requests, the proxy log contains neither key."""
    with gateway_client(proxy) as client:
        chat(client, "gpt-4o")
    with gateway_client(proxy, key="sk-wrong-key-for-log-check") as client:
        chat(client, "gpt-4o")

    log = proxy.log()
    assert MASTER_KEY not in log
    assert "sk-wrong-key-for-log-check" not in log
