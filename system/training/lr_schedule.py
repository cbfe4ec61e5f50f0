"""The learning-rate schedule of every trainer (GRPO policy, SFT): warmup, then constant or a decay."""

from __future__ import annotations

import math

LR_SCHEDULES = ("constant", "cosine", "linear")


def lr_factor(update: int, warmup: int, total: int, schedule: str, min_ratio: float) -> float:
    """The learning rate of optimizer update `update` (0-based) over the peak lr: a linear warmup over
    `warmup` updates, then constant, or a cosine / linear decay that reaches `min_ratio` at update
    `total` (HF's get_cosine_schedule_with_warmup / get_linear_schedule_with_warmup, with a floor)."""
    if update < warmup:
        return (update + 1) / (warmup + 1)
    if schedule == "constant" or total <= warmup:
        return 1.0
    progress = min(1.0, (update - warmup) / (total - warmup))
    decay = 0.5 * (1.0 + math.cos(math.pi * progress)) if schedule == "cosine" else 1.0 - progress
    return min_ratio + (1.0 - min_ratio) * decay
