"""Tools for agent episodes: schemas and their Python (base), the formats whose parsers read calls
out of a reply (parsers), how the tools are shown in the prompt (prompt), and the shipped `python` tool.

    from system.tools import Tool, call_tool, get_parser, resolve_tools
    tools = resolve_tools(["python"])
    reply = '<tool_call>{"name": "python", "arguments": {"code": "print(6*7)"}}</tool_call>'
    [call] = get_parser("hermes").parse(reply)
    call_tool(tools, call)        # ToolResult(content='42\\n', error=False)
"""

from system.tools.base import (TOOLS, Tool, ToolCall, ToolError, ToolResult, call_tool, register_tool,
                               resolve_tools)
from system.tools.parsers import TOOL_PARSERS, ToolFormat, get_parser, register_parser

from system.tools import python  # noqa: E402,F401  (registers it)

__all__ = [
    "TOOLS",
    "TOOL_PARSERS",
    "Tool",
    "ToolCall",
    "ToolError",
    "ToolFormat",
    "ToolResult",
    "call_tool",
    "get_parser",
    "register_parser",
    "register_tool",
    "resolve_tools",
]
