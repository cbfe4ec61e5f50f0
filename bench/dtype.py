"""Table 9: the model's dtype on this CPU, bf16 against float32 (what model.dtype=auto decides).

    flock /tmp/r1ray-heavy.lock .venv/bin/python bench/dtype.py [--repeats 3]

Three measurements with SmolLM2-135M, each in both dtypes, the dtypes alternating within every
repeat (the first repeat is warm-up, left out):
- matmul: GFLOP/s at the model's MLP shape (bench/bare.py's `matmul_gflops`);
- generate: vLLM's CPU engine, as our engine actor builds it (in-process, eager), decode tokens/s
  of 4 prompts x 8 samples x 128 tokens (one engine per dtype, each in its own process);
- train: one forward + backward of the trainer's model (system/training/engines.py `load_model`)
  on a 128-token sequence, seconds.
On a CPU where oneDNN has no bf16 matmul (AVX2 only) bf16 is emulated; `auto` then picks float32.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import torch
from common import ENV, PYTHON, fmt, save, spread, warn_if_busy

from system.models import resolve_model
from system.platform import current_platform

DTYPES = ("bfloat16", "float32")


def generate_rate(dtype: str, repeats: int) -> list[float]:
    """Decode tokens/s of one engine in `dtype`, `repeats` times (run in a child process)."""
    platform = current_platform()
    os.environ.update(platform.vllm_env(1, platform.num_threads(0)))
    from vllm import LLM, SamplingParams

    llm = LLM(model=resolve_model("smollm2-135m"), dtype=dtype, seed=0, max_model_len=512,
              distributed_executor_backend="uni", **platform.vllm_kwargs(0.5))
    params = SamplingParams(n=8, max_tokens=128, ignore_eos=True, temperature=0.8, seed=0)
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        llm.generate([f"Problem {i}: add the numbers" for i in range(4)], params, use_tqdm=False)
        rates.append(4 * 8 * 128 / (time.perf_counter() - start))
    return rates


def train_seconds(dtype: str) -> float:
    """One forward + backward of the trainer's model on 128 tokens."""
    from system.training.engines import load_model

    model = load_model(resolve_model("smollm2-135m"), dtype)
    ids = torch.randint(0, 49152, (1, 128))
    start = time.perf_counter()
    model(input_ids=ids, labels=ids).loss.backward()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", help=argparse.SUPPRESS)  # generate_rate in this dtype, JSON to stdout
    args = parser.parse_args()
    if args.child:
        print(json.dumps(generate_rate(args.child, args.repeats)))
        return
    from bare import matmul_gflops

    platform = current_platform()
    platform.set_threads(platform.num_threads(0))
    warn_if_busy()
    results = {"auto": platform.model_dtype("auto"), "mkldnn_bf16": torch.ops.mkldnn._is_mkldnn_bf16_supported(),
               "cpu_capability": torch.backends.cpu.get_cpu_capability()}
    runs = {d: {"matmul_gflops": [], "train_s": []} for d in DTYPES}
    for repeat in range(args.repeats):
        for dtype in DTYPES if repeat % 2 == 0 else DTYPES[::-1]:
            gflops, seconds = matmul_gflops(getattr(torch, dtype), repeats=3), train_seconds(dtype)
            if repeat:
                runs[dtype]["matmul_gflops"].append(gflops)
                runs[dtype]["train_s"].append(seconds)
            print(f"repeat {repeat} {dtype}: {gflops:.1f} GFLOP/s, train {seconds:.2f} s", flush=True)
    for dtype in DTYPES:
        done = subprocess.run([PYTHON, os.path.abspath(__file__), "--child", dtype, "--repeats", str(args.repeats + 1)],
                              env=ENV, capture_output=True, text=True, check=True)
        runs[dtype]["decode_tok_s"] = json.loads(done.stdout.strip().splitlines()[-1])[1:]
    results.update({d: {k: spread(v) for k, v in r.items()} for d, r in runs.items()})
    for key, better in (("matmul_gflops", "higher"), ("decode_tok_s", "higher"), ("train_s", "lower")):
        bf16, fp32 = results["bfloat16"][key], results["float32"][key]
        ratio = fp32["median"] / bf16["median"] if better == "higher" else bf16["median"] / fp32["median"]
        print(f"{key}: bf16 {fmt(bf16)}, float32 {fmt(fp32)}; float32 {ratio:.1f}x faster")
    warn_if_busy()
    save("dtype", results)


if __name__ == "__main__":
    sys.exit(main())
