"""LoRA RL: the policy trains low-rank adapters (PEFT) on a frozen base model.

Only the adapters reach the optimizer. The reference model for the KL term is the same base with the
adapters switched off (peft's `disable_adapter()`), so no reference actor holds a second copy. The
engines serve plain HF models: each sync sends, under the base model's HF names, the merged weight
W + (alpha / rank) * B @ A of every adapted module, and nothing else (the other weights never change).
Checkpoints keep the adapters (and their optimizer state) and a merged HF folder of the policy.
Measured against full fine-tuning, and why the sync is merged: docs/lora.md.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Callable

import torch

PREFIX = "base_model.model."  # what peft puts before the base model's names
ADAPTER = "default"  # peft's name of the one adapter
ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
# vLLM loads these modules into one fused layer each (its models' `packed_modules_mapping`: Llama, Qwen2,
# Mistral, ...), and a reload of a fused layer that gets only some of its parts leaves the rest
# uninitialised: a sync that touches one part sends them all.
FUSED = [("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj")]


@dataclass
class LoraConfig:
    enabled: bool = False
    rank: int = 16
    alpha: float = 32.0  # the update is scaled by alpha / rank
    dropout: float = 0.0
    # Names of the Linear modules that get adapters (the last part of a module's name).
    target_modules: list[str] = field(default_factory=lambda: list(ALL_LINEAR))


def lora_problem(cfg) -> str:
    """What is wrong with `cfg.lora` (cfg: TrainConfig), or ""."""
    lora = cfg.lora
    if not lora.enabled:
        return ""
    if lora.rank < 1 or lora.alpha <= 0 or not 0 <= lora.dropout < 1:
        return "'train.lora.rank' must be >= 1, 'train.lora.alpha' > 0 and 'train.lora.dropout' in [0, 1)"
    if not lora.target_modules:
        return f"'train.lora.target_modules' must name at least one Linear module, e.g. {ALL_LINEAR}"
    if cfg.zero_stage == 3:
        return "'train.lora' needs train.zero_stage <= 2 (ZeRO-3 partitioning of the frozen base is not supported)"
    return ""


def add_adapters(model, cfg: LoraConfig):
    """`model` with trainable LoRA adapters on the target modules (all else frozen): a peft model."""
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model

    found = {name.rsplit(".", 1)[-1]: module for name, module in model.named_modules()}
    missing = [t for t in cfg.target_modules if t not in found]
    if missing:
        raise ValueError(f"train.lora.target_modules {missing}: no such module in the model "
                         f"(Linear modules it has: {sorted(n for n, m in found.items() if _is_linear(m))})")
    not_linear = [t for t in cfg.target_modules if not _is_linear(found[t])]
    if not_linear:
        raise ValueError(f"train.lora.target_modules {not_linear} are not Linear modules: only Linear layers "
                         "take adapters here (their merge is W + scale * B @ A)")
    peft_cfg = PeftLoraConfig(r=cfg.rank, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
                              target_modules=list(cfg.target_modules), bias="none")
    return get_peft_model(model, peft_cfg)


def _is_linear(module) -> bool:
    return isinstance(module, torch.nn.Linear)


def is_lora(model) -> bool:
    """A peft model (peft is imported only by runs that use it)."""
    peft = sys.modules.get("peft")
    return peft is not None and isinstance(model, peft.PeftModel)


def hf_name(name: str) -> str:
    """A peft parameter name -> the base model's HF name, which the engines and transformers load:
    'base_model.model.model.layers.0.mlp.up_proj.base_layer.weight' -> 'model.layers.0.mlp.up_proj.weight'."""
    return name.removeprefix(PREFIX).replace(".base_layer.", ".")


def merge(weight: torch.Tensor, lora_a: torch.Tensor, lora_b: torch.Tensor, scaling: float) -> torch.Tensor:
    """W + scaling * B @ A, computed in fp32, in W's dtype."""
    return (weight.float() + scaling * (lora_b.float() @ lora_a.float())).to(weight.dtype)


def merged_state_dict(state_dict: dict[str, torch.Tensor], scaling: float) -> dict[str, torch.Tensor]:
    """A peft model's state dict -> the merged base model's, under HF names (what save_pretrained
    writes and vLLM loads): every adapted weight merged, the adapters themselves left out."""
    out = {}
    for name, tensor in state_dict.items():
        if ".lora_" in name:
            continue
        if name.endswith(".base_layer.weight"):
            module = name.removesuffix(".base_layer.weight")
            tensor = merge(tensor, state_dict[f"{module}.lora_A.{ADAPTER}.weight"],
                           state_dict[f"{module}.lora_B.{ADAPTER}.weight"], scaling)
        out[hf_name(name)] = tensor
    return out


def scaling_of(model) -> float:
    """alpha / rank of the model's adapter."""
    config = model.peft_config[ADAPTER]
    return config.lora_alpha / config.r


SyncTensor = tuple[str, list[torch.nn.Parameter], Callable[[], torch.Tensor]]  # HF name, its sources, its value


def sync_tensors(model) -> list[SyncTensor]:
    """What a sync sends for a peft model: every parameter of each adapted module (its weight merged)
    and of the modules fused with one in vLLM, in the model's order, under HF names. Each comes with the
    parameters it is computed from (what ZeRO-3 would gather first)."""
    from peft.tuners.lora import LoraLayer

    modules = dict(model.named_modules())
    adapted = {name for name, m in modules.items() if isinstance(m, LoraLayer)}
    sent = set(adapted)
    for name in adapted:
        parent, leaf = name.rsplit(".", 1)
        for group in FUSED:
            if leaf in group:
                sent |= {f"{parent}.{part}" for part in group if f"{parent}.{part}" in modules}
    scaling = scaling_of(model)
    out: list[SyncTensor] = []
    for name in (n for n in modules if n in sent):  # the model's order
        module = modules[name]
        base = module.get_base_layer() if name in adapted else module
        for pname, param in base.named_parameters():
            key = hf_name(f"{name}.{pname}")
            if name in adapted and pname == "weight":
                a, b = module.lora_A[ADAPTER].weight, module.lora_B[ADAPTER].weight
                out.append((key, [param, a, b], lambda w=param, a=a, b=b: merge(w.data, a.data, b.data, scaling)))
            else:
                out.append((key, [param], lambda p=param: p.data))
    return out


def save_adapter(model, path: str) -> None:
    """The adapter as peft writes it (adapter_config.json, adapter_model.safetensors): with the base
    model, `PeftModel.from_pretrained` or vLLM's LoRA support load it."""
    model.save_pretrained(path, safe_serialization=True)
