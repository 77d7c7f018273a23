"""Admin routes, /metrics/ and CORS are closed to anyone without the master key.

Every admin and key-management route of LiteLLM 1.108.7 rejects a request without a key
and one with a wrong key with a 401 or 403, never a 200 or a 5xx. The routes come from two
sources: a table of the main ones, including those LiteLLM leaves out of its OpenAPI schema
(/config/update, /global/spend, ...), and every operation that the running proxy's
/openapi.json files under an admin tag.

CORS: apps call the gateway server to server, so with LITELLM_CORS_ORIGINS=none (the
documented setting, which the test environment uses) a browser preflight gets no
Access-Control-Allow-Origin and a request with an Origin header gets a 403. With named
origins, those origins and no others get through. Unset, LiteLLM answers preflights with
"*", but imqa_auth.py still rejects the request itself.

NOTE: without a database only the master key exists, and LiteLLM needs Postgres (through
Prisma, which cannot start on the machine these tests were written on) to issue virtual
keys. Per-key route and model restrictions ("product keys") are therefore not tested here;
tests/test_postgres.py runs the key workflow where a database is available.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from tests.conftest import MASTER_KEY, gateway_client
from tests.support.processes import ProxyProcess, RedisProcess

WRONG_KEY = "sk-not-the-master-key-0042"
KEY_CASES = {"no_key": None, "wrong_key": WRONG_KEY}

# The main admin routes, by area. Those marked "hidden" are not in /openapi.json.
ADMIN_ROUTES = [
    ("POST", "/key/generate"),
    ("GET", "/key/list"),
    ("GET", "/key/info"),
    ("POST", "/key/update"),
    ("POST", "/key/delete"),
    ("POST", "/key/regenerate"),
    ("POST", "/user/new"),
    ("GET", "/user/list"),
    ("POST", "/user/delete"),
    ("POST", "/team/new"),
    ("GET", "/team/list"),
    ("POST", "/organization/new"),
    ("POST", "/customer/new"),
    ("POST", "/budget/new"),
    ("POST", "/model/new"),
    ("POST", "/model/update"),
    ("POST", "/model/delete"),
    ("GET", "/model/info"),
    ("GET", "/v2/model/info"),
    ("GET", "/model_group/info"),
    ("GET", "/credentials"),
    ("POST", "/credentials"),
    ("POST", "/config/update"),  # hidden
    ("GET", "/config/yaml"),  # hidden
    ("GET", "/config/list"),  # hidden
    ("POST", "/config/field/update"),  # hidden
    ("GET", "/get/config/callbacks"),  # hidden
    ("GET", "/global/spend"),  # hidden
    ("GET", "/global/spend/logs"),  # hidden
    ("POST", "/global/spend/reset"),
    ("GET", "/spend/logs"),
    ("GET", "/spend/keys"),  # hidden
    ("POST", "/cache/flushall"),
    ("POST", "/cache/delete"),
    ("GET", "/cache/ping"),
    ("GET", "/cache/settings"),
    ("GET", "/router/settings"),
    ("POST", "/fallback"),
    ("GET", "/health"),
    ("GET", "/health/services"),
    ("GET", "/active/callbacks"),
    ("GET", "/settings"),
    ("GET", "/routes"),  # hidden
    ("GET", "/otel-spans"),  # hidden
    ("GET", "/memory-usage-in-mem-cache"),  # hidden
    ("GET", "/debug/asyncio-tasks"),  # hidden
    ("POST", "/reload/model_cost_map"),  # hidden
    ("GET", "/guardrails/list"),
    ("GET", "/audit"),
]

# OpenAPI tags of LiteLLM 1.108.7 under which it files admin and management operations.
ADMIN_TAGS = {
    "key management", "team management", "Internal User management", "organization management",
    "Customer Management", "model management", "Budget & Spend Tracking", "budget management",
    "credential management", "caching", "Cache Settings", "Coordination Redis Settings",
    "Router Settings", "Fallback Management", "guardrails", "policy_engine", "policies",
    "SSO Settings", "Settings", "UI Settings", "health", "Logging Callbacks", "Audit Logging",
    "jwt_mappings", "config_overrides", "email management", "tag management", "project management",
    "access_groups", "mcp_management", "Cost Tracking", "llm utils", "scim", "Telemetry",
    "Agent Management", "prompts", "search_tools", "vector_store_management", "user agent analytics",
    "cloudzero", "vantage", "tools", "model_insights", "compliance", "adaptive_router",
}  # fmt: skip
# Operations under those tags that LiteLLM serves without a key, each checked on its own below.
PUBLIC_OPERATIONS = {
    # The probes Railway polls.
    ("GET", "/health/liveliness"),
    ("GET", "/health/liveness"),
    ("GET", "/health/readiness"),
    # A Kubernetes preStop probe that returns 404 unless general_settings.enable_drain_endpoint is set.
    ("GET", "/health/drain"),
    # The public MCP server registry, 404 unless MCP servers are configured.
    ("GET", "/v1/mcp/registry.json"),
    # UI flags that LiteLLM serves without a key; see test_ui_settings_rejected_without_key.
    ("GET", "/get/ui_settings"),
}

OTHER_ORIGIN = "https://evil.example"
APP_ORIGIN = "https://app.imqa.example"
ADMIN_ORIGIN = "https://admin.imqa.example"


def _call(client: httpx.Client, method: str, path: str, **kwargs) -> httpx.Response:
    body = {} if method in ("POST", "PUT", "PATCH") else None
    return client.request(method, path, json=body, **kwargs)


@pytest.fixture(scope="module")
def admin_operations(proxy: ProxyProcess) -> list[tuple[str, str]]:
    """List (method, path) of every operation /openapi.json files under an admin tag."""
    with httpx.Client(base_url=proxy.url, trust_env=False, timeout=60) as client:
        schema = client.get("/openapi.json").json()
    operations = set()
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            if method.upper() not in ("GET", "POST", "PUT", "PATCH", "DELETE"):
                continue
            if ADMIN_TAGS.isdisjoint(operation.get("tags") or []) or path.startswith("/public/"):
                continue
            operations.add((method.upper(), re.sub(r"\{[^}]+\}", "x", path)))
    return sorted(operations - PUBLIC_OPERATIONS)


@pytest.mark.parametrize("key_case", KEY_CASES)
@pytest.mark.parametrize(("method", "path"), ADMIN_ROUTES, ids=[f"{m} {p}" for m, p in ADMIN_ROUTES])
def test_admin_route_rejected(method, path, key_case, proxy, upstream):
    """An admin route gets a JSON 401 or 403 without the master key."""
    with gateway_client(proxy, key=KEY_CASES[key_case]) as client:
        response = _call(client, method, path)

    assert response.status_code in (401, 403), f"{response.status_code} {response.text[:300]}"
    assert "error" in response.json(), response.text[:300]
    assert upstream.requests() == []


@pytest.mark.parametrize("key_case", KEY_CASES)
def test_every_admin_operation_rejected(key_case, admin_operations, proxy, upstream):
    """Every operation /openapi.json files under an admin tag gets a 401 or 403 without the master key."""
    operations = admin_operations
    with gateway_client(proxy, key=KEY_CASES[key_case]) as client:
        outcomes = {f"{method} {path}": _call(client, method, path).status_code for method, path in operations}
    accepted = {operation: status for operation, status in outcomes.items() if status not in (401, 403)}

    assert len(operations) > 200, f"only {len(operations)} admin operations found; did the tags change?"
    assert accepted == {}
    assert upstream.requests() == []


def test_metrics_wrong_key_rejected(proxy):
    """/metrics/ with a key that is not the master key gets a 401."""
    with gateway_client(proxy, key=WRONG_KEY) as client:
        response = client.get("/metrics/")

    assert response.status_code == 401, response.text[:300]


def test_metrics_wrong_key_serves_nothing(proxy):
    """The 401 for /metrics/ contains no metric."""
    with gateway_client(proxy, key=WRONG_KEY) as client:
        response = client.get("/metrics/")

    assert "# TYPE" not in response.text


@pytest.mark.parametrize("path", ["/health/drain", "/v1/mcp/registry.json"])
def test_disabled_public_route_404(path, proxy):
    """LiteLLM's keyless drain probe and MCP registry are off in this config: 404."""
    with gateway_client(proxy, key=None) as client:
        response = client.get(path)

    assert response.status_code == 404, response.text[:300]


@pytest.mark.xfail(
    strict=True,
    reason="LiteLLM 1.108.7: GET /get/ui_settings has no auth dependency, so custom_auth never runs; "
    "without a database it answers 500 'Database not connected', and with one it would serve the UI flags "
    "to anyone (proxy/ui_crud_endpoints/proxy_setting_endpoints.py)",
)
def test_ui_settings_rejected_without_key(proxy):
    """GET /get/ui_settings without a key gets a 401, as its docstring ("authenticated users") states."""
    with gateway_client(proxy, key=None) as client:
        response = client.get("/get/ui_settings")

    assert response.status_code == 401, response.text[:300]


# --- CORS --------------------------------------------------------------------------------------


def _preflight(proxy: ProxyProcess, origin: str) -> httpx.Response:
    headers = {
        "Origin": origin,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type",
    }
    with httpx.Client(base_url=proxy.url, trust_env=False, timeout=30) as client:
        return client.options("/v1/chat/completions", headers=headers)


def _browser_chat(proxy: ProxyProcess, origin: str) -> httpx.Response:
    with gateway_client(proxy) as client:
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "from a web page"}]}
        return client.post("/v1/chat/completions", json=body, headers={"Origin": origin})


@pytest.fixture(scope="module")
def named_origins_proxy(
    gateway_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ProxyProcess]:
    """A proxy whose LITELLM_CORS_ORIGINS names two web apps."""
    workdir: Path = tmp_path_factory.mktemp("cors")
    redis = RedisProcess(workdir / "redis").start()
    env = {**gateway_env, "REDIS_PORT": str(redis.port), "LITELLM_CORS_ORIGINS": f"{APP_ORIGIN}, {ADMIN_ORIGIN}"}
    proxy = ProxyProcess(env, workdir / "litellm.log")
    try:
        yield proxy.start()
    finally:
        proxy.stop()
        redis.stop()


def test_preflight_default_allows_no_origin(proxy):
    """With LITELLM_CORS_ORIGINS=none a preflight gets no Access-Control-Allow-Origin."""
    response = _preflight(proxy, OTHER_ORIGIN)

    assert "access-control-allow-origin" not in response.headers, dict(response.headers)


def test_preflight_default_not_ok(proxy):
    """With LITELLM_CORS_ORIGINS=none a preflight is answered with a 400, not a 2xx."""
    response = _preflight(proxy, OTHER_ORIGIN)

    assert response.status_code == 400, response.text


def test_browser_request_default_403(proxy, upstream):
    """With LITELLM_CORS_ORIGINS=none a request with an Origin header gets a 403 naming the variable."""
    response = _browser_chat(proxy, OTHER_ORIGIN)

    assert response.status_code == 403, response.text
    assert "LITELLM_CORS_ORIGINS" in response.json()["error"]["message"]
    assert upstream.requests() == []


def test_browser_request_default_no_allow_origin(proxy):
    """The 403 for a browser request carries no Access-Control-Allow-Origin, so the page cannot read it."""
    response = _browser_chat(proxy, OTHER_ORIGIN)

    assert "access-control-allow-origin" not in response.headers, dict(response.headers)


def test_browser_null_origin_403(proxy):
    """A sandboxed page's Origin: null gets the 403 too."""
    response = _browser_chat(proxy, "null")

    assert response.status_code == 403, response.text


def test_models_with_origin_403(proxy):
    """GET /v1/models from a browser origin gets the 403, like every keyed route."""
    with gateway_client(proxy) as client:
        response = client.get("/v1/models", headers={"Origin": OTHER_ORIGIN})

    assert response.status_code == 403, response.text[:300]


@pytest.mark.parametrize("origin", [APP_ORIGIN, ADMIN_ORIGIN])
def test_preflight_named_origin_allowed(origin, named_origins_proxy):
    """A preflight from a listed origin gets that origin back, not '*'."""
    response = _preflight(named_origins_proxy, origin)

    assert response.status_code == 200, response.text
    assert response.headers.get("access-control-allow-origin") == origin, dict(response.headers)


def test_browser_request_named_origin_served(named_origins_proxy):
    """A request from a listed origin is served and gets its origin in Access-Control-Allow-Origin."""
    response = _browser_chat(named_origins_proxy, APP_ORIGIN)

    assert response.status_code == 200, response.text
    assert response.headers.get("access-control-allow-origin") == APP_ORIGIN, dict(response.headers)


def test_preflight_unlisted_origin_refused(named_origins_proxy):
    """With origins listed, a preflight from any other origin gets no Access-Control-Allow-Origin."""
    response = _preflight(named_origins_proxy, OTHER_ORIGIN)

    assert "access-control-allow-origin" not in response.headers, dict(response.headers)


def test_browser_request_unlisted_origin_403(named_origins_proxy):
    """With origins listed, a request from any other origin gets the 403."""
    response = _browser_chat(named_origins_proxy, OTHER_ORIGIN)

    assert response.status_code == 403, response.text


def test_unset_origins_still_403(start_proxy):
    """With LITELLM_CORS_ORIGINS empty, LiteLLM's preflight allows '*', but the request itself gets the 403."""
    unset_proxy = start_proxy({"LITELLM_CORS_ORIGINS": ""})
    preflight = _preflight(unset_proxy, OTHER_ORIGIN)
    response = _browser_chat(unset_proxy, OTHER_ORIGIN)

    assert preflight.headers.get("access-control-allow-origin") == "*", dict(preflight.headers)
    assert response.status_code == 403, response.text

