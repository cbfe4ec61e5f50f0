"""Tool-call parsers: a reply's text -> the calls in it, by the format the model was taught.

An env's `tool_parser` attribute names one (a TextEnv's `tool_parser` param, so
`env.params.tool_parser` in a config); each is `parse(reply) -> list[ToolCall]`, an empty list when the
reply calls no tool (then it goes to the env as a move). A call that cannot be read is a
`ToolCall` with `error` set, so the model is told what was wrong instead of the reply being
taken for a move.

- `hermes`: `<tool_call>{"name": ..., "arguments": {...}}</tool_call>`, one block per call
  (Hermes, Qwen2.5/3, and the fallback prompt of system/tools/prompt.py). A block left open at the
  end of a reply (cut by the token limit) is read to the end.
- `python_block`: every fenced ```python block is a call of the `python` tool (ToRL's format).
"""

from __future__ import annotations

import json
import re
from typing import Callable

from system.registry import Registry
from system.tools.base import ToolCall

TOOL_PARSERS = Registry("tool parser", callable, "a function")
register_parser = TOOL_PARSERS.register
HERMES_FORM = '<tool_call>{"name": "...", "arguments": {...}}</tool_call>'
HERMES_CALL = re.compile(r"<tool_call>(.*?)(?:</tool_call>|\Z)", re.S)
PYTHON_BLOCK = re.compile(r"```python[^\S\n]*\n(.*?)```", re.S)


def get_parser(name: str) -> Callable[[str], list[ToolCall]]:
    return TOOL_PARSERS.get(name)


@register_parser("hermes")
def hermes(reply: str) -> list[ToolCall]:
    return [_from_json(match.group(1)) for match in HERMES_CALL.finditer(reply)]


@register_parser("python_block")
def python_block(reply: str) -> list[ToolCall]:
    return [ToolCall("python", {"code": match.group(1)}) for match in PYTHON_BLOCK.finditer(reply)]


def _from_json(body: str) -> ToolCall:
    try:
        call = json.loads(body)
    except json.JSONDecodeError as e:
        return ToolCall(error=f"not valid JSON ({e.msg} at character {e.pos}). Write {HERMES_FORM}")
    except RecursionError:  # "[[[[...": deeper than the JSON decoder goes
        return ToolCall(error=f"JSON nested too deeply. Write {HERMES_FORM}")
    if not isinstance(call, dict) or not isinstance(call.get("name"), str):
        return ToolCall(error=f'a call is a JSON object with a "name" string. Write {HERMES_FORM}')
    arguments = call.get("arguments", {})
    if isinstance(arguments, str):  # some models write the arguments as a JSON string, as the OpenAI API does
        try:
            arguments = json.loads(arguments)
        except (json.JSONDecodeError, RecursionError):
            pass
    if not isinstance(arguments, dict):
        return ToolCall(call["name"], error=f'"arguments" must be a JSON object. Write {HERMES_FORM}')
    return ToolCall(call["name"], arguments)
