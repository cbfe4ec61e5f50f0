"""Tools (system/tools): parsing calls out of replies (malformed ones too), running them, the python
tool in the real sandbox under its limits, how the prompt shows tools with and without a chat
template that knows them, and tool turns in an env and in a whole episode's tokens."""

from __future__ import annotations

import dataclasses
import json
import time

import pytest
from transformers import AutoTokenizer

from system.envs import PlayedEnv, make_env
from system.models import tiny_model_path
from system.rewards.sandbox import Limits
from system.rollout.multiturn import ChatTurns, run_episodes
from system.tools import Tool, ToolCall, ToolError, call_tool, get_parser, resolve_tools
from system.tools.prompt import render_chat, supports_tools, tool_block
from system.tools.python import LIMITS, python_tool
from tests.test_multiturn import Scripted, local_envs, segments

hermes, python_block = get_parser("hermes").parse, get_parser("python_block").parse


def call(name: str, **arguments) -> str:
    return f"<tool_call>{json.dumps({'name': name, 'arguments': arguments})}</tool_call>"


# Parsers


def test_hermes_reads_every_call_in_a_reply():
    reply = f"First {call('python', code='print(1)')} then\n{call('add', a=1, b=2)} done."
    assert hermes(reply) == [ToolCall("python", {"code": "print(1)"}), ToolCall("add", {"a": 1, "b": 2})]
    assert hermes("No tools here. <answer>4</answer>") == []
    stringified = '<tool_call>{"name": "add", "arguments": "{\\"a\\": 1}"}</tool_call>'  # as the API does
    assert hermes(stringified) == [ToolCall("add", {"a": 1})]
    assert hermes('<tool_call>{"name": "now"}</tool_call>') == [ToolCall("now", {})]
    cut_by_the_token_limit = '<tool_call>{"name": "add", "arguments": {"a": 1}}'
    assert hermes(cut_by_the_token_limit) == [ToolCall("add", {"a": 1})]


@pytest.mark.parametrize(
    "body, message",
    [
        ('{"name": "add", "arguments": {"a": 1', "not valid JSON"),
        ("", "not valid JSON"),
        ("[1, 2]", 'a JSON object with a "name" string'),
        ('{"arguments": {}}', 'a JSON object with a "name" string'),
        ('{"name": 7}', 'a JSON object with a "name" string'),
        ('{"name": "add", "arguments": [1, 2]}', '"arguments" must be a JSON object'),
        ('{"name": "add", "arguments": "not json"}', '"arguments" must be a JSON object'),
        ("[" * 100_000, "nested too deeply"),
    ],
)
def test_a_malformed_call_is_a_call_with_an_error_not_an_exception(body, message):
    [parsed] = hermes(f"<tool_call>{body}</tool_call>")
    assert message in parsed.error
    assert parsed.error.endswith('Write <tool_call>{"name": "...", "arguments": {...}}</tool_call>')


def test_python_block_reads_fenced_python_as_python_calls():
    reply = "Try:\n```python\nprint(6 * 7)\n```\nand\n```python \nx = 1\n```\n```bash\nls\n```"
    assert python_block(reply) == [ToolCall("python", {"code": "print(6 * 7)\n"}),
                                   ToolCall("python", {"code": "x = 1\n"})]
    assert python_block("```python\nunclosed") == []


@pytest.mark.parametrize("name, read", [("hermes", 'print("a\\nb")'), ("python_block", 'print("a\\nb")\n')])
def test_a_formats_example_call_is_what_it_parses(name, read):
    tool_format = get_parser(name)
    example = tool_format.example("python", {"code": 'print("a\\nb")'})
    assert tool_format.parse(f"Let me run it.\n{example}\n") == [ToolCall("python", {"code": read})]


def test_parsers_are_a_registry():
    with pytest.raises(ValueError, match="did you mean 'hermes'"):
        get_parser("hermse")


# Running a call


def add(a: int, b: int = 0) -> int:
    return a + b


def refuse(reason: str) -> str:
    raise ToolError(f"refused: {reason}")


def buggy() -> str:
    return {}["missing"]


TOOLS = {t.name: t for t in [
    Tool("add", "Add two integers.", {"type": "object", "required": ["a"], "properties": {
        "a": {"type": "integer"}, "b": {"type": "integer"}}}, add),
    Tool("refuse", "", {"type": "object", "properties": {"reason": {"type": "string"}}}, refuse),
    Tool("buggy", "", {"type": "object", "properties": {}}, buggy),
    Tool("long", "", {"type": "object", "properties": {}}, lambda: "y" * 50, max_chars=10),
]}


@pytest.mark.parametrize(
    "parsed, content, error",
    [
        (ToolCall("add", {"a": 2, "b": 3}), "5", False),  # not a str: shown as JSON
        (ToolCall("nope", {}), "Unknown tool 'nope'. The tools: add, refuse, buggy, long.", True),
        (ToolCall("add", {"b": 3}), "Wrong arguments for add: missing a.", True),
        (ToolCall("add", {"a": 1, "c": 3}), "Wrong arguments for add: unexpected 'c' (takes a, b).", True),
        (ToolCall("add", {"a": "1"}), 'Wrong arguments for add: a must be a JSON integer, got "1".', True),
        (ToolCall("add", {"a": True}), "Wrong arguments for add: a must be a JSON integer, got true.", True),
        (ToolCall("refuse", {"reason": "no"}), "refused: no", True),
        (ToolCall("buggy", {}), "buggy failed: KeyError: 'missing'", True),
        (ToolCall("long", {}), "yyyyyyyyyy\n... (40 more characters cut)", False),
        (ToolCall(error="not valid JSON"), "Invalid tool call: not valid JSON", True),
    ],
)
def test_every_outcome_of_a_call_is_a_result(parsed, content, error):
    result = call_tool(TOOLS, parsed)
    assert (result.content, result.error) == (content, error)


def test_tools_are_declared_by_object_name_or_schema():
    mine = TOOLS["add"]
    assert resolve_tools([mine, "python"]) == {"add": mine, "python": resolve_tools(["python"])["python"]}
    parameters = {"type": "object", "required": ["code"], "properties": {"code": {"type": "string"}}}
    function = {"name": "python", "description": "Run code for this row.", "parameters": parameters}
    schema = {"type": "function", "function": function}
    [from_row] = resolve_tools([schema]).values()  # a data row's: shown as given, run as registered
    assert from_row.schema == schema and from_row.fn is resolve_tools(["python"])["python"].fn
    with pytest.raises(ValueError, match="unknown tool 'pyhton'"):
        resolve_tools(["pyhton"])


# The python tool, in the sandbox

SHORT = dataclasses.replace(LIMITS, wall_s=1.5, cpu_s=1, output_bytes=4096)


def run_code(code: str, limits: Limits = SHORT, max_chars: int = 1000):
    tool = python_tool(limits, max_chars)
    began = time.monotonic()
    result = call_tool({"python": tool}, ToolCall("python", {"code": code}))
    assert time.monotonic() - began < limits.wall_s + 5
    return result


def test_python_runs_code_and_returns_what_it_prints():
    assert (run_code("print(sum(range(10)))").content, run_code("x = 1").content) == (
        "45\n", "(no output: print() what you want to see)")
    failed = run_code("print('before')\n1 / 0")
    assert failed.error and failed.content.startswith("before\n") and "ZeroDivisionError" in failed.content
    assert 'File "main.py", line 2' in failed.content and "sandbox_child" not in failed.content


@pytest.mark.parametrize(
    "code, message",
    [
        ("while True:\n    pass", "did not finish within 1.5 s"),
        ("print('x' * 10**6)", "printed more than 4 KiB"),
        ("import sys\nfor _ in range(10**6):\n    sys.stdout.write('y' * 100)", "printed more than 4 KiB"),
    ],
)
def test_python_stops_a_program_at_its_limits(code, message):
    result = run_code(code)
    assert result.error and message in result.content


def test_python_contains_what_the_program_does():
    result = run_code("__import__('os').system('echo pwned')")  # a shell, in the sandbox
    assert not result.error and result.content == "pwned\n"
    assert run_code("print('z' * 3000)", max_chars=100).content.endswith("(2901 more characters cut)")


# How the prompt shows the tools

# Qwen2.5's way: tools in the system turn, tool results as a user turn of <tool_response> blocks.
QWEN_LIKE = (
    "{%- if tools %}{{- '<|im_start|>system\\n' }}"
    "{%- if messages[0].role == 'system' %}{{- messages[0].content }}"
    "{%- else %}{{- 'You are helpful.' }}{%- endif %}"
    "{{- '\\n\\n# Tools\\n\\n<tools>' }}{%- for tool in tools %}{{- '\\n' }}{{- tool | tojson }}{%- endfor %}"
    "{{- '\\n</tools><|im_end|>\\n' }}"
    "{%- elif messages[0].role == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0].content + '<|im_end|>\\n' }}"
    "{%- else %}{{- '<|im_start|>system\\nYou are helpful.<|im_end|>\\n' }}{%- endif %}"
    "{%- for message in messages %}"
    "{%- if message.role in ('user', 'assistant') %}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}"
    "{%- elif message.role == 'tool' %}"
    "{%- if messages[loop.index0 - 1].role != 'tool' %}{{- '<|im_start|>user' }}{%- endif %}"
    "{{- '\\n<tool_response>\\n' + message.content + '\\n</tool_response>' }}"
    "{%- if loop.last or messages[loop.index0 + 1].role != 'tool' %}{{- '<|im_end|>\\n' }}{%- endif %}"
    "{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


@pytest.fixture(scope="module")
def smol():
    return AutoTokenizer.from_pretrained(tiny_model_path())  # SmolLM2's tokenizer and ChatML template


@pytest.fixture(scope="module")
def qwen_like():
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path())
    tokenizer.chat_template = QWEN_LIKE
    return tokenizer


SCHEMAS = [resolve_tools(["python"])["python"].schema]
CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]


def test_a_template_without_tools_gets_the_fallback_block_in_its_system_prompt(smol):
    assert not supports_tools(smol)
    text = render_chat(smol, CHAT, SCHEMAS, native=False)
    block = tool_block(SCHEMAS)
    assert text.startswith(f"<|im_start|>system\nBe brief.\n\n{block}<|im_end|>\n<|im_start|>user\nHi")
    assert json.dumps(SCHEMAS[0]) in block
    assert '{"name": <function-name>, "arguments": <args-json-object>}' in block
    fenced = render_chat(smol, CHAT, SCHEMAS, native=False, parser="python_block")
    assert "write its code in a fenced block:\n```python\n<code>\n```<|im_end|>" in fenced
    assert "<tool_call>" not in fenced
    no_system = render_chat(smol, CHAT[1:], SCHEMAS, native=False)
    assert no_system.startswith(f"<|im_start|>system\n{block}<|im_end|>")
    assert render_chat(smol, CHAT, [], native=False) == smol.apply_chat_template(CHAT, tokenize=False,
                                                                                 add_generation_prompt=True)


def test_a_template_with_tools_shows_them_itself(qwen_like):
    assert supports_tools(qwen_like)
    text = render_chat(qwen_like, CHAT, SCHEMAS, native=True)
    assert text.startswith("<|im_start|>system\nBe brief.\n\n# Tools\n\n<tools>\n{") and "python" in text
    assert "You may call one or more functions" not in text  # not the fallback


def test_tool_turns_are_token_exact_under_a_template_that_renders_tool_messages_its_own_way(qwen_like):
    turns = ChatTurns(qwen_like)
    two_calls = call("python", code="print(6 * 7)") + call("python", code="print(1)")
    replies = [two_calls, "The answer is 42."]
    reset, step, log = local_envs("python_arithmetic", [5], tool_parser="hermes")
    [ep] = run_episodes(1, reset, Scripted(qwen_like, replies), step, turns, max_context_tokens=4096)
    system = make_env("python_arithmetic", tool_parser="hermes").system_prompt
    conversation = [{"role": "system", "content": system},
                    {"role": "user", "content": log["observations"][0][0]},
                    {"role": "assistant", "content": replies[0]}, *ep.observations[1],
                    {"role": "assistant", "content": replies[1]}]
    expected = qwen_like(qwen_like.apply_chat_template(conversation, tools=SCHEMAS, tokenize=False),
                         add_special_tokens=False)["input_ids"]
    assert ep.tokens == expected[: len(ep.tokens)]
    [_, tool_turn] = [qwen_like.decode(ep.tokens[a:b]) for m, a, b in segments(ep.loss_mask) if m == 0][:2]
    assert tool_turn == ("\n<|im_start|>user\n<tool_response>\n42\n\n</tool_response>\n<tool_response>\n1\n\n"
                         "</tool_response><|im_end|>\n<|im_start|>assistant\n")


# Tool turns in an env


def test_a_tool_turn_is_answered_by_the_tools_and_counts_as_a_turn():
    env = PlayedEnv(make_env("python_arithmetic", max_turns=2, tool_parser="hermes"))
    env.reset(0)
    observation, reward, done, info = env.step(call("python", code="print(2 + 2)") + call("nope"))
    assert observation == [{"role": "tool", "content": "4\n"},
                           {"role": "tool", "content": "Unknown tool 'nope'. The tools: python."}]
    assert (reward, done, info["success"]) == (0.0, False, False)
    assert (info["tool_calls"], info["tool_errors"]) == (2, 1)
    observation, reward, done, info = env.step(call("python", code="print(1)"))  # max_turns replies: the end
    assert done and info["truncated"] and info["turn"] == 2


def test_without_tools_a_tool_call_is_just_a_move():
    env = PlayedEnv(make_env("countdown"))
    env.reset(0)
    observation, _, done, info = env.step(call("python", code="print(1)"))
    assert isinstance(observation, str) and info["invalid_action"] and info["tool_calls"] == 0


class FencedCountdown:
    """A user's env with tools that reads fenced python (ToRL's format): `tool_parser`, `tools` attributes."""

    tools, tool_parser, max_turns = ("python",), "python_block", 3

    def reset(self, seed: int) -> str:
        return "Compute 6 * 7 with python, then answer."

    def step(self, action: str) -> tuple[str, float, bool, dict]:
        return "Done.", float("42" in action), True, {"success": "42" in action}


def test_an_env_names_its_tool_parser():
    env = PlayedEnv(FencedCountdown())
    env.reset(0)
    assert env.step("```python\nprint(6 * 7)\n```")[0] == [{"role": "tool", "content": "42\n"}]
    assert env.step("It is 42.")[1:3] == (1.0, True)
    with pytest.raises(ValueError, match="unknown param"):
        make_env("countdown", tool_parsr="hermes")
    with pytest.raises(ValueError, match="unknown tool parser 'xml'"):
        make_env("python_arithmetic", tool_parser="xml")
