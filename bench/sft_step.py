"""The SFT step on the cold-start traces: packed examples (system/training/sft.py) against the padded
rows and dense block-diagonal mask SFT used before, interleaved in one process.

    flock /tmp/r1ray-heavy.lock .venv/bin/python bench/sft_step.py \
        [--data runs/distill_countdown3_teacher_cpu/data.jsonl]

One DeepSpeed engine as configs/sft_countdown3_cpu.yaml's (SmolLM2-135M, ZeRO-2, bf16, batches of 8
packed 1024-token rows, micro-batches of 4 rows) takes steps on the same batches in both modes, in
turns, so the machine's drift falls on both alike. "padded": the rows as they are, transformers' sdpa
with the block-diagonal mask it builds from the position ids, the LM head and a full-vocabulary
cross-entropy on every position. "packed": each micro-batch's examples end to end, attention inside
each (varlen_sdpa), the LM head on the assistant tokens only.
"""

from __future__ import annotations

import argparse
import os
import time

import torch
from common import ROOT, save, spread
from transformers import AutoTokenizer

from system.config.files import load_layers
from system.models import resolve_model
from system.platform import current_platform
from system.config.recipe import SFTConfig, validate_sft
from system.training.engines import init_train_engine
from system.training.logprobs import pad_sequences
from system.training.packing import micro_batches
from system.training.sft import encode_conversation, load_conversations, make_rows, sft_update


def padded_update(engine, rows, total_tokens: float, micro_batch: int) -> None:
    """SFT's step before packing, for comparison."""
    for mb in micro_batches(rows, micro_batch):
        b = pad_sequences(mb, ["tokens", "loss_mask", "positions"], 0, engine.device)
        logits = engine(input_ids=b["tokens"], position_ids=b["positions"], use_cache=False).logits[:, :-1].float()
        nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), b["tokens"][:, 1:], reduction="none")
        engine.backward((nll * b["loss_mask"][:, 1:]).sum() / total_tokens, scale_wrt_gas=False)
        engine.step()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=os.path.join(ROOT, "runs", "distill_countdown3_teacher_cpu", "data.jsonl"))
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    cfg = load_layers(os.path.join(ROOT, "configs", "sft_countdown3_cpu.yaml"), [f"data.source={args.data}"],
                      SFTConfig, validate_sft)
    t, platform = cfg.train, current_platform()
    platform.set_threads(platform.num_threads(cfg.placement.threads_per_actor))
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(29_500 + os.getpid() % 1000), RANK="0",
                      WORLD_SIZE="1", LOCAL_RANK="0")
    import deepspeed

    deepspeed.init_distributed(dist_backend=platform.dist_backend)
    model_path = resolve_model(cfg.model.path)
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    chats, _ = load_conversations(cfg.data)
    rows = make_rows([encode_conversation(tokenizer, c) for c in chats[:400]], cfg.max_length, cfg.packing)
    batches = [rows[i:i + cfg.batch_size] for i in range(0, (args.steps + 1) * cfg.batch_size, cfg.batch_size)]
    grad_accum = cfg.batch_size // t.micro_batch_size
    dtype = platform.model_dtype(cfg.model.dtype)
    engines = {mode: init_train_engine(model_path, t, dtype, grad_accum, 1, platform, attn)
               for mode, attn in (("padded", None), ("packed", platform.attn_implementation(dtype)))}

    def step(batch, mode) -> float:
        tokens = float(sum(r.loss_mask.sum() for r in batch))
        start = time.perf_counter()
        if mode == "padded":
            padded_update(engines[mode], batch, tokens, t.micro_batch_size)
        else:
            sft_update(engines[mode], batch, tokens, micro_batch=t.micro_batch_size, world_size=1)
        return time.perf_counter() - start

    times: dict[str, list[float]] = {"padded": [], "packed": []}
    for i, batch in enumerate(batches):
        for mode in times:
            elapsed = step(batch, mode)
            if i > 0:  # the first batch warms up
                times[mode].append(elapsed)
            print(f"batch {i} {mode}: {elapsed:.2f} s", flush=True)
    row_tokens = sum(len(r.tokens) for b in batches[1:] for r in b) / len(batches[1:])
    result = {"row_tokens_per_step": row_tokens, "step_s": {m: spread(v) for m, v in times.items()}, "raw": times}
    save("sft_step", result)
    padded, packed = (result["step_s"][m]["median"] for m in ("padded", "packed"))
    print(f"\n{row_tokens:.0f} tokens a step: padded {padded:.1f} s ({row_tokens / padded:.0f} tokens/s), "
          f"packed {packed:.1f} s ({row_tokens / packed:.0f} tokens/s): {padded / packed:.2f}x")


if __name__ == "__main__":
    main()
