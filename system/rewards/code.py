"""Code reward: run the completion's program against the row's tests, in the sandbox.

The program is the last ```python fenced block of the completion (no block: 0.0). Two test
formats, chosen per row by the columns present:
- HumanEval: `test` defines `check(candidate)` and `entry_point` names the function; the test
  runs in a process of its own that calls the program's function through pipes, and passes only
  if check() returned (`function_test.py`: exiting early or patching the checker is a fail).
- stdin/stdout (APPS, TACO): `inputs` and `outputs` are lists of cases; a case passes if the
  program exits cleanly and its stdout equals the expected one, up to trailing whitespace (the
  comparison happens here; stderr, and output of a program that crashed, do not count).
A row with neither cannot be scored (None). The score is the fraction of cases passed, or
1.0/0.0 for all/not all with `binary=True` (registered as `binary_code`, open-r1's name). Every
run is sandboxed; runs of all samples and cases share one thread pool.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Callable, Optional

from system.rewards.extract import code_block
from system.rewards.function_test import run_function_test
from system.rewards.registry import register_reward
from system.rewards.sandbox import Limits, run_python


def _text(value) -> str:
    """A case's input or output; some data sets store them as lists of lines."""
    return "\n".join(map(str, value)) if isinstance(value, list) else str(value)


def _lines(text: str) -> list[str]:
    return [line.rstrip() for line in text.strip().splitlines()]


def prints_expected(program: str, stdin: str, expected: str, limits: Limits) -> bool:
    result = run_python(program, stdin, limits)
    return result.ok and _lines(result.stdout) == _lines(expected)


def passes_check(program: str, test: str, entry_point: str, limits: Limits) -> bool:
    return run_function_test(program, test, entry_point, limits).passed


def cases_for(
    program: str, limits: Limits, test=None, entry_point=None, inputs=None, outputs=None
) -> list[Callable[[], bool]]:
    """The runs that check one program, each returning whether it passed; none if the row has no
    (usable) tests."""
    if test is not None and entry_point is not None:
        return [partial(passes_check, program, test, entry_point, limits)]
    if inputs is not None and outputs is not None and len(inputs) == len(outputs):
        cases = zip(map(_text, inputs), map(_text, outputs))
        return [partial(prints_expected, program, stdin, expected, limits) for stdin, expected in cases]
    return []


def make_code(binary: bool = False, limits: Limits = Limits(wall_s=5.0, cpu_s=5), max_workers: int = 0):
    """A code reward; `limits` bound each run, `max_workers` runs go at once (default: CPU count)."""

    def code(completions: list[str], **columns) -> list[Optional[float]]:
        names = ("test", "entry_point", "inputs", "outputs")
        rows = [{k: columns[k][i] for k in names if k in columns} for i in range(len(completions))]
        programs = [code_block(c) for c in completions]
        cases = [cases_for(p or "", limits, **row) for p, row in zip(programs, rows)]
        runs = [case for p, sample in zip(programs, cases) if p is not None and sample for case in sample]
        with ThreadPoolExecutor(max_workers or os.cpu_count()) as pool:
            results = iter(list(pool.map(lambda run: run(), runs)))
        scores: list[Optional[float]] = []
        for program, sample in zip(programs, cases):
            if not sample:
                scores.append(None)
            elif program is None:
                scores.append(0.0)
            else:
                ok = [next(results) for _ in sample]
                scores.append(float(all(ok)) if binary else sum(ok) / len(ok))
        return scores

    return code


code = register_reward("code", correctness=True)(make_code())
binary_code = register_reward("binary_code", correctness=True)(make_code(binary=True))
