"""Read the gateway's own files the way scripts/smoke and scripts/validate_config need them.

imqa_config.yaml gives the aliases and routes, README.md documents them in tables under
"### Tier N: ...", "### Embeddings", "### Fallback entries" and "### Wildcard routes", and
.env.imqa documents every variable as NAME=placeholder, or "# NAME=..." when it is optional.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG_PATH = REPO_ROOT / "imqa_config.yaml"
README_PATH = REPO_ROOT / "README.md"
ENV_TEMPLATE_PATH = REPO_ROOT / ".env.imqa"
RAILWAY_PATH = REPO_ROOT / "railway.json"

TIER_HEADING = re.compile(r"^Tier \d+\b")
EMBEDDINGS_HEADING = "Embeddings"
FALLBACK_ENTRIES_HEADING = "Fallback entries"
WILDCARD_HEADING = "Wildcard routes"
RAILWAY_HEADING = "Deploying on Railway"

_HEADING = re.compile(r"^(#{2,3}) +(.+?)\s*$")
_CODE_SPAN = re.compile(r"`([^`]+)`")
_ENV_LINE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$")
# An optional variable is documented as a commented-out assignment: "# OPENROUTER_RPM=<...>".
_COMMENTED_ENV_LINE = re.compile(r"^#\s?([A-Z][A-Z0-9_]*)=(.*)$")


class FileError(Exception):
    """A file the scripts read is missing or does not have the expected shape."""


@dataclasses.dataclass(frozen=True)
class AliasRow:
    """One row of a README alias table: the alias and the aliases its chain names, in order.

    chain is None when the table has no chain column (### Fallback entries).
    """

    alias: str
    chain: tuple[str, ...] | None


@dataclasses.dataclass(frozen=True)
class EnvEntry:
    """One NAME=value line of .env.imqa, with its 1-based line number.

    commented is True for "# NAME=value", an optional variable that is left unset by default.
    """

    name: str
    value: str
    line: int
    commented: bool = False


# --- imqa_config.yaml ----------------------------------------------------------------------
def load_config(path: Path) -> dict[str, Any]:
    try:
        config = yaml.safe_load(path.read_text())
    except OSError as error:
        raise FileError(f"cannot read the config {path}: {error.strerror}") from error
    except yaml.YAMLError as error:
        raise FileError(f"{path} is not valid YAML: {error}") from error
    if not isinstance(config, dict):
        raise FileError(f"{path} must be a YAML mapping with a model_list")
    return config


def model_names(config: dict[str, Any]) -> list[str]:
    """Return every model_name of model_list, in order and without repeats."""
    names: list[str] = []
    for entry in config.get("model_list") or []:
        name = entry.get("model_name") if isinstance(entry, dict) else None
        if isinstance(name, str) and name not in names:
            names.append(name)
    return names


def config_aliases(config: dict[str, Any]) -> list[str]:
    """Return the model groups apps call by name: every model_name without a wildcard."""
    return [name for name in model_names(config) if "*" not in name]


def config_wildcards(config: dict[str, Any]) -> list[str]:
    return [name for name in model_names(config) if "*" in name]


# --- README.md -----------------------------------------------------------------------------
def readme_sections(text: str) -> dict[str, str]:
    """Split a README into {heading text: body} for its level-2 and level-3 headings."""
    sections: dict[str, str] = {}
    heading: str | None = None
    body: list[str] = []
    in_code = False
    for line in text.splitlines():
        if line.startswith("```"):
            in_code = not in_code
        match = None if in_code else _HEADING.match(line)
        if match:
            if heading is not None:
                sections[heading] = "\n".join(body)
            heading, body = match.group(2), []
        elif heading is not None:
            body.append(line)
    if heading is not None:
        sections[heading] = "\n".join(body)
    return sections


def _table_rows(body: str) -> list[list[str]]:
    """Return the cells of each data row of the first Markdown table in `body`."""
    rows: list[list[str]] = []
    for line in body.splitlines():
        stripped = line.strip()
        if not stripped.startswith("|"):
            if rows:
                break
            continue
        cells = [cell.strip() for cell in stripped.strip("|").split("|")]
        if all(set(cell) <= set("-: ") for cell in cells):
            continue
        rows.append(cells)
    return rows[1:]  # the first row is the header


def _alias_rows(body: str) -> list[AliasRow]:
    rows = []
    for cells in _table_rows(body):
        names = _CODE_SPAN.findall(cells[0])
        if not names:
            continue
        chain = tuple(_CODE_SPAN.findall(cells[-1])) if len(cells) > 2 else None
        rows.append(AliasRow(names[0], chain))
    return rows


def readme_tiers(text: str) -> dict[str, list[AliasRow]]:
    """Return the alias tables under the "### Tier N: ..." headings, keyed by heading."""
    return {
        heading: _alias_rows(body) for heading, body in readme_sections(text).items() if TIER_HEADING.match(heading)
    }


def readme_alias_tables(text: str) -> dict[str, list[AliasRow]]:
    """Return every alias table (Tier N, Embeddings, Fallback entries) in README order, keyed by heading."""
    return {
        heading: _alias_rows(body)
        for heading, body in readme_sections(text).items()
        if TIER_HEADING.match(heading) or heading in (EMBEDDINGS_HEADING, FALLBACK_ENTRIES_HEADING)
    }


def readme_aliases(text: str) -> list[str]:
    return [row.alias for rows in readme_alias_tables(text).values() for row in rows]


def readme_wildcards(text: str) -> list[str]:
    """Return the wildcard routes of the "### Wildcard routes" table as model_name patterns.

    The README writes a route as `google/<model>` or `replicate/<owner>/<model>`; the config's
    model_name for both is the prefix before the first placeholder plus "*".
    """
    body = readme_sections(text).get(WILDCARD_HEADING)
    if body is None:
        return []
    patterns: list[str] = []
    for cells in _table_rows(body):
        for route in _CODE_SPAN.findall(cells[0]):
            pattern = route.split("<", 1)[0] + "*" if "<" in route else route
            if pattern not in patterns:
                patterns.append(pattern)
    return patterns


def readme_railway_command(text: str) -> str | None:
    """Return the first command in a fenced code block of the "## Deploying on Railway" section."""
    body = readme_sections(text).get(RAILWAY_HEADING)
    if body is None:
        return None
    block: list[str] | None = None
    for line in body.splitlines():
        if line.startswith("```"):
            if block is not None:
                break
            block = []
        elif block is not None and line.strip():
            block.append(line.strip())
    return block[0] if block else None


# --- .env.imqa -----------------------------------------------------------------------------
def read_env_template(path: Path) -> list[EnvEntry]:
    try:
        lines = path.read_text().splitlines()
    except OSError as error:
        raise FileError(f"cannot read the variable template {path}: {error.strerror}") from error
    entries = []
    for number, line in enumerate(lines, start=1):
        match = _ENV_LINE.match(line.strip())
        commented = _COMMENTED_ENV_LINE.match(line.strip())
        if match:
            entries.append(EnvEntry(match.group(1), match.group(2), number))
        elif commented:
            entries.append(EnvEntry(commented.group(1), commented.group(2), number, commented=True))
    return entries


def read_text(path: Path, description: str) -> str:
    try:
        return path.read_text()
    except OSError as error:
        raise FileError(f"cannot read {description} {path}: {error.strerror}") from error
