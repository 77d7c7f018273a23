"""The files in monitoring/ are valid for the tools that load them.

That every metric they read exists on the running proxy is checked in test_metrics.py.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from tests.support.monitoring import (
    DASHBOARD_PATH,
    MONITORING_DIR,
    RULES_PATH,
    SCRAPE_CONFIG_PATH,
    dashboard_expressions,
    load_scrape_config,
)

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not found on PATH (Debian: apt-get install prometheus)"
)


def run_promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PROMTOOL, *args], cwd=MONITORING_DIR, capture_output=True, text=True, timeout=60, check=False
    )


@needs_promtool
def test_alert_rules_valid():
    """promtool accepts the alert rules."""
    result = run_promtool("check", "rules", RULES_PATH.name)
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_alert_rules_fire_on_synthetic_outages():
    """Each alert fires on the outage it is for, and not for a healthy alias (promtool test rules)."""
    result = run_promtool("test", "rules", "alert-rules.test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_scrape_config_valid():
    """promtool accepts the scrape config (syntax only: the key file exists only on the Prometheus host)."""
    result = run_promtool("check", "config", "--syntax-only", SCRAPE_CONFIG_PATH.name)
    assert result.returncode == 0, result.stdout + result.stderr


def test_scrape_config_sends_bearer_key():
    """Every scrape job reads /metrics/ with a bearer token from a file, never an inline key."""
    jobs = load_scrape_config()["scrape_configs"]
    for job in jobs:
        authorization = job.get("authorization", {})
        assert job.get("metrics_path") == "/metrics/", job["job_name"]
        assert authorization.get("type") == "Bearer", job["job_name"]
        assert "credentials_file" in authorization, job["job_name"]
        assert "credentials" not in authorization, f"{job['job_name']} has an inline key"


def test_dashboard_panels_have_queries():
    """Every dashboard panel has at least one Prometheus query."""
    dashboard = json.loads(DASHBOARD_PATH.read_text())
    empty = [panel["title"] for panel in dashboard["panels"] if not panel.get("targets")]
    assert dashboard["panels"], "the dashboard has no panels"
    assert empty == [], f"panels without a query: {empty}"
    assert len(dashboard_expressions()) >= len(dashboard["panels"])
