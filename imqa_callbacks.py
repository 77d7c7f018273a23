"""Hooks that LiteLLM loads through litellm_settings.callbacks.

UpstreamFailureLogger: LiteLLM 1.108.7 logs nothing when a deployment fails and a fallback
then answers, so an expired provider key or an outage behind a working fallback would go
unseen. It writes one ERROR line per failed upstream call, naming the provider, model
group, deployment and status, with every configured secret removed from the message.

RequestValidator: LiteLLM answers an unknown or missing model with "There are no healthy
deployments for this model", which reads like an outage. It rejects such requests first
with a 400 that names the model and what to send instead.
"""

from __future__ import annotations

import logging
import os
import re
import sys

from litellm.integrations.custom_logger import CustomLogger
from litellm.proxy._types import ProxyException

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
