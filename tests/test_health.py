"""Probes and model listing: what Railway and operators look at."""

from __future__ import annotations

import httpx
import pytest

from tests.support.gateway import CHAINS


@pytest.mark.parametrize("path", ["/health/liveliness", "/health/readiness"])
def test_probe_needs_no_key_and_calls_no_upstream(path, proxy, upstream):
    """The health-check probes return 200 without a key and send nothing upstream."""
    with httpx.Client(base_url=proxy.url, trust_env=False, timeout=10) as anonymous:
        response = anonymous.get(path)

    assert response.status_code == 200, response.text
    assert upstream.requests() == []


def test_models_lists_every_alias(client):
    """/v1/models lists every alias of the three tiers."""
    response = client.get("/v1/models")

    assert response.status_code == 200, response.text
    listed = {model["id"] for model in response.json()["data"]}
    missing = set(CHAINS) - listed
    assert not missing, f"aliases missing from /v1/models: {sorted(missing)}"
