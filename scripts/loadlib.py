"""Shared parts of scripts/bench and scripts/soak: local processes, the gateway's start, wrk runs.

Everything started here listens on 127.0.0.1 and is stopped by its process group id.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.support.processes import isolated_environment  # noqa: E402

MASTER_KEY = "sk-bench-master-key"
# Provider keys the gateway sends to the mock; the soak report checks that no log shows them.
PROVIDER_KEYS = {
    "VERCEL_AI_GATEWAY_API_KEY": "vck-bench-vercel-0001",
    "OPENROUTER_API_KEY": "sk-or-bench-openrouter-0001",
    "REPLICATE_API_KEY": "r8-bench-replicate-0001",
}
HEALTH_TIMEOUT_SECONDS = 180


class StepError(Exception):
    """A step that failed; its message names the step and what to do."""


# --- processes ---------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(argv: list[str], env: dict[str, str], log_path: Path, cwd: Path = REPO_ROOT) -> subprocess.Popen:
    """Start a process in a session of its own, so `stop` can end it and its children by group id."""
    log = log_path.open("wb")
    return subprocess.Popen(argv, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def stop(process: subprocess.Popen, timeout: float = 40) -> None:
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    except ProcessLookupError:
        pass


def wait_until_healthy(process: subprocess.Popen, url: str, log_path: Path) -> float:
    """Poll `url` until it returns 200; return the seconds since the process was started."""
    started = time.monotonic()
    with httpx.Client(trust_env=False, timeout=2) as client:
        while time.monotonic() - started < HEALTH_TIMEOUT_SECONDS:
            if process.poll() is not None:
                tail = log_path.read_text(errors="replace")[-2000:]
                raise StepError(f"{process.args} exited with code {process.returncode} before it was healthy:\n{tail}")
            try:
                if client.get(url).status_code == 200:
                    return time.monotonic() - started
            except httpx.TransportError:
                pass
            time.sleep(0.1)
    raise StepError(f"{url} was not healthy within {HEALTH_TIMEOUT_SECONDS} s; see {log_path}")


def process_tree(root: int) -> list[int]:
    children: dict[int, list[int]] = collections.defaultdict(list)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children[int(fields[1])].append(int(entry.name))
    tree, pending = [], [root]
    while pending:
        pid = pending.pop()
        tree.append(pid)
        pending.extend(children.get(pid, []))
    return tree


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime and stime, in clock ticks
    return total / os.sysconf("SC_CLK_TCK")


def wait_until_settled(root: int, timeout: float = 120) -> float:
    """Wait until the process tree under `root` uses under a tenth of a core; return the seconds waited.

    A multi-worker server answers its health check as soon as one worker is up, while the
    others are still importing; a measurement then would share the cores with their start.
    """
    started = time.monotonic()
    quiet_samples = 0
    previous = cpu_seconds(process_tree(root))
    while time.monotonic() - started < timeout and quiet_samples < 2:
        time.sleep(0.5)
        current = cpu_seconds(process_tree(root))
        quiet_samples = quiet_samples + 1 if current - previous < 0.05 else 0
        previous = current
    return time.monotonic() - started


def memory_by_process(root: int) -> list[tuple[str, float, float]]:
    """Return (command, current RSS MiB, peak RSS MiB) for each process in the tree under `root`."""
    rows = []
    for pid in process_tree(root):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        values = {line.split(":")[0]: line.split()[1] for line in status.splitlines() if line.startswith("Vm")}
        if "VmRSS" not in values or command.startswith("/bin/bash"):
            continue
        rows.append((command[:80], int(values["VmRSS"]) / 1024, int(values["VmHWM"]) / 1024))
    return rows


def total_rss_mib(root: int) -> float:
    return sum(rss for _, rss, _ in memory_by_process(root))


def start_redis(workdir: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    log_path = workdir / "redis.log"
    process = launch(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        os.environ.copy(),
        log_path,
        cwd=workdir,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return process, port
        time.sleep(0.05)
    stop(process)
    raise StepError(f"redis-server did not listen on port {port}; see {log_path}")


# --- the gateway as deployed ----------------------------------------------------------------------
def deployed_start_command() -> str:
    return json.loads((REPO_ROOT / "railway.json").read_text())["deploy"]["startCommand"]


@dataclasses.dataclass
class Gateway:
    process: subprocess.Popen
    port: int
    log_path: Path
    start_seconds: float
    settle_seconds: float

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/chat/completions"


def start_gateway(
    workdir: Path, mock_url: str, redis_port: int, name: str = "gateway", start_command: str = "", **extra_env: str
) -> Gateway:
    """Run railway.json's start command (or a candidate) in the repo root through bash, as Railway does."""
    start_command = start_command or deployed_start_command()
    port = free_port()
    env = isolated_environment(
        {
            "PORT": str(port),
            "HOST": "127.0.0.1",
            "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
            "LITELLM_MASTER_KEY": MASTER_KEY,
            **PROVIDER_KEYS,
            "VERCEL_AI_GATEWAY_API_BASE": f"{mock_url}/vercel/v1",
            "OPENROUTER_API_BASE": f"{mock_url}/openrouter/v1",
            "REDIS_HOST": "127.0.0.1",
            "REDIS_PORT": str(redis_port),
            "IMQA_CACHE_TYPE": "redis",
            "LITELLM_CORS_ORIGINS": "none",
            **extra_env,
        }
    )
    log_path = workdir / f"{name.replace(' ', '-')}.log"
    process = launch(["/bin/bash", "-c", start_command], env, log_path)
    start_seconds = wait_until_healthy(process, f"http://127.0.0.1:{port}/health/readiness", log_path)
    settle_seconds = start_seconds + wait_until_settled(process.pid)
    return Gateway(process, port, log_path, start_seconds, settle_seconds)


# --- load with wrk ----------------------------------------------------------------------------------
# Parameters are prepended as Lua globals: MODEL, PROMPT, HEADERS, SHARE_SAME (share of requests
# that repeat one of SAME_KEYS prompts, so the cache answers), SHARE_STREAM (share sent with
# stream=true), QUOTA (responses per thread after which the thread stops; 0 means none) and
# DONE_PREFIX (a thread that reached its quota creates DONE_PREFIX..thread_id, because wrk
# itself runs until its duration ends even when every thread has stopped).
WRK_SCRIPT = """
local counter = 0
local responses = 0
-- setup runs in wrk's main Lua state; thread:set makes thread_id a global of each thread's
-- own state, so it must not be shadowed by a local there.
local threads_started = 0
function setup(thread)
  threads_started = threads_started + 1
  thread:set("thread_id", threads_started)
end
function init(args)
  math.randomseed(os.time() + thread_id * 7919)
end
function request()
  counter = counter + 1
  local prompt = string.format("%s %d-%d", PROMPT, thread_id, counter)
  local stream = "false"
  local draw = math.random()
  if draw < SHARE_SAME then
    prompt = string.format("%s same %d", PROMPT, counter % SAME_KEYS)
  elseif draw < SHARE_SAME + SHARE_STREAM then
    stream = "true"
  end
  local body = string.format(
    '{"model":"%s","stream":%s,"messages":[{"role":"user","content":"%s"}]}', MODEL, stream, prompt)
  return wrk.format("POST", nil, HEADERS, body)
end
if QUOTA > 0 then
  function response(status, headers, body)
    responses = responses + 1
    if responses == QUOTA then
      local marker = io.open(DONE_PREFIX .. thread_id, "w")
      marker:close()
      wrk.thread:stop()
    end
  end
end
function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"seconds":%f,"p50_ms":%f,"p99_ms":%f,"max_ms":%f,"non_2xx":%d,' ..
    '"connect_errors":%d,"read_errors":%d,"write_errors":%d,"timeouts":%d}\\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1e3, latency:percentile(99) / 1e3,
    latency.max / 1e3, errors.status, errors.connect, errors.read, errors.write, errors.timeout))
end
"""


@dataclasses.dataclass
class LoadResult:
    connections: int
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    connect_errors: int
    read_errors: int
    write_errors: int
    timeouts: int

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def errors(self) -> int:
        return self.non_2xx + self.connect_errors + self.read_errors + self.write_errors + self.timeouts


@dataclasses.dataclass(frozen=True)
class Traffic:
    """What one wrk run sends."""

    url: str
    model: str
    headers: dict[str, str]
    share_same: float = 0.0
    same_keys: int = 1
    share_stream: float = 0.0


def wrk_script(workdir: Path, traffic: Traffic, quota: int) -> Path:
    headers = {"Content-Type": "application/json", **traffic.headers}
    lua_headers = "{" + ", ".join(f'["{name}"]="{value}"' for name, value in headers.items()) + "}"
    prefix = (
        f'MODEL = "{traffic.model}"\nPROMPT = "bench {uuid.uuid4().hex}"\nHEADERS = {lua_headers}\n'
        f"SHARE_SAME = {traffic.share_same}\nSAME_KEYS = {traffic.same_keys}\n"
        f"SHARE_STREAM = {traffic.share_stream}\nQUOTA = {quota}\n"
    )
    path = workdir / f"wrk-{uuid.uuid4().hex[:8]}.lua"
    prefix += f'DONE_PREFIX = "{path.with_suffix(".done-")}"\n'

    path.write_text(prefix + WRK_SCRIPT)
    return path


def run_wrk(
    workdir: Path, traffic: Traffic, connections: int, seconds: float, requests: int = 0, threads: int = 2
) -> LoadResult:
    """Run wrk for `seconds`, or until `requests` responses arrived when that is given (at most `seconds`)."""
    threads = min(threads, connections)
    quota = -(-requests // threads) if requests else 0
    script = wrk_script(workdir, traffic, quota)
    argv = [
        "wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s",
        "--timeout", "30s", "-s", str(script), traffic.url,
    ]  # fmt: skip
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + seconds + 90
    markers = [Path(f"{script.with_suffix('.done-')}{thread}") for thread in range(1, threads + 1)]
    while requests and process.poll() is None and time.monotonic() < deadline:
        if all(marker.exists() for marker in markers):
            # SIGINT makes wrk stop at once and still print its summary.
            process.send_signal(signal.SIGINT)
            break
        time.sleep(0.1)
    try:
        stdout, stderr = process.communicate(timeout=max(5, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise StepError(f"wrk did not finish within {seconds + 90:.0f} s against {traffic.url}") from None
    line = next((line for line in stdout.splitlines() if line.startswith("WRK_JSON ")), None)
    if line is None:
        raise StepError(f"wrk failed against {traffic.url}: {stderr.strip() or stdout.strip()}")
    data = json.loads(line.removeprefix("WRK_JSON "))
    return LoadResult(
        connections=connections,
        requests=data["requests"],
        seconds=data["seconds"],
        p50_ms=data["p50_ms"],
        p99_ms=data["p99_ms"],
        non_2xx=data["non_2xx"],
        connect_errors=data["connect_errors"],
        read_errors=data["read_errors"],
        write_errors=data["write_errors"],
        timeouts=data["timeouts"],
    )
