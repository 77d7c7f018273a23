"""Hooks that LiteLLM loads through litellm_settings.callbacks.

UpstreamFailureLogger: LiteLLM 1.108.7 logs nothing when a deployment fails and a fallback
then answers, so an expired provider key or an outage behind a working fallback would go
unseen. It writes one ERROR line per failed upstream call, naming the provider, model
group, deployment and status, with every configured secret removed from the message.
It also removes secrets from the error a client receives when a provider's error message
repeats the key it was sent.

RequestValidator: LiteLLM answers an unknown or missing model with "There are no healthy
deployments for this model", which reads like an outage, and passes a chat body with wrong
field types on to the provider. It rejects such requests first with a 400 that names the
model or field and what to send instead.

Importing this module also adds SecretRedactingFilter to every log handler, because
LiteLLM's own redaction knows only some key formats (sk-..., Bearer ...) and logs a Vercel
or Replicate key that a provider's error message repeats.

EmptyStreamGuard: when a provider answers a streaming request with a 200 and no events,
LiteLLM 1.108.7 makes up a final chunk with finish_reason "stop" and the client gets an
empty answer that looks complete. The guard turns such a stream into a 502 JSON error.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from pathlib import Path

import litellm
from fastapi import HTTPException
from litellm._logging import redact_internal_details_from_client_message
from litellm.integrations.custom_logger import CustomLogger
from litellm.proxy._types import ProxyException
from litellm.types.utils import ModelResponseStream

# LiteLLM loads this module from the config's folder by file path, without putting that folder
# on sys.path, so the sibling module is found only when the proxy starts in the repo root.
if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.append(str(Path(__file__).resolve().parent))

from imqa_chat_schema import ChatBodyError, check_chat_body  # noqa: E402

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


def _secret_values_pattern() -> re.Pattern[str] | None:
    values = {value for name, value in os.environ.items() if value and len(value) >= 6 and _SECRET_NAME.search(name)}
    if not values:
        return None
    # Longest first, so a secret that contains another one is removed whole.
    return re.compile("|".join(re.escape(value) for value in sorted(values, key=len, reverse=True)))


# Built once, because the log filter calls redact() several times for every log line. The
# proxy's environment is fixed when it starts, before this module loads with the config.
_SECRET_VALUES = _secret_values_pattern()


def redact(text: str) -> str:
    """Remove the values of secret environment variables and key-like words from `text`."""
    if _SECRET_VALUES is not None:
        text = _SECRET_VALUES.sub("[redacted]", text)
    return _KEY_LIKE.sub("[redacted]", text)


class SecretRedactingFilter(logging.Filter):
    """Log filter that passes every record on with secrets removed from its message and traceback."""

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        # Redact the format string and each string argument first, because some formatters
        # (uvicorn's access log) read record.args themselves.
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(arg) if isinstance(arg, str) else arg for arg in record.args)
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is left for the handler to report
            return True
        # An argument that is not a string (an exception, say) can still format to a secret.
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def install_log_redaction() -> None:
    """Add SecretRedactingFilter to the handlers of every logger that exists now.

    A handler filter receives every record the handler writes, including those that child
    loggers pass up. This module loads with the config, after uvicorn and LiteLLM have set up
    their handlers.
    NOTE: a handler added after the config loads is not covered.
    """
    loggers = [logging.getLogger()] + [
        candidate for candidate in logging.Logger.manager.loggerDict.values() if isinstance(candidate, logging.Logger)
    ]
    handlers = {handler for each in loggers for handler in each.handlers}
    if logging.lastResort is not None:
        handlers.add(logging.lastResort)
    for handler in handlers:
        if not any(isinstance(existing, SecretRedactingFilter) for existing in handler.filters):
            handler.addFilter(SecretRedactingFilter())


install_log_redaction()


def _status_code(exception: Exception) -> int:
    for attribute in ("status_code", "code"):
        try:
            status = int(getattr(exception, attribute, None))
        except (TypeError, ValueError):
            continue
        if 400 <= status <= 599:
            return status
    return 500


class RedactedError(HTTPException):
    """The error a client receives in place of one whose message contained a secret."""

    def __init__(self, status_code: int, message: str, error_type: str | None, param: str | None) -> None:
        super().__init__(status_code=status_code, detail=message)
        # LiteLLM copies type and param into the JSON error body.
        self.type = error_type
        self.param = param


class UpstreamFailureLogger(CustomLogger):
    """Log each failed upstream call, including those a fallback recovered from."""

    async def async_log_failure_event(self, kwargs, response_obj, start_time, end_time) -> None:
        payload = kwargs.get("standard_logging_object") or {}
        error = payload.get("error_information") or {}
        # The proxy raises ProxyException itself, before any provider call: a wrong key, a bad
        # body, an unknown model. LiteLLM reports those here too, with the deployment the model
        # would have used, which would read as that provider failing.
        if error.get("error_class") == "ProxyException":
            return
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

    async def async_post_call_failure_hook(
        self, request_data, original_exception, user_api_key_dict, traceback_str=None
    ) -> HTTPException | None:
        """Replace a client's error whose message contains a secret with a redacted copy."""
        message = str(getattr(original_exception, "message", None) or original_exception)
        clean = redact(message)
        if clean == message:
            return None
        error_type = getattr(original_exception, "type", None)
        param = getattr(original_exception, "param", None)
        return RedactedError(
            _status_code(original_exception),
            redact_internal_details_from_client_message(clean),
            error_type if isinstance(error_type, str) else None,
            param if isinstance(param, str) else None,
        )


upstream_failure_logger = UpstreamFailureLogger()

# Call types whose body names a model that the router must know.
_ROUTED_CALL_TYPES = frozenset(
    {"completion", "acompletion", "text_completion", "atext_completion", "embeddings", "aembedding"}
)
# Call types of POST /v1/chat/completions, whose body imqa_chat_schema checks.
_CHAT_CALL_TYPES = frozenset({"completion", "acompletion"})


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
    """Reject a request whose model is missing or not served, or whose chat body has a wrong type."""

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
        if call_type in _CHAT_CALL_TYPES:
            try:
                check_chat_body(data)
            except ChatBodyError as error:
                raise _bad_request(error.message, error.param) from None
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
