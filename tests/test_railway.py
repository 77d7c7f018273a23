"""Railway rehearsal: a fresh venv from requirements.txt alone, railway.json's start command, SIGTERM mid-stream.

Railpack (railwayapp/railpack, core/providers/python/python.go and buildkit/convert.go) builds this
repo as follows: `python -m venv /app/.venv`, `pip install -r requirements.txt` (hash-checked, because
every line carries --hash), then it runs deploy.startCommand as the image's command under the
entrypoint `/bin/bash -c`, in /app, with PORT set. Bash runs a single command by exec, so litellm
itself is the process that receives Railway's SIGTERM on a redeploy.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from tests.conftest import MASTER_KEY
from tests.support.gateway import unique_prompt
from tests.support.processes import REPO_ROOT, eventually, free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

RAILWAY = json.loads((REPO_ROOT / "railway.json").read_text())
DEPLOY = RAILWAY["deploy"]
# Variables Railpack sets on every Python deploy (GetPythonEnvVars in Railpack's Python provider).
RAILPACK_PYTHON_VARIABLES = {
    "PYTHONFAULTHANDLER": "1",
    "PYTHONUNBUFFERED": "1",
    "PYTHONHASHSEED": "random",
    "PYTHONDONTWRITEBYTECODE": "1",
    "PIP_DISABLE_PIP_VERSION_CHECK": "1",
}
# Seconds from SIGTERM to SIGKILL when railway.json sets no drainingSeconds, as Railway's support
# states it (station.railway.com, "What is the behavior during a new deploy").
RAILWAY_DEFAULT_DRAINING_SECONDS = 3
STREAM_ALIAS = "fast-model"
STREAM_UPSTREAM_MODEL = "google/gemini-2.5-flash"
CHUNK_DELAY = 0.5


def _run_logged(command: list[str], log_path: Path, **kwargs) -> float:
    """Run a build step, raise with its log tail on failure, and return its duration in seconds."""
    started = time.monotonic()
    with open(log_path, "ab") as log:
        result = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, **kwargs)
    if result.returncode != 0:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-40:])
        raise AssertionError(f"{' '.join(map(str, command))} exited with {result.returncode}:\n{tail}")
    return time.monotonic() - started


@pytest.fixture(scope="module")
def railway_app(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The files a push gives Railway: tracked files plus new files that .gitignore does not exclude."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT,
        check=True,
        capture_output=True,
    ).stdout.decode()
    app = tmp_path_factory.mktemp("railway") / "app"
    for name in filter(None, listed.split("\0")):
        source = REPO_ROOT / name
        if source.is_file():
            target = app / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return app


@pytest.fixture(scope="module")
def railway_venv(railway_app: Path) -> Path:
    """A virtual environment built like Railpack's: only requirements.txt, hash-checked.

    Nothing is cached between runs except pip's download cache, so a package missing from
    requirements.txt fails the start below instead of hiding in a reused environment.
    """
    python = shutil.which("python3.11")
    if python is None:
        pytest.fail("python3.11 not found on PATH; .python-version gives Railway Python 3.11 and the lock is resolved for it.")
    venv = railway_app / ".venv"
    log_path = railway_app.parent / "build.log"
    _run_logged([python, "-m", "venv", str(venv)], log_path)
    pip_env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    pip_env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    install_seconds = _run_logged(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--no-input", "--require-hashes", "-r", "requirements.txt"],
        log_path,
        cwd=railway_app,
        env=pip_env,
        timeout=900,
    )
    print(f"railway rehearsal: pip install --require-hashes -r requirements.txt took {install_seconds:.1f} s")
    return venv


@dataclass
class Deployment:
    """The start command of railway.json running from the rehearsal's app directory."""

    process: subprocess.Popen
    url: str
    log_path: Path
    healthy_after: float

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@pytest.fixture
def start_deployment(railway_app: Path, railway_venv: Path, gateway_env: dict[str, str], tmp_path: Path):
    """Start deploy.startCommand the way Railpack's image does, and stop it at teardown."""
    started: list[subprocess.Popen] = []

    def start(extra_env: dict[str, str] | None = None) -> Deployment:
        port = free_port()
        env = {
            **gateway_env,
            **RAILPACK_PYTHON_VARIABLES,
            # Railpack puts the venv first on PATH; the machine's own .venv must not be reachable.
            "PATH": f"{railway_venv / 'bin'}:/usr/local/bin:/usr/bin:/bin",
            "PORT": str(port),
            # The start command binds 0.0.0.0 on Railway; LiteLLM reads HOST when --host is absent,
            # so the rehearsal listens on loopback only.
            "HOST": "127.0.0.1",
            **(extra_env or {}),
        }
        env.pop("VIRTUAL_ENV", None)
        log_path = tmp_path / f"deploy-{len(started)}.log"
        begin = time.monotonic()
        with open(log_path, "ab") as log:
            process = subprocess.Popen(
                ["/bin/bash", "-c", DEPLOY["startCommand"]],
                cwd=railway_app,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        started.append(process)
        url = f"http://127.0.0.1:{port}"
        deadline = begin + DEPLOY["healthcheckTimeout"]
        with httpx.Client(trust_env=False, timeout=2) as probe:
            while True:
                if process.poll() is not None:
                    tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-60:])
                    raise AssertionError(f"the start command exited with {process.returncode}:\n{tail}")
                try:
                    if probe.get(url + DEPLOY["healthcheckPath"]).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-60:])
                    raise AssertionError(
                        f"{DEPLOY['healthcheckPath']} did not answer 200 within healthcheckTimeout "
                        f"({DEPLOY['healthcheckTimeout']} s):\n{tail}"
                    )
                time.sleep(0.2)
        return Deployment(process, url, log_path, time.monotonic() - begin)

    yield start

    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


@dataclass
class StreamRecord:
    """What a streaming client saw: each SSE data line with its arrival time, and how it ended."""

    status: int | None = None
    lines: list[tuple[float, str]] = field(default_factory=list)
    error: str | None = None
    finished_at: float | None = None

    def content_chunks(self) -> int:
        return sum(1 for _, line in self.lines if '"content":"' in line.replace(" ", "") and "[DONE]" not in line)

    def done(self) -> bool:
        return any(line.strip() == "data: [DONE]" for _, line in self.lines)

    def text(self) -> str:
        parts = []
        for _, line in self.lines:
            if line.startswith("data: {"):
                for choice in json.loads(line[len("data: "):]).get("choices", []):
                    parts.append((choice.get("delta") or {}).get("content") or "")
        return "".join(parts)


def _stream_in_background(url: str, prompt: str) -> tuple[threading.Thread, StreamRecord]:
    record = StreamRecord()
    body = {"model": STREAM_ALIAS, "stream": True, "messages": [{"role": "user", "content": prompt}]}

    def consume() -> None:
        headers = {"Authorization": f"Bearer {MASTER_KEY}"}
        try:
            with httpx.Client(base_url=url, headers=headers, timeout=60, trust_env=False) as client:
                with client.stream("POST", "/v1/chat/completions", json=body) as response:
                    record.status = response.status_code
                    for line in response.iter_lines():
                        if line:
                            record.lines.append((time.monotonic(), line))
        except httpx.HTTPError as exc:
            record.error = f"{type(exc).__name__}: {exc}"
        record.finished_at = time.monotonic()

    thread = threading.Thread(target=consume, name="stream-client", daemon=True)
    thread.start()
    return thread, record


@dataclass
class ShutdownRecord:
    """What happened after SIGTERM: the stream, the health checks sent meanwhile, and two timings in seconds."""

    stream: StreamRecord
    probes_during_drain: list[int | str]
    stream_ended_after: float
    exited_after: float


def _sigterm_mid_stream(deployment: Deployment, upstream, prompt: str) -> ShutdownRecord:
    """Send SIGTERM once the stream's first word has arrived, probe the health check until the stream ends."""
    upstream.fail("slow", model=STREAM_UPSTREAM_MODEL, delay=CHUNK_DELAY)
    thread, record = _stream_in_background(deployment.url, prompt)
    eventually(record.content_chunks, lambda n: n >= 1, 30)

    signalled = time.monotonic()
    os.kill(deployment.process.pid, signal.SIGTERM)
    probes: list[int | str] = []
    with httpx.Client(trust_env=False, timeout=2) as probe:
        while thread.is_alive() and time.monotonic() - signalled < 90:
            try:
                probes.append(probe.get(deployment.url + DEPLOY["healthcheckPath"]).status_code)
            except httpx.HTTPError as exc:
                probes.append(type(exc).__name__)
            thread.join(timeout=0.2)
    thread.join(timeout=5)
    assert not thread.is_alive(), "the streaming client was still reading 90 s after SIGTERM"
    deployment.process.wait(timeout=90)
    exited = time.monotonic()
    return ShutdownRecord(record, probes, record.finished_at - signalled, exited - signalled)


def test_rehearsal_venv_passes_supply_chain_check(railway_app, railway_venv):
    """The environment Railway builds from requirements.txt passes scripts/check_supply_chain."""
    result = subprocess.run(
        [str(railway_venv / "bin" / "python"), str(railway_app / "scripts" / "check_supply_chain")],
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stderr


def test_start_command_healthy_within_healthcheck_timeout(start_deployment, railway_venv, upstream, record_property):
    """railway.json's start command, run from a fresh venv, passes the health check within healthcheckTimeout."""
    deployment = start_deployment()
    record_property("start_to_healthy_seconds", round(deployment.healthy_after, 1))
    print(f"railway rehearsal: start to healthy {deployment.healthy_after:.1f} s "
          f"(healthcheckTimeout {DEPLOY['healthcheckTimeout']} s)")

    assert deployment.healthy_after < DEPLOY["healthcheckTimeout"], deployment.log_tail()

    cmdline = Path(f"/proc/{deployment.process.pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    # bash hands its process over to litellm, so the PID Railway signals is the rehearsal venv's litellm.
    assert str(railway_venv / "bin" / "litellm") in cmdline, f"the process Railway signals is {cmdline!r}"

    with httpx.Client(base_url=deployment.url, timeout=30, trust_env=False,
                      headers={"Authorization": f"Bearer {MASTER_KEY}"}) as client:
        response = client.post(
            "/v1/chat/completions",
            json={"model": "gpt-4o", "messages": [{"role": "user", "content": unique_prompt("railway")}]},
        )
    assert response.status_code == 200, response.text


def test_sigterm_lets_inflight_stream_finish(start_deployment, upstream, record_property):
    """On SIGTERM the deploy refuses new connections, finishes a stream already in flight, then shuts down cleanly."""
    deployment = start_deployment()
    prompt = unique_prompt("railway drain")

    shutdown = _sigterm_mid_stream(deployment, upstream, prompt)
    record = shutdown.stream
    record_property("sigterm_to_stream_end_seconds", round(shutdown.stream_ended_after, 1))
    record_property("sigterm_to_exit_seconds", round(shutdown.exited_after, 1))
    print(f"railway rehearsal: SIGTERM mid-stream: stream ended after {shutdown.stream_ended_after:.1f} s, "
          f"process exited after {shutdown.exited_after:.1f} s, client error: {record.error}, "
          f"health checks meanwhile: {sorted(set(map(str, shutdown.probes_during_drain)))}")

    assert record.status == 200, record
    assert record.error is None, f"the stream was cut: {record.error}; log:\n{deployment.log_tail()}"
    assert record.done(), f"the stream ended without data: [DONE]: {record.lines[-3:]}"
    assert prompt in record.text(), f"the streamed answer is incomplete: {record.text()!r}"
    probes = shutdown.probes_during_drain
    refused_from = next((i for i, result in enumerate(probes) if result != 200), None)
    # A probe sent in the instant before the process handles the signal may still be served,
    # so the check is that refusals start and that nothing is served once they have.
    assert refused_from is not None, f"new connections were still served while the stream drained: {probes}"
    assert 200 not in probes[refused_from:], f"new connections were served again after being refused: {probes}"
    # uvicorn re-raises the signal once its graceful shutdown is done, so a clean exit reads as
    # "terminated by SIGTERM". A SIGKILL or an error code would mean the shutdown was not clean.
    assert deployment.process.returncode in (0, -signal.SIGTERM), deployment.log_tail()
    assert "Application shutdown complete." in deployment.log_tail(), deployment.log_tail()
    # Railway sends SIGKILL drainingSeconds after SIGTERM (a few seconds when unset), so the drain
    # must end before that for the stream to survive a real redeploy.
    draining = DEPLOY.get("drainingSeconds", RAILWAY_DEFAULT_DRAINING_SECONDS)
    assert shutdown.exited_after < draining, (
        f"the drain took {shutdown.exited_after:.1f} s, but Railway kills the process after {draining} s"
    )


def test_sigterm_cuts_stream_after_graceful_timeout(start_deployment, upstream, record_property):
    """A stream still running GRACEFUL_SHUTDOWN_TIMEOUT seconds after SIGTERM is cut off, and the deploy exits."""
    deployment = start_deployment({"GRACEFUL_SHUTDOWN_TIMEOUT": "1"})
    prompt = unique_prompt("railway drain cut off after the graceful shutdown timeout")

    shutdown = _sigterm_mid_stream(deployment, upstream, prompt)
    record = shutdown.stream
    record_property("cut_sigterm_to_stream_end_seconds", round(shutdown.stream_ended_after, 1))
    print(f"railway rehearsal: GRACEFUL_SHUTDOWN_TIMEOUT=1: stream ended after {shutdown.stream_ended_after:.1f} s, "
          f"process exited after {shutdown.exited_after:.1f} s, client error: {record.error}, [DONE]: {record.done()}")

    assert not record.done(), f"the stream finished although it outlasted the timeout: {record.text()!r}"
    assert shutdown.stream_ended_after < 10, f"the stream ran {shutdown.stream_ended_after:.1f} s past SIGTERM"
    assert shutdown.exited_after < 15, f"the process took {shutdown.exited_after:.1f} s to exit"
