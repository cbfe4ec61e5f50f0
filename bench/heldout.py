"""A larger held-out set for a generated task, and training problems no earlier stage saw, as data files.

    python bench/heldout.py --config configs/grpo_countdown3_cpu.yaml --num 256 \
        --exclude PIPELINE_DIR/1-cold_start_data/data.jsonl --out runs/heldout256.jsonl \
        --train-out runs/rl_fresh2000.jsonl --num-train 2000
    python launcher/evaluate.py --config configs/grpo_countdown3_cpu.yaml model.path=MODEL \
        data.source=runs/heldout256.jsonl data.num_eval=256 eval.num_samples=1 eval.pass_k=[1]
    python launcher/grpo.py --config configs/grpo_countdown3_cpu.yaml model.path=MODEL \
        data.source=runs/rl_fresh2000.jsonl data.num_eval=1 data.num_train=2000

Greedy accuracy on the config's 64 held-out problems moves by one or two problems under an update with
no direction (docs/r1-recipe.md); 256 problems halve that noise. The held-out file starts with the config's
own held-out problems (so its first rows are the pipeline's eval set), then new tasks that are none of the
config's training rows nor of the `--exclude` files (a stage's data.jsonl: its problems were trained on).
The training file's problems are none of those either: RL on problems that no SFT trace covered. Each file
ends with rows that a launcher's training split needs and never trains on here (the evaluation builds its
sampler; the GRPO run's file starts with one held-out row, its data.num_eval=1).
"""

from __future__ import annotations

import argparse
import json

from system.config.grpo import Config, load_config
from system.data import distinct_tasks, generate, held_out_tasks, task_key, training_draw


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="a GRPO config whose data is a generator")
    parser.add_argument("--num", type=int, default=256, help="held-out problems")
    parser.add_argument("--exclude", nargs="*", default=[], help="data files whose problems were trained on")
    parser.add_argument("--out", required=True)
    parser.add_argument("--train-out", default="", help="also write this many training problems no one saw")
    parser.add_argument("--num-train", type=int, default=2000)
    args = parser.parse_args()

    data = load_config(args.config, [], schema=Config).data
    seen = {key(r) for r in training_draw(data)}  # its training rows come from these
    for path in args.exclude:
        seen |= {key(json.loads(line)) for line in open(path)}
    held_out = held_out_tasks(data)
    seen |= {key(h) for h in held_out}
    for row in distinct_tasks(generate(data.source, 4000, data.seed + 20_000, data)):  # new tasks, their own seed
        if len(held_out) < args.num and key(row) not in seen:
            held_out.append(row)
            seen.add(key(row))
    stream = distinct_tasks(generate(data.source, 20_000, data.seed + 30_000, data))
    train = [r for r in stream if key(r) not in seen]
    if len(held_out) < args.num or len(train) < max(args.num_train, 8):
        raise SystemExit(f"{len(held_out)} held-out, {len(train)} training tasks: lower --num or --num-train")
    write(args.out, held_out + train[:8])  # + rows for the evaluation's training split (never trained on)
    print(f"{args.out}: {args.num} held-out problems, the first {data.num_eval} the config's own")
    if args.train_out:
        write(args.train_out, held_out[:1] + train[: args.num_train])
        print(f"{args.train_out}: {args.num_train} training problems after a held-out row (data.num_eval=1)")


def key(row: dict) -> str:
    """The task of a generated row, or of a stage's data.jsonl row (which has more columns)."""
    return task_key({"nums": row["nums"], "target": row["target"]})


def write(path: str, rows: list[dict]) -> None:
    with open(path, "w") as f:
        f.writelines(json.dumps({"nums": r["nums"], "target": r["target"]}) + "\n" for r in rows)


if __name__ == "__main__":
    main()
