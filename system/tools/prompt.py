"""How the tools are shown to the model: the way its own chat template shows them, if it can.

A template that knows tools (Qwen2.5/3, Llama 3.1, Hermes, ...) renders them itself from
`apply_chat_template(messages, tools=schemas)`, in the words the model was trained on. One that
does not (SmolLM2's ChatML, the embedded model's) silently ignores `tools`; for those the schemas go
into the system prompt as a block in Qwen2.5's words, ending with how the env's tool format
(system/tools/parsers.py) writes a call: for `hermes`, `<tool_call>{"name": ..., "arguments": ...}`.
"""

from __future__ import annotations

import json

from system.tools.parsers import get_parser

PROBE = {"type": "function", "function": {"name": "probe_tool_7f3a", "description": "",
                                          "parameters": {"type": "object", "properties": {}}}}

FALLBACK = """# Tools

You may call one or more functions to assist with the user query.

You are provided with function signatures within <tools></tools> XML tags:
<tools>
{schemas}
</tools>

{how_to_call}"""


def supports_tools(tokenizer) -> bool:
    """Whether the chat template renders a `tools=` argument (tried with a probe tool, not guessed)."""
    text = tokenizer.apply_chat_template([{"role": "user", "content": "U"}], tools=[PROBE], tokenize=False,
                                         add_generation_prompt=True)
    return PROBE["function"]["name"] in text


def tool_block(schemas: list[dict], parser: str = "hermes") -> str:
    """The fallback: the schemas and how to call them, for the system prompt."""
    return FALLBACK.format(schemas="\n".join(json.dumps(schema) for schema in schemas),
                           how_to_call=get_parser(parser).how_to_call)


def render_chat(tokenizer, messages: list[dict], tools: list[dict], native: bool,
                parser: str = "hermes") -> str:
    """The prompt text with the assistant turn opened, the tools shown natively or by the fallback
    (in the words of the `parser` format)."""
    if tools and native:
        return tokenizer.apply_chat_template(messages, tools=tools, add_generation_prompt=True,
                                             tokenize=False)
    if tools:
        system = [m["content"] for m in messages if m["role"] == "system"]
        block = tool_block(tools, parser)
        rest = [m for m in messages if m["role"] != "system"]
        messages = [{"role": "system", "content": f"{system[0]}\n\n{block}" if system else block}] + rest
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
