"""Tool-call formats: how a model writes a call, read back out of its reply by a parser.

An env's `tool_parser` attribute names one (a TextEnv's `tool_parser` param, so
`env.params.tool_parser` in a config). A format parses a reply into its calls (an empty list when
it calls no tool: then the reply goes to the env as a move), writes an example call (for an env's
instructions), and says how to call (the end of the fallback tools prompt, system/tools/prompt.py).
A call that cannot be read is a `ToolCall` with `error` set, so the model is told what was wrong
instead of the reply being taken for a move.

- `hermes`: `<tool_call>{"name": ..., "arguments": {...}}</tool_call>`, one block per call
  (Hermes, Qwen2.5/3). A block left open at the end of a reply (cut by the token limit) is read
  to the end.
- `python_block`: every fenced ```python block is a call of the `python` tool (ToRL's format;
  small models write these unprompted, and never write JSON calls).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Callable

from system.registry import Registry
from system.tools.base import ToolCall

HERMES_FORM = '<tool_call>{"name": "...", "arguments": {...}}</tool_call>'
HERMES_CALL = re.compile(r"<tool_call>(.*?)(?:</tool_call>|\Z)", re.S)
PYTHON_BLOCK = re.compile(r"```python[^\S\n]*\n(.*?)```", re.S)


@dataclass(frozen=True)
class ToolFormat:
    parse: Callable[[str], list[ToolCall]]  # reply -> its calls
    example: Callable[[str, dict], str]  # (tool name, arguments) -> the call as the model writes it
    how_to_call: str  # for the prompt of a chat template that does not show tools itself


TOOL_PARSERS = Registry("tool parser", lambda obj: isinstance(obj, ToolFormat), "a ToolFormat")
register_parser = TOOL_PARSERS.register  # register_parser("mine")(ToolFormat(...))
get_parser = TOOL_PARSERS.get


def hermes_calls(reply: str) -> list[ToolCall]:
    return [_from_json(match.group(1)) for match in HERMES_CALL.finditer(reply)]


def python_blocks(reply: str) -> list[ToolCall]:
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


register_parser("hermes")(ToolFormat(
    hermes_calls,
    lambda name, arguments: f"<tool_call>{json.dumps({'name': name, 'arguments': arguments})}</tool_call>",
    # Qwen2.5's words, as its chat template puts them after the schemas
    "For each function call, return a json object with function name and arguments within "
    "<tool_call></tool_call> XML tags:\n<tool_call>\n"
    '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>',
))
register_parser("python_block")(ToolFormat(
    python_blocks,
    lambda name, arguments: f"```python\n{arguments['code']}\n```",
    "To call python, write its code in a fenced block:\n```python\n<code>\n```",
))
