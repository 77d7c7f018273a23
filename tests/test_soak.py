"""Reliability under load: scripts/soak at a smaller count, one assert per check it makes.

docs/reliability.md records the full run: 10,000 requests per load run and 30,000 for memory.
This one keeps CI to a few minutes. It sends 2,000 requests per load run at 64 connections with
1 % of upstream calls failing and 5,000 mixed requests for memory, then sends SIGTERM while 64
requests wait on a slow upstream.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.processes import isolated_environment

REPO_ROOT = Path(__file__).resolve().parents[1]
SOAK_ARGS = ["--requests", "2000", "--connections", "64", "--fail-ratio", "0.01", "--memory-requests", "5000"]

pytestmark = [
    pytest.mark.slow,
    # The module's fixture runs the whole soak, about 4 minutes, inside the first test's setup.
    pytest.mark.timeout(1200),
    pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not on PATH (Debian package wrk)"),
]


@pytest.fixture(scope="module")
def soak() -> dict:
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "soak"), *SOAK_ARGS, "--json"],
        cwd=REPO_ROOT,
        env=isolated_environment({}),
        capture_output=True,
        text=True,
        timeout=1200,
    )
    lines = result.stdout.strip().splitlines()
    assert lines and lines[-1].startswith("{"), f"soak printed no summary:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    summary = json.loads(lines[-1])
    summary["report"] = "\n".join(lines[:-1])
    return summary


def test_faults_absorbed_by_fallbacks(soak):
    faulty = soak["faulty"]
    assert faulty["requests"] >= 2000, soak["report"]
    errors = faulty["non_2xx"] + faulty["read_errors"] + faulty["connect_errors"] + faulty["timeouts"]
    assert errors == 0, soak["report"]


def test_healthy_load_has_no_errors(soak):
    healthy = soak["healthy"]
    errors = healthy["non_2xx"] + healthy["read_errors"] + healthy["connect_errors"] + healthy["timeouts"]
    assert errors == 0, soak["report"]


def test_memory_levels_off(soak):
    assert soak["memory"]["growth_per_10k_mib"] <= 20.0, soak["report"]


def test_memory_rounds_have_no_errors(soak):
    assert soak["memory"]["errors"] == 0, soak["report"]


def test_sigterm_serves_requests_in_flight(soak):
    redeploy = soak["redeploy"]
    assert redeploy["finished_after_signal"] > 0, soak["report"]


def test_sigterm_drops_no_request_it_read(soak):
    sent_before = soak["redeploy"]["dropped_sent_ms_before_signal"]
    assert all(ms < 500 for ms in sent_before), soak["report"]


def test_sigterm_sends_no_error_response(soak):
    assert soak["redeploy"]["error_responses"] == 0, soak["report"]


def test_sigterm_exit_is_prompt(soak):
    assert soak["redeploy"]["exit_seconds"] <= 40, soak["report"]


def test_soak_logs_show_no_key(soak):
    assert soak["leaks"] == [], soak["report"]
