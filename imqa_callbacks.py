"""Hooks that LiteLLM loads through litellm_settings.callbacks.

UpstreamFailureLogger: LiteLLM 1.108.7 logs nothing when a deployment fails and a fallback
then answers, so an expired provider key or an outage behind a working fallback would go
unseen. It writes one ERROR line per failed upstream call, naming the provider, model
group, deployment and status, with every configured secret removed from the message.

RequestValidator: LiteLLM answers an unknown or missing model with "There are no healthy
deployments for this model", which reads like an outage. It rejects such requests first
with a 400 that names the model and what to send instead.

EmptyStreamGuard: when a provider answers a streaming request with a 200 and no events,
LiteLLM 1.108.7 makes up a final chunk with finish_reason "stop" and the client gets an
empty answer that looks complete. The guard turns such a stream into a 502 JSON error.
"""

from __future__ import annotations

import logging
import os
import re
import sys

import litellm
from litellm.integrations.custom_logger import CustomLogger
from litellm.proxy._types import ProxyException
from litellm.types.utils import ModelResponseStream

logger = logging.getLogger("imqa.gateway")
if not logger.handlers:
    _handler = logging.StreamHandler(sys.stderr)
    _handler.setFormatter(logging.Formatter("%(asctime)s - IMQA Gateway:%(levelname)s - %(message)s", "%H:%M:%S"))
    logger.addHandler(_handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False

# Variable names whose values must never appear in a log line.
_SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|DATABASE_URL|REDIS_URL)$")
# Key-like words a provider might echo back (OpenAI echoes a masked key on a 401).
_KEY_LIKE = re.compile(r"\b(sk|rk|pk|r8|vck)[-_][A-Za-z0-9_\-*]{6,}")
_MAX_MESSAGE_LENGTH = 300


def redact(text: str) -> str:
    """Remove the values of secret environment variables and key-like words from `text`."""
    for name, value in os.environ.items():
        if value and len(value) >= 6 and _SECRET_NAME.search(name):
            text = text.replace(value, "[redacted]")
    return _KEY_LIKE.sub("[redacted]", text)


class UpstreamFailureLogger(CustomLogger):
    """Log each failed upstream call, including those a fallback recovered from."""

    async def async_log_failure_event(self, kwargs, response_obj, start_time, end_time) -> None:
        payload = kwargs.get("standard_logging_object") or {}
        error = payload.get("error_information") or {}
        message = " ".join(str(payload.get("error_str") or error.get("error_message") or "").split())
        logger.error(
            "upstream call failed: provider=%s model_group=%s deployment=%s status=%s error=%s: %s",
            payload.get("custom_llm_provider") or error.get("llm_provider"),
            payload.get("model_group"),
            payload.get("model_id"),
            error.get("error_code"),
            error.get("error_class"),
            redact(message)[:_MAX_MESSAGE_LENGTH],
        )


upstream_failure_logger = UpstreamFailureLogger()

# Call types whose body names a model that the router must know.
_ROUTED_CALL_TYPES = frozenset(
    {"completion", "acompletion", "text_completion", "atext_completion", "embeddings", "aembedding"}
)


def _bad_request(message: str, param: str) -> ProxyException:
    return ProxyException(message=message, type="invalid_request_error", param=param, code=400)


def _is_routable(model: str) -> bool:
    from litellm.proxy.proxy_server import llm_router

    if llm_router is None:
        return True
    if model in llm_router.get_model_names() or model in (llm_router.model_group_alias or {}):
        return True
    return bool(llm_router.pattern_router.route(model))


class RequestValidator(CustomLogger):
    """Reject a request whose model is missing or not served, before it reaches the router."""

    async def async_pre_call_hook(self, user_api_key_dict, cache, data, call_type):
        if call_type not in _ROUTED_CALL_TYPES:
            return data
        model = data.get("model")
        if not isinstance(model, str) or not model.strip():
            raise _bad_request(
                "Missing 'model'. Send an alias such as gemini-3-pro or fast-model; GET /v1/models lists them.",
                "model",
            )
        if not _is_routable(model):
            raise _bad_request(
                f"Unknown model '{model}'. Use an alias listed by GET /v1/models (for example gemini-3-pro, "
                "fast-model, reasoning-model) or a provider route: google/, openai/, anthropic/, xai/, "
                "openrouter/ or replicate/ followed by the provider's model id.",
                "model",
            )
        return data


request_validator = RequestValidator()


# Chunks without message data that the guard holds back while it waits for the first chunk
# with data. Past this many it lets the stream through unchecked, so it never buffers much.
_MAX_HELD_CHUNKS = 16


def _carries_message_data(chunk: object) -> bool:
    """Tell whether a stream chunk carries a role, content, reasoning or a tool call.

    A chunk of another type than a chat-completion chunk counts as data, so the guard
    never holds back streams of other endpoints.
    """
    if not isinstance(chunk, ModelResponseStream):
        return True
    for choice in chunk.choices:
        delta = getattr(choice, "delta", None)
        if delta is not None and delta.model_dump(exclude_none=True):
            return True
    return False


class EmptyStreamGuard(CustomLogger):
    """Raise a 502 for a chat stream that ended without message data, instead of an empty answer.

    Chunks without data (the made-up final chunk, a usage chunk) are held back until a chunk
    with data arrives, so the client of a normal stream receives every chunk in order. For an
    empty stream the error is the first event, and LiteLLM 1.108.7's proxy answers a stream
    whose first event is an error with a JSON error and that status, not a 200
    (create_response in litellm/proxy/common_request_processing.py).
    """

    async def async_post_call_streaming_iterator_hook(self, user_api_key_dict, response, request_data):
        # Chunks held back so far; None once a chunk with data has let the stream through.
        pending_chunks: list[object] | None = []
        async for chunk in response:
            if pending_chunks is None:
                yield chunk
            elif _carries_message_data(chunk) or len(pending_chunks) >= _MAX_HELD_CHUNKS:
                for earlier in pending_chunks:
                    yield earlier
                pending_chunks = None
                yield chunk
            else:
                pending_chunks.append(chunk)
        if pending_chunks is None:
            return

        hidden = getattr(response, "_hidden_params", None) or {}
        model_group = request_data.get("model")
        logger.error(
            "upstream stream ended without data: model_group=%s deployment=%s chunks_without_data=%d",
            model_group,
            hidden.get("model_id"),
            len(pending_chunks),
        )
        raise litellm.BadGatewayError(
            message="The provider ended the stream without sending any data. Retry the request.",
            llm_provider=hidden.get("custom_llm_provider") or "",
            model=str(model_group),
        )


empty_stream_guard = EmptyStreamGuard()
