"""Start and stop the real processes the tests run against: the litellm proxy and Redis."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, TypeVar

import httpx

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIG_PATH = REPO_ROOT / "imqa_config.yaml"

# Variables that would send the proxy's or the test client's traffic somewhere else.
_NETWORK_VARIABLES = (
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "no_proxy",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
)

T = TypeVar("T")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def eventually(read: Callable[[], T], predicate: Callable[[T], bool], seconds: float, interval: float = 0.1) -> T:
    """Poll `read` until `predicate` holds for its value; fail with the last value seen."""
    deadline = time.monotonic() + seconds
    while True:
        value = read()
        if predicate(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {seconds} s; last value: {value!r}")
        time.sleep(interval)


def isolated_environment(extra: dict[str, str]) -> dict[str, str]:
    """Build a child environment with no proxy or CA settings of the machine, plus `extra`.

    Any request that is not for 127.0.0.1 or localhost goes to an HTTP proxy at a closed
    loopback port, so it fails at once instead of leaving the machine.
    """
    env = {k: v for k, v in os.environ.items() if k not in _NETWORK_VARIABLES}
    for name in list(env):
        if name.startswith(("LITELLM_", "REDIS_", "LANGFUSE_", "OPENROUTER_", "VERCEL_", "REPLICATE_", "IMQA_")):
            del env[name]
    env.pop("DATABASE_URL", None)
    blackhole = f"http://127.0.0.1:{free_port()}"
    env.update(
        {
            "HTTP_PROXY": blackhole,
            "HTTPS_PROXY": blackhole,
            "NO_PROXY": "127.0.0.1,localhost",
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra)
    return env


class ProxyProcess:
    """One `litellm --config ... --port ...` process, as Railway starts it."""

    def __init__(self, env: dict[str, str], log_path: Path, config_path: Path = CONFIG_PATH) -> None:
        self.env = env
        self.log_path = log_path
        self.config_path = config_path
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        self.started_in: float | None = None

    def start(self, timeout: float = 120.0) -> "ProxyProcess":
        litellm = Path(sys.executable).with_name("litellm")
        command = [str(litellm), "--config", str(self.config_path), "--port", str(self.port), "--host", "127.0.0.1"]
        started = time.monotonic()
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                command,
                env=self.env,
                cwd=self.config_path.parent,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = started + timeout
        with httpx.Client(trust_env=False, timeout=2) as client:
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(
                        f"litellm exited with code {self.process.returncode} before it was ready.\n{self.log_tail()}"
                    )
                try:
                    if client.get(f"{self.url}/health/readiness").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"litellm was not ready within {timeout} s.\n{self.log_tail()}")
                time.sleep(0.2)
        self.started_in = time.monotonic() - started
        return self

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the proxy and every process it started (its own process group)."""
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=5)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log().splitlines()[-lines:])


class RedisProcess:
    """A throwaway redis-server on a free loopback port, with no persistence."""

    def __init__(self, workdir: Path, password: str | None = None, port: int | None = None) -> None:
        self.workdir = workdir
        self.password = password
        self.port = port or free_port()
        self.process: subprocess.Popen | None = None

    @staticmethod
    def binary() -> str | None:
        return shutil.which("redis-server")

    def start(self, timeout: float = 10.0) -> "RedisProcess":
        binary = self.binary()
        if binary is None:
            raise RuntimeError("redis-server not found on PATH; install it (Debian: apt-get install redis-server).")
        self.workdir.mkdir(parents=True, exist_ok=True)
        command = [
            binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.workdir),
        ]  # fmt: skip
        if self.password:
            command += ["--requirepass", self.password]
        with open(self.workdir / "redis.log", "ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        eventually(self.ping, bool, timeout)
        return self

    def client(self):
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password, socket_timeout=2)

    def ping(self) -> bool:
        try:
            return bool(self.client().ping())
        except Exception:
            return False

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
