"""Wildcard provider routes: creator/model names that no alias claims."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.gateway import chat
from tests.support.processes import CONFIG_PATH

VERCEL_WILDCARDS = [
    "google/gemini-2.0-flash",
    "openai/gpt-4.1",
    "anthropic/claude-opus-4",
    "xai/grok-4",
]


@pytest.mark.parametrize("model", VERCEL_WILDCARDS)
def test_vercel_wildcard_keeps_model_name(model, client, upstream):
    """google/*, openai/*, anthropic/* and xai/* reach Vercel AI Gateway with the same model name."""
    response = chat(client, model)

    assert response.status_code == 200, response.text
    calls = [(r.provider, r.model) for r in upstream.chat_requests()]
    assert calls == [("vercel", model)]


@pytest.mark.parametrize(
    ("model", "upstream_model"),
    [("openrouter/x-ai/grok-4", "x-ai/grok-4"), ("openrouter/meta-llama/llama-3.3-70b-instruct", "meta-llama/llama-3.3-70b-instruct")],
)
def test_openrouter_wildcard_strips_prefix(model, upstream_model, client, upstream):
    """openrouter/<rest> reaches OpenRouter with model <rest>."""
    response = chat(client, model)

    assert response.status_code == 200, response.text
    calls = [(r.provider, r.model) for r in upstream.chat_requests()]
    assert calls == [("openrouter", upstream_model)]


def test_alias_beats_wildcard(client, upstream):
    """gpt-4o is the alias (with its chain), not openai/* sending model gpt-4o to Vercel."""
    response = chat(client, "gpt-4o")

    assert response.status_code == 200, response.text
    assert response.headers.get("x-litellm-model-id") == "gpt-4o.vercel"
    assert [r.model for r in upstream.chat_requests()] == ["openai/gpt-4o"]


def test_current_app_model_id_works(client, upstream):
    """google/gemini-3-pro-preview, the id IMQA apps send today, reaches Gemini 3 Pro on Vercel."""
    response = chat(client, "google/gemini-3-pro-preview")

    assert response.status_code == 200, response.text
    calls = [(r.provider, r.model) for r in upstream.chat_requests()]
    assert calls == [("vercel", "google/gemini-3-pro-preview")]


def test_config_passes_litellm_validation(gateway_env, tmp_path):
    """The config, Replicate route included, passes `litellm --validate_config`."""
    litellm = Path(sys.executable).with_name("litellm")
    result = subprocess.run(
        [str(litellm), "--config", str(CONFIG_PATH), "--validate_config"],
        env=gateway_env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]


def test_replicate_route_listed(client):
    """replicate/* is a configured route, listed among the proxy's wildcard routes."""
    response = client.get("/v1/models", params={"return_wildcard_routes": "true"})

    assert response.status_code == 200, response.text
    assert "replicate/*" in {m["id"] for m in response.json()["data"]}
