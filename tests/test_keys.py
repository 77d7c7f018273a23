"""scripts/keys: its requests to LiteLLM's key-management API, its output and its errors.

A local stand-in for the key API takes LiteLLM's place here, because LiteLLM's database
features need Prisma's engines (tests/test_postgres.py runs the script against a real
database where they are present).
"""

from __future__ import annotations

from typing import Iterator

import pytest

from tests.conftest import MASTER_KEY
from tests.support.key_api import KeyApiStandIn, run_keys
from tests.support.processes import free_port

FULL_KEY = "sk-Q8vT2mZr7Lw0Xy4Nb6Kc1A"
KEY_HASH = "9f2c6b1e8a7d4c3b2a1f0e9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b"


def _key_row(alias: str, key_name: str, **extra) -> dict:
    """One entry of /key/list?return_full_object=true as LiteLLM 1.108.7 returns it."""
    return {
        "token": KEY_HASH,
        "key_name": key_name,
        "key_alias": alias,
        "spend": 1.25,
        "max_budget": 50.0,
        "budget_duration": "30d",
        "models": ["fast-model", "gpt-4o"],
        "rpm_limit": 60,
        "tpm_limit": 100000,
        "metadata": {"product": alias},
        "blocked": None,
        "expires": None,
        **extra,
    }


@pytest.fixture
def key_api() -> Iterator[KeyApiStandIn]:
    stand_in = KeyApiStandIn().start()
    stand_in.responses[("POST", "/key/generate")] = (
        200,
        {
            "key": FULL_KEY,
            "key_name": "sk-...Kc1A",
            "key_alias": "imqa",
            "token": KEY_HASH,
            "rpm_limit": 60,
            "tpm_limit": 100000,
            "max_budget": 50.0,
            "budget_duration": "30d",
            "models": ["fast-model", "gpt-4o"],
            "expires": None,
        },
    )
    stand_in.responses[("GET", "/key/list")] = (
        200,
        {"keys": [_key_row("imqa", "sk-...Kc1A")], "total_count": 1, "current_page": 1, "total_pages": 1},
    )
    stand_in.responses[("POST", "/key/delete")] = (200, {"deleted_keys": ["imqa"]})
    yield stand_in
    stand_in.stop()


def _create_imqa(key_api: KeyApiStandIn):
    return run_keys(
        "create", "imqa", "--rpm", "60", "--tpm", "100000", "--budget", "50", "--models", "fast-model,gpt-4o",
        url=key_api.url, key=MASTER_KEY,
    )  # fmt: skip


def test_create_sends_limits_budget_and_models(key_api):
    """create posts the product's alias, rpm, tpm, budget and allowed aliases to /key/generate."""
    result = _create_imqa(key_api)
    assert result.returncode == 0, result.stderr

    (request,) = key_api.requests
    assert (request.method, request.path) == ("POST", "/key/generate")
    assert request.body["key_alias"] == "imqa", request.body
    assert request.body["rpm_limit"] == 60, request.body
    assert request.body["tpm_limit"] == 100000, request.body
    assert request.body["max_budget"] == 50.0, request.body
    assert request.body["budget_duration"] == "30d", request.body
    assert request.body["models"] == ["fast-model", "gpt-4o"], request.body


def test_requests_carry_master_key_as_bearer(key_api):
    """Every request authenticates with LITELLM_API_KEY as a bearer token."""
    assert _create_imqa(key_api).returncode == 0
    assert run_keys("list", url=key_api.url, key=MASTER_KEY).returncode == 0
    assert run_keys("revoke", "imqa", url=key_api.url, key=MASTER_KEY).returncode == 0

    headers = [request.headers.get("authorization") for request in key_api.requests]
    assert headers == [f"Bearer {MASTER_KEY}"] * 3


def test_create_prints_full_key_once_on_stdout(key_api):
    """create prints the new key alone on stdout, and only its masked form on stderr."""
    result = _create_imqa(key_api)

    assert result.stdout == FULL_KEY + "\n"
    assert FULL_KEY not in result.stderr, result.stderr
    assert "sk-...Kc1A" in result.stderr, result.stderr


def test_create_never_prints_master_key(key_api):
    """Neither output stream shows the master key."""
    result = _create_imqa(key_api)

    assert MASTER_KEY not in result.stdout + result.stderr


def test_create_without_key_in_response_fails(key_api):
    """A /key/generate response without a key fails the command instead of printing nothing."""
    key_api.responses[("POST", "/key/generate")] = (200, {"key_alias": "imqa"})

    result = _create_imqa(key_api)

    assert result.returncode == 1, result.stderr
    assert "returned no key" in result.stderr, result.stderr


def test_list_requests_full_objects_filtered_by_product(key_api):
    """list --product requests full objects of that alias only from /key/list."""
    result = run_keys("list", "--product", "imqa", url=key_api.url, key=MASTER_KEY)
    assert result.returncode == 0, result.stderr

    (request,) = key_api.requests
    assert (request.method, request.path) == ("GET", "/key/list")
    assert request.query.get("return_full_object") == ["true"], request.query
    assert request.query.get("key_alias") == ["imqa"], request.query


def test_list_shows_limits_budget_and_spend(key_api):
    """list prints one row per key with its masked key, limits, budget and spend."""
    result = run_keys("list", url=key_api.url, key=MASTER_KEY)
    assert result.returncode == 0, result.stderr

    row = next(line for line in result.stdout.splitlines() if line.startswith("imqa"))
    for expected in ("sk-...Kc1A", "60", "100000", "$50/30d", "$1.2500", "fast-model,gpt-4o"):
        assert expected in row, f"{expected!r} missing from {row!r}"


def test_list_masks_full_key_in_response(key_api):
    """list masks a key even when the gateway returns it in full."""
    key_api.responses[("GET", "/key/list")] = (
        200,
        {"keys": [_key_row("imqa", FULL_KEY)], "total_count": 1, "current_page": 1, "total_pages": 1},
    )

    result = run_keys("list", url=key_api.url, key=MASTER_KEY)

    assert result.returncode == 0, result.stderr
    assert FULL_KEY not in result.stdout + result.stderr
    assert "sk-...Kc1A" in result.stdout, result.stdout


def test_list_follows_pages(key_api):
    """list reads every page that /key/list reports."""
    key_api.responses[("GET", "/key/list")] = (
        200,
        {"keys": [_key_row("imqa", "sk-...Kc1A")], "total_count": 2, "current_page": 1, "total_pages": 2},
    )

    result = run_keys("list", url=key_api.url, key=MASTER_KEY)

    assert result.returncode == 0, result.stderr
    pages = [request.query.get("page") for request in key_api.requests]
    assert pages == [["1"], ["2"]]


def test_revoke_deletes_by_product_alias(key_api):
    """revoke posts the product's alias to /key/delete."""
    result = run_keys("revoke", "imqa", url=key_api.url, key=MASTER_KEY)
    assert result.returncode == 0, result.stderr

    (request,) = key_api.requests
    assert (request.method, request.path) == ("POST", "/key/delete")
    assert request.body == {"key_aliases": ["imqa"]}


def test_revoke_of_unknown_product_fails(key_api):
    """revoke fails when /key/delete deleted nothing."""
    key_api.responses[("POST", "/key/delete")] = (200, {"deleted_keys": []})

    result = run_keys("revoke", "imqa", url=key_api.url, key=MASTER_KEY)

    assert result.returncode == 1, result.stderr
    assert "deleted nothing" in result.stderr, result.stderr


def test_unauthorized_names_master_key(key_api):
    """A 401 exits 1 and says that key management needs the master key, without printing the key."""
    key_api.responses[("POST", "/key/generate")] = (
        401,
        {"error": {"message": "Authentication Error, Invalid proxy server token passed.", "type": "auth_error",
                   "param": "None", "code": "401"}},
    )  # fmt: skip

    result = _create_imqa(key_api)

    assert result.returncode == 1, result.stderr
    assert "HTTP 401" in result.stderr, result.stderr
    assert "master key" in result.stderr, result.stderr
    assert MASTER_KEY not in result.stderr


def test_server_error_shows_status_and_message(key_api):
    """A 500 exits 1 with the status and LiteLLM's error message."""
    key_api.responses[("GET", "/key/list")] = (
        500,
        {"error": {"message": "Internal Server Error, boom", "type": "internal_server_error", "param": "None",
                   "code": "500"}},
    )  # fmt: skip

    result = run_keys("list", url=key_api.url, key=MASTER_KEY)

    assert result.returncode == 1, result.stderr
    assert "HTTP 500" in result.stderr, result.stderr
    assert "Internal Server Error, boom" in result.stderr, result.stderr


def test_error_message_redacts_echoed_master_key(key_api):
    """An error body that repeats the master key is printed with the key replaced."""
    key_api.responses[("POST", "/key/delete")] = (400, {"detail": {"error": f"bad key {MASTER_KEY}"}})

    result = run_keys("revoke", "imqa", url=key_api.url, key=MASTER_KEY)

    assert result.returncode == 1, result.stderr
    assert MASTER_KEY not in result.stderr, result.stderr
    assert "bad key ***" in result.stderr, result.stderr


def test_connection_refused_names_url():
    """A gateway that is not listening exits 1 with a message naming the URL."""
    url = f"http://127.0.0.1:{free_port()}"

    result = run_keys("list", url=url, key=MASTER_KEY)

    assert result.returncode == 1, result.stderr
    assert f"cannot connect to {url}: connection refused" in result.stderr, result.stderr


@pytest.mark.parametrize(("url", "key", "missing"), [(None, MASTER_KEY, "LITELLM_API_URL"), ("http://127.0.0.1:1", None, "LITELLM_API_KEY")])
def test_missing_variable_exits_2(url, key, missing):
    """Without LITELLM_API_URL or LITELLM_API_KEY the script exits 2 and names the variable."""
    result = run_keys("list", url=url, key=key)

    assert result.returncode == 2, result.stderr
    assert f"{missing} not set" in result.stderr, result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("create", "IMQA Docs", "--rpm", "1", "--tpm", "1", "--budget", "1"),
        ("create", "imqa", "--rpm", "0", "--tpm", "1", "--budget", "1"),
        ("create", "imqa", "--rpm", "1", "--tpm", "1", "--budget", "-5"),
        ("create", "imqa", "--rpm", "1", "--tpm", "1"),
    ],
    ids=["bad-product-name", "zero-rpm", "negative-budget", "no-budget"],
)
def test_invalid_arguments_exit_2_without_request(args, key_api):
    """Invalid product names, limits and budgets exit 2 before any request is sent."""
    result = run_keys(*args, url=key_api.url, key=MASTER_KEY)

    assert result.returncode == 2, result.stderr
    assert key_api.requests == []


def test_create_against_proxy_without_database_points_to_database_url(proxy):
    """Against the real proxy with no database, create exits 1 and says to set DATABASE_URL."""
    result = run_keys(
        "create", "imqa", "--rpm", "60", "--tpm", "100000", "--budget", "50", url=proxy.url, key=MASTER_KEY
    )

    assert result.returncode == 1, result.stderr
    assert "DATABASE_URL" in result.stderr, result.stderr
    assert result.stdout == "", result.stdout
