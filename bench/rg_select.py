"""Which reasoning-gym tasks can RL-Zero move? The base model's pass@1 and greedy accuracy per candidate task.

    flock /tmp/r1ray-heavy.lock .venv/bin/python bench/rg_select.py --problems 64
    flock /tmp/r1ray-heavy.lock .venv/bin/python bench/rg_select.py --problems 256 --tasks syllogism,aiw

GRPO learns only from groups whose samples disagree: a task the model never solves (pass@1 near 0) gives
no signal, one it nearly always solves has little left to gain. This evaluates the shipped config
(configs/grpo_reasoning_gym_cpu.yaml: its prompt, reply prefix, stop and eval settings, R1's pass@1 from
8 samples at T=0.6, top-p 0.95) on a mixture of the candidates below, each at an easy difficulty, in one
launch (launcher/evaluate.py), and marks the tasks whose pass@1 lies in [PICK_LOW, PICK_HIGH].
The mixture draws each held-out problem's task by weight, so a task gets about --problems of them.
Writes bench/results/rg_select_<problems>.json (or --out) and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
from collections import Counter

from launcher.evaluate import main as evaluate
from system.config.grpo import load_config
from system.data import load_splits

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "configs", "grpo_reasoning_gym_cpu.yaml")
PICK_LOW, PICK_HIGH = 0.02, 0.60
# An easy setting of each: short questions, answers that fit the config's 16 new tokens, and a task space
# of 1000 questions or more, so that 256 distinct held-out ones leave most for training. Not isomorphic_strings
# nor ransom_note: the data source refuses them (system/data/reasoning_gym.py, PROCESS_DEPENDENT).
CANDIDATES = {
    "chain_sum": {"min_terms": 2, "max_terms": 3, "min_digits": 1, "max_digits": 1},
    "basic_arithmetic": {"min_terms": 2, "max_terms": 3, "min_digits": 1, "max_digits": 1,
                         "allow_parentheses": False, "allow_negation": False},
    "products": {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 2},
    "letter_counting": {"min_words": 3, "max_words": 5},
    "leg_counting": {"min_animals": 1, "max_animals": 2, "max_instances": 3},
    "gcd": {"max_value": 100},
    "lcm": {"max_value": 50},
    "syllogism": {},
    "calendar_arithmetic": {},
    "family_relationships": {"max_family_size": 4},
    "aiw": {},
    "spell_backward": {"max_word_len": 4},
    "count_bits": {"max_n": 2000},
    "simple_equations": {"min_terms": 2, "max_terms": 2, "max_value": 30},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--problems", type=int, default=64, help="held-out problems per task (about)")
    parser.add_argument("--tasks", default=",".join(CANDIDATES),
                        help="comma-separated; a task not in CANDIDATES runs at the library's defaults")
    parser.add_argument("--out", help="the JSON written (default bench/results/rg_select_<problems>.json)")
    parser.add_argument("overrides", nargs="*", help="more config overrides, e.g. model.path=runs/.../final")
    args = parser.parse_args()
    tasks = {name: {"weight": 1, "config": CANDIDATES.get(name, {})} for name in args.tasks.split(",")}
    run_dir = evaluate(["--config", CONFIG, "data.source=reasoning_gym", f"data.params={json.dumps({'tasks': tasks})}",
                        f"data.num_eval={args.problems * len(tasks)}", "data.num_train=8",
                        f"logging.run_name=rg_select_{args.problems}", *args.overrides])
    with open(os.path.join(run_dir, "eval.json")) as f:
        metrics = json.load(f)
    held_out = load_splits(load_config(os.path.join(run_dir, "config.yaml")).data)[1]
    counts = Counter(row["task"] for row in held_out)
    rows = [(name, metrics[f"eval/{name}/pass@1"], metrics[f"eval/{name}/greedy"]) for name in tasks]
    rows.sort(key=lambda row: -row[1])
    table = ["| task | difficulty | problems | pass@1 (k=8, T=0.6) | greedy | picked |", "|---|---|---|---|---|---|"]
    table += [f"| {name} | {json.dumps(tasks[name]['config'])} | {counts[name]} | {p:.3f} | {g:.3f} | "
              f"{'yes' if PICK_LOW <= p <= PICK_HIGH else ''} |" for name, p, g in rows]
    print("\n".join(table))
    out = args.out or os.path.join(ROOT, "bench", "results", f"rg_select_{args.problems}.json")
    with open(out, "w") as f:
        json.dump({"run_dir": run_dir, "candidates": {n: spec["config"] for n, spec in tasks.items()},
                   "metrics": metrics, "counts": counts}, f, indent=2)


if __name__ == "__main__":
    main()
