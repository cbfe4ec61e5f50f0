"""A Countdown teacher that is a program: it writes the search a person would do, as a trace.

R1's cold start came from a stronger model. With none on this machine, the cold-start traces
come from a solver instead, the way Stream-of-Search made its traces: the `<think>` block shows
the candidates tried, the values they reach, and a step back when one fails; the `<answer>` holds
the equation. The search works backwards from the goal, so every line is short arithmetic that a
small model can check, and the solution is checked forwards before it becomes the answer:

    <think>
    Goal 40 with 7, 19, 3.
    40 - 3 = 37 from 7, 19: 7 + 19 = 26, 19 - 7 = 12, 7 * 19 = 133. No.
    40 - 19 = 21 from 7, 3: 7 + 3 = 10, 7 - 3 = 4, 7 * 3 = 21. Yes.
    Check: 7 * 3 = 21, 21 + 19 = 40.
    </think>
    <answer> 7 * 3 + 19 </answer>

The goal is split as `goal = rest op x` for one number x (every three-number expression has this
form), so the rest must make the sub-goal; with two numbers left, the four operations are tried in
order (a division only when it is exact). Only whole, positive intermediate values are used. The
candidates are tried best first (the sub-goals the remaining numbers get closest to), with a
little noise, and the trace shows at most `max_failures` failed ones before the solution: short
enough for a 135M model (measured in docs/r1-recipe.md).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Optional

MAX_VALUE = 10_000  # sub-goals above this are not worth a line


@dataclass(frozen=True)
class Split:
    """goal = rest <op> x (or x <op> rest): the sub-goal `need` must come from the other numbers."""

    line: str  # how the sub-goal is worked out, e.g. "40 - 19 = 21"
    need: int
    wrap: str  # the whole equation, with {rest} standing for the other numbers' expression

    def last_step(self) -> str:
        """The equation's last operation on the sub-goal's value, e.g. "21 + 19"."""
        return self.wrap.format(rest=self.need).replace(f"({self.need})", str(self.need))


def splits(goal: int, x: int) -> list[Split]:
    """Every way to write `goal` as a whole-number expression of x and a rest."""
    out = [Split(f"{goal} - {x} = {goal - x}", goal - x, "{rest} + " + str(x)),
           Split(f"{goal} + {x} = {goal + x}", goal + x, "{rest} - " + str(x)),
           Split(f"{x} - {goal} = {x - goal}", x - goal, f"{x} - ({{rest}})")]
    if goal % x == 0:
        out.append(Split(f"{goal} / {x} = {goal // x}", goal // x, f"({{rest}}) * {x}"))
    out.append(Split(f"{goal} * {x} = {goal * x}", goal * x, f"({{rest}}) / {x}"))
    if x % goal == 0:
        out.append(Split(f"{x} / {goal} = {x // goal}", x // goal, f"{x} / ({{rest}})"))
    return [s for s in out if 0 < s.need <= MAX_VALUE and not (s.need == goal and "/" in s.line)]


def pair_tries(a: int, b: int) -> list[tuple[str, int, str]]:
    """(shown line, value, expression) of the four operations on two numbers, larger one first."""
    hi, lo = max(a, b), min(a, b)
    out = [(f"{a} + {b} = {a + b}", a + b, f"{a} + {b}"), (f"{hi} - {lo} = {hi - lo}", hi - lo, f"{hi} - {lo}"),
           (f"{a} * {b} = {a * b}", a * b, f"{a} * {b}")]
    if lo > 1 and hi % lo == 0:
        out.append((f"{hi} / {lo} = {hi // lo}", hi // lo, f"{hi} / {lo}"))
    return out


def check_pair(a: int, b: int, need: int) -> tuple[str, Optional[str], str]:
    """The tries shown for making `need` from a and b, stopping at the first hit:
    (text, expression or None, the line that hit or "")."""
    shown = []
    for line, value, expression in pair_tries(a, b):
        shown.append(line)
        if value == need:
            return ", ".join(shown) + ". Yes.", expression, line
    return ", ".join(shown) + ". No.", None, ""


@dataclass(frozen=True)
class Candidate:
    line: str  # the whole line of the trace for this try
    expression: Optional[str]  # the solution, if this try finds one
    miss: int  # how far the closest pair value is from the sub-goal (0 = a solution)
    check: str = ""  # for a solution: the forward computation, e.g. "7 * 3 = 21, 21 + 19 = 40"


def candidates(numbers: list[int], goal: int) -> list[Candidate]:
    """Every first step for three numbers: pick the number x that is applied last, and how."""
    out, seen = [], set()
    for i, x in enumerate(numbers):
        a, b = [n for j, n in enumerate(numbers) if j != i]
        for split in splits(goal, x):
            key = (x, split.need, split.wrap)
            if key in seen:  # the same number twice in the task gives the same try
                continue
            seen.add(key)
            shown, rest, hit = check_pair(a, b, split.need)
            miss = 0 if rest else min(abs(v - split.need) for _, v, _ in pair_tries(a, b))
            expression = split.wrap.format(rest=rest) if rest else None
            check = f"{hit}, {split.last_step()} = {goal}" if rest else ""
            out.append(Candidate(f"{split.line} from {a}, {b}: {shown}", expression, miss, check))
    return out


def countdown_trace(numbers: list[int], target: int, rng: random.Random, max_failures: int = 2,
                    noise: float = 2.5) -> Optional[str]:
    """One trace for a three-number task, or None when no whole-number solution exists."""
    if len(numbers) != 3:
        raise ValueError(f"the countdown teacher solves three-number tasks, got {numbers}")
    found = candidates(numbers, target)
    solutions = [c for c in found if c.expression]
    if not solutions:
        return None
    # Best first: the tries whose remaining pair comes closest to the sub-goal, noisily (a solution
    # is not always the first idea, and the student sees what to do when a try fails).
    order = sorted(found, key=lambda c: math.log1p(c.miss) + rng.gauss(0.0, noise))
    failures = [c for c in order[:order.index(next(c for c in order if c.expression))] if not c.expression]
    failures = failures[:max_failures]
    solution = next(c for c in order if c.expression)
    lines = [f"Goal {target} with {', '.join(map(str, numbers))}."] + [c.line for c in failures] + [solution.line]
    lines.append(f"Check: {solution.check}.")
    return "<think>\n" + "\n".join(lines) + f"\n</think>\n<answer> {solution.expression} </answer>"


def solvable(numbers: list[int], target: int) -> bool:
    """Whether the teacher can write a trace: some whole-number solution of the backwards form exists."""
    return len(numbers) == 3 and any(c.expression for c in candidates(numbers, target))
