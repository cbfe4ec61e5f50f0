"""Tools a model may call during an episode: an OpenAI function schema plus the Python that runs it.

`call_tool` is the one place a parsed call meets a tool. Model output is untrusted input, so every
way a call can go wrong (unparsable, an unknown tool, missing or unexpected arguments, arguments of
the wrong JSON type, a tool that fails) ends as a `ToolResult` with `error=True` and a message the
model reads in its next turn, never as an exception that would kill a rollout.

    @register_tool("add")                     # or Tool(...) directly, in an env's `tools`
    def add_tool() -> Tool: ...
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Optional, Union

from system.registry import Registry

JSON_TYPES = {"string": str, "integer": int, "number": (int, float), "boolean": bool, "array": list,
              "object": dict, "null": type(None)}


class ToolError(Exception):
    """Raised by a tool for a failure the model should read (counted in env/tool_errors)."""


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: dict  # a JSON schema of an object: {"type": "object", "properties": ..., "required": [...]}
    fn: Callable[..., Any]  # fn(**arguments) -> str (anything else is shown as JSON)
    max_chars: int = 2000  # longer results are cut: a tool must not flood the context

    @property
    def schema(self) -> dict:
        """The OpenAI function schema: what `apply_chat_template(tools=...)` and the prompt show."""
        function = {"name": self.name, "description": self.description, "parameters": self.parameters}
        return {"type": "function", "function": function}


@dataclass(frozen=True)
class ToolCall:
    """One call read from a reply; `error` says why it could not be read (then name may be empty)."""

    name: str = ""
    arguments: dict = dataclasses.field(default_factory=dict)
    error: Optional[str] = None


@dataclass(frozen=True)
class ToolResult:
    content: str  # the tool message the model reads
    error: bool = False


TOOLS = Registry("tool", lambda obj: isinstance(obj, Tool), "a Tool")
register_tool = TOOLS.register  # register_tool("python")(python_tool())


def resolve_tools(declared: Iterable[Union[Tool, str, dict]]) -> dict[str, Tool]:
    """An env's `tools` by name. Each is a Tool, a registered name (or `package.module:attr`), or an
    OpenAI function schema (as a data row holds it) naming a registered tool, shown as given."""
    tools = {}
    for item in declared:
        if isinstance(item, dict):
            function = item.get("function", item)
            shown = {"description": function.get("description", ""),
                     "parameters": function.get("parameters", {"type": "object"})}
            tool = dataclasses.replace(TOOLS.get(function["name"]), **shown)
        else:
            tool = item if isinstance(item, Tool) else TOOLS.get(item)
        tools[tool.name] = tool
    return tools


def call_tool(tools: dict[str, Tool], call: ToolCall) -> ToolResult:
    """Run one parsed call; a malformed call or a failing tool is a result with `error=True`."""
    if call.error:
        return ToolResult(f"Invalid tool call: {call.error}", error=True)
    tool = tools.get(call.name)
    if tool is None:
        return ToolResult(f"Unknown tool {call.name[:40]!r}. The tools: {', '.join(tools)}.", error=True)
    problem = argument_problem(tool.parameters, call.arguments)
    if problem:
        return ToolResult(f"Wrong arguments for {tool.name}: {problem}.", error=True)
    try:
        result = tool.fn(**call.arguments)
    except ToolError as e:
        return ToolResult(cut(str(e), tool.max_chars), error=True)
    except Exception as e:  # a tool's own bug must not end the rollout either: it is told and counted
        return ToolResult(cut(f"{tool.name} failed: {type(e).__name__}: {e}", tool.max_chars), error=True)
    text = result if isinstance(result, str) else json.dumps(result, default=str)
    return ToolResult(cut(text, tool.max_chars))


def argument_problem(parameters: dict, arguments: dict) -> Optional[str]:
    """What is wrong with `arguments` under the schema's required names, properties and plain JSON
    types (None: nothing). A subset of JSON schema: enough to catch what models get wrong."""
    properties = parameters.get("properties", {})
    missing = [name for name in parameters.get("required", []) if name not in arguments]
    if missing:
        return f"missing {', '.join(missing)}"
    unknown = [name for name in arguments if name not in properties]
    if unknown:
        takes = ", ".join(properties) or "nothing"
        return f"unexpected {', '.join(repr(n[:40]) for n in unknown)} (takes {takes})"
    for name, value in arguments.items():
        expected = properties[name].get("type")
        kinds = JSON_TYPES.get(expected)
        is_number = expected in ("integer", "number")
        if kinds and (not isinstance(value, kinds) or isinstance(value, bool) and is_number):
            return f"{name} must be a JSON {expected}, got {json.dumps(value)[:40]}"
    return None


def cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + f"\n... ({len(text) - limit} more characters cut)"
