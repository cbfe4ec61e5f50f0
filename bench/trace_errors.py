"""Why a Countdown model's held-out answers fail: each wrong greedy reply of an eval file sorted
into the first thing that went wrong in its trace.

    python bench/trace_errors.py RUN_DIR/eval/step_000000.jsonl [...]

- cut off: no closing </answer> (the reply ran into the token limit);
- wrong arithmetic: a step `a op b = c` of the trace that does not hold;
- wrong answer: all shown arithmetic holds, but the answer misses the target or the numbers.
Counts are printed per file; the eval files hold `eval.num_logged` replies each.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter

from system.rewards.steps import shown_steps, step_holds


def first_error(completion: str) -> str:
    if "</answer>" not in completion:
        return "cut off"
    if not all(step_holds(*step) for step in shown_steps(completion.split("<answer>")[0])):
        return "wrong arithmetic"
    return "wrong answer"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+")
    for path in parser.parse_args().files:
        rows = [json.loads(line) for line in open(path)]
        errors = Counter(first_error(r["completion"]) for r in rows if not r["correct"])
        print(f"{path}: {len(rows)} replies, {sum(r['correct'] for r in rows)} right; "
              + ", ".join(f"{k} {v}" for k, v in errors.most_common()))


if __name__ == "__main__":
    main()
