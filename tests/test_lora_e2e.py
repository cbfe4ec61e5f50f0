"""LoRA RL through the real stack (Ray, vLLM, DeepSpeed, gloo weight sync; tiny model): the KL term's
reference is the policy's own base model with the adapters off (no reference actor), the engine serves
the merged weights (checksummed), a checkpoint holds the adapters and resumes exactly, and its policy
folder is the merged model, which transformers and vLLM load as any model."""

import glob
import json
import os
import shutil

import pytest
import ray
import torch
from safetensors.torch import load_file

from launcher.grpo import train
from system.config.grpo import load_config
from system.reporting.metrics import read_metrics
from system.training.lora import merge
from tests.probes import engine_logprobs, trainer_logprobs
from tests.test_grpo_e2e import ROOT, TINY_RUN, initial_logprobs
from tests.test_resume_e2e import flat_tensors, optimizer_state
from tests.test_weight_sync_e2e import hf_logprobs, start_engine

DEMO = os.path.join(ROOT, "configs", "grpo_countdown_cpu.yaml")
# lr 1e-2: LoRA's B starts at zero, and two updates must move the log-probs clear of bf16 noise.
LORA_RUN = TINY_RUN + ["train.lora.enabled=true", "train.lora.rank=8", "train.lora.alpha=16", "train.lr=1e-2",
                       "checkpoint.every=1", "checkpoint.keep_last=5", "checkpoint.save_final=true"]


def run(tmp_path, *overrides):
    cfg = load_config(DEMO, LORA_RUN + [f"logging.output_dir={tmp_path}", "logging.run_name=run", *overrides])
    run_dir = os.path.join(str(tmp_path), "run")
    os.makedirs(run_dir, exist_ok=True)
    return train(cfg, run_dir), run_dir


def base_logprobs(model_path: str, seq: list[int], temperature: float) -> torch.Tensor:
    from transformers import AutoModelForCausalLM

    with torch.no_grad():
        model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.bfloat16)
        logits = model(torch.tensor([seq])).logits
    logp = torch.log_softmax(logits[0, :-1].float() / temperature, -1)
    return logp.gather(-1, torch.tensor(seq[1:]).unsqueeze(-1)).squeeze(-1)


def reference_logprobs(policy, seq: list[int]) -> torch.Tensor:
    """The KL term's reference, as the run computes it: at the sampling temperature."""
    from system.training.samples import TrainingSample

    sample = TrainingSample(torch.tensor(seq), torch.zeros(len(seq)), torch.zeros(len(seq)))
    return ray.get(policy.actors[0].reference_logprobs.remote([sample]))[0][1:]


def cfg_temperature() -> float:
    return load_config(DEMO, LORA_RUN).rollout.temperature


@pytest.mark.e2e
def test_lora_run_syncs_merged_weights_checkpoints_adapters_and_resumes(ray_job, tiny_model, tmp_path):
    actors, run_dir = run(tmp_path)
    metrics = read_metrics(run_dir)
    assert [m["step"] for m in metrics] == [0, 1]
    assert actors.reference is None, "with LoRA no reference actor is created"
    for m in metrics:
        assert m["sync/checksum_ok"] == 1.0
        assert m["sync/logprob_abs_diff_mean"] < 0.05  # the engine sampled with the trainer's weights
        assert "timing/reference_s" in m and m["kl/mean"] >= 0 and "train/kl" in m

    seq = list(range(100, 140))
    engine = torch.tensor(engine_logprobs(actors.engines.engines[0], [seq])[0])
    trainer, before = trainer_logprobs(actors.policy, seq), initial_logprobs(tiny_model, seq)
    reference = reference_logprobs(actors.policy, seq)
    base = base_logprobs(tiny_model, seq, cfg_temperature())
    moved, disagree = (engine - before).abs().mean(), (engine - trainer).abs().mean()
    print(f"engine vs initial {moved:.4f}, engine vs trainer {disagree:.4f}, "
          f"reference vs base {(reference - base).abs().mean():.4f}")
    assert moved > 0.02, "the adapters did not move the engine's policy"
    assert disagree < moved / 2, "the engine does not serve the merged weights"
    torch.testing.assert_close(reference, base, atol=0.02, rtol=0)  # adapters off = the base model

    # The checkpoint: DeepSpeed's state holds the adapters alone, adapter/ is peft's, policy/ the merged
    # model.
    final = os.path.join(run_dir, "checkpoints", "step_000002")
    module = torch.load(glob.glob(os.path.join(final, "deepspeed", "state", "*model_states.pt"))[0],
                        weights_only=False, map_location="cpu")["module"]
    # (and the tied head, which DeepSpeed's exclude_frozen_parameters misses: named_parameters drops aliases)
    assert module and all(".lora_" in name or name.endswith("lm_head.weight") for name in module)
    adapter = load_file(os.path.join(final, "adapter", "adapter_model.safetensors"))
    config = json.load(open(os.path.join(final, "adapter", "adapter_config.json")))
    base, exported = load_file(glob.glob(os.path.join(tiny_model, "*.safetensors"))[0]), \
        load_file(os.path.join(final, "policy", "model.safetensors"))
    assert set(exported) == set(base)
    # the trainer's dtype (float32 on a CPU without bf16)
    base = {k: w.to(exported[k].dtype) for k, w in base.items()}
    prefix = "base_model.model.model.layers.0.self_attn.q_proj"
    want = merge(base["model.layers.0.self_attn.q_proj.weight"], adapter[f"{prefix}.lora_A.weight"],
                 adapter[f"{prefix}.lora_B.weight"], config["lora_alpha"] / config["r"])
    assert torch.equal(exported["model.layers.0.self_attn.q_proj.weight"], want)
    assert torch.equal(exported["model.norm.weight"], base["model.norm.weight"])  # not adapted: as it was

    # transformers and vLLM load the merged folder as any model, and score as the trained engine does.
    from transformers import AutoModelForCausalLM

    merged = AutoModelForCausalLM.from_pretrained(os.path.join(final, "policy"), dtype=torch.bfloat16)
    hf = hf_logprobs(merged, seq)
    fresh = start_engine(os.path.join(final, "policy"))
    served = torch.tensor(engine_logprobs(fresh, [seq])[0])
    print(f"exported: transformers vs engine {(hf - engine).abs().mean():.4f}, "
          f"fresh vLLM vs engine {(served - engine).abs().mean():.4f}")
    torch.testing.assert_close(hf, engine, atol=0.05, rtol=0)
    torch.testing.assert_close(served, engine, atol=0.02, rtol=0)
    ray.kill(fresh)
    actors.shutdown()

    # Resume from step 1's checkpoint: step 1 again, on the same batch, to the same adapters and optimizer
    # state.
    uninterrupted = tmp_path / "uninterrupted"
    shutil.copytree(final, uninterrupted)
    actors, _ = run(tmp_path, f"resume={run_dir}/checkpoints/step_000001")
    actors.shutdown()
    resumed = read_metrics(run_dir)
    assert [m["step"] for m in resumed] == [0, 1]
    assert resumed[1]["sync/checksum_ok"] == 1.0 and resumed[1]["sync/logprob_abs_diff_mean"] < 0.05
    assert resumed[1]["reward/mean"] == pytest.approx(metrics[1]["reward/mean"])
    a = flat_tensors(torch.load(glob.glob(str(uninterrupted / "deepspeed" / "state" / "*optim_states.pt"))[0],
                                weights_only=False, map_location="cpu"))
    b = flat_tensors(optimizer_state(run_dir, 2))
    assert len(a) == len(b) > 0
    assert all(torch.allclose(x.float(), y.float(), atol=1e-6) for x, y in zip(a, b))
    again = load_file(os.path.join(run_dir, "checkpoints", "step_000002", "adapter",
                                   "adapter_model.safetensors"))
    assert all(torch.allclose(adapter[k].float(), again[k].float(), atol=1e-6) for k in adapter)
