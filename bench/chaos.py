"""A chaos run: GRPO runs of the tiny model while a thread SIGKILLs a random actor of a random role
at random moments (tests/faults.py: Chaos), each checked against a run of the same seed without
failures. The table of docs/reliability.md, "Chaos".

    flock /tmp/r1ray-heavy.lock .venv/bin/python bench/chaos.py --scenario sync --steps 150 --every 20

Scenarios: `sync` and `async` (the Countdown demo at schedule.max_staleness 0 and 1, with a
reference and 2 reward workers), `game` (the 24 game, multi-turn, 2 env workers), `agent` (an
OpenAI-client agent on the engine's endpoint: an engine killed while episodes are open on it).
The killing starts once the first step is logged and stops once the last one is: start-up and the
evaluation after the last step are outside the recovery (a failure there ends the run).

Checked at the end: every step logged exactly once; at each step the task source's position and
the tasks trained (data/tasks_digest) those of the run without failures; each kill found in
faults.jsonl; the run returned (a checksummed weight sync ends every recovery, so a mismatch would
have ended it). Results go to bench/results/chaos.json, one entry per scenario (or per `--key`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import Counter

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import ray  # noqa: E402
from common import RESULTS, ROOT, machine, spread, warn_if_busy  # noqa: E402

from launcher.grpo import train  # noqa: E402
from system.config.grpo import load_config  # noqa: E402
from system.reporting.metrics import read_metrics  # noqa: E402
from tests.faults import Chaos, chaos_invariants, kill_noticed, read_faults  # noqa: E402

TINY = ["model.path=tiny", "train.lr=1e-3", "algorithm.kl_coef=0.01", "logging.wandb_mode=disabled",
        "logging.progress_bar=false", "sync.bucket_mb=4", "sync.verify_every=1", "eval.every=0",
        "checkpoint.every=2", "checkpoint.keep_last=2", "checkpoint.save_final=false"]
DEMO = ["prompts_per_step=4", "rollout.group_size=4", "rollout.max_new_tokens=16", "rollout.max_model_len=256",
        "train.micro_batch_size=8", "reward.num_workers=2"]
SCENARIOS = {
    "sync": ("grpo_countdown_cpu.yaml", DEMO + ["schedule.max_staleness=0"]),
    "async": ("grpo_countdown_cpu.yaml", DEMO + ["schedule.max_staleness=1"]),
    "game": ("grpo_24point_cpu.yaml", [
        "prompts_per_step=2", "rollout.group_size=2", "rollout.max_new_tokens=16", "rollout.max_model_len=512",
        "env.max_context_tokens=512", "env.params.max_turns=2", "env.num_workers=2", "train.micro_batch_size=4"]),
    "agent": ("grpo_openai_agent_cpu.yaml", [
        "prompts_per_step=2", "rollout.group_size=4", "rollout.max_new_tokens=8", "rollout.max_model_len=512",
        "agent.concurrency=4", "reward.num_workers=1", "train.micro_batch_size=8"]),
}


def one_run(config: str, overrides: list[str], out_dir: str, name: str, chaos: dict | None) -> dict:
    """A run in a Ray runtime of its own, under Chaos(**chaos) if given: its metrics, faults, kills,
    wall time and how it ended."""
    cfg = load_config(os.path.join(ROOT, "configs", config), TINY + overrides + [
        f"logging.output_dir={out_dir}", f"logging.run_name={name}"])
    run_dir = os.path.join(out_dir, name)
    os.makedirs(run_dir, exist_ok=True)
    killer = Chaos(run_dir, cfg.steps - 1, **chaos) if chaos else None
    if killer:
        killer.start()
    began, status = time.monotonic(), "returned"
    try:
        train(cfg, run_dir).shutdown()
    except Exception as error:  # the run ended: say why
        status = f"{type(error).__name__}: {error}"[:800]
    finally:
        wall = time.monotonic() - began
        if killer:
            killer.stop()
        ray.shutdown()
    return {"metrics": read_metrics(run_dir), "faults": read_faults(run_dir), "wall_s": wall, "status": status,
            "kills": killer.kills if killer else []}


def summary(scenario: str, steps: int, args, calm: dict, wild: dict) -> dict:
    """The figures of one scenario: kills per role and how many were found, the time each cost, the
    invariants held."""
    kills, faults = wild["kills"], wild["faults"]
    found = [(k, kill_noticed(k, faults)) for k in kills]
    lost = {role: [f["lost_s"] for k, f in found if f and k["role"] == role] for role in {k["role"] for k in kills}}
    trained = sorted((m for m in wild["metrics"] if "reward/mean" in m), key=lambda m: m["step"])
    calm_trained = [m for m in calm["metrics"] if "reward/mean" in m]
    return {
        "machine": machine(), "date": time.strftime("%Y-%m-%d"), "shared_with": args.shared_with,
        "command": f"flock /tmp/r1ray-heavy.lock .venv/bin/python bench/chaos.py --scenario {scenario} "
                   f"--steps {steps} --every {args.every:g} --seed {args.seed}"
                   + "".join(f" {o}" for o in args.overrides),
        "config": SCENARIOS[scenario][0], "status": wild["status"], "steps_logged": len(trained),
        "kills": len(kills), "kills_by_role": dict(Counter(k["role"] for k in kills)),
        "found_by_role": dict(Counter(k["role"] for k, f in found if f)),
        "not_found": [k for k, f in found if f is None],
        "failures": len(faults), "failures_while_recovering": sum(f["resumed_at"] is None for f in faults),
        "steps_redone": sum(max(0, f["step"] - f["resumed_at"]) for f in faults if f["resumed_at"] is not None),
        "lost_s_per_failure": spread([f["lost_s"] for f in faults]) if faults else None,
        "lost_s_by_role": {role: spread(v) for role, v in lost.items() if v},
        "wall_s": wild["wall_s"], "uninterrupted_wall_s": calm["wall_s"],
        "extra_s_per_kill": (wild["wall_s"] - calm["wall_s"]) / max(len(kills), 1),
        "invariants": chaos_invariants(wild["metrics"], steps, calm_trained),
        # at max_staleness 0 the samples, and so the rewards, of each step are those of the run without failures
        "steps_with_its_reward_mean": sum(m["reward/mean"] == c["reward/mean"] for m, c in zip(trained, calm_trained)),
        "logprob_abs_diff_max": max((m["sync/logprob_abs_diff_mean"] for m in trained), default=None),
        "uninterrupted_logprob_abs_diff_max": max(m["sync/logprob_abs_diff_mean"] for m in calm_trained),
        "kill_log": kills, "faults": [{k: v for k, v in f.items() if k != "error"} | {"error": f["error"][:200]}
                                      for f in faults],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), required=True)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--every", type=float, default=20.0, help="mean seconds between two kills")
    parser.add_argument("--seed", type=int, default=1, help="of the chaos: which actor, when")
    parser.add_argument("--key", help="the entry of bench/results/chaos.json (default: the scenario)")
    parser.add_argument("--shared-with", default="", help="what else ran on the machine meanwhile, if anything")
    parser.add_argument("overrides", nargs="*", help="config overrides of both runs")
    args = parser.parse_args()
    config, overrides = SCENARIOS[args.scenario]
    overrides = overrides + [f"steps={args.steps}", *args.overrides]
    warn_if_busy()
    with tempfile.TemporaryDirectory() as out_dir:
        calm = one_run(config, overrides, out_dir, "calm", None)
        print(f"without failures: {calm['status']} in {calm['wall_s']:.0f} s", flush=True)
        wild = one_run(config, overrides, out_dir, "chaos", {"every_s": args.every, "seed": args.seed,
                                                             "timeout_s": 6 * 3600})
    result = summary(args.scenario, args.steps, args, calm, wild)
    print(json.dumps({k: v for k, v in result.items() if k not in ("kill_log", "faults")}, indent=1))
    path = os.path.join(RESULTS, "chaos.json")
    results = json.load(open(path)) if os.path.exists(path) else {}
    results[args.key or args.scenario] = result
    with open(path, "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
