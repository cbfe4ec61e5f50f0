"""The code reward: HumanEval-style and stdin/stdout tests, run in the sandbox."""

from __future__ import annotations

import os

import pytest

from system.rewards import get_reward
from system.rewards.code import make_code
from system.rewards.extract import code_block
from system.rewards.format import make_code_format
from system.rewards.function_test import run_function_test
from system.rewards.function_test_child import PASSED_EXIT
from system.rewards.sandbox import Limits, run_python

# long enough that a loaded machine does not fail correct programs; short for the one that loops
LIMITS = Limits(wall_s=10.0, cpu_s=10, memory_bytes=256 << 20)
SHORT = Limits(wall_s=1.5, cpu_s=1, memory_bytes=256 << 20)
ROOT = os.geteuid() == 0
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


# Rows as HumanEval writes them (a prompt's helpers, floats, tuples, dicts, sets, None, strings, big ints),
# each with an honest solution that must keep passing and a plausible wrong one.
HUMANEVAL_ROWS = [
    (  # a list of floats in, a bool out
        "has_close_elements",
        "def check(candidate):\n"
        "    assert candidate([1.0, 2.0, 3.9, 4.0, 5.0, 2.2], 0.3) == True\n"
        "    assert candidate([1.0, 2.0, 3.9, 4.0, 5.0, 2.2], 0.05) == False\n"
        "    assert candidate([1.1, 2.2, 3.1, 4.1, 5.1], 1.0) == True\n",
        "def has_close_elements(numbers, threshold):\n"
        "    ordered = sorted(numbers)\n"
        "    return any(b - a < threshold for a, b in zip(ordered, ordered[1:]))\n",
        "def has_close_elements(numbers, threshold):\n    return True\n",
    ),
    (  # a tuple out, and an empty list in
        "sum_product",
        "def check(candidate):\n"
        "    assert candidate([]) == (0, 1)\n"
        "    assert candidate([3, 5, 7]) == (3 + 5 + 7, 3 * 5 * 7)\n",
        "import math\n\ndef sum_product(numbers):\n    return sum(numbers), math.prod(numbers)\n",
        "def sum_product(numbers):\n    return [sum(numbers), 1]\n",
    ),
    (  # a dict out, compared whole
        "histogram",
        "def check(candidate):\n"
        "    assert candidate('a b b a') == {'a': 2, 'b': 2}\n"
        "    assert candidate('r t g') == {'r': 1, 't': 1, 'g': 1}\n"
        "    assert candidate('') == {}\n",
        "def histogram(test):\n"
        "    counts = {w: test.split().count(w) for w in test.split()}\n"
        "    top = max(counts.values(), default=0)\n"
        "    return {w: n for w, n in counts.items() if n == top}\n",
        "def histogram(test):\n    return {w: 1 for w in test.split()}\n",
    ),
    (  # floats compared with a tolerance, None for no answer, a set
        "mean_and_modes",
        "def check(candidate):\n"
        "    import math\n"
        "    mean, modes = candidate([1, 2, 2, 3])\n"
        "    assert math.isclose(mean, 2.0) and modes == {2}\n"
        "    assert candidate([]) is None\n"
        "    assert candidate([0.1, 0.2])[1] == {0.1, 0.2}\n",
        "def mean_and_modes(xs):\n"
        "    if not xs:\n        return None\n"
        "    top = max(xs.count(x) for x in xs)\n"
        "    return sum(xs) / len(xs), {x for x in xs if xs.count(x) == top}\n",
        "def mean_and_modes(xs):\n    return (0.0, set())\n",
    ),
    (  # a big int out (5736 digits, more than Python converts to text by default)
        "factorial",
        "def check(candidate):\n"
        "    import math\n"
        "    assert candidate(2000) == math.factorial(2000)\n"
        "    assert candidate(0) == 1\n",
        "def factorial(n):\n    out = 1\n    for i in range(2, n + 1):\n        out *= i\n    return out\n",
        "def factorial(n):\n    return n\n",
    ),
    (  # HumanEval/38: the test calls `encode_cyclic`, a helper the prompt defines
        "decode_cyclic",
        "def check(candidate):\n"
        "    from random import Random\n"
        "    rng = Random(0)\n"
        "    for _ in range(50):\n"
        "        text = ''.join(rng.choice('abcdefg') for _ in range(rng.randint(10, 20)))\n"
        "        assert candidate(encode_cyclic(text)) == text\n",
        "def encode_cyclic(s):\n"
        "    groups = [s[3 * i:min(3 * i + 3, len(s))] for i in range((len(s) + 2) // 3)]\n"
        "    return ''.join(g[1:] + g[0] if len(g) == 3 else g for g in groups)\n\n"
        "def decode_cyclic(s):\n"
        "    return encode_cyclic(encode_cyclic(s))\n",
        "def encode_cyclic(s):\n"
        "    groups = [s[3 * i:min(3 * i + 3, len(s))] for i in range((len(s) + 2) // 3)]\n"
        "    return ''.join(g[1:] + g[0] if len(g) == 3 else g for g in groups)\n\n"
        "def decode_cyclic(s):\n"
        "    return s\n",
    ),
]


def test_honest_humaneval_solutions_pass_and_wrong_ones_fail():
    completions, tests, entry_points = [], [], []
    for entry_point, test, right, wrong in HUMANEVAL_ROWS:
        completions += [fenced(right), fenced(wrong)]
        tests += [test, test]
        entry_points += [entry_point, entry_point]
    scores = make_code(limits=LIMITS)(completions, test=tests, entry_point=entry_points)
    assert scores == [1.0, 0.0] * len(HUMANEVAL_ROWS)


def test_binary_code_is_registered_and_all_or_nothing():
    binary = get_reward("binary_code")
    program = fenced("a, b = map(int, input().split())\nprint(a + b if a < 5 else 0)")
    assert binary([program], inputs=[["1 2", "5 5"]], outputs=[["3", "10"]]) == [0.0]
    assert get_reward("code")([program], inputs=[["1 2", "5 5"]], outputs=[["3", "10"]]) == [0.5]
    assert binary([program], inputs=[["1 2"]], outputs=[["3"]]) == [1.0]
    assert binary([program]) == [None]


# --- Reward hacks. Each program below has a wrong `add` (or none) and tries to score anyway.

WRONG = "def add(a, b):\n    return 0\n"
SAME = "class Same:\n    def __eq__(self, other):\n        return True\n\n"
# fooled the old judge (program, test and check() as one script, a clean exit the pass)
BEAT_A_SHARED_SCRIPT = {
    "sys.exit(0)": WRONG + "import sys\nsys.exit(0)",
    "os._exit(0)": WRONG + "import os\nos._exit(0)",
    "raise SystemExit": WRONG + "raise SystemExit",
    "atexit exits 0 after the failed assert": WRONG + "import atexit, os\natexit.register(os._exit, 0)",
    "settrace swaps check before it is called": WRONG + "import sys\n"
    "def tracer(frame, event, arg):\n"
    "    if event == 'line' and 'check' in frame.f_globals:\n"
    "        frame.f_globals['check'] = lambda candidate: None\n"
    "    return tracer\n"
    "sys._getframe().f_trace = tracer\nsys.settrace(tracer)",
    "a result whose __eq__ is always True": SAME + "def add(a, b):\n    return Same()",
}
HACKS = {
    **BEAT_A_SHARED_SCRIPT,
    "prints a fake report": WRONG + "print('all tests passed')\nprint('PASSED 2/2')",
    "replaces AssertionError": WRONG + "import builtins\n"
    "builtins.AssertionError = type('AssertionError', (Exception,), {})",
    "replaces __build_class__": WRONG + "import builtins\nbuiltins.__build_class__ = lambda *a, **k: None",
    "defines its own check": WRONG + "def check(candidate):\n    pass",
    "an int whose __eq__ is always True": "class Zero(int):\n"
    "    def __eq__(self, other):\n        return True\n\ndef add(a, b):\n    return Zero(0)",
    "an __eq__ result with a literal repr": SAME + "    def __repr__(self):\n        return '5'\n\n"
    "def add(a, b):\n    return Same()",  # the harness reads 5: right once, then wrong
    "KeyboardInterrupt": WRONG + "raise KeyboardInterrupt",
    "exits inside the call": "def add(a, b):\n    import os\n    os._exit(0)",
    "raises StopIteration": "def add(a, b):\n    raise StopIteration",
    "exits with the harness's pass status": WRONG + f"import os\nos._exit({PASSED_EXIT})",
    "patches the harness code it can find with gc": WRONG + "import gc\n"
    "for f in gc.get_objects():\n"
    "    if getattr(f, '__name__', '') in ('Remote', 'Channel'):\n"
    "        f.__call__ = f.read = lambda *a, **k: ('ok', 5)\n"
    "    if getattr(f, '__name__', '') == 'judge':\n"
    "        f('def check(candidate):\\n    pass', 'add', 0, 1, 100)",
    "patches every frame's globals with inspect": WRONG + "import inspect\n"
    "for info in inspect.stack():\n"
    "    info.frame.f_globals.update(check=lambda c: None, PASSED_EXIT=0)",
}
if ROOT:  # without root the program runs as our user: it could kill this very test process
    HACKS["kills every process it may signal"] = WRONG + "import os, signal\nos.kill(-1, signal.SIGKILL)"


def shared_script_passes(program: str) -> bool:
    return run_python(f"{program}\n\n{TEST}\n\ncheck(add)\n", "", LIMITS).ok


def passes(program: str, limits: Limits = LIMITS):
    result = run_function_test(program, TEST, "add", limits)
    assert result.harness.duration_s < limits.wall_s + 5
    return result.passed


@pytest.mark.parametrize("name", BEAT_A_SHARED_SCRIPT)
def test_these_hacks_fooled_a_shared_script(name):
    assert shared_script_passes(BEAT_A_SHARED_SCRIPT[name])


@pytest.mark.parametrize("name", HACKS)
def test_reward_hacks_fail_the_harness(name):
    assert not passes(HACKS[name])


# What the program writes into its own pipes, as if it were the answer to the first call: each
# would make the harness exit with the pass status if it were unpickled or evaluated.
FORGED = {
    "an oversized header": "struct.pack('!I', 1 << 31)",
    "code, not a literal": "frame(b'__import__(\"os\")._exit(%d)')" % PASSED_EXIT,
    "a pickle": "frame(pickle.dumps(Exit()))",
    "nested too deep to parse": "frame(b'[' * 100000 + b']' * 100000)",
}


@pytest.mark.parametrize("name", FORGED)
def test_forged_answers_in_its_pipes_fail(name):
    program = WRONG + (
        "import os, pickle, struct\n"
        "class Exit:\n"
        "    def __reduce__(self):\n"
        f"        return (os._exit, ({PASSED_EXIT},))\n"
        "def frame(data):\n"
        "    return struct.pack('!I', len(data)) + data\n"
        "for fd in map(int, os.listdir('/proc/self/fd')):\n"
        "    try:\n"
        f"        os.write(fd, {FORGED[name]})\n"
        "    except OSError:\n"
        "        pass\n"
    )
    assert not passes(program)


SHORT_LIMITS = Limits(wall_s=1.5, cpu_s=1, memory_bytes=256 << 20, output_bytes=1 << 20)
RUNAWAY = {
    "loops forever before serving": "while True:\n    pass",
    "loops forever in the call": "def add(a, b):\n    while True:\n        pass",
    "fork bomb": "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass",
    "prints 100 MB": WRONG + "import sys\nfor _ in range(100):\n    sys.stdout.write('x' * 2**20)",
    "answers with 100 MB": "def add(a, b):\n    return 'x' * 10**8",
}


@pytest.mark.parametrize("name", RUNAWAY)
def test_runaway_programs_fail_within_the_limits(name):
    assert not passes(RUNAWAY[name], SHORT_LIMITS)


# The price of passing literals only (documented in function_test.py): right results of these
# kinds fail, though a shared script would pass them.
NOT_LITERALS = {
    "nan": ("__import__('math').isnan(candidate())", "float('nan')"),
    "inf": ("candidate() == float('inf')", "float('inf')"),
    "frozenset": ("candidate() == frozenset({5})", "frozenset({5})"),
    "generator": ("list(candidate()) == [5]", "(x for x in [5])"),
}


@pytest.mark.parametrize("name", NOT_LITERALS)
def test_results_that_are_not_literals_fail(name):
    condition, value = NOT_LITERALS[name]
    test, program = f"def check(candidate):\n    assert {condition}\n", f"def f():\n    return {value}\n"
    assert run_python(f"{program}\n{test}\ncheck(f)\n", "", LIMITS).ok
    assert not run_function_test(program, test, "f", LIMITS).passed


def test_the_harness_is_not_dumpable():
    prctl = "__import__('ctypes').CDLL(None).prctl"
    test = f"def check(candidate):\n    assert {prctl}(3, 0, 0, 0, 0) == 0  # PR_GET_DUMPABLE\n"
    assert run_function_test(WRONG, test, "add", LIMITS).passed


@pytest.mark.skipif(not ROOT, reason="needs root: a user id and namespaces per sandbox")
def test_the_program_can_neither_reach_nor_read_the_harness():
    marker = "r1ray-secret-test-marker"
    test = f"# {marker}\n{TEST}"
    probe = WRONG + (
        "import ctypes, os\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "for pid in [p for p in os.listdir('/proc') if p.isdigit() and int(p) != os.getpid()]:\n"
        "    if libc.ptrace(16, int(pid), 0, 0) == 0:  # PTRACE_ATTACH\n"
        "        print('attached', pid)\n"
        "    for name in ('mem', 'cmdline', 'environ'):\n"
        "        try:\n"
        "            print(name, pid, open(f'/proc/{pid}/{name}', 'rb').read(100))\n"
        "        except OSError:\n"
        "            pass\n"
        "for root, _, files in os.walk('/tmp'):\n"
        "    for name in files:\n"
        f"        if {marker!r} in open(os.path.join(root, name), errors='replace').read():\n"
        "            print('found the test in', root, name)\n"
    )
    result = run_function_test(probe, test, "add", LIMITS)
    assert not result.passed and result.candidate.ok
    assert "attached" not in result.candidate.stdout and "found" not in result.candidate.stdout
    assert marker not in result.candidate.stdout


# The stdin/stdout format: the comparison happens in the reward, on what the program printed.
STDIO_HACKS = {
    "sys.exit(0) before printing": "import sys\nsys.exit(0)",
    "os._exit(0) right after printing": "print(3)\nimport os\nos._exit(0)",  # the print is lost
    "the answer on stderr": "import sys\nprint(3, file=sys.stderr)",
    "a fake report": "print('all tests passed')",
    "the answer, then a crash": "print(3)\nraise SystemExit(1)",
    "the answer, then KeyboardInterrupt": "print(3, flush=True)\nraise KeyboardInterrupt",
    "every plausible answer": "for i in range(10):\n    print(i)",
}


@pytest.mark.parametrize("name", STDIO_HACKS)
def test_stdin_stdout_hacks_fail(name):
    reward = make_code(limits=LIMITS)
    assert reward([fenced(STDIO_HACKS[name])], inputs=[["1 2"]], outputs=[["3"]]) == [0.0]
    honest = "print(sum(map(int, input().split())))\nimport sys\nsys.exit(0)"  # exit 0 is fine
    assert reward([fenced(honest)], inputs=[["1 2"]], outputs=[["3"]]) == [1.0]


# open-r1's `code_format` cases (tests/test_rewards.py, TestCodeFormat), and this layout's own rules
JS = "<think>\nAnalysis\n</think>\n<answer>\n```javascript\nconsole.log('hello');\n```\n</answer>"
CODE_FORMAT = [
    ("<think>\nLet's solve this\nStep 1: First step\n</think>\n<answer>\n```python\ndef hello():\n"
     "    print('world')\n```\n</answer>", "python", 1.0),
    ("<think>\nHere's an example:\n```python\nx = 1\n```\nNow the solution:\n</think>\n<answer>\n"
     "```python\ndef solution():\n    return 42\n```\n</answer>", "python", 1.0),  # a block in <think> too
    (JS, "javascript", 1.0),
    (JS, "python", 0.0),
    ("```python\ndef hello():\n    print('world')\n```", "python", 0.0),  # no tags
    ("<think>Some thinking</think><answer>Just plain text</answer>", "python", 0.0),  # no block
    ("<think>Analysis</think><answer>```\ndef hello(): pass\n```</answer>", "python", 0.0),  # no language
    ("<answer>```python\npass\n```</answer><think>Analysis</think>", "python", 0.0),  # tags out of order
    ("<think>x</think><answer>ok</answer>\n```python\npass\n```", "python", 0.0),  # block after the answer
    ("Planning.</think><answer>```python\npass\n```</answer>", "python", 1.0),  # <think> from the prompt
]


@pytest.mark.parametrize("completion, language, expected", CODE_FORMAT)
def test_code_format(completion, language, expected):
    assert make_code_format(language=language)([completion]) == [expected]


def test_code_format_reads_a_language_column_and_is_registered():
    completion = "<think>x</think><answer>```rust\nfn main() {}\n```</answer>"
    code_format = get_reward("code_format")
    assert code_format([completion]) == [0.0]  # python by default
    assert code_format([completion, completion], language=["rust", "python"]) == [1.0, 0.0]
