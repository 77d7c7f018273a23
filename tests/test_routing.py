"""Aliases and their ordered fallback chains, on the running proxy."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.conftest import OPENROUTER_KEY, VERCEL_KEY, gateway_client
from tests.support.gateway import CHAINS, answer_text, chat, deployments, walk
from tests.support.processes import eventually

PROVIDER_KEYS = {"vercel": f"Bearer {VERCEL_KEY}", "openrouter": f"Bearer {OPENROUTER_KEY}"}
THREE_ENTRY_CHAINS = [alias for alias, chain in CHAINS.items() if len(chain) == 3]


def served_by(upstream, response: httpx.Response) -> tuple[str, str]:
    """Return the (provider, model) of the upstream call that produced `response`."""
    text = answer_text(response)
    for request in upstream.chat_requests():
        if request.model and f"from {request.provider} {request.model}." in text:
            return request.provider, request.model
    raise AssertionError(f"no recorded upstream call produced {text!r}")


@pytest.mark.parametrize("alias", list(CHAINS))
def test_alias_served_by_primary_only(alias, client, upstream):
    """While its primary is healthy, an alias sends every request to the primary and nowhere else."""
    for _ in range(3):
        response = chat(client, alias)
        assert response.status_code == 200, response.text

    calls = [(r.provider, r.model) for r in upstream.chat_requests()]
    assert calls == [walk(alias)[0]] * 3


@pytest.mark.parametrize("alias", list(CHAINS))
def test_alias_sends_provider_key(alias, client, upstream):
    """The primary receives the provider key from the environment, not the client's key."""
    provider, _ = walk(alias)[0]
    response = chat(client, alias)
    assert response.status_code == 200, response.text

    (request,) = upstream.chat_requests()
    assert request.authorization == PROVIDER_KEYS[provider]


def test_chain_second_entry_serves_when_primary_fails(fresh_proxy, upstream):
    """With its primary returning 500, every alias is served by the second entry of its chain."""
    with gateway_client(fresh_proxy) as client:
        for alias in CHAINS:
            provider, model = walk(alias)[0]
            upstream.fail("500", provider=provider, model=model)
            response = chat(client, alias)
            upstream.heal()

            assert response.status_code == 200, f"{alias}: {response.text}"
            assert served_by(upstream, response) == walk(alias)[1], alias


@pytest.mark.parametrize("alias", THREE_ENTRY_CHAINS)
def test_chain_third_entry_serves_when_first_two_fail(alias, fresh_proxy, upstream):
    """With its first two entries down, a three-entry chain is served by its third."""
    first_two = deployments(CHAINS[alias][0]) + deployments(CHAINS[alias][1])
    for provider, model in first_two:
        upstream.fail("503", provider=provider, model=model)

    with gateway_client(fresh_proxy) as client:
        response = chat(client, alias)

    assert response.status_code == 200, response.text
    assert served_by(upstream, response) == deployments(CHAINS[alias][2])[0]
    tried = [(r.provider, r.model) for r in upstream.chat_requests()]
    assert tried == first_two + [deployments(CHAINS[alias][2])[0]]


@pytest.mark.parametrize("alias", [alias for alias, chain in CHAINS.items() if len(walk(alias)) > 3])
def test_chain_walks_into_fallback_alias_chain(alias, fresh_proxy, upstream):
    """A fallback to another alias walks that alias's chain too, so the last deployment still serves the request."""
    chain = walk(alias)
    for provider, model in chain[:-1]:
        upstream.fail("500", provider=provider, model=model)

    with gateway_client(fresh_proxy) as client:
        response = chat(client, alias)

    assert response.status_code == 200, response.text
    assert served_by(upstream, response) == chain[-1]


@pytest.mark.parametrize("fault", ["429", "500", "502", "503", "401", "403", "reset"])
def test_fallback_on_upstream_fault(fault, fresh_proxy, upstream):
    """An upstream 429, 5xx, 401, 403 or dropped connection moves gpt-4o to OpenRouter."""
    upstream.fail(fault, provider="vercel", model="openai/gpt-4o")

    with gateway_client(fresh_proxy) as client:
        response = chat(client, "gpt-4o")

    assert response.status_code == 200, response.text
    assert served_by(upstream, response) == ("openrouter", "openai/gpt-4o")
    assert response.headers.get("x-litellm-model-id") == "gpt-4o.openrouter"


def test_fallback_on_upstream_timeout(fresh_proxy, upstream):
    """A primary that does not respond within the request's timeout is abandoned for the next entry."""
    upstream.fail("timeout", provider="vercel", model="openai/gpt-4o", delay=60)

    started = time.monotonic()
    with gateway_client(fresh_proxy) as client:
        # The request's own timeout replaces the configured 120 s, which is too long to wait for here.
        response = chat(client, "gpt-4o", timeout=2)
    elapsed = time.monotonic() - started

    assert response.status_code == 200, response.text
    assert served_by(upstream, response) == ("openrouter", "openai/gpt-4o")
    assert elapsed < 15, f"fallback after a timeout took {elapsed:.1f} s"


@pytest.mark.parametrize("status", ["401", "403"])
def test_upstream_auth_error_logged_without_key(status, fresh_proxy, upstream):
    """A 401/403 from Vercel is logged as an error naming the provider and status, never a key."""
    upstream.fail(status, provider="vercel", model="openai/gpt-4o")

    with gateway_client(fresh_proxy) as client:
        response = chat(client, "gpt-4o")
    assert response.status_code == 200, response.text

    def failure_lines() -> list[str]:
        return [line for line in fresh_proxy.log().splitlines() if "upstream call failed" in line]

    (line,) = eventually(failure_lines, lambda lines: len(lines) >= 1, 10)
    assert "ERROR" in line
    assert "provider=vercel_ai_gateway" in line
    assert "deployment=gpt-4o.vercel" in line
    assert f"status={status}" in line
    log = fresh_proxy.log()
    assert VERCEL_KEY not in log
    assert OPENROUTER_KEY not in log


def test_cooldown_skips_failing_primary(fresh_proxy, upstream):
    """After two failures the primary is cooled down: later requests go straight to the fallback."""
    primary = ("vercel", "openai/gpt-4o")
    upstream.fail("500", provider=primary[0], model=primary[1])

    with gateway_client(fresh_proxy) as client:
        for _ in range(2):
            assert chat(client, "gpt-4o").status_code == 200
        calls_before = len(upstream.chat_requests(provider=primary[0], model=primary[1]))

        for _ in range(3):
            response = chat(client, "gpt-4o")
            assert response.status_code == 200, response.text
            assert served_by(upstream, response) == ("openrouter", "openai/gpt-4o")
        calls_after = len(upstream.chat_requests(provider=primary[0], model=primary[1]))

    assert calls_before == 2
    assert calls_after == calls_before


def test_cooldown_ends_and_primary_serves_again(fresh_proxy, upstream):
    """A cooled-down primary gets traffic again by itself once its 30 s cooldown ends."""
    upstream.fail("500", provider="vercel", model="openai/gpt-4o")
    with gateway_client(fresh_proxy) as client:
        for _ in range(2):
            assert chat(client, "gpt-4o").status_code == 200
        upstream.heal()

        def serving_deployment() -> str | None:
            response = chat(client, "gpt-4o")
            return response.headers.get("x-litellm-model-id")

        assert serving_deployment() == "gpt-4o.openrouter"
        eventually(serving_deployment, lambda deployment: deployment == "gpt-4o.vercel", 45, interval=1)


@pytest.mark.parametrize("alias", ["gemini-3-pro", "gpt-4o"])
def test_all_entries_down_returns_json_error(alias, fresh_proxy, upstream):
    """With every entry of a chain failing, the client gets a JSON error with a 5xx status, fast."""
    upstream.fail("500")

    started = time.monotonic()
    with gateway_client(fresh_proxy) as client:
        response = chat(client, alias)
    elapsed = time.monotonic() - started

    assert response.status_code >= 500, response.text
    assert "error" in response.json()
    assert elapsed < 10, f"all-down error took {elapsed:.1f} s"
    tried = {(r.provider, r.model) for r in upstream.chat_requests()}
    assert tried == set(walk(alias))


def test_context_window_error_goes_to_larger_model(fresh_proxy, upstream):
    """A context-length 400 from gpt-4o (128k) sends the request to gemini-3-pro (1M)."""
    upstream.fail("context_length", provider="vercel", model="openai/gpt-4o")

    with gateway_client(fresh_proxy) as client:
        response = chat(client, "gpt-4o")

    assert response.status_code == 200, response.text
    assert served_by(upstream, response) == ("vercel", "google/gemini-3-pro-preview")
    assert response.headers.get("x-litellm-model-id") == "gemini-3-pro.vercel"


def test_context_window_error_without_larger_model_returns_400(fresh_proxy, upstream):
    """Gemini has the largest context of its chain, so its context-length error reaches the client as a 400."""
    upstream.fail("context_length", provider="vercel", model="google/gemini-3-pro-preview")

    with gateway_client(fresh_proxy) as client:
        response = chat(client, "gemini-3-pro")

    assert response.status_code == 400, response.text
    assert "context" in response.json()["error"]["message"].lower()
    assert upstream.chat_requests(provider="openrouter") == []
