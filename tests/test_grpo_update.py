"""The update itself (system/training/grpo.py) on a real DeepSpeed engine of the tiny model: an update
whose loss or gradient is NaN/inf is skipped, not applied, and counted; the entropy bonus has the
entropy's true gradient."""

from __future__ import annotations

import math
import os
import socket
from types import SimpleNamespace

import pytest
import torch

from system.config import AlgorithmConfig
from system.training.grpo import grpo_update, skipped_in_a_row, stop_if_skipping
from system.training.samples import TrainingSample, split_for_training


def test_entropy_gradient_matches_autograd():
    import system.training.logprobs as lp

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 40, generator=g, dtype=torch.float64) * 2
    targets = torch.randint(0, 40, (6,), generator=g)
    a, b = torch.randn(6, generator=g, dtype=torch.float64), torch.randn(6, generator=g, dtype=torch.float64)
    ours = logits.clone().requires_grad_()
    logp, entropy = lp.SelectedLogprobs.apply(ours, targets, 0.7, True)
    (a * logp + b * entropy).sum().backward()
    textbook = logits.clone().requires_grad_()
    logp_all = torch.log_softmax(textbook / 0.7, -1)
    want_entropy = -(logp_all.exp() * logp_all).sum(-1)
    (a * logp_all.gather(-1, targets[:, None]).squeeze(-1) + b * want_entropy).sum().backward()
    torch.testing.assert_close(entropy, want_entropy)
    torch.testing.assert_close(ours.grad, textbook.grad)
    assert torch.autograd.gradcheck(lambda x: lp.SelectedLogprobs.apply(x, targets, 0.7, True)[1].sum(),
                                    (logits.clone().requires_grad_(),))


def test_skipped_updates_are_counted_in_a_row_over_steps():
    all_skipped = {"skipped_updates": 2, "optimizer_steps": 2, "skipped_at_end": 2}
    last_skipped = {"skipped_updates": 1, "optimizer_steps": 2, "skipped_at_end": 1}
    first_skipped = {"skipped_updates": 1, "optimizer_steps": 2, "skipped_at_end": 0}
    assert skipped_in_a_row(1, all_skipped) == 3
    assert skipped_in_a_row(5, last_skipped) == 1  # the first update of the step was applied
    assert skipped_in_a_row(5, first_skipped) == 0
    stop_if_skipping(2, 3)
    with pytest.raises(RuntimeError, match="3 policy updates in a row were skipped"):
        stop_if_skipping(3, 3)


@pytest.fixture(scope="module")
def distributed():
    """A one-rank gloo group in this process, as a policy actor has."""
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK="0", WORLD_SIZE="1", LOCAL_RANK="0")
    import deepspeed

    deepspeed.init_distributed(dist_backend="gloo")
    yield
    torch.distributed.destroy_process_group()


def make_engine(model_path: str, zero_stage: int, dtype: str, grad_accum: int):
    from system.platform import current_platform
    from system.training.engines import init_train_engine

    train = SimpleNamespace(gradient_checkpointing=False, lr=1e-3, weight_decay=0.0, warmup_steps=0,
                            zero_stage=zero_stage, micro_batch_size=2, max_grad_norm=1.0)
    return init_train_engine(model_path, train, dtype, grad_accum, 1, current_platform())


def samples(advantages: list[float]) -> list[list[TrainingSample]]:
    """One mini-batch: a sequence per advantage, 6 prompt and 4 response tokens."""
    g = torch.Generator().manual_seed(0)
    out = []
    for adv in advantages:
        s = TrainingSample(torch.randint(1, 500, (10,), generator=g), torch.tensor([0.0] * 6 + [1.0] * 4),
                           torch.zeros(10))
        s.advantage = adv
        out.append(s)
    [shard] = split_for_training(out, 1, 1, "token-mean", 4, seed=0)
    return shard


def weights_of(engine) -> torch.Tensor:
    return torch.cat([p.detach().float().flatten() for p in engine.module.parameters()])


@pytest.mark.parametrize("zero_stage, dtype", [(0, "float32"), (2, "bfloat16")])
def test_nonfinite_updates_are_skipped_not_applied(distributed, tiny_model, zero_stage, dtype):
    """ZeRO-0 in fp32 keeps a plain torch optimizer, which would apply a NaN step; ZeRO-2 is DeepSpeed's own."""
    engine = make_engine(tiny_model, zero_stage, dtype, grad_accum=2)  # 4 sequences: 2 micro-batches of 2

    def update(minibatches):
        return grpo_update(engine, minibatches, AlgorithmConfig(), micro_batch=2, ppo_epochs=1, pad_id=0,
                           temperature=1.0, world_size=1)

    before = weights_of(engine)

    nan_loss = update(samples([1.0, -1.0, math.nan, 0.5]))  # a NaN advantage: a NaN loss in one micro-batch
    assert nan_loss["skipped_updates"] == 1 and nan_loss["skipped_at_end"] == 1
    assert torch.equal(weights_of(engine), before)

    param = next(p for p in engine.module.parameters() if p.requires_grad)
    hook = param.register_hook(lambda grad: grad * math.inf)  # a finite loss, an inf (then NaN) gradient
    inf_grad = update(samples([1.0, -1.0, 1.0, -1.0]))
    hook.remove()
    assert inf_grad["skipped_updates"] == 1 and math.isfinite(inf_grad["loss"])
    assert torch.equal(weights_of(engine), before)

    fine = update(samples([1.0, -1.0, 1.0, -1.0]))
    after = weights_of(engine)
    assert fine["skipped_updates"] == 0 and fine["skipped_at_end"] == 0
    assert not torch.equal(after, before) and torch.isfinite(after).all()
