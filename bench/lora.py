"""LoRA RL against full fine-tuning, and the two ways to bring adapters to the engine (docs/lora.md).

    flock /tmp/r1ray-heavy.lock .venv/bin/python bench/lora.py demo [FULL_RUN_DIR]   # the demo, full vs LoRA
    flock /tmp/r1ray-heavy.lock .venv/bin/python bench/lora.py adapter   # vLLM's own LoRA, on this backend

`demo`: configs/grpo_countdown_cpu.yaml as `make demo` runs it, full fine-tuning and with `train.lora.*`
(rank 16 on every Linear layer, lr 10x), each job's per-step metrics (step time, sync time, eval
accuracy) and the peak RSS of its policy (and reference) actors, sampled every 0.2 s; then both again for
3 steps with a KL term (kl_coef 0.01): full fine-tuning has a reference actor, LoRA none.
`adapter`: what the merged sync sends for the demo's adapters (bytes), against serving them with vLLM's
LoRA support instead: the adapter written as peft writes it, loaded in place into an engine started with
`enable_lora`, every step; the load time, and the generation time of the demo's batch with the
adapter active against the plain engine. Results in bench/results/lora.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

import psutil
from common import ENV, PYTHON, ROOT, load, save, spread, warn_if_busy

DEMO = os.path.join(ROOT, "configs", "grpo_countdown_cpu.yaml")
LORA = ["train.lora.enabled=true", "train.lora.rank=16", "train.lora.alpha=32", "train.lr=2e-4"]  # lr 10x
QUIET = ["logging.wandb_mode=disabled", "logging.progress_bar=false", "checkpoint.every=0"]
PROBE = list(range(2000, 2064))  # a sequence whose log-probs tell the adapted model from the base
ROLES = {"policy": "ray::PolicyTrainer", "reference": "ray::ReferenceModel", "engine": "ray::VLLMEngine"}


class PeakRss:
    """The largest RSS seen of each role's actor processes (Ray titles them ray::<Class>.<method>)."""

    def __init__(self):
        self.peak = {role: 0 for role in ROLES}
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.sample, daemon=True)
        self.thread.start()

    def sample(self):
        while not self.done.wait(0.2):
            for proc in psutil.process_iter(["cmdline", "memory_info"]):
                title = (proc.info["cmdline"] or [""])[0]
                for role, prefix in ROLES.items():
                    if title.startswith(prefix) and proc.info["memory_info"]:
                        self.peak[role] = max(self.peak[role], proc.info["memory_info"].rss)

    def stop(self) -> dict:
        self.done.set()
        self.thread.join()
        return {f"{role}_peak_rss_gb": round(rss / 1e9, 2) for role, rss in self.peak.items() if rss}


def job(name: str, overrides: list[str]) -> dict:
    """One run of the demo config (launcher/grpo.py in a process of its own); its figures and peak memory."""
    run_name = f"lora-{name}-{time.strftime('%H%M%S')}"
    cmd = [PYTHON, os.path.join(ROOT, "launcher", "grpo.py"), "--config", DEMO, *QUIET,
           f"logging.output_dir={os.path.join(ROOT, 'bench', 'runs')}", f"logging.run_name={run_name}", *overrides]
    print("$", " ".join(cmd[1:]), flush=True)
    warn_if_busy()
    memory = PeakRss()
    began = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, env=ENV, check=True, stdout=subprocess.DEVNULL)
    result = {"overrides": overrides, "wall_s": round(time.perf_counter() - began, 1), **memory.stop(),
              **summary(os.path.join(ROOT, "bench", "runs", run_name))}
    print(json.dumps(result), flush=True)
    return result


def summary(run_dir: str) -> dict:
    """Step, update and sync time (the first step, which warms up, left out), eval accuracy, train reward."""
    from system.reporting.metrics import read_metrics

    metrics = read_metrics(run_dir)
    steps = [m for m in metrics if "timing/step_s" in m][1:]
    evals = {m["step"]: {k: round(m[k], 3) for k in ("eval/accuracy", "eval/reward_mean", "eval/pass@1", "eval/pass@4")
                         if k in m} for m in metrics if "eval/accuracy" in m}
    out = {"run_dir": os.path.relpath(run_dir, ROOT), "step_s": spread([m["timing/step_s"] for m in steps]),
           "train_s": spread([m["timing/train_s"] for m in steps]),
           "sync_s": spread([m["timing/sync_s"] for m in steps if "sync/checksum_ok" not in m]),
           "sync_verified_s": spread([m["timing/sync_s"] for m in metrics if "sync/checksum_ok" in m]),
           "logprob_abs_diff_mean": spread([m["sync/logprob_abs_diff_mean"] for m in steps]),
           "train_reward_last": [m for m in metrics if "reward/mean" in m][-1]["reward/mean"], "eval": evals}
    if any("timing/reference_s" in m for m in steps):
        out["reference_s"] = spread([m["timing/reference_s"] for m in steps])
    return out


def demo(full_run: str | None) -> dict:
    """Full fine-tuning (or the figures of an earlier run of it, `full_run`: no memory then), LoRA, and both
    for 2 steps with a KL term."""
    kl = ["algorithm.kl_coef=0.01", "steps=2", "eval.every=0", "checkpoint.save_final=false"]
    full = {"overrides": [], **summary(full_run)} if full_run else job("full", [])
    return {"full": full, "lora": job("lora", LORA),
            "full_kl": job("full-kl", kl), "lora_kl": job("lora-kl", LORA + kl)}


def adapter_side(lora: bool, adapter_dir: str, steps: int) -> dict:
    """In a process of its own (one in-process vLLM engine each): the demo's batch generated `steps`
    times on the plain engine, or on one with enable_lora, loading the adapter in place before each."""
    from vllm import LLM, SamplingParams, TokensPrompt
    from vllm.lora.request import LoRARequest

    from system.models import resolve_model
    from system.platform import current_platform

    platform = current_platform()
    os.environ.update(platform.vllm_env(1, os.cpu_count()))
    extra = {"enable_lora": True, "max_lora_rank": 16, "max_loras": 1} if lora else {}
    began = time.perf_counter()
    llm = LLM(model=resolve_model("smollm2-135m"), dtype="bfloat16", seed=0, max_model_len=512,
              logprobs_mode="processed_logprobs", **platform.vllm_kwargs(0.5), **extra)
    start_s = time.perf_counter() - began
    prompts = [TokensPrompt(prompt_token_ids=list(range(1000 + 40 * i, 1060 + 40 * i))) for i in range(4)]
    params = SamplingParams(n=8, temperature=0.7, max_tokens=32, ignore_eos=True, logprobs=0, seed=1)
    load_s, generate_s = [], []
    for step in range(steps):
        request = None
        if lora:
            t = time.perf_counter()
            request = LoRARequest("policy", 1, adapter_dir, load_inplace=True)  # one id, reloaded in place
            llm.llm_engine.add_lora(request)
            load_s.append(time.perf_counter() - t)
        t = time.perf_counter()
        llm.generate(prompts, params, lora_request=request, use_tqdm=False)
        generate_s.append(time.perf_counter() - t)
        print(f"{'lora' if lora else 'plain'} step {step}: load {load_s[-1] if load_s else 0:.3f} s, "
              f"generate {generate_s[-1]:.2f} s", file=sys.stderr, flush=True)
    rss = psutil.Process().memory_info().rss
    scored = llm.generate([TokensPrompt(prompt_token_ids=PROBE)], SamplingParams(max_tokens=1, prompt_logprobs=0),
                          lora_request=request, use_tqdm=False)[0]
    logprobs = [step[token].logprob for step, token in zip(scored.prompt_logprobs[1:], PROBE[1:])]
    return {"engine_start_s": round(start_s, 1), "load_s": load_s[1:], "generate_s": generate_s[1:],
            "rss_gb": round(rss / 1e9, 2), "probe_logprobs": logprobs}


def adapter() -> dict:
    """Bytes of both syncs for the demo's adapters, and vLLM's LoRA serving measured in two processes."""
    import torch
    from transformers import AutoModelForCausalLM

    from system.models import resolve_model
    from system.training.lora import LoraConfig, add_adapters, save_adapter, sync_tensors

    model = AutoModelForCausalLM.from_pretrained(resolve_model("smollm2-135m"), dtype=torch.bfloat16)
    full_bytes = sum(p.numel() * p.element_size() for n, p in model.named_parameters())  # tied head counted once
    model = add_adapters(model, LoraConfig(enabled=True, rank=16, alpha=32)).to(torch.bfloat16)  # as DeepSpeed's bf16
    with torch.no_grad():  # a trained adapter's B is not zero
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 1e-2)
    tensors = sync_tensors(model)
    t = time.perf_counter()
    merged = [value() for _, _, value in tensors]
    merge_s = time.perf_counter() - t
    result = {"full_sync_bytes": full_bytes, "merged_sync_bytes": sum(x.numel() * x.element_size() for x in merged),
              "merged_sync_tensors": len(merged), "merge_compute_s": round(merge_s, 3)}
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        save_adapter(model, tmp)
        result["adapter_write_s"] = round(time.perf_counter() - t, 3)
        result["adapter_bytes"] = sum(os.path.getsize(os.path.join(tmp, f)) for f in os.listdir(tmp))
        for side in ("plain", "lora"):
            done = subprocess.run([PYTHON, __file__, "adapter-side", side, tmp], cwd=ROOT, env=ENV, check=True,
                                  stdout=subprocess.PIPE, text=True)
            measured = json.loads(done.stdout.strip().splitlines()[-1])
            result[side] = {k: spread(v) if isinstance(v, list) and v and k != "probe_logprobs" else v
                            for k, v in measured.items()}
    # Does the engine serve the adapter? Its log-probs against transformers' on the merged and the base model.
    probe = torch.tensor([PROBE])
    with torch.no_grad():
        with model.disable_adapter():
            base = torch.log_softmax(model(probe).logits[0, :-1].float(), -1)[torch.arange(63), probe[0, 1:]]
        adapted = torch.log_softmax(model(probe).logits[0, :-1].float(), -1)[torch.arange(63), probe[0, 1:]]
    for side in ("plain", "lora"):
        served = torch.tensor(result[side].pop("probe_logprobs"))
        result[side]["probe_vs_adapted"] = round(float((served - adapted).abs().mean()), 4)
        result[side]["probe_vs_base"] = round(float((served - base).abs().mean()), 4)
    print(json.dumps(result, indent=1), flush=True)
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("part", choices=["demo", "adapter", "adapter-side"])
    parser.add_argument("rest", nargs="*")
    args = parser.parse_args()
    sys.path.insert(0, ROOT)
    if args.part == "adapter-side":
        side, folder = args.rest
        print(json.dumps(adapter_side(side == "lora", folder, steps=4)))
    else:
        results = load("lora")
        results[args.part] = demo(args.rest[0] if args.rest else None) if args.part == "demo" else adapter()
        save("lora", results)
