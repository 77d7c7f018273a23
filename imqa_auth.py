"""Request checks that LiteLLM runs before its own, through general_settings.custom_auth.

Keys: stock LiteLLM 1.108.7 answers a request without a key with a 500 when the prisma
package is missing, and a wrong key with a 400 "No connected db." when no database is
configured. This hook turns both into a 401 that names the problem, and names what is wrong
with an Authorization header that has no Bearer key or more than one value.

Browser origins: the gateway serves server-side apps, so a request that carries an Origin
header gets a 403 unless LITELLM_CORS_ORIGINS lists that origin. LiteLLM reads the same
variable for its CORS headers, but allows every origin when it is unset. This check applies
even then.

Body: LiteLLM has read and parsed the whole body before this hook runs. The hook rejects a
body over MAX_REQUEST_BODY_BYTES with a 413, a form body on a JSON route with a 415, and
with a 400 an empty body on a JSON route and a body that LiteLLM's parser silently replaced
by {} (bytes that are not UTF-8, JSON nested deeper than 1024 levels). LiteLLM would report
a missing model for each of these.

Every request that passes returns None, which hands it to LiteLLM's own checks (master
key, virtual keys in Postgres).
"""

from __future__ import annotations

import hmac
import os

import orjson
from fastapi import Request
from litellm.proxy._types import ProxyException

_BEARER_PREFIX = "bearer "
_BEARER_EXAMPLE = "'Authorization: Bearer <key>'"

# 16 MiB is enough for a prompt that fills a 1M-token context window (about 4 MiB of text, up to
# twice that once JSON escapes non-ASCII text) plus a few inline base64 images. A larger body
# is almost always a mistake, such as a whole file pasted into a prompt. The limit is an
# estimate, not a provider's figure. LiteLLM buffers and parses the body before any hook runs,
# so the limit bounds what the router, the cache and the provider receive, not the memory
# used to read the body.
MAX_REQUEST_BODY_BYTES = 16 * 1024 * 1024

# orjson, LiteLLM's JSON parser, rejects deeper nesting; LiteLLM then falls back to the json
# module, whose RecursionError it swallows.
_MAX_JSON_DEPTH = 1024
_FORM_CONTENT_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
# Routes whose body must be a JSON object: chat, text completions and embeddings.
_JSON_ROUTE_SUFFIXES = ("/chat/completions", "/completions", "/embeddings")
_EXAMPLE_BODY = '{"model": "fast-model", "messages": [{"role": "user", "content": "Hello"}]}'
_MAX_QUOTED_ORIGIN_LENGTH = 200


def _unauthorized(message: str) -> ProxyException:
    return ProxyException(message=message, type="auth_error", param="Authorization", code=401)


def _strip_bearer(api_key: str | None) -> str:
    key = (api_key or "").strip()
    if key.lower().startswith(_BEARER_PREFIX):
        key = key[len(_BEARER_PREFIX) :].strip()
    return key


def _check_authorization_header(request: Request, key: str) -> None:
    """Raise a 401 that names what is wrong with the Authorization header, if anything is."""
    headers = request.headers.getlist("authorization")
    if len(headers) > 1:
        raise _unauthorized(
            f"Invalid Authorization header: the request has {len(headers)} of them. "
            f"Send exactly one, {_BEARER_EXAMPLE}."
        )
    header = headers[0].strip() if headers else ""
    if not key:
        if header and header.lower() != "bearer":
            raise _unauthorized(f"Invalid Authorization header: it has no Bearer key. Send {_BEARER_EXAMPLE}.")
        raise _unauthorized(f"Missing API key. Send the header {_BEARER_EXAMPLE}.")
    if any(character.isspace() or character == "," for character in key):
        raise _unauthorized(
            f"Invalid Authorization header: it contains more than one value. Send exactly one key, {_BEARER_EXAMPLE}."
        )
    if not (key.isascii() and key.isprintable()):
        raise _unauthorized("Invalid API key: it contains characters other than printable ASCII, which no key has.")


def allowed_origins() -> set[str]:
    """Return the browser origins LITELLM_CORS_ORIGINS lists (comma-separated; '*' allows all)."""
    return {origin.strip() for origin in os.environ.get("LITELLM_CORS_ORIGINS", "").split(",") if origin.strip()}


def _check_origin(request: Request) -> None:
    origin = request.headers.get("origin")
    if origin is None:
        return
    allowed = allowed_origins()
    if "*" in allowed or origin in allowed:
        return
    raise ProxyException(
        message=(
            f"Requests from the browser origin '{origin[:_MAX_QUOTED_ORIGIN_LENGTH]}' are not allowed: the "
            "gateway serves server-side apps, which send no Origin header. To allow a web app, an operator "
            "adds its origin to LITELLM_CORS_ORIGINS."
        ),
        type="auth_error",
        param="Origin",
        code=403,
    )


def _bad_body(message: str, code: int = 400) -> ProxyException:
    return ProxyException(message=message, type="invalid_request_error", param="request_body", code=code)


def _too_large(size: int) -> ProxyException:
    return _bad_body(
        f"Request body too large: {size / 2**20:.1f} MiB, over the gateway's limit of "
        f"{MAX_REQUEST_BODY_BYTES // 2**20} MiB ({MAX_REQUEST_BODY_BYTES} bytes). Send a shorter prompt, "
        "or pass large files by URL instead of inline base64.",
        code=413,
    )


async def _check_body(request: Request) -> None:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_REQUEST_BODY_BYTES:
        raise _too_large(int(declared))
    json_route = request.method == "POST" and request.url.path.endswith(_JSON_ROUTE_SUFFIXES)
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type in _FORM_CONTENT_TYPES:
        # curl -d without -H sends JSON as a form, which LiteLLM parses into a useless {"<json>": ""}.
        if json_route:
            raise _bad_body(
                f"Unsupported Content-Type '{content_type}': this route takes a JSON body. "
                "Send it with 'Content-Type: application/json'.",
                code=415,
            )
        # LiteLLM read the form with request.form(), which consumes the body stream.
        return

    body = await request.body()  # the bytes LiteLLM already read
    if len(body) > MAX_REQUEST_BODY_BYTES:
        raise _too_large(len(body))
    if json_route and not body.strip():
        raise _bad_body(f"Empty request body. Send a JSON object such as {_EXAMPLE_BODY}.")
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise _bad_body(
            f"Invalid request body: it is not valid UTF-8 (byte 0x{body[error.start]:02x} at position "
            f"{error.start}). Send JSON encoded as UTF-8."
        ) from None
    # Fewer opening brackets than the limit cannot nest deeper than it, so most bodies skip the parse.
    if body.count(b"[") + body.count(b"{") > _MAX_JSON_DEPTH:
        try:
            orjson.loads(body)
        except orjson.JSONDecodeError as error:
            if "depth limit" in str(error):
                raise _bad_body(
                    f"Invalid request body: JSON nested deeper than {_MAX_JSON_DEPTH} levels. "
                    "Flatten the structure; no chat request needs that depth."
                ) from None


async def user_api_key_auth(request: Request, api_key: str) -> None:
    """Reject a bad key, a disallowed browser origin or a bad body; return None to let LiteLLM go on."""
    key = _strip_bearer(api_key)
    _check_authorization_header(request, key)

    if not os.environ.get("DATABASE_URL"):
        master_key = os.environ.get("LITELLM_MASTER_KEY", "")
        # Constant-time comparison, so response timing reveals nothing about the master key.
        if not (master_key and hmac.compare_digest(key.encode(), master_key.encode())):
            raise _unauthorized(
                "Invalid API key. Use the gateway's master key or a virtual key issued by its operators."
            )

    _check_origin(request)
    await _check_body(request)
    return None
