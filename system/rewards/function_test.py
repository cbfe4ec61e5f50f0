"""HumanEval-style tests (`test` defines `check(candidate)`) whose pass a program cannot fake.

Run as one script (program, test, `check(entry_point)`) with a clean exit as the pass, a program
wins by `sys.exit(0)` before the tests, by an `atexit` handler that exits 0 after they failed, by
swapping `check` from a trace function, by returning an object whose `__eq__` is always True,
or by reading any secret the harness holds from the memory they share. So the two never share a
process:
- the candidate's program runs in one sandbox and only answers calls of its functions;
- the row's test and `check` run in a second sandbox, the harness, which never executes model
  code: each call of the candidate (or of a helper the test takes from the program) is sent as
  `repr` over a pipe and its result comes back as a literal (`function_test_child.py`);
- the pass is the harness's exit status PASSED_EXIT, which it reaches only by `check()`
  returning. It is read here, by waiting on the process we started, and nothing else counts: not
  the program's exit, output, timing or any message. An exit status, unlike a verdict pipe, has
  nothing to reopen through /proc/<pid>/fd, and the candidate can end the harness (a fail) but
  not choose its status: as root each sandbox has a user id and pid namespace of its own, so the
  candidate can neither see, signal, ptrace nor read the harness; and the harness makes itself
  non-dumpable, so even a process of the same user cannot ptrace it or read its memory.
Every way of breaking the exchange (dying, hanging, an oversized or malformed answer) leaves the
harness without its exit: a fail. Both processes get the sandbox's limits, each its own.

What a test sees differs from a shared script in four ways. Results must be literals that
`ast.literal_eval` reads back (numbers, strings, bytes, None, booleans, and tuples, lists, dicts
and sets of them; `nan`, `inf`, `frozenset`, generators and objects are a fail), at most
`limits.output_bytes` long; arguments travel the same way, so in-place changes to them are not
seen by the test; whatever the candidate raises reaches the test as `CandidateError`. And a
helper the prompt defines (HumanEval/32's `poly`) is the program's, as in HumanEval's own
harness: a program that redefines it changes what that test checks.

Cost: two interpreters per row instead of one, started at once: about twice the CPU time and
a few tens of milliseconds more per row (docs/reliability.md has the figures).

Without root, the candidate runs as the reward worker's user and, where the kernel's ptrace
scope allows it (Yama scope 0), can ptrace the worker itself, or the harness in the moment before
it turns non-dumpable: run reward workers as root (sandbox.py).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from system.rewards.function_test_child import PASSED_EXIT
from system.rewards.sandbox import Limits, SandboxResult, run_python

CHILD_SOURCE = Path(__file__).with_name("function_test_child.py").read_text()


@dataclass(frozen=True)
class FunctionTestResult:
    passed: bool
    harness: SandboxResult  # its stderr says why a test failed; a pass is status "error", code 86
    candidate: SandboxResult  # the program's own output and status (they do not count)


def run_function_test(
    program: str, test: str, entry_point: str, limits: Limits = Limits()
) -> FunctionTestResult:
    """Run `check(<entry_point>)` of `test` against `program`, each in its own sandbox."""
    calls_read, calls_write = os.pipe()  # harness -> candidate
    answers_read, answers_write = os.pipe()  # candidate -> harness
    limit = limits.output_bytes
    serve = f"serve({program!r}, {calls_read}, {answers_write}, {limit})\n"
    judge = f"judge({test!r}, {entry_point!r}, {calls_write}, {answers_read}, {limit})\n"
    with ThreadPoolExecutor(1) as pool:
        candidate = pool.submit(run_python, CHILD_SOURCE + serve, "", limits, (calls_read, answers_write))
        harness = run_python(CHILD_SOURCE + judge, "", limits, (calls_write, answers_read))
        return FunctionTestResult(harness.returncode == PASSED_EXIT, harness, candidate.result())
