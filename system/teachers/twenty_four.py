"""A 24-game teacher that is a program: the Countdown search (teachers/countdown.py) one level up.

Four numbers: the goal is split as `24 = rest op x` for one number x, and the three numbers left
must make the sub-goal, which the three-number search then shows in its own, indented lines:

    <think>
    Goal 24 with 13, 5, 8, 6.
    24 + 8 = 32 from 13, 5, 6: no.
    24 * 6 = 144 from 13, 5, 8:
      144 - 13 = 131 from 5, 8: 5 + 8 = 13, 8 - 5 = 3, 5 * 8 = 40. No.
      144 / 8 = 18 from 13, 5: 13 + 5 = 18. Yes.
    Check: 13 + 5 = 18, 18 * 8 = 144, 144 / 6 = 24.
    </think>
    <answer> ((13 + 5) * 8) / 6 </answer>

A failed first split is shown as one line ("no."): the teacher has searched it, the trace only
says so, which keeps traces short. Tasks whose only solutions pair the numbers two by two, as in
(8 - 4) * (7 - 1), are not of this form: the teacher returns None for them (counted by distill).
"""

from __future__ import annotations

import math
import random
from typing import Optional

from system.teachers.countdown import candidates, pair_tries, splits


def split_tries(numbers: list[int], target: int) -> list[tuple]:
    """Every first split of the goal: (its line, the three-number tries for its sub-goal, the split,
    the three numbers)."""
    if len(numbers) != 4:
        raise ValueError(f"the 24 teacher solves four-number tasks, got {numbers}")
    tries = []
    for i, x in enumerate(numbers):
        rest = [n for j, n in enumerate(numbers) if j != i]
        for split in splits(target, x):
            line = f"{split.line} from {', '.join(map(str, rest))}:"
            tries.append((line, candidates(rest, split.need), split, rest))
    return tries


def solved(split_try: tuple) -> bool:
    return any(c.expression for c in split_try[1])


def twenty_four_trace(numbers: list[int], target: int, rng: random.Random, max_failures: int = 2,
                      noise: float = 2.5, size_weight: float = 0.0, tried: str = "",
                      inner_noise: Optional[float] = None) -> Optional[str]:
    """One trace for a four-number task, or None when no solution of the backwards form exists.
    `size_weight` > 0 prefers splits with small sub-goals (and so small numbers in the trace);
    `inner_noise` (default: `noise`) orders the three-number tries, so sets how often one fails
    ("... No.") before the solution; `tried`: the split line a failed earlier reply took, shown
    first as a failed try."""
    tries = split_tries(numbers, target)
    if not any(map(solved, tries)):
        return None
    order = sorted(tries, key=lambda t: (0.0 if solved(t) else 1.0) + size_weight * math.log(t[2].need)
                   + rng.gauss(0.0, noise))
    if tried:
        earlier = next((t for t in tries if t[0] == tried and not solved(t)), None)
        if earlier is None:
            raise ValueError(f"{tried!r} is not a failing split of {numbers}")
        order = [earlier] + [t for t in order if t is not earlier]
    first = next(t for t in order if solved(t))
    failures = order[:order.index(first)][:max(max_failures, 1 if tried else 0)]
    line, inner, split, _ = first
    inner_noise = noise if inner_noise is None else inner_noise
    inner = sorted(inner, key=lambda c: math.log1p(c.miss) + rng.gauss(0.0, inner_noise))
    solution = next(c for c in inner if c.expression)
    shown = inner[:inner.index(solution)][:max_failures] + [solution]
    lines = [f"Goal {target} with {', '.join(map(str, numbers))}."] + [f"{t[0]} no." for t in failures]
    lines += [line] + [f"  {c.line}" for c in shown]
    lines.append(f"Check: {solution.check}, {split.last_step()} = {target}.")
    expression = split.wrap.format(rest=solution.expression)
    return "<think>\n" + "\n".join(lines) + f"\n</think>\n<answer> {expression} </answer>"


def slipped_trace(numbers: list[int], target: int, rng: random.Random) -> tuple[str, str]:
    """A trace in the teacher's layout that goes wrong the way a small student does: one pair
    value is miscomputed into the sub-goal ("5 * 2 = 12. Yes."), so its answer misses the target.
    The failed first try of a retry episode (teachers/episodes.py); never trained on. Returns the
    trace and its first split's line; that split has no solution where the task allows."""
    tries = split_tries(numbers, target)
    failing = [t for t in tries if not solved(t)] or tries
    slips = []  # (outer split's line, the split, inner split, the pair, one wrong pair try)
    for line, _, outer, rest in failing:
        for k, y in enumerate(rest):
            a, b = [n for j, n in enumerate(rest) if j != k]
            values = [value for _, value, _ in pair_tries(a, b)]
            for inner in splits(outer.need, y):
                slips += [(line, outer, inner, (a, b), t) for t, value in enumerate(values)
                          if 0 < value != inner.need and outer.need <= 100 and inner.need <= 100]
    line, outer, inner, (a, b), slip = rng.choice(slips)
    shown = pair_tries(a, b)[:slip + 1]
    wrong = shown[-1][0].rsplit("=", 1)[0] + f"= {inner.need}"
    text = ", ".join([t[0] for t in shown[:-1]] + [wrong])
    expression = outer.wrap.format(rest=inner.wrap.format(rest=shown[-1][2]))
    lines = [f"Goal {target} with {', '.join(map(str, numbers))}.", line,
             f"  {inner.line} from {a}, {b}: {text}. Yes.",
             f"Check: {wrong}, {inner.last_step()} = {outer.need}, {outer.last_step()} = {target}."]
    trace = "<think>\n" + "\n".join(lines) + f"\n</think>\n<answer> {expression} </answer>"
    return trace, line if failing is not tries else ""
