"""The code reward: HumanEval-style and stdin/stdout tests, run in the sandbox."""

from __future__ import annotations

from system.rewards import get_reward
from system.rewards.code import make_code
from system.rewards.extract import code_block
from system.rewards.sandbox import Limits

# long enough that a loaded machine does not fail correct programs; short for the one that loops
LIMITS = Limits(wall_s=10.0, cpu_s=10, memory_bytes=256 << 20)
SHORT = Limits(wall_s=1.5, cpu_s=1, memory_bytes=256 << 20)
TEST = "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n"


def fenced(program: str, language: str = "python") -> str:
    return f"Here is my solution.\n```{language}\n{program}\n```\nDone."


def test_humaneval_style():
    completions = [
        fenced("def add(a, b):\n    return a + b"),
        fenced("def add(a, b):\n    return a - b"),  # fails the asserts
        fenced("def plus(a, b):\n    return a + b"),  # wrong name
        "def add(a, b):\n    return a + b",  # not in a code block
        fenced("def add(a, b)\n    return a + b"),  # syntax error
    ]
    n = len(completions)
    scores = make_code(limits=LIMITS)(completions, test=[TEST] * n, entry_point=["add"] * n, prompt=["p"] * n)
    assert scores == [1.0, 0.0, 0.0, 0.0, 0.0]
    endless = fenced("def add(a, b):\n    while True:\n        pass")
    assert make_code(limits=SHORT)([endless], test=[TEST], entry_point=["add"]) == [0.0]


def test_stdin_stdout_pass_fraction_and_binary():
    program = "a, b = map(int, input().split())\nprint(a + b)"
    buggy = "a, b = map(int, input().split())\nprint(a + b if a < 5 else 0)"
    completions = [fenced(program), fenced(buggy), fenced(program, language="")]
    inputs = [["1 2\n", "3 4", "5 5"]] * 3
    outputs = [["3\n", "7  \n\n", "10"]] * 3  # trailing whitespace does not matter
    assert make_code(limits=LIMITS)(completions, inputs=inputs, outputs=outputs) == [1.0, 2 / 3, 1.0]
    binary = make_code(binary=True, limits=LIMITS)
    assert binary(completions, inputs=inputs, outputs=outputs) == [1.0, 0.0, 1.0]


def test_cases_given_as_lists_of_lines():
    program = "n = int(input())\nprint(sum(int(input()) for _ in range(n)))"
    scores = make_code(limits=LIMITS)([fenced(program)], inputs=[[["2", "3", "4"]]], outputs=[[["7"]]])
    assert scores == [1.0]


def test_rows_without_tests_are_unscorable():
    reward = get_reward("code")
    completions = [fenced("print(1)"), "no code", fenced("print(1)")]
    scores = reward(completions, inputs=[None, None, ["x"]], outputs=[None, None, ["1", "2"]])
    assert scores == [None, None, None]  # no tests; no tests; inputs and outputs do not pair up
    assert reward(["no code"], inputs=[["1"]], outputs=[["1"]]) == [0.0]
    assert reward([fenced("print(1)")]) == [None]


def test_the_last_python_block_is_the_program():
    text = "```python\nfirst\n```\n```py\nsecond\n```\n```text\nnot code\n```"
    assert code_block(text) == "second\n"
    assert code_block("```\nbare\n```") == "bare\n"
    assert code_block("no block") is None
