"""How the tools are shown to the model: the way its own chat template shows them, if it can.

A template that knows tools (Qwen2.5/3, Llama 3.1, Hermes, ...) renders them itself from
`apply_chat_template(messages, tools=schemas)`, in the words the model was trained on. One that
does not (SmolLM2's ChatML, the embedded model's) silently ignores `tools`; for those the schemas go
into the system prompt as a block in the Hermes/Qwen form, which asks for
`<tool_call>{"name": ..., "arguments": {...}}</tool_call>`: what the `hermes` parser reads.
"""

from __future__ import annotations

import json

PROBE = {"type": "function", "function": {"name": "probe_tool_7f3a", "description": "",
                                          "parameters": {"type": "object", "properties": {}}}}

FALLBACK = """# Tools

You may call one or more functions to assist with the user query.

You are provided with function signatures within <tools></tools> XML tags:
<tools>
{schemas}
</tools>

For each function call, return a json object with function name and arguments within \
<tool_call></tool_call> XML tags:
<tool_call>
{{"name": <function-name>, "arguments": <args-json-object>}}
</tool_call>"""


def supports_tools(tokenizer) -> bool:
    """Whether the chat template renders a `tools=` argument (tried with a probe tool, not guessed)."""
    text = tokenizer.apply_chat_template([{"role": "user", "content": "U"}], tools=[PROBE], tokenize=False,
                                         add_generation_prompt=True)
    return PROBE["function"]["name"] in text


def tool_block(schemas: list[dict]) -> str:
    """The fallback: the schemas and the call format, for the system prompt."""
    return FALLBACK.format(schemas="\n".join(json.dumps(schema) for schema in schemas))


def render_chat(tokenizer, messages: list[dict], tools: list[dict], native: bool) -> str:
    """The prompt text with the assistant turn opened, the tools shown natively or by the fallback."""
    if tools and native:
        return tokenizer.apply_chat_template(messages, tools=tools, add_generation_prompt=True,
                                             tokenize=False)
    if tools:
        system = [m["content"] for m in messages if m["role"] == "system"]
        block = tool_block(tools)
        rest = [m for m in messages if m["role"] != "system"]
        messages = [{"role": "system", "content": f"{system[0]}\n\n{block}" if system else block}] + rest
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
