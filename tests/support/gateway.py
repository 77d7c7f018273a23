"""Helpers for talking to the gateway the way an app does."""

from __future__ import annotations

import uuid
from typing import Any, Union

import httpx

# Each alias's chain in order: a deployment as (provider, upstream model id), or the name
# of another alias, whose own chain the router then walks. This table is the routing
# specification the tests check the running proxy against.
Entry = Union[tuple[str, str], str]

CHAINS: dict[str, list[Entry]] = {
    "gemini-3-pro": [
        ("vercel", "google/gemini-3-pro-preview"),
        ("openrouter", "google/gemini-3-pro-preview"),
        "gpt-4o",
    ],
    "gpt-4o": [("vercel", "openai/gpt-4o"), ("openrouter", "openai/gpt-4o")],
    "claude-4-sonnet": [("vercel", "anthropic/claude-sonnet-4"), ("openrouter", "anthropic/claude-sonnet-4")],
    "fast-model": [
        ("vercel", "google/gemini-2.5-flash"),
        "gpt-4o-mini",
        ("openrouter", "google/gemini-2.5-flash"),
    ],
    "gpt-4o-mini": [("vercel", "openai/gpt-4o-mini"), ("openrouter", "openai/gpt-4o-mini")],
    "gemini-2.5-flash": [("vercel", "google/gemini-2.5-flash"), ("openrouter", "google/gemini-2.5-flash")],
    "reasoning-model": [
        ("vercel", "xai/grok-4-fast-reasoning"),
        ("openrouter", "x-ai/grok-4-fast"),
        ("vercel", "openai/o1-mini"),
    ],
}


def deployments(entry: Entry) -> list[tuple[str, str]]:
    """Return the deployments an entry stands for, in the order the router tries them."""
    if isinstance(entry, tuple):
        return [entry]
    return [deployment for sub_entry in CHAINS[entry] for deployment in deployments(sub_entry)]


def walk(alias: str) -> list[tuple[str, str]]:
    """Return every deployment the router tries for `alias`, in order."""
    return deployments(alias)


TIERS = {
    "high-capability": ["gemini-3-pro", "gpt-4o", "claude-4-sonnet"],
    "fast": ["fast-model", "gpt-4o-mini", "gemini-2.5-flash"],
    "reasoning": ["reasoning-model"],
}


def unique_prompt(label: str = "test") -> str:
    """Return a prompt no other request uses, so the response cache never answers it."""
    return f"{label} {uuid.uuid4().hex}"


def chat(client: httpx.Client, model: str, prompt: str | None = None, **extra: Any) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": prompt or unique_prompt(model)}], **extra}
    return client.post("/v1/chat/completions", json=body)


def answer_text(response: httpx.Response) -> str:
    return response.json()["choices"][0]["message"]["content"]
