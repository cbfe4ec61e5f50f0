"""The update itself (system/training/grpo.py) on a real DeepSpeed engine of the tiny model: packed
micro-batches give the loss and gradients of the unpacked batch under every loss aggregation; an update
whose loss or gradient is NaN/inf is skipped, not applied, and counted; the entropy bonus has the
entropy's true gradient; the lr follows its schedule update by update; on-policy distillation's per-token
advantages."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from system.algorithms.losses import policy_loss
from system.algorithms.on_policy_distill import OnPolicyDistillConfig, distill_advantages
from system.config.grpo import AlgorithmConfig
from system.training.grpo import grpo_update, skipped_in_a_row, stop_if_skipping
from system.training.logprobs import pad_sequences
from system.training.lr_schedule import lr_factor
from system.training.packing import micro_batch_groups
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


def make_engine(model_path: str, zero_stage: int, dtype: str, grad_accum: int, lr: float = 1e-3,
                max_grad_norm: float = 1.0, warmup_steps: int = 0, lr_schedule: str = "constant",
                total_updates: int = 0, lora=None):
    from system.platform import current_platform
    from system.training.engines import init_train_engine
    from system.training.lora import LoraConfig

    train = SimpleNamespace(gradient_checkpointing=False, lr=lr, weight_decay=0.0, warmup_steps=warmup_steps,
                            zero_stage=zero_stage, micro_batch_size=2, max_grad_norm=max_grad_norm,
                            lr_schedule=lr_schedule, min_lr_ratio=0.1, lora=lora or LoraConfig())
    platform = current_platform()
    return init_train_engine(model_path, train, dtype, grad_accum, 1, platform,
                             platform.attn_implementation(dtype), total_updates=total_updates)


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
    """ZeRO-0 in fp32 keeps a plain torch optimizer, which would apply a NaN step; ZeRO-2 is DeepSpeed's
    own."""
    # 4 sequences of 10: 2 micro-batches of 20 tokens
    engine = make_engine(tiny_model, zero_stage, dtype, grad_accum=2)

    def update(minibatches):
        return grpo_update(engine, minibatches, AlgorithmConfig(), max_tokens=20, micro_batch=2, ppo_epochs=1,
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


def test_lr_schedule_values_by_hand():
    # warmup 2 of 10 updates, floor 0.1: (u+1)/3 in the warmup; then progress p = (u-2)/8,
    # cosine 0.1 + 0.9 * (1 + cos(pi p)) / 2, linear 0.1 + 0.9 * (1 - p)
    cosine = [lr_factor(u, 2, 10, "cosine", 0.1) for u in (0, 1, 2, 6, 10, 12)]
    assert cosine == pytest.approx([1 / 3, 2 / 3, 1.0, 0.55, 0.1, 0.1])
    assert lr_factor(4, 2, 10, "linear", 0.1) == pytest.approx(0.775)
    assert lr_factor(9, 2, 10, "constant", 0.1) == 1.0
    assert lr_factor(5, 0, 0, "cosine", 0.1) == 1.0  # no total given: nothing to decay over


def test_the_engine_follows_the_lr_schedule_update_by_update(distributed, tiny_model):
    engine = make_engine(tiny_model, 0, "float32", grad_accum=1, warmup_steps=1, lr_schedule="cosine",
                         total_updates=4)
    lrs = []
    for _ in range(5):
        lrs.append(engine.get_lr()[0])
        grpo_update(engine, samples([1.0, -1.0]), AlgorithmConfig(), max_tokens=20, micro_batch=2,
                    ppo_epochs=1, temperature=1.0, world_size=1)
    assert lrs == pytest.approx([1e-3 * lr_factor(u, 1, 4, "cosine", 0.1) for u in range(5)])
    assert lrs[0] == pytest.approx(5e-4) and lrs[-1] == pytest.approx(1e-4)


def varied_minibatch(loss_agg: str) -> list[list[TrainingSample]]:
    """One mini-batch of 6 sequences of different prompt and response lengths, with reference log-probs."""
    g = torch.Generator().manual_seed(1)
    out = []
    for i, (prompt, response) in enumerate([(7, 9), (3, 4), (11, 2), (5, 12), (9, 6), (4, 3)]):
        n = prompt + response
        s = TrainingSample(torch.randint(1, 500, (n,), generator=g),
                           torch.tensor([0.0] * prompt + [1.0] * response), torch.zeros(n))
        s.ref_logp = -torch.rand(n, generator=g) * 5
        s.advantage = [1.0, -0.5, 2.0, -1.5, 0.25, -1.0][i]
        out.append(s)
    [shard] = split_for_training(out, 1, 1, loss_agg, 12, seed=0)
    return shard


def unpacked_loss(model, minibatch: list[TrainingSample], algo, temperature: float) -> torch.Tensor:
    """The loss as a plain script computes it: one right-padded batch, attention mask, the textbook
    log-softmax over every position."""
    b = pad_sequences(minibatch, ["tokens", "weights", "ref_logp"], 0, "cpu")
    logits = model(input_ids=b["tokens"], attention_mask=b["attention_mask"]).logits
    logits = logits[:, :-1].float() / temperature
    logp = torch.log_softmax(logits, -1).gather(-1, b["tokens"][:, 1:, None]).squeeze(-1)
    logp = torch.nn.functional.pad(logp, (1, 0))
    loss, _ = policy_loss(logp, logp.detach(), torch.tensor([s.advantage for s in minibatch]), b["weights"],
                          algo.eps_low, algo.eps_high, ref_logp=b["ref_logp"], kl_coef=algo.kl_coef)
    return loss


@pytest.mark.parametrize("loss_agg", ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"])
def test_packed_update_has_the_unpacked_loss_and_gradients(distributed, tiny_model, loss_agg):
    """fp32, lr 0 (the weights stay put) and no clipping: the gradient the optimizer is handed, whatever
    the micro-batches (all in one, of 30 tokens, one sequence each, or 2 sequences each), is the
    unpacked batch's."""
    engine = make_engine(tiny_model, 0, "float32", grad_accum=1, lr=0.0, max_grad_norm=1e9)
    algo = AlgorithmConfig(loss_agg=loss_agg, kl_coef=0.1)
    minibatches = varied_minibatch(loss_agg)
    loss = unpacked_loss(engine.module, minibatches[0], algo, 0.7)
    loss.backward()
    want_loss, want_grads = float(loss), {n: p.grad.clone() for n, p in engine.module.named_parameters()}
    engine.module.zero_grad(set_to_none=True)
    seen = []
    engine.optimizer.register_step_pre_hook(
        lambda *_: seen.append({n: p.grad.clone() for n, p in engine.module.named_parameters()}))
    for max_tokens, micro_batch in [(10_000, 6), (30, 6), (1, 6), (0, 2)]:
        groups = micro_batch_groups(minibatches[0], max_tokens, micro_batch, "cpu")
        assert len(groups) == {10_000: 1, 30: 3, 1: 6, 0: 3}[max_tokens]
        totals = grpo_update(engine, minibatches, algo, max_tokens=max_tokens, micro_batch=micro_batch,
                             ppo_epochs=1, temperature=0.7, world_size=1)
        assert totals["loss"] == pytest.approx(want_loss, rel=1e-5)
        for name, grad in seen.pop().items():
            scale = float(want_grads[name].abs().max())  # fp32 sums in another order: relative to the largest
            torch.testing.assert_close(grad, want_grads[name], rtol=1e-4, atol=1e-5 * scale, msg=name)


def test_packed_update_has_the_unpacked_loss_in_bf16(distributed, tiny_model):
    """The trainer's setting (ZeRO-2, bf16): the same loss packed and unpacked, to bf16 precision."""
    engine = make_engine(tiny_model, 2, "bfloat16", grad_accum=1, lr=0.0)
    algo = AlgorithmConfig(kl_coef=0.1)
    minibatches = varied_minibatch(algo.loss_agg)
    with torch.no_grad():  # under ZeRO-2 only the engine's own backward may produce gradients
        want_loss = float(unpacked_loss(engine.module, minibatches[0], algo, 1.0))
    for max_tokens in (10_000, 30):
        totals = grpo_update(engine, minibatches, algo, max_tokens=max_tokens, micro_batch=2, ppo_epochs=1,
                             temperature=1.0, world_size=1)
        assert totals["loss"] == pytest.approx(want_loss, rel=0.02, abs=1e-3)


def test_distillation_update_has_the_per_token_advantages(distributed, tiny_model):
    """On-policy distillation in the update: with teacher log-probs, each token's advantage is the task's
    (weighted) minus log pi_old - log pi_teacher, from the trainer's own log-probs; packed or not, the
    loss, gradients and reverse KL are those of the unpacked batch computed here."""
    engine = make_engine(tiny_model, 0, "float32", grad_accum=1, lr=0.0, max_grad_norm=1e9)
    algo, distill = AlgorithmConfig(), OnPolicyDistillConfig(teacher_path="teacher", coef=1.0, task_coef=0.5)
    minibatches = varied_minibatch(algo.loss_agg)
    g = torch.Generator().manual_seed(2)
    for s in minibatches[0]:
        s.teacher_logp = -torch.rand(len(s.tokens), generator=g) * 5
    b = pad_sequences(minibatches[0], ["tokens", "weights", "teacher_logp", "loss_mask"], 0, "cpu")
    logits = engine.module(input_ids=b["tokens"], attention_mask=b["attention_mask"]).logits[:, :-1].float()
    logp = torch.log_softmax(logits / 0.7, -1).gather(-1, b["tokens"][:, 1:, None]).squeeze(-1)
    logp = torch.nn.functional.pad(logp, (1, 0))
    task = torch.tensor([s.advantage for s in minibatches[0]])
    adv, k = distill_advantages(logp.detach(), b["teacher_logp"], task, b["loss_mask"], distill.coef,
                                distill.task_coef)
    loss, _ = policy_loss(logp, logp.detach(), adv, b["weights"], algo.eps_low, algo.eps_high)
    loss.backward()
    want_loss = float(loss.detach())
    want_grads = {n: p.grad.clone() for n, p in engine.module.named_parameters()}
    engine.module.zero_grad(set_to_none=True)
    seen = []
    engine.optimizer.register_step_pre_hook(
        lambda *_: seen.append({n: p.grad.clone() for n, p in engine.module.named_parameters()}))
    for max_tokens in (10_000, 30):
        totals = grpo_update(engine, minibatches, algo, max_tokens=max_tokens, micro_batch=6, ppo_epochs=1,
                             temperature=0.7, world_size=1, distill=distill)
        assert totals["distill/reverse_kl_sum"] == pytest.approx(float(k.sum()), rel=1e-5)
        assert totals["loss"] == pytest.approx(want_loss, rel=1e-5)
        for name, grad in seen.pop().items():
            scale = float(want_grads[name].abs().max())
            torch.testing.assert_close(grad, want_grads[name], rtol=1e-4, atol=1e-5 * scale, msg=name)
