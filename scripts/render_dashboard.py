#!/usr/bin/env python3
"""Render monitoring/grafana-dashboard.json to a PNG from a real local run of the gateway.

Starts everything on 127.0.0.1: the mock upstream, redis-server, the litellm proxy with this
repo's config, and a Prometheus that scrapes the proxy every 2 s. It then sends traffic in
four phases (steady, Vercel's gpt-4o failing, Claude down on both providers, steady again),
evaluates every panel's PromQL in that Prometheus, and draws the panels with matplotlib.

Needs: .venv with requirements-dev.txt (matplotlib), redis-server and prometheus on PATH
(Debian: apt-get install redis-server prometheus). Nothing leaves the machine.

Usage:  .venv/bin/python scripts/render_dashboard.py [--phase-seconds 30] [--output monitoring/dashboard.png]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

import httpx  # noqa: E402

from tests.support.gateway import chat, unique_prompt  # noqa: E402
from tests.support.mock_upstream import MockUpstream  # noqa: E402
from tests.support.monitoring import DASHBOARD_PATH  # noqa: E402
from tests.support.processes import ProxyProcess, RedisProcess, eventually, free_port, isolated_environment  # noqa: E402

MASTER_KEY = "sk-imqa-dashboard-demo"
ALIASES = ["gemini-3-pro", "gpt-4o", "claude-4-sonnet", "fast-model", "gpt-4o-mini", "reasoning-model"]
# Grafana's $__rate_interval, for a 2 s scrape interval.
RATE_INTERVAL = "30s"


def start_prometheus(workdir: Path, proxy: ProxyProcess) -> tuple[subprocess.Popen, str]:
    """Start Prometheus on a free loopback port, scraping the proxy with the master key."""
    key_file = workdir / "gateway-key"
    key_file.write_text(MASTER_KEY)
    config = {
        "global": {"scrape_interval": "2s", "evaluation_interval": "2s"},
        "scrape_configs": [
            {
                "job_name": "imqa-gateway",
                "metrics_path": "/metrics/",
                "authorization": {"type": "Bearer", "credentials_file": str(key_file)},
                "static_configs": [{"targets": [f"127.0.0.1:{proxy.port}"]}],
            }
        ],
    }
    config_path = workdir / "prometheus.yml"
    config_path.write_text(json.dumps(config))
    port = free_port()
    log = open(workdir / "prometheus.log", "wb")
    process = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={config_path}",
            f"--storage.tsdb.path={workdir / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            return httpx.get(f"{url}/-/ready", timeout=2, trust_env=False).status_code == 200
        except httpx.HTTPError:
            return False

    eventually(ready, bool, 30, interval=0.5)
    return process, url


def last_scrape(prometheus_url: str) -> float:
    """Return the Unix time of Prometheus's latest scrape of the proxy (0 before the first)."""
    response = httpx.get(f"{prometheus_url}/api/v1/query", params={"query": "timestamp(up)"}, timeout=5, trust_env=False)
    response.raise_for_status()
    results = response.json()["data"]["result"]
    return float(results[0]["value"][1]) if results else 0.0


def send_traffic(client: httpx.Client, upstream: MockUpstream, phase_seconds: float) -> None:
    """Send a mix of requests in four phases; repeated prompts make some of them cache hits."""
    phases = [
        ("steady", lambda: None),
        ("gpt-4o primary failing", lambda: upstream.fail("500", provider="vercel", model="openai/gpt-4o")),
        ("claude-4-sonnet down", lambda: upstream.fail("503", model="anthropic/claude-sonnet-4")),
        ("steady again", upstream.heal),
    ]
    recent_prompts: list[tuple[str, str]] = []
    for number, (name, begin) in enumerate(phases, start=1):
        print(f"{number}/4 traffic: {name} for {phase_seconds:.0f} s", flush=True)
        begin()
        deadline = time.monotonic() + phase_seconds
        while time.monotonic() < deadline:
            workers = [threading.Thread(target=one_request, args=(client, recent_prompts)) for _ in range(4)]
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join()


def one_request(client: httpx.Client, recent_prompts: list[tuple[str, str]]) -> None:
    roll = random.random()
    if roll < 0.3 and recent_prompts:
        alias, prompt = random.choice(recent_prompts)
        chat(client, alias, prompt)
    elif roll < 0.45:
        alias = random.choice(ALIASES)
        body = {"model": alias, "stream": True, "messages": [{"role": "user", "content": unique_prompt(alias)}]}
        with client.stream("POST", "/v1/chat/completions", json=body) as stream:
            stream.read()
    else:
        alias = random.choice(ALIASES)
        prompt = unique_prompt(alias)
        chat(client, alias, prompt)
        recent_prompts.append((alias, prompt))
        del recent_prompts[:-50]


def query_panels(prometheus_url: str, start: float, end: float) -> list[dict]:
    """Evaluate every target of every dashboard panel over [start, end]."""
    dashboard = json.loads(DASHBOARD_PATH.read_text())
    panels = []
    with httpx.Client(base_url=prometheus_url, timeout=30, trust_env=False) as client:
        for panel in dashboard["panels"]:
            series = []
            for target in panel["targets"]:
                expr = target["expr"].replace("$__rate_interval", RATE_INTERVAL)
                response = client.get("/api/v1/query_range", params={"query": expr, "start": start, "end": end, "step": 4})
                response.raise_for_status()
                # At most 6 series per query, so every query of a panel shows in its legend.
                for result in response.json()["data"]["result"][:6]:
                    label = target.get("legendFormat", "")
                    for key, value in result["metric"].items():
                        label = label.replace("{{" + key + "}}", value)
                    points = [(float(t), float(v)) for t, v in result["values"] if v not in ("NaN", "+Inf", "-Inf")]
                    if points:
                        series.append((label, points))
            panels.append({"title": panel["title"], "unit": panel["fieldConfig"]["defaults"].get("unit"), "series": series})
    return panels


def render(panels: list[dict], start: float, output: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.style.use("dark_background")
    rows = (len(panels) + 1) // 2
    figure, axes = plt.subplots(rows, 2, figsize=(14, 3.1 * rows), dpi=60)
    figure.suptitle("IMQA LLM Gateway (local run: mock upstream, real proxy, real Prometheus)", fontsize=15)
    for axis, panel in zip(axes.flat, panels):
        axis.set_title(panel["title"], fontsize=11, loc="left")
        for label, points in panel["series"]:
            times = [(t - start) / 60 for t, _ in points]
            values = [v * 100 if panel["unit"] == "percentunit" else v for _, v in points]
            axis.plot(times, values, linewidth=1.4, label=label)
        if panel["series"]:
            axis.legend(fontsize=7, loc="upper left", ncol=2, framealpha=0.3)
        unit = {"percentunit": "%", "s": "seconds", "reqps": "requests/s"}.get(panel["unit"], "")
        axis.set_ylabel(unit, fontsize=9)
        axis.set_xlabel("minutes", fontsize=9)
        axis.grid(alpha=0.2)
        axis.tick_params(labelsize=8)
    for axis in list(axes.flat)[len(panels) :]:
        axis.axis("off")
    figure.tight_layout(rect=(0, 0, 1, 0.97))
    figure.savefig(output)
    plt.close(figure)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phase-seconds", type=float, default=30, help="length of each of the 4 traffic phases, in seconds (default: 30)")
    parser.add_argument("--output", type=Path, default=REPO_ROOT / "monitoring" / "dashboard.png", help="PNG to write (default: monitoring/dashboard.png)")
    args = parser.parse_args()

    for binary in ("redis-server", "prometheus"):
        if shutil.which(binary) is None:
            print(f"error: {binary} not found on PATH; install it (Debian: apt-get install redis-server prometheus).", file=sys.stderr)
            return 2

    with tempfile.TemporaryDirectory(prefix="imqa-dashboard-") as tmp:
        workdir = Path(tmp)
        upstream = MockUpstream().start()
        redis = RedisProcess(workdir / "redis").start()
        env = isolated_environment(
            {
                "LITELLM_MASTER_KEY": MASTER_KEY,
                "VERCEL_AI_GATEWAY_API_KEY": "vck-demo",
                "OPENROUTER_API_KEY": "sk-or-demo",
                "VERCEL_AI_GATEWAY_API_BASE": upstream.base_url("vercel"),
                "OPENROUTER_API_BASE": upstream.base_url("openrouter"),
                "REDIS_HOST": "127.0.0.1",
                "REDIS_PORT": str(redis.port),
                "IMQA_CACHE_TYPE": "redis",
                "VERCEL_AI_GATEWAY_RPM": "600",
                "OPENROUTER_RPM": "600",
            }
        )
        proxy = ProxyProcess(env, workdir / "litellm.log")
        prometheus = None
        try:
            print("starting the proxy and Prometheus", flush=True)
            proxy.start()
            prometheus, prometheus_url = start_prometheus(workdir, proxy)
            start = time.time()
            with httpx.Client(
                base_url=proxy.url, headers={"Authorization": f"Bearer {MASTER_KEY}"}, timeout=60, trust_env=False
            ) as client:
                send_traffic(client, upstream, args.phase_seconds)
            # Wait for a scrape after the traffic, so the last phase shows in every panel.
            traffic_end = time.time()
            eventually(lambda: last_scrape(prometheus_url), lambda scraped: scraped > traffic_end + 2, 30, interval=0.5)
            end = time.time()
            panels = query_panels(prometheus_url, start, end)
        except Exception:
            print(f"error: the run failed. Proxy log tail:\n{proxy.log_tail(30)}", file=sys.stderr)
            raise
        finally:
            if prometheus is not None:
                prometheus.terminate()
                prometheus.wait(timeout=15)
            proxy.stop()
            redis.stop()
            upstream.stop()

    render(panels, start, args.output)
    empty = [panel["title"] for panel in panels if not panel["series"]]
    print(f"wrote {args.output} ({args.output.stat().st_size // 1024} KB)")
    if empty:
        print(f"warning: panels with no data: {empty}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
