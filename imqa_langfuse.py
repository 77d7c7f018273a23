"""Langfuse tracing that LiteLLM loads through litellm_settings.callbacks, on only when configured.

The config is static, but Langfuse is optional. LiteLLM's own langfuse_otel callback raises
when LANGFUSE_PUBLIC_KEY or LANGFUSE_SECRET_KEY is missing, so `tracer` below is
LiteLLM's LangfuseOtelLogger when both are set and a callback that does nothing otherwise.
Traces go to LANGFUSE_HOST (default: Langfuse's US cloud) as OpenTelemetry spans over
OTLP/HTTP, which needs opentelemetry-sdk and opentelemetry-exporter-otlp-proto-http.
"""

from __future__ import annotations

import os

from litellm.integrations.custom_logger import CustomLogger


def langfuse_configured() -> bool:
    return bool(os.environ.get("LANGFUSE_PUBLIC_KEY")) and bool(os.environ.get("LANGFUSE_SECRET_KEY"))


def build_tracer() -> CustomLogger:
    """Return LiteLLM's Langfuse logger when both Langfuse keys are set, else a no-op callback."""
    if not langfuse_configured():
        return CustomLogger()
    from litellm.integrations.langfuse.langfuse_otel import LangfuseOtelLogger

    return LangfuseOtelLogger(callback_name="langfuse_otel")


tracer = build_tracer()
