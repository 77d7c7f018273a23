"""Type checks for the body of POST /v1/chat/completions, run before the router.

LiteLLM 1.108.7 passes most fields to the provider unchecked, and what a wrong type then does
depends on the field. LiteLLM's own request translation may crash after trying every entry of
the chain, so the client gets a 500 or a 400 "Invalid request format: 'int' object is not
iterable". Otherwise the provider ignores the field or rejects it. The checks here reject such
a body first, with a 400 that names the field, the expected type and the value sent. They follow the OpenAI Chat Completions API and check only the shape of each field, so a
field that a provider extends (content parts such as images or files) passes unchanged.
`metadata` is not checked: LiteLLM replaces a value that is not an object (or a JSON string
of one) with {} before this check runs.
"""

from __future__ import annotations

import json
from typing import Any, Callable

ROLES = ("system", "developer", "user", "assistant", "tool", "function")
TOOL_CHOICE_MODES = ("none", "auto", "required")
RESPONSE_FORMAT_TYPES = ("text", "json_object", "json_schema")

# A value quoted in an error message is cut to this many characters.
_MAX_QUOTED_LENGTH = 60


class ChatBodyError(ValueError):
    """A chat body field with the wrong type or value; `param` names the field."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


def _describe(value: Any) -> str:
    """Name the JSON type of `value` and quote it, for an error message."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({json.dumps(value)})"
    if isinstance(value, (int, float)):
        return f"a number ({value!r})"
    if isinstance(value, str):
        quoted = json.dumps(value[:_MAX_QUOTED_LENGTH])
        return f"a string ({quoted}{'...' if len(value) > _MAX_QUOTED_LENGTH else ''})"
    if isinstance(value, list):
        return f"an array of {len(value)} items"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _invalid(param: str, expected: str, value: Any) -> ChatBodyError:
    return ChatBodyError(f"Invalid type for '{param}': expected {expected}, got {_describe(value)}.", param)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_string_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


# Top-level fields whose type alone decides: (test, the type as named in the error message).
_SIMPLE_FIELDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "temperature": (_is_number, "a number"),
    "top_p": (_is_number, "a number"),
    "presence_penalty": (_is_number, "a number"),
    "frequency_penalty": (_is_number, "a number"),
    "timeout": (_is_number, "a number of seconds"),
    "seed": (_is_integer, "an integer"),
    "stream": (lambda v: isinstance(v, bool), "a boolean"),
    "logprobs": (lambda v: isinstance(v, bool), "a boolean"),
    "parallel_tool_calls": (lambda v: isinstance(v, bool), "a boolean"),
    "store": (lambda v: isinstance(v, bool), "a boolean"),
    "user": (lambda v: isinstance(v, str), "a string"),
    "reasoning_effort": (lambda v: isinstance(v, str), "a string"),
    "stop": (lambda v: isinstance(v, str) or _is_string_list(v), "a string or an array of strings"),
    "modalities": (_is_string_list, "an array of strings"),
    "stream_options": (lambda v: isinstance(v, dict), "an object"),
    "cache": (lambda v: isinstance(v, dict), 'an object such as {"no-cache": true}'),
    "prediction": (lambda v: isinstance(v, dict), "an object"),
    "audio": (lambda v: isinstance(v, dict), "an object"),
    "web_search_options": (lambda v: isinstance(v, dict), "an object"),
}

# Integer fields with a lower bound: (minimum, the value as named in the error message).
_BOUNDED_INTEGERS: dict[str, int] = {
    "max_tokens": 1,
    "max_completion_tokens": 1,
    "n": 1,
    "top_logprobs": 0,
}


def check_chat_body(body: dict[str, Any]) -> None:
    """Raise ChatBodyError for the first field of a chat-completions body with a wrong type.

    The model is not checked here: imqa_callbacks.RequestValidator checks it against the router.
    """
    _check_messages(body.get("messages"))
    for name, (is_valid, expected) in _SIMPLE_FIELDS.items():
        value = body.get(name)
        if value is not None and not is_valid(value):
            raise _invalid(name, expected, value)
    for name, minimum in _BOUNDED_INTEGERS.items():
        value = body.get(name)
        if value is not None and not (_is_integer(value) and value >= minimum):
            raise ChatBodyError(
                f"Invalid value for '{name}': expected an integer of at least {minimum}, got {_describe(value)}.",
                name,
            )
    _check_logit_bias(body.get("logit_bias"))
    _check_tools(body.get("tools"))
    _check_tool_choice(body.get("tool_choice"))
    _check_response_format(body.get("response_format"))


def _check_messages(messages: Any) -> None:
    if messages is None:
        raise ChatBodyError(
            "Missing 'messages'. Send a non-empty array such as [{\"role\": \"user\", \"content\": \"Hello\"}].",
            "messages",
        )
    if not isinstance(messages, list):
        raise _invalid("messages", "an array of message objects", messages)
    if not messages:
        raise ChatBodyError("Invalid value for 'messages': the array is empty; send at least one message.", "messages")
    for index, message in enumerate(messages):
        _check_message(message, f"messages[{index}]")


def _check_message(message: Any, param: str) -> None:
    if not isinstance(message, dict):
        raise _invalid(param, 'an object such as {"role": "user", "content": "Hello"}', message)
    role = message.get("role")
    if role not in ROLES:
        raise ChatBodyError(
            f"Invalid value for '{param}.role': expected one of {', '.join(ROLES)}, got {_describe(role)}.",
            f"{param}.role",
        )
    # Only an assistant message may leave content out, when it carries tool_calls instead.
    content = message.get("content")
    if content is None and role != "assistant":
        raise ChatBodyError(
            f"Missing '{param}.content': a {role} message needs content, a string or an array of content parts.",
            f"{param}.content",
        )
    if content is not None:
        _check_content(content, f"{param}.content")
    for name in ("name", "tool_call_id"):
        value = message.get(name)
        if value is not None and not isinstance(value, str):
            raise _invalid(f"{param}.{name}", "a string", value)
    tool_calls = message.get("tool_calls")
    if tool_calls is not None and not (isinstance(tool_calls, list) and all(isinstance(c, dict) for c in tool_calls)):
        raise _invalid(f"{param}.tool_calls", "an array of objects", tool_calls)


def _check_content(content: Any, param: str) -> None:
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        raise _invalid(param, "a string or an array of content parts", content)
    for index, part in enumerate(content):
        part_param = f"{param}[{index}]"
        if not isinstance(part, dict) or not isinstance(part.get("type"), str):
            raise _invalid(part_param, 'an object with a "type", such as {"type": "text", "text": "Hello"}', part)
        if part["type"] == "text" and not isinstance(part.get("text"), str):
            raise _invalid(f"{part_param}.text", "a string", part.get("text"))


def _check_logit_bias(logit_bias: Any) -> None:
    if logit_bias is None:
        return
    if not isinstance(logit_bias, dict) or not all(_is_number(bias) for bias in logit_bias.values()):
        raise _invalid("logit_bias", "an object that maps token ids to numbers", logit_bias)


def _check_tools(tools: Any) -> None:
    if tools is None:
        return
    if not isinstance(tools, list):
        raise _invalid("tools", "an array of tool objects", tools)
    for index, tool in enumerate(tools):
        param = f"tools[{index}]"
        if not isinstance(tool, dict) or not isinstance(tool.get("type"), str):
            raise _invalid(param, 'an object such as {"type": "function", "function": {"name": "..."}}', tool)
        if tool["type"] != "function":
            continue
        function = tool.get("function")
        if not isinstance(function, dict):
            raise _invalid(f"{param}.function", 'an object with a "name"', function)
        if not isinstance(function.get("name"), str):
            raise _invalid(f"{param}.function.name", "a string", function.get("name"))


def _check_tool_choice(tool_choice: Any) -> None:
    if tool_choice is None:
        return
    if isinstance(tool_choice, str):
        if tool_choice not in TOOL_CHOICE_MODES:
            raise ChatBodyError(
                f"Invalid value for 'tool_choice': expected one of {', '.join(TOOL_CHOICE_MODES)} or an object, "
                f"got {_describe(tool_choice)}.",
                "tool_choice",
            )
        return
    if not isinstance(tool_choice, dict) or not isinstance(tool_choice.get("type"), str):
        raise _invalid("tool_choice", 'a string or an object such as {"type": "function", ...}', tool_choice)


def _check_response_format(response_format: Any) -> None:
    if response_format is None:
        return
    if not isinstance(response_format, dict):
        raise _invalid("response_format", 'an object such as {"type": "json_object"}', response_format)
    kind = response_format.get("type")
    if kind not in RESPONSE_FORMAT_TYPES:
        raise ChatBodyError(
            f"Invalid value for 'response_format.type': expected one of {', '.join(RESPONSE_FORMAT_TYPES)}, "
            f"got {_describe(kind)}.",
            "response_format.type",
        )
    if kind == "json_schema" and not isinstance(response_format.get("json_schema"), dict):
        raise _invalid("response_format.json_schema", "an object", response_format.get("json_schema"))
