"""Key checks that LiteLLM runs before its own, through general_settings.custom_auth.

Stock LiteLLM 1.108.7 answers a request without a key with a 500 when the prisma package
is missing, and a wrong key with a 400 "No connected db." when no database is configured.
This hook turns both into a 401 that names the problem. Every other case returns None,
which hands the request to LiteLLM's own checks (master key, virtual keys in Postgres).
"""

from __future__ import annotations

import hmac
import os

from fastapi import Request
from litellm.proxy._types import ProxyException

_BEARER_PREFIX = "bearer "


def _unauthorized(message: str) -> ProxyException:
    return ProxyException(message=message, type="auth_error", param="Authorization", code=401)


def _strip_bearer(api_key: str | None) -> str:
    key = (api_key or "").strip()
    if key.lower().startswith(_BEARER_PREFIX):
        key = key[len(_BEARER_PREFIX) :].strip()
    return key


async def user_api_key_auth(request: Request, api_key: str) -> None:
    """Reject a missing key, and without a database any key but the master key, with a 401."""
    key = _strip_bearer(api_key)
    if not key:
        raise _unauthorized("Missing API key. Send the header 'Authorization: Bearer <key>'.")

    if os.environ.get("DATABASE_URL"):
        return None

    master_key = os.environ.get("LITELLM_MASTER_KEY", "")
    # Constant-time comparison, so response timing reveals nothing about the master key.
    if master_key and hmac.compare_digest(key.encode(), master_key.encode()):
        return None
    raise _unauthorized(
        "Invalid API key. Use the gateway's master key or a virtual key issued by its operators."
    )
