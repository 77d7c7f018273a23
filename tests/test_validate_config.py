"""scripts/validate_config: the repo passes, and each class of broken copy fails with its own message."""

from __future__ import annotations

import dataclasses
import json
import secrets
import shutil
import string
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from tests.support.processes import REPO_ROOT, isolated_environment

VALIDATE = REPO_ROOT / "scripts" / "validate_config"


@dataclasses.dataclass
class RepoCopy:
    """The files the validator reads, copied into a test's tmp_path so a test can break them."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "imqa_config.yaml"

    @property
    def readme(self) -> Path:
        return self.root / "README.md"

    @property
    def env_file(self) -> Path:
        return self.root / ".env.imqa"

    @property
    def railway(self) -> Path:
        return self.root / "railway.json"

    def edit_config(self, change: Callable[[dict[str, Any]], None]) -> None:
        config = yaml.safe_load(self.config.read_text())
        change(config)
        self.config.write_text(yaml.safe_dump(config, sort_keys=False))

    def replace(self, path: Path, old: str, new: str) -> None:
        text = path.read_text()
        assert old in text, f"{old!r} not found in {path.name}; the test needs updating"
        path.write_text(text.replace(old, new, 1))

    def validate(self, *options: str) -> subprocess.CompletedProcess:
        return run_validator(
            "--config", str(self.config),
            "--readme", str(self.readme),
            "--env-file", str(self.env_file),
            "--railway", str(self.railway),
            *options,
        )  # fmt: skip


def run_validator(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(VALIDATE), *args],
        env=isolated_environment({}),
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture
def repo_copy(tmp_path: Path) -> RepoCopy:
    for name in ["imqa_config.yaml", "README.md", ".env.imqa", "railway.json"]:
        shutil.copy(REPO_ROOT / name, tmp_path / name)
    # The config loads its custom_auth and callback modules from its own folder.
    for module in REPO_ROOT.glob("*.py"):
        shutil.copy(module, tmp_path / module.name)
    return RepoCopy(tmp_path)


def router_fallbacks(config: dict[str, Any], key: str = "fallbacks") -> list[dict[str, list[str]]]:
    return config["router_settings"][key]


def random_tail(length: int) -> str:
    return "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(length))


# --- the real repo -------------------------------------------------------------------------
def test_validate_config_repo_passes():
    """The repo's own config, README, .env.imqa and railway.json pass every check, LiteLLM's included."""
    result = run_validator()

    assert result.returncode == 0, result.stdout + result.stderr
    assert "passed every check against LiteLLM 1.108.7" in result.stdout, result.stdout


def test_validate_config_unmodified_copy_passes(repo_copy):
    """A copy of the repo's files passes the file checks, so each broken copy below fails for its own change."""
    result = repo_copy.validate("--no-litellm")

    assert result.returncode == 0, result.stdout + result.stderr


# --- fallbacks -----------------------------------------------------------------------------
@pytest.mark.parametrize("key", ["fallbacks", "context_window_fallbacks"])
def test_fallback_target_undefined_fails(key, repo_copy):
    """A fallback that names a group no model_list entry defines is reported with its list and group."""
    repo_copy.edit_config(lambda config: router_fallbacks(config, key).append({"gpt-4o": ["gpt-5-openrouter"]}))

    result = repo_copy.validate("--no-litellm")

    assert result.returncode == 1, result.stdout + result.stderr
    expected = f"router_settings.{key}: fallback target 'gpt-5-openrouter' of 'gpt-4o' is not a model_name"
    assert expected in result.stdout, result.stdout


def test_fallback_source_undefined_fails(repo_copy):
    """Fallbacks for a group that does not exist (a misspelled alias) are reported."""
    repo_copy.edit_config(lambda config: router_fallbacks(config).append({"gpt4o": ["gpt-4o-openrouter"]}))

    result = repo_copy.validate("--no-litellm")

    assert result.returncode == 1, result.stdout + result.stderr
    expected = "router_settings.fallbacks: 'gpt4o' has fallbacks but is not a model_name in model_list"
    assert expected in result.stdout, result.stdout


def test_fallback_cycle_fails(repo_copy):
    """Two groups that fall back to each other are reported as a cycle."""
    repo_copy.edit_config(lambda config: router_fallbacks(config).append({"gpt-4o-openrouter": ["gpt-4o"]}))

    result = repo_copy.validate("--no-litellm")

    assert result.returncode == 1, result.stdout + result.stderr
    expected = "router_settings.fallbacks has a cycle: gpt-4o -> gpt-4o-openrouter -> gpt-4o"
    assert expected in result.stdout, result.stdout


# --- README tables -------------------------------------------------------------------------
def test_readme_alias_missing_from_config_fails(repo_copy):
    """An alias in a README tier table that the config does not define is reported."""
    repo_copy.replace(
        repo_copy.readme,
        "| `claude-4-sonnet` |",
        "| `gpt-5` | `openai/gpt-5` | `gpt-4o` |\n| `claude-4-sonnet` |",
    )

    result = repo_copy.validate("--no-litellm")

    assert result.returncode == 1, result.stdout + result.stderr
    expected = "README.md lists alias 'gpt-5', but model_list has no model_name 'gpt-5'"
    assert expected in result.stdout, result.stdout


def test_config_alias_missing_from_readme_fails(repo_copy):
    """An alias in model_list that no README alias table lists is reported."""
    entry = {
        "model_name": "gpt-4.1",
        "litellm_params": {
            "model": "vercel_ai_gateway/openai/gpt-4.1",
            "api_key": "os.environ/VERCEL_AI_GATEWAY_API_KEY",
        },
    }
    repo_copy.edit_config(lambda config: config["model_list"].insert(0, entry))

    result = repo_copy.validate("--no-litellm")

    assert result.returncode == 1, result.stdout + result.stderr
    assert "model_list defines alias 'gpt-4.1', but README.md's alias tables" in result.stdout, result.stdout


def test_wildcard_route_missing_from_readme_fails(repo_copy):
    """A wildcard route in model_list that the README's wildcard table does not list is reported."""
    repo_copy.replace(repo_copy.readme, "| `replicate/<owner>/<model>` | Replicate | `<owner>/<model>` |\n", "")

    result = repo_copy.validate("--no-litellm")

    assert result.returncode == 1, result.stdout + result.stderr
    expected = "model_list defines wildcard route 'replicate/*', but README.md's '### Wildcard routes'"
    assert expected in result.stdout, result.stdout


def test_readme_chain_differs_fails(repo_copy):
    """A README chain in another order than router_settings.fallbacks is reported with both orders."""
    repo_copy.replace(
        repo_copy.readme,
        "`gemini-3-pro-openrouter` → `gpt-4o`",
        "`gpt-4o` → `gemini-3-pro-openrouter`",
    )

    result = repo_copy.validate("--no-litellm")

    assert result.returncode == 1, result.stdout + result.stderr
    expected = (
        "gives the chain of 'gemini-3-pro' as gpt-4o -> gemini-3-pro-openrouter, "
        "but router_settings.fallbacks has gemini-3-pro-openrouter -> gpt-4o"
    )
    assert expected in result.stdout, result.stdout


# --- variables -----------------------------------------------------------------------------
def test_env_reference_undocumented_fails(repo_copy):
    """An os.environ/NAME in the config that .env.imqa does not document is reported."""

    def rename_key(config: dict[str, Any]) -> None:
        config["model_list"][0]["litellm_params"]["api_key"] = "os.environ/VERCEL_AI_GATEWAY_TOKEN"

    repo_copy.edit_config(rename_key)

    result = repo_copy.validate("--no-litellm")

    assert result.returncode == 1, result.stdout + result.stderr
    expected = "the config reads os.environ/VERCEL_AI_GATEWAY_TOKEN, but .env.imqa does not document it"
    assert expected in result.stdout, result.stdout


def test_env_variable_unused_fails(repo_copy):
    """A variable documented in .env.imqa that neither the config, LiteLLM nor scripts/run reads is reported."""
    with repo_copy.env_file.open("a") as env_file:
        env_file.write("# Left over from an old provider.\nIMQA_OLD_PROVIDER_KEY=replace-with-old-key\n")

    result = repo_copy.validate("--no-litellm")

    assert result.returncode == 1, result.stdout + result.stderr
    assert "documents IMQA_OLD_PROVIDER_KEY, but nothing reads it" in result.stdout, result.stdout


def test_env_variable_set_twice_fails(repo_copy):
    """A variable assigned twice in .env.imqa is reported, because sourcing the file keeps only the last value."""
    with repo_copy.env_file.open("a") as env_file:
        env_file.write("IMQA_CACHE_TYPE=local\n")

    result = repo_copy.validate("--no-litellm")

    assert result.returncode == 1, result.stdout + result.stderr
    assert ".env.imqa sets IMQA_CACHE_TYPE more than once" in result.stdout, result.stdout


def test_env_commented_variable_counts_as_documented(repo_copy):
    """An optional variable documented as a commented-out '# NAME=...' line is not reported as undocumented."""
    repo_copy.edit_config(
        lambda config: config["model_list"][0]["litellm_params"].update(rpm="os.environ/IMQA_TEST_ONLY_RPM")
    )
    with repo_copy.env_file.open("a") as env_file:
        env_file.write("# Optional request quota.\n# IMQA_TEST_ONLY_RPM=<requests per minute>\n")

    result = repo_copy.validate("--no-litellm")

    assert "IMQA_TEST_ONLY_RPM" not in result.stdout, result.stdout


def test_env_secret_in_comment_fails(repo_copy):
    """A real-looking key in a commented-out line is reported too: a comment is committed all the same."""
    secret = "sk-or-v1-" + secrets.token_hex(32)
    with repo_copy.env_file.open("a") as env_file:
        env_file.write(f"# OPENROUTER_API_KEY={secret}\n")
    line_number = len(repo_copy.env_file.read_text().splitlines())

    result = repo_copy.validate("--no-litellm")

    assert result.returncode == 1, result.stdout + result.stderr
    expected = f".env.imqa:{line_number}: the value of OPENROUTER_API_KEY looks like a real secret"
    assert expected in result.stdout, result.stdout
    assert secret not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("OPENROUTER_API_KEY", lambda: "sk-or-v1-" + secrets.token_hex(32)),
        ("REPLICATE_API_KEY", lambda: "r8_" + random_tail(37)),
        ("VERCEL_AI_GATEWAY_API_KEY", lambda: "vck_" + random_tail(40)),
        ("LITELLM_MASTER_KEY", lambda: "sk-" + secrets.token_hex(32)),
        ("REDIS_URL", lambda: f"redis://default:{random_tail(32)}@redis.railway.internal:6379"),
    ],
)
def test_env_real_secret_fails(name, value, repo_copy):
    """A value in .env.imqa that looks like a real key is reported by variable and line, without the value."""
    secret = value()
    lines = repo_copy.env_file.read_text().splitlines()
    line_number = next(i for i, line in enumerate(lines, start=1) if line.startswith(f"{name}="))
    lines[line_number - 1] = f"{name}={secret}"
    repo_copy.env_file.write_text("\n".join(lines) + "\n")

    result = repo_copy.validate("--no-litellm")

    assert result.returncode == 1, result.stdout + result.stderr
    assert f".env.imqa:{line_number}: the value of {name} looks like a real secret" in result.stdout, result.stdout
    assert secret not in result.stdout + result.stderr


# --- settings keys and LiteLLM's own check ---------------------------------------------------
def test_unknown_settings_keys_fail(repo_copy):
    """Misspelled keys at the top level and in each settings section are each reported."""

    def misspell(config: dict[str, Any]) -> None:
        config["router_settings"]["num_retry"] = 1
        config["litellm_settings"]["drop_param"] = True
        config["general_settings"]["master_keys"] = "os.environ/LITELLM_MASTER_KEY"
        config["router_setting"] = {"cooldown_time": 30}

    repo_copy.edit_config(misspell)

    result = repo_copy.validate()

    assert result.returncode == 1, result.stdout + result.stderr
    for key, where, suggestion in [
        ("router_setting", "at the top level", "router_settings"),
        ("num_retry", "in router_settings", "num_retries"),
        ("drop_param", "in litellm_settings", "drop_params"),
        ("master_keys", "in general_settings", "master_key"),
    ]:
        expected = f"unknown key '{key}' {where}: LiteLLM 1.108.7 does not accept it"
        assert expected in result.stdout, result.stdout
        assert f"did you mean '{suggestion}'?" in result.stdout, result.stdout


def test_litellm_validate_config_failure_reported(repo_copy):
    """A config that LiteLLM itself cannot load (a custom_auth hook that does not exist) is reported."""
    repo_copy.edit_config(lambda config: config["general_settings"].update(custom_auth="imqa_auth.missing_hook"))

    result = repo_copy.validate()

    assert result.returncode == 1, result.stdout + result.stderr
    expected = (
        "litellm --validate_config failed (exit 1): "
        "LiteLLM: config validation failed: module 'imqa_auth' has no attribute 'missing_hook'"
    )
    assert expected in result.stdout, result.stdout


# --- railway.json --------------------------------------------------------------------------
def test_railway_start_command_differs_fails(repo_copy):
    """A start command in railway.json that differs from the README's is reported with both."""
    railway = json.loads(repo_copy.railway.read_text())
    railway["deploy"]["startCommand"] = "litellm --config imqa_config.yaml --port 8080"
    repo_copy.railway.write_text(json.dumps(railway, indent=2))

    result = repo_copy.validate("--no-litellm")

    assert result.returncode == 1, result.stdout + result.stderr
    expected = "railway.json starts the service with 'litellm --config imqa_config.yaml --port 8080'"
    assert expected in result.stdout, result.stdout


def test_missing_file_is_usage_error(repo_copy):
    """A path that does not exist exits 2 and names the file."""
    repo_copy.env_file.unlink()

    result = repo_copy.validate("--no-litellm")

    assert result.returncode == 2, result.stdout + result.stderr
    assert "cannot read the variable template" in result.stderr, result.stderr
