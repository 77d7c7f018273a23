"""scripts/run, the README's run command: demo mode, and refusing a half-configured start."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.support.processes import REPO_ROOT, eventually, free_port, isolated_environment

RUN_SCRIPT = REPO_ROOT / "scripts" / "run"


def _run_env(**extra: str) -> dict[str, str]:
    env = isolated_environment({"PORT": str(free_port()), "IMQA_DEMO_UPSTREAM_PORT": str(free_port())})
    env.update(extra)
    return env


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(child) for child in path.read_text().split()] if path.exists() else []


@pytest.fixture
def demo_gateway(tmp_path):
    """scripts/run started with no keys at all, as a newcomer would."""
    env = _run_env()
    log_path = tmp_path / "run.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [str(RUN_SCRIPT)], env=env, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://127.0.0.1:{env['PORT']}"

    def ready() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"scripts/run exited with {process.returncode}:\n{log_path.read_text()}")
        try:
            return httpx.get(f"{url}/health/readiness", timeout=2, trust_env=False).status_code == 200
        except httpx.HTTPError:
            return False

    eventually(lambda: ready(), bool, 120, interval=0.5)
    yield process, url, log_path
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def test_demo_mode_answers_gemini_3_pro(demo_gateway):
    """With no keys and no network, the run command serves gemini-3-pro from the local mock."""
    _, url, log_path = demo_gateway
    response = httpx.post(
        f"{url}/v1/chat/completions",
        headers={"Authorization": "Bearer sk-imqa-demo"},
        json={"model": "gemini-3-pro", "messages": [{"role": "user", "content": "Hello"}]},
        timeout=30,
        trust_env=False,
    )

    assert response.status_code == 200, response.text
    assert "google/gemini-3-pro-preview" in response.json()["choices"][0]["message"]["content"]
    log = log_path.read_text()
    assert "OFFLINE DEMO MODE" in log
    assert "in-process cache" in log


def test_demo_mode_stops_its_processes_on_sigterm(demo_gateway):
    """SIGTERM to scripts/run stops the proxy and the mock upstream it started."""
    process, _, _ = demo_gateway
    children = _children(process.pid)
    assert len(children) == 2, f"expected the mock upstream and litellm as children, got {children}"

    process.send_signal(signal.SIGTERM)
    process.wait(timeout=30)

    for child in children:
        eventually(lambda: _pid_alive(child), lambda alive: not alive, 15)


@pytest.mark.parametrize(
    ("variables", "missing"),
    [
        ({"VERCEL_AI_GATEWAY_API_KEY": "k1", "OPENROUTER_API_KEY": "k2"}, "LITELLM_MASTER_KEY"),
        ({"LITELLM_MASTER_KEY": "sk-m", "VERCEL_AI_GATEWAY_API_KEY": "k1"}, "OPENROUTER_API_KEY"),
        ({"LITELLM_MASTER_KEY": "sk-m", "OPENROUTER_API_KEY": "k2"}, "VERCEL_AI_GATEWAY_API_KEY"),
    ],
)
def test_missing_variable_named_and_refused(variables, missing):
    """With some keys set but not all, scripts/run exits 1 and names the missing variable."""
    result = subprocess.run(
        [str(RUN_SCRIPT)], env=_run_env(**variables), cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )

    assert result.returncode == 1, result.stdout + result.stderr
    assert missing in result.stderr


def test_demo_mode_refused_when_disabled():
    """IMQA_DEMO=0 turns a keyless start into an error instead of the demo."""
    result = subprocess.run(
        [str(RUN_SCRIPT)], env=_run_env(IMQA_DEMO="0"), cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )

    assert result.returncode == 1, result.stdout + result.stderr
    assert "VERCEL_AI_GATEWAY_API_KEY" in result.stderr
