"""Scrape the gateway's Prometheus metrics and find the metric names that monitoring/ uses."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Iterable

import httpx
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.support.mock_upstream import MockUpstream
from tests.support.gateway import chat, unique_prompt

REPO_ROOT = Path(__file__).resolve().parents[2]
MONITORING_DIR = REPO_ROOT / "monitoring"
DASHBOARD_PATH = MONITORING_DIR / "grafana-dashboard.json"
RULES_PATH = MONITORING_DIR / "alert-rules.yml"
SCRAPE_CONFIG_PATH = MONITORING_DIR / "prometheus.yml"

# Suffixes that prometheus_client adds to a family's name for its samples.
_SAMPLE_SUFFIXES = ("_total", "_bucket", "_count", "_sum", "_created")
# A gateway metric name in PromQL; a name followed by a label matcher (=, !=, =~, !~) is a
# label such as litellm_model_name, not a metric.
_METRIC_NAME = re.compile(r"\b(litellm_[a-z0-9_]+|process_[a-z0-9_]+|python_[a-z0-9_]+)\b(?!\s*(?:=|!=|!~))")


def scrape(client: httpx.Client) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Return every sample of /metrics/ as {sample name: [(labels, value), ...]}."""
    response = client.get("/metrics/")
    response.raise_for_status()
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return samples


def total(samples: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str) -> float:
    """Sum the samples called `name` whose labels include `labels`."""
    return sum(
        value
        for sample_labels, value in samples.get(name, [])
        if all(sample_labels.get(key) == expected for key, expected in labels.items())
    )


def family_names(samples: Iterable[str]) -> set[str]:
    """Return the sample names together with the family names they belong to."""
    names = set(samples)
    for name in list(names):
        for suffix in _SAMPLE_SUFFIXES:
            if name.endswith(suffix):
                names.add(name[: -len(suffix)])
    return names


def dashboard_expressions(path: Path = DASHBOARD_PATH) -> list[str]:
    """Return the PromQL of every panel target and template variable of the dashboard."""
    dashboard = json.loads(path.read_text())
    expressions = [
        target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", []) if "expr" in target
    ]
    for variable in dashboard.get("templating", {}).get("list", []):
        query = variable.get("query")
        if isinstance(query, dict):
            query = query.get("query")
        if isinstance(query, str) and variable.get("type") == "query":
            expressions.append(query)
    return expressions


def rule_expressions(path: Path = RULES_PATH) -> list[str]:
    """Return the PromQL of every alerting and recording rule."""
    rules = yaml.safe_load(path.read_text())
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


def metric_names(expressions: Iterable[str]) -> set[str]:
    """Return the gateway metric names that PromQL expressions read."""
    return {name for expression in expressions for name in _METRIC_NAME.findall(expression)}


def send_monitored_traffic(client: httpx.Client, upstream: MockUpstream) -> None:
    """Send one request of each kind the dashboard shows: success, stream, fallback, cache hit, failure.

    The failure takes both Claude deployments down twice, which also cools them down.
    """
    responses = [chat(client, "gpt-4o-mini")]

    with client.stream(
        "POST",
        "/v1/chat/completions",
        json={"model": "fast-model", "stream": True, "messages": [{"role": "user", "content": unique_prompt()}]},
    ) as stream:
        stream.read()
        responses.append(stream)

    upstream.fail("500", provider="vercel", model="openai/gpt-4o", times=1)
    responses.append(chat(client, "gpt-4o"))

    prompt = unique_prompt("cached")
    responses += [chat(client, "gemini-2.5-flash", prompt) for _ in range(2)]

    for response in responses:
        assert response.status_code == 200, f"{response.request.url}: {response.status_code}"

    upstream.fail("500", model="anthropic/claude-sonnet-4")
    for _ in range(2):
        failed = chat(client, "claude-4-sonnet")
        assert failed.status_code >= 500, failed.text
    upstream.heal()


def load_scrape_config(path: Path = SCRAPE_CONFIG_PATH) -> dict:
    return yaml.safe_load(path.read_text())
