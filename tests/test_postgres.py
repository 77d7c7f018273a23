"""Per-product keys in Postgres: the proxy with a database that is down, and the key workflow end to end.

LiteLLM keeps virtual keys in Postgres through Prisma. With DATABASE_URL set, the start command
first applies LiteLLM's migrations (`prisma migrate deploy`, coordinated through a direct
connection to the database), then connects its Prisma client. The end-to-end test needs a
Postgres on 127.0.0.1 (IMQA_TEST_DATABASE_URL), the generated Prisma client and Prisma's engines,
which are downloaded from binaries.prisma.sh. Wherever one of them is missing, the test is
skipped with the reason.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import httpx
import pytest

from tests.conftest import MASTER_KEY, gateway_client
from tests.support.gateway import chat
from tests.support.key_api import run_keys
from tests.support.processes import CONFIG_PATH, eventually, free_port

DB_PASSWORD = "imqa-test-db-password"
LITELLM = Path(sys.executable).with_name("litellm")


def _run_until_exit(command: list[str], env: dict[str, str], log_path: Path, port: int | None, timeout: float):
    """Run `command` until it exits; return its exit code, the seconds it ran and every readiness status seen."""
    started = time.monotonic()
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            command, cwd=CONFIG_PATH.parent, env=env, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
    statuses: list[int | str] = []
    try:
        with httpx.Client(trust_env=False, timeout=2) as probe:
            while process.poll() is None and time.monotonic() - started < timeout:
                if port is not None:
                    try:
                        statuses.append(probe.get(f"http://127.0.0.1:{port}/health/readiness").status_code)
                    except httpx.HTTPError as exc:
                        statuses.append(type(exc).__name__)
                time.sleep(0.5)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
            raise AssertionError(f"{command[1:]} still ran after {timeout} s:\n{log_path.read_text()[-3000:]}")
    return process.returncode, time.monotonic() - started, statuses


@pytest.fixture
def database_down_env(gateway_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """The gateway's environment with DATABASE_URL at a closed port on 127.0.0.1."""
    closed_port = free_port()
    home = tmp_path / "home"
    home.mkdir()
    return {
        **gateway_env,
        "DATABASE_URL": f"postgresql://imqa:{DB_PASSWORD}@127.0.0.1:{closed_port}/litellm",
        # The Prisma CLI installs itself with npm on first use. Offline, npm fails at once instead
        # of retrying for a minute, and the separate HOME keeps the machine's caches untouched.
        "npm_config_offline": "true",
        "HOME": str(home),
    }


# The three ways the proxy meets the database at deploy time: the start command (migrations, then
# serving), the pre-deploy migration step, and a start with migrations left to that step.
DEPLOY_STEPS = {
    "start-command": (["--port", "{port}", "--host", "127.0.0.1"], {}),
    "pre-deploy-migration": (["--skip_server_startup"], {}),
    "start-without-migrations": (["--port", "{port}", "--host", "127.0.0.1"], {"DISABLE_SCHEMA_UPDATE": "true"}),
}


@pytest.mark.slow
@pytest.mark.timeout(420)
@pytest.mark.parametrize("step", list(DEPLOY_STEPS))
def test_database_down_fails_deploy_before_serving(step, database_down_env, tmp_path):
    """With the database down, every deploy step exits non-zero and readiness never returns 200."""
    port = free_port()
    arguments, extra_env = DEPLOY_STEPS[step]
    command = [str(LITELLM), "--config", str(CONFIG_PATH), *(a.format(port=port) for a in arguments)]
    log_path = tmp_path / "litellm.log"

    code, seconds, statuses = _run_until_exit(command, {**database_down_env, **extra_env}, log_path, port, timeout=360)
    log = log_path.read_text(errors="replace")
    print(f"database down, {step}: exit code {code} after {seconds:.1f} s; readiness: {sorted(set(map(str, statuses)))}")

    assert code != 0, f"exited 0 with the database down:\n{log[-3000:]}"
    assert 200 not in statuses, f"readiness answered 200 with the database down: {statuses}"
    assert _expected_failure(step, database_down_env["DATABASE_URL"]) in log, log[-3000:]
    assert DB_PASSWORD not in log, "the log shows the database password"


def _expected_failure(step: str, database_url: str) -> str:
    """Return the log line that names why `step` failed with the database down."""
    if step == "start-without-migrations" and importlib.util.find_spec("prisma.client") is None:
        # Without `prisma generate` the proxy fails before it ever tries the database.
        return "Please run 'prisma generate' first."
    # LiteLLM's migration lock writes host:port in one pair of backticks, Prisma's engine quotes each.
    return f"Can't reach database server at `{urllib.parse.urlsplit(database_url).hostname}"


def _prisma_missing_reason() -> str | None:
    """Return why LiteLLM's Prisma client cannot run here, or None when it can."""
    if importlib.util.find_spec("prisma") is None:
        return "the prisma package is not installed"
    if importlib.util.find_spec("prisma.client") is None:
        return (
            "the Prisma client is not generated: run `prisma generate --schema <site-packages>/litellm/proxy/schema.prisma`, "
            "which downloads Prisma's engines from binaries.prisma.sh"
        )
    from prisma.client import BINARY_PATHS  # generated module
    from prisma.engine import errors, utils

    try:
        utils.ensure(BINARY_PATHS.query_engine)
    except errors.BinaryNotFoundError as exc:
        return f"Prisma's query engine is missing: {str(exc).splitlines()[0]}"
    return None


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_product_key_lifecycle_end_to_end(start_proxy, upstream):
    """A key from scripts/keys serves chat, is rate limited at its rpm, and gets 401 once revoked."""
    reason = _prisma_missing_reason()
    if reason:
        pytest.skip(reason)
    database_url = os.environ.get("IMQA_TEST_DATABASE_URL")
    if not database_url:
        pytest.skip("IMQA_TEST_DATABASE_URL is not set; set it to a Postgres on 127.0.0.1 to run the key workflow")
    host = urllib.parse.urlsplit(database_url).hostname
    if host not in ("127.0.0.1", "localhost"):
        pytest.fail(f"IMQA_TEST_DATABASE_URL must point at 127.0.0.1 or localhost, not {host}")

    proxy = start_proxy({"DATABASE_URL": database_url})
    created = run_keys(
        "create", "imqa-e2e", "--rpm", "2", "--tpm", "100000", "--budget", "5", "--models", "gpt-4o",
        url=proxy.url, key=MASTER_KEY,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    product_key = created.stdout.strip()

    try:
        with gateway_client(proxy, key=product_key) as client:
            first = chat(client, "gpt-4o")
            assert first.status_code == 200, first.text
            statuses = [chat(client, "gpt-4o").status_code for _ in range(4)]
            assert 429 in statuses, f"no 429 within 5 requests at rpm 2: {[200, *statuses]}"
            other_alias = chat(client, "fast-model")
            assert other_alias.status_code in (401, 403), f"an alias outside the key's models: {other_alias.text}"

        listed = run_keys("list", "--product", "imqa-e2e", url=proxy.url, key=MASTER_KEY)
        assert listed.returncode == 0, listed.stderr
        assert product_key not in listed.stdout, "list printed the full key"
        assert f"sk-...{product_key[-4:]}" in listed.stdout, listed.stdout
    finally:
        revoked = run_keys("revoke", "imqa-e2e", url=proxy.url, key=MASTER_KEY)
    assert revoked.returncode == 0, revoked.stderr

    with gateway_client(proxy, key=product_key) as client:
        response = eventually(lambda: chat(client, "gpt-4o"), lambda r: r.status_code == 401, 30)
    assert response.status_code == 401, response.text
