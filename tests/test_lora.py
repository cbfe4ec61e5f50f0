"""LoRA (system/training/lora.py): peft names -> HF names, the merge W + scale * B @ A against peft's
own merge, what a sync sends, the config checks; and a DeepSpeed engine with adapters: only they train,
its checkpoint holds them and the merged model, and a fresh engine resumes them."""

from __future__ import annotations

import pytest
import torch

from system.config.grpo import ConfigError, load_config
from system.training.lora import (ALL_LINEAR, FUSED, LoraConfig, add_adapters, hf_name, merge,
                                  merged_state_dict, scaling_of, sync_tensors)
from tests.test_grpo_update import make_engine, samples


def adapted(model_path: str, targets=None, rank: int = 4, alpha: float = 16.0):
    """The tiny model with adapters whose B is not zero (a fresh adapter merges to the base itself)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.bfloat16)
    model = add_adapters(model, LoraConfig(enabled=True, rank=rank, alpha=alpha,
                                           target_modules=targets or list(ALL_LINEAR)))
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    return model


def test_hf_names():
    peft = "base_model.model.model.layers.0.mlp.up_proj.base_layer.weight"
    assert hf_name(peft) == "model.layers.0.mlp.up_proj.weight"
    assert hf_name("base_model.model.model.norm.weight") == "model.norm.weight"
    assert hf_name("base_model.model.lm_head.weight") == "lm_head.weight"


def test_merge_by_hand():
    w = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    a = torch.tensor([[1.0, 0.0]])  # rank 1
    b = torch.tensor([[2.0], [-1.0]])
    assert torch.equal(merge(w, a, b, 0.5), torch.tensor([[2.0, 2.0], [2.5, 4.0]]))


def test_only_adapters_train_and_the_merged_state_dict_is_peft_merge(tiny_model):
    model = adapted(tiny_model)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(".lora_A." in n or ".lora_B." in n for n in trainable)
    assert scaling_of(model) == 16.0 / 4

    ours = merged_state_dict(model.state_dict(), scaling_of(model))
    theirs = model.merge_and_unload().state_dict()  # peft's own merge, in place
    assert set(ours) == set(theirs)
    for name in theirs:  # peft adds the bf16 delta to the bf16 weight; ours rounds once, from fp32
        torch.testing.assert_close(ours[name].float(), theirs[name].float(), atol=2e-2, rtol=1e-2)
    assert not torch.equal(ours["model.layers.0.self_attn.q_proj.weight"],
                           adapted_base(tiny_model)["model.layers.0.self_attn.q_proj.weight"])


def adapted_base(model_path: str) -> dict:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.bfloat16).state_dict()


def test_a_sync_sends_the_adapted_modules_merged_and_their_fused_parts(tiny_model):
    model = adapted(tiny_model, targets=["q_proj", "v_proj", "down_proj"])
    sent = {name: value() for name, _, value in sync_tensors(model)}
    base = adapted_base(tiny_model)
    merged = merged_state_dict(model.state_dict(), scaling_of(model))
    layers = {n.split(".")[2] for n in base if n.startswith("model.layers.")}
    # q and v adapted, k sent too (vLLM fuses q/k/v: a partial qkv reload would leave k uninitialised);
    # down_proj alone is no fused part; o_proj, gate/up, norms and embeddings never change: not sent.
    want = {f"model.layers.{i}.{m}.weight" for i in layers
            for m in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "mlp.down_proj")}
    assert set(sent) == want
    for name, tensor in sent.items():
        assert torch.equal(tensor, merged[name]), name
    assert torch.equal(sent["model.layers.0.self_attn.k_proj.weight"],
                       base["model.layers.0.self_attn.k_proj.weight"])
    assert not torch.equal(sent["model.layers.0.self_attn.q_proj.weight"],
                           base["model.layers.0.self_attn.q_proj.weight"])


def test_fused_groups_are_vllms():
    from vllm.model_executor.models.llama import LlamaForCausalLM
    from vllm.model_executor.models.qwen2 import Qwen2ForCausalLM

    for cls in (LlamaForCausalLM, Qwen2ForCausalLM):
        assert sorted(map(tuple, cls.packed_modules_mapping.values())) == sorted(FUSED)


def test_unknown_or_non_linear_targets_are_errors(tiny_model):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.bfloat16)
    with pytest.raises(ValueError, match="no such module"):
        add_adapters(model, LoraConfig(enabled=True, target_modules=["qkv"]))
    with pytest.raises(ValueError, match="not Linear"):
        add_adapters(model, LoraConfig(enabled=True, target_modules=["embed_tokens"]))


def test_config():
    cfg = load_config(None,
                      ["train.lora.enabled=true", "train.lora.rank=8", "train.lora.target_modules=[q_proj]",
                             "algorithm.kl_coef=0.01"])
    assert (cfg.train.lora.rank, cfg.train.lora.target_modules) == (8, ["q_proj"])
    assert cfg.roles().reference == 0  # the policy ranks score the reference: no reference actor
    assert load_config(None, ["algorithm.kl_coef=0.01"]).roles().reference == 1
    for bad in (["train.lora.rank=0"], ["train.lora.target_modules=[]"], ["train.zero_stage=3"]):
        with pytest.raises(ConfigError, match="train.lora"):
            load_config(None, ["train.lora.enabled=true", *bad])


@pytest.mark.usefixtures("distributed")
def test_lora_engine_trains_the_adapters_alone_and_its_checkpoint_resumes_them(tiny_model, tmp_path):
    from safetensors.torch import load_file

    from system.config.grpo import AlgorithmConfig
    from system.training.engines import load_checkpoint, save_checkpoint
    from system.training.grpo import grpo_update

    lora = LoraConfig(enabled=True, rank=4, alpha=8)
    engine = make_engine(tiny_model, 2, "bfloat16", grad_accum=2, lr=1e-2, lora=lora)
    frozen = {n: p.detach().clone() for n, p in engine.module.named_parameters() if not p.requires_grad}
    adapters = lambda e: {n: p.detach().clone() for n, p in e.module.named_parameters() if p.requires_grad}  # noqa: E731
    before = adapters(engine)
    update = grpo_update(engine, samples([1.0, -1.0, 1.0, -1.0]), AlgorithmConfig(), max_tokens=20,
                         micro_batch=2, ppo_epochs=1, temperature=1.0, world_size=1)
    assert update["skipped_updates"] == 0
    after = adapters(engine)
    assert any(not torch.equal(after[n], before[n]) for n in after), "the adapters did not train"
    assert all(torch.equal(p, frozen[n]) for n, p in engine.module.named_parameters() if n in frozen)

    save_checkpoint(engine, str(tmp_path), tiny_model, 2, 0)
    merged = load_file(str(tmp_path / "policy" / "model.safetensors"))
    want = merged_state_dict(engine.module.state_dict(), scaling_of(engine.module))
    assert set(merged) <= set(want) and all(torch.equal(merged[n], want[n]) for n in merged)
    fresh = make_engine(tiny_model, 2, "bfloat16", grad_accum=2, lr=1e-2, lora=lora)
    load_checkpoint(fresh, str(tmp_path))
    assert all(torch.equal(p, after[n]) for n, p in adapters(fresh).items())
