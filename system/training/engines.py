"""DeepSpeed model engines of one data-parallel rank: built, saved as HF folders, checkpointed.

The Ray actors (policy, reference, SFT trainer) only hold the engine and call these; everything
here runs (and is tested) without Ray.
"""

from __future__ import annotations

import os

import torch
from transformers import AutoModelForCausalLM

from system.platform import Platform
from system.training.lora import add_adapters, is_lora, merged_state_dict, save_adapter, scaling_of
from system.training.lr_schedule import lr_factor

DTYPES = {"bfloat16": torch.bfloat16, "float32": torch.float32, "float16": torch.float16}


def deepspeed_config(zero_stage: int, micro_batch: int, grad_accum: int, dtype: str, world_size: int,
                     max_grad_norm: float = 1.0) -> dict:
    return {
        "train_micro_batch_size_per_gpu": micro_batch,
        "gradient_accumulation_steps": grad_accum,
        "train_batch_size": micro_batch * grad_accum * world_size,
        "gradient_clipping": max_grad_norm,
        "zero_optimization": {"stage": zero_stage},
        "bf16": {"enabled": dtype == "bfloat16"},
        "fp16": {"enabled": dtype == "float16"},
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }


def load_model(model_path: str, dtype: str, gradient_checkpointing: bool = False,
               attn_implementation: str | None = None):
    """`attn_implementation`: None for transformers' default; packed micro-batches need the platform's
    (Platform.attn_implementation)."""
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=DTYPES[dtype],
                                                 attn_implementation=attn_implementation)
    if gradient_checkpointing:
        model.gradient_checkpointing_enable()
    model.config.use_cache = False
    return model


def init_train_engine(model_path: str, cfg, dtype: str, grad_accum: int, world_size: int, platform: Platform,
                      attn_implementation: str | None = None, total_updates: int = 0):
    """Policy: model + AdamW + lr schedule (`lr_factor` over the run's `total_updates` optimizer updates)
    under DeepSpeed ZeRO (cfg: TrainConfig); with `cfg.lora.enabled`, the model carries LoRA adapters and
    only they are optimised."""
    model = load_model(model_path, dtype, cfg.gradient_checkpointing, attn_implementation)
    if cfg.lora.enabled:
        model = add_adapters(model, cfg.lora)
        if cfg.gradient_checkpointing:  # the frozen embedding's output must carry grad into checkpointed blocks
            model.enable_input_require_grads()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=cfg.lr, betas=(0.9, 0.999), weight_decay=cfg.weight_decay,
                                  **platform.adamw_kwargs())
    warmup = max(cfg.warmup_steps, 0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(  # DeepSpeed steps it once per optimizer update
        optimizer, lambda update: lr_factor(update, warmup, total_updates, cfg.lr_schedule, cfg.min_lr_ratio))
    ds_config = deepspeed_config(cfg.zero_stage, cfg.micro_batch_size, grad_accum, dtype, world_size, cfg.max_grad_norm)
    import deepspeed  # here, not at the top: importing it guesses the accelerator (see actors/group.py)

    engine, *_ = deepspeed.initialize(model=model, optimizer=optimizer, lr_scheduler=scheduler, config=ds_config)
    return engine


def init_eval_engine(model_path: str, zero_stage: int, micro_batch: int, dtype: str, world_size: int,
                     attn_implementation: str | None = None):
    """Reference: the frozen model, sharded by ZeRO-3 when it is large; no optimizer."""
    model = load_model(model_path, dtype, attn_implementation=attn_implementation)
    model.requires_grad_(False)
    ds_config = deepspeed_config(zero_stage if zero_stage == 3 else 0, micro_batch, 1, dtype, world_size)
    import deepspeed

    engine, *_ = deepspeed.initialize(model=model, config=ds_config)
    engine.eval()
    return engine


def save_model(engine, path: str, tokenizer_path: str, zero_stage: int, rank: int) -> None:
    """The model as an HF folder (transformers and vLLM load it as any model), written by rank 0;
    a LoRA model merged into its base. Every rank calls it: under ZeRO-3 the shards are gathered
    collectively first."""
    from transformers import AutoTokenizer

    state_dict = engine._zero3_consolidated_16bit_state_dict() if zero_stage == 3 else engine.module.state_dict()
    if rank == 0:
        model = engine.module
        if is_lora(model):
            state_dict, model = merged_state_dict(state_dict, scaling_of(model)), model.get_base_model()
        model.save_pretrained(path, state_dict=state_dict, safe_serialization=True)
        AutoTokenizer.from_pretrained(tokenizer_path).save_pretrained(path)


def save_checkpoint(engine, path: str, tokenizer_path: str, zero_stage: int, rank: int) -> None:
    """All ranks: DeepSpeed's optimizer/scheduler state in `path/deepspeed`, the model in `path/policy`;
    with LoRA, DeepSpeed's state holds the adapters alone (the base is the run's model), `path/adapter`
    the adapter as peft writes it and `path/policy` the merged model."""
    lora = is_lora(engine.module)
    engine.save_checkpoint(os.path.join(path, "deepspeed"), tag="state", exclude_frozen_parameters=lora)
    save_model(engine, os.path.join(path, "policy"), tokenizer_path, zero_stage, rank)
    if lora and rank == 0:
        save_adapter(engine.module, os.path.join(path, "adapter"))


def load_checkpoint(engine, path: str) -> None:
    """Weights, optimizer, LR schedule and step counters, exactly as saved (with LoRA the adapters:
    the frozen base stays as loaded)."""
    load_dir, _ = engine.load_checkpoint(os.path.join(path, "deepspeed"), tag="state",
                                         load_module_strict=not is_lora(engine.module))
    if load_dir is None:
        raise RuntimeError(f"no DeepSpeed state in checkpoint {path}")
