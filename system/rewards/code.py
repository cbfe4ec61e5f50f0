"""Code reward: run the completion's program against the row's tests, in the sandbox.

The program is the last ```python fenced block of the completion (no block: 0.0). Two test
formats, chosen per row by the columns present:
- HumanEval: `test` defines `check(candidate)` and `entry_point` names the function; the
  program, the tests and `check(<entry_point>)` run as one script: it passes if it exits cleanly.
- stdin/stdout (APPS, TACO): `inputs` and `outputs` are lists of cases; a case passes if the
  program's output equals the expected one, up to trailing whitespace.
A row with neither cannot be scored (None). The score is the fraction of cases passed, or
1.0/0.0 for all/not all with `binary=True`. Every run is a separate sandboxed process; runs of
all samples and cases share one thread pool.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Optional

from system.rewards.extract import code_block
from system.rewards.registry import register_reward
from system.rewards.sandbox import Limits, run_python

Case = tuple[str, str, Optional[str]]  # program, stdin, expected stdout (None: exit status only)


def _text(value) -> str:
    """A case's input or output; some data sets store them as lists of lines."""
    return "\n".join(map(str, value)) if isinstance(value, list) else str(value)


def _lines(text: str) -> list[str]:
    return [line.rstrip() for line in text.strip().splitlines()]


def cases_for(program: str, test=None, entry_point=None, inputs=None, outputs=None) -> list[Case]:
    """The runs that check one program; empty if the row has no (usable) tests."""
    if test is not None and entry_point is not None:
        return [(f"{program}\n\n{test}\n\ncheck({entry_point})\n", "", None)]
    if inputs is not None and outputs is not None and len(inputs) == len(outputs):
        return [(program, _text(i), _text(o)) for i, o in zip(inputs, outputs)]
    return []


def make_code(binary: bool = False, limits: Limits = Limits(wall_s=5.0, cpu_s=5), max_workers: int = 0):
    """A code reward; `limits` bound each run, `max_workers` runs go at once (default: CPU count)."""

    def passes(case: Case) -> bool:
        program, stdin, expected = case
        result = run_python(program, stdin, limits)
        return result.ok and (expected is None or _lines(result.stdout) == _lines(expected))

    def code(completions: list[str], **columns) -> list[Optional[float]]:
        names = ("test", "entry_point", "inputs", "outputs")
        rows = [{k: columns[k][i] for k in names if k in columns} for i in range(len(completions))]
        programs = [code_block(c) for c in completions]
        cases = [cases_for(p or "", **row) for p, row in zip(programs, rows)]
        runs = [case for p, sample in zip(programs, cases) if p is not None and sample for case in sample]
        with ThreadPoolExecutor(max_workers or os.cpu_count()) as pool:
            results = iter(list(pool.map(passes, runs)))
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
