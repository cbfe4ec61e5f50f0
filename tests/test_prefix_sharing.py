"""Shared prefixes computed once (system/training/prefix_tree.py, `train.share_prefixes`): the row holds each
shared prefix once, and the log-probs, every objective's loss under every aggregation, and the gradients are
those of the unshared batch in float32, for GRPO groups and for the samples of split agent episodes, with
LoRA, and under ZeRO-2 over 2 ranks."""

from __future__ import annotations

import os
import socket
from types import SimpleNamespace

import pytest
import torch

from system.algorithms.objectives import POLICY_OBJECTIVES
from system.config.grpo import AlgorithmConfig
from system.platform import CPU
from system.training.grpo import grpo_update
from system.training.logprobs import compute_logprobs, token_logprobs
from system.training.packing import micro_batch_groups, pack
from system.training.prefix_tree import MIN_SHARED, lay_out
from system.training.samples import TrainingSample, split_for_training


def sample(*parts: tuple[torch.Tensor, bool]) -> TrainingSample:
    """Token spans, each trained on (True: the policy's) or not (prompt, tool output)."""
    tokens = torch.cat([t for t, _ in parts])
    mask = torch.cat([torch.full((len(t),), float(trained)) for t, trained in parts])
    return TrainingSample(tokens, mask, torch.zeros(len(tokens)))


def grpo_groups(seed: int = 0) -> list[TrainingSample]:
    """2 prompts x 4 samples behind one system prompt; two replies of a group begin alike, one repeats."""
    g = torch.Generator().manual_seed(seed)
    rand = lambda n: torch.randint(1, 1000, (n,), generator=g)  # noqa: E731
    system = rand(MIN_SHARED + 4)
    out = []
    for question in (rand(30), rand(24)):
        replies = [rand(n) for n in (9, 24, 30, 6)]
        replies[2][:MIN_SHARED + 2] = replies[1][:MIN_SHARED + 2] = rand(MIN_SHARED + 2)
        out += [sample((system, False), (question, False), (r, True)) for r in replies]
    out.append(TrainingSample(out[0].tokens.clone(), out[0].loss_mask.clone(), torch.zeros(len(out[0].tokens))))
    return out


def split_episode(seed: int = 1) -> list[TrainingSample]:
    """One agent episode split in 3 samples (each the history so far + its turn: later ones repeat the
    earlier ones whole), and a second episode of the same env seed that starts the same."""
    g = torch.Generator().manual_seed(seed)
    rand = lambda n: torch.randint(1, 1000, (n,), generator=g)  # noqa: E731
    prompt, turns, tools = rand(40), [rand(n) for n in (12, 20, 7)], [rand(n) for n in (25, 18)]
    history = [(prompt, False)]
    out = []
    for k, turn in enumerate(turns):
        out.append(sample(*[(t, False) for t, _ in history], (turn, True)))
        history += [(turn, True)] + ([(tools[k], False)] if k < len(tools) else [])
    out.append(sample((prompt, False), (turns[0], True), (tools[0], False), (rand(11), True)))
    return out


def with_advantages(seqs: list[TrainingSample], loss_agg: str = "token-mean") -> list[list[TrainingSample]]:
    g = torch.Generator().manual_seed(3)
    for s in seqs:
        s.advantage = float(torch.randn(1, generator=g))
        s.ref_logp = -torch.rand(len(s.tokens), generator=g)
    [shard] = split_for_training(seqs, 1, 1, loss_agg, 32, seed=0)
    return shard


def test_the_row_holds_each_shared_prefix_once_and_rebuilds_every_sequence():
    seqs = [s.tokens for s in grpo_groups()]
    layout = lay_out(seqs, share=True)
    for seq, where in zip(seqs, layout.where):
        assert torch.equal(layout.tokens[where], seq)
        assert torch.equal(layout.positions[where], torch.arange(len(seq)))
    system, questions = MIN_SHARED + 4, (30, 24)
    replies = 9 + 24 + 30 + 6 - (MIN_SHARED + 2)  # per group: two replies share their first tokens
    # the repeated sequence costs its reply again: 9 tokens, too few to share
    assert len(layout.tokens) == system + sum(questions) + 2 * replies + 9
    unshared = lay_out(seqs, share=False)
    assert len(unshared.tokens) == sum(len(s) for s in seqs) and all(s.ancestors == [] for s in unshared.segments)


def test_a_prefix_shorter_than_the_minimum_is_repeated_not_shared():
    a = torch.arange(1, 40)
    b = torch.cat([a[:MIN_SHARED - 1], torch.arange(500, 520)])
    layout = lay_out([a, b], share=True)
    assert len(layout.tokens) == len(a) + len(b) and all(s.ancestors == [] for s in layout.segments)
    c = torch.cat([a[:MIN_SHARED], torch.arange(600, 610)])
    assert len(lay_out([a, c], share=True).tokens) == len(a) + 10


@pytest.fixture(scope="module")
def model(tiny_model):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32,
                                                attn_implementation=CPU.attn_implementation("float32", True))


@pytest.mark.parametrize("make", [grpo_groups, split_episode])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_shared_logprobs_and_entropy_are_the_unshared_ones(model, make, temperature):
    seqs = make()
    shared, unshared = pack(seqs, "cpu", share_prefixes=True), pack(seqs, "cpu")
    assert shared.computed < unshared.computed == shared.represented
    want, want_h = token_logprobs(model, unshared, temperature, with_entropy=True)
    got, got_h = token_logprobs(model, shared, temperature, with_entropy=True)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got_h, want_h, rtol=1e-5, atol=1e-5)
    by_budget = compute_logprobs(model, seqs, temperature, max_tokens=90, micro_batch=2, share_prefixes=True)
    for i, (s, logp) in enumerate(zip(seqs, by_budget)):
        torch.testing.assert_close(logp, want[i, :len(s.tokens)], rtol=1e-5, atol=1e-5)


def test_shared_gradients_are_the_unshared_ones(model):
    seqs = grpo_groups() + split_episode()
    weights = torch.rand(len(seqs), max(len(s.tokens) for s in seqs), generator=torch.Generator().manual_seed(4))
    grads = []
    for share in (False, True):
        model.zero_grad(set_to_none=True)
        logp, entropy = token_logprobs(model, pack(seqs, "cpu", share), 0.7, with_entropy=True)
        ((logp + 0.1 * entropy) * weights).sum().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    for name, grad in grads[1].items():
        scale = float(grads[0][name].abs().max())
        torch.testing.assert_close(grad, grads[0][name], rtol=1e-4, atol=1e-5 * scale, msg=name)


def test_budget_runs_keep_sharers_together_and_cover_every_sequence():
    seqs = grpo_groups() + split_episode()
    for max_tokens, micro_batch in [(10_000, 4), (120, 4), (0, 3)]:
        groups = micro_batch_groups(seqs, max_tokens, micro_batch, "cpu", share_prefixes=True)
        assert sorted(i for g in groups for i in g) == list(range(len(seqs)))
        if max_tokens == 0:
            assert all(len(g) <= micro_batch for g in groups)
    [whole] = micro_batch_groups(seqs, 10_000, 4, "cpu", share_prefixes=True)
    assert pack([seqs[i] for i in whole], "cpu", True).computed < sum(len(s.tokens) for s in seqs) // 2


def make_engine(model_path: str, zero_stage: int, world_size: int = 1, lora=None):
    from system.platform import current_platform
    from system.training.engines import init_train_engine
    from system.training.lora import LoraConfig

    train = SimpleNamespace(gradient_checkpointing=False, lr=0.0, weight_decay=0.0, warmup_steps=0,
                            zero_stage=zero_stage, micro_batch_size=2, max_grad_norm=1e9, lr_schedule="constant",
                            min_lr_ratio=0.1, lora=lora or LoraConfig())
    platform = current_platform()
    return init_train_engine(model_path, train, "float32", 1, world_size, platform,
                             platform.attn_implementation("float32", True))


def update_both_ways(engine, minibatches, algo, ppo_epochs: int = 1, world_size: int = 1, max_tokens: int = 90):
    """(totals, the gradients handed to the optimizer) unshared, then shared, from the same weights (lr 0)."""
    optimizer = getattr(engine.optimizer, "optimizer", engine.optimizer)  # ZeRO's inner torch optimizer
    seen = []
    hook = optimizer.register_step_pre_hook(
        lambda opt, *_: seen.append([p.grad.clone() for g in opt.param_groups for p in g["params"]
                                     if p.grad is not None]))
    out = []
    for share in (False, True):
        totals = grpo_update(engine, minibatches, algo, max_tokens=max_tokens, micro_batch=2,
                             ppo_epochs=ppo_epochs, temperature=0.7, world_size=world_size, share_prefixes=share)
        out.append((totals, seen[-1]))
    hook.remove()
    return out


def assert_same_update(unshared, shared):
    (want, want_grads), (got, got_grads) = unshared, shared
    assert got["tokens_total"] == want["tokens_total"] == want["tokens_computed"] > got["tokens_computed"]
    for key in ("loss", "clip_count", "kl", "entropy_sum", "tokens"):
        assert got[key] == pytest.approx(want[key], rel=1e-4, abs=1e-6), key
    assert len(got_grads) == len(want_grads)
    for grad, want_grad in zip(got_grads, want_grads):
        torch.testing.assert_close(grad, want_grad, rtol=1e-4, atol=1e-5 * float(want_grad.abs().max()))


@pytest.fixture(scope="module")
def engine(distributed, tiny_model):
    """fp32, lr 0: the weights stay put, so each test's updates start from the same ones."""
    return make_engine(tiny_model, 0)


@pytest.mark.parametrize("objective, loss_agg", [(name, "token-mean") for name in sorted(POLICY_OBJECTIVES.names())]
                         + [("ppo", "seq-mean-token-mean"), ("ppo", "seq-mean-token-sum-norm")])
def test_every_objective_and_aggregation_updates_as_unshared(engine, objective, loss_agg):
    algo = AlgorithmConfig(policy_loss=objective, loss_agg=loss_agg, kl_coef=0.1, entropy_coef=0.01)
    assert_same_update(*update_both_ways(engine, with_advantages(grpo_groups() + split_episode(), loss_agg), algo))


def test_ppo_epochs_reuse_shared_old_logprobs(engine):
    minibatches = with_advantages(grpo_groups() + split_episode())
    assert_same_update(*update_both_ways(engine, minibatches, AlgorithmConfig(kl_coef=0.1), ppo_epochs=2))


def test_lora_adapters_get_the_unshared_gradients(distributed, tiny_model):
    from system.training.lora import LoraConfig

    engine = make_engine(tiny_model, 0, lora=LoraConfig(enabled=True, rank=4, alpha=8))
    minibatches = with_advantages(grpo_groups() + split_episode())
    assert_same_update(*update_both_ways(engine, minibatches, AlgorithmConfig(kl_coef=0.1)))


def zero2_rank(rank: int, port: int, model_path: str, out: str) -> None:
    import deepspeed

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2",
                      LOCAL_RANK=str(rank), DS_ACCELERATOR="cpu")
    deepspeed.init_distributed(dist_backend="gloo")
    engine = make_engine(model_path, 2, world_size=2)
    seqs = grpo_groups() + split_episode()
    g = torch.Generator().manual_seed(3)
    for s in seqs:
        s.advantage = float(torch.randn(1, generator=g))
    shards = split_for_training(seqs, 1, 2, "token-mean", 32, seed=0, share_prefixes=True)
    torch.save(update_both_ways(engine, shards[rank], AlgorithmConfig(), world_size=2), f"{out}/rank{rank}.pt")


def test_zero2_over_two_ranks_updates_as_unshared(tiny_model, tmp_path):
    """Each rank's partition of the reduced gradient, with its own number of shared micro-batches (the ranks
    agree on a count), is the unshared one."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torch.multiprocessing.spawn(zero2_rank, args=(port, tiny_model, str(tmp_path)), nprocs=2, join=True)
    for rank in range(2):
        assert_same_update(*torch.load(tmp_path / f"rank{rank}.pt"))


def test_the_real_model_gives_the_unshared_logprobs(smollm2):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(smollm2, dtype=torch.float32,
                                                 attn_implementation=CPU.attn_implementation("float32", True))
    seqs = grpo_groups() + split_episode()
    with torch.no_grad():
        want, _ = token_logprobs(model, pack(seqs, "cpu"))
        got, _ = token_logprobs(model, pack(seqs, "cpu", share_prefixes=True))
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_ranks_get_the_samples_of_a_group_together():
    seqs = grpo_groups()
    round_robin = split_for_training(seqs, 1, 2, "token-mean", 32, seed=0)
    by_tokens = split_for_training(seqs, 1, 2, "token-mean", 32, seed=0, share_prefixes=True)
    assert sorted(id(s) for r in by_tokens for s in r[0]) == sorted(id(s) for r in round_robin for s in r[0])
    questions = [{tuple(s.tokens[MIN_SHARED + 4:MIN_SHARED + 10].tolist()) for s in rank[0]} for rank in by_tokens]
    assert [len(q) for q in questions] == [1, 1]  # a question per rank: its group whole


def test_an_attention_that_cannot_share_is_refused(tiny_model):
    from transformers import AutoModelForCausalLM

    dense = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32, attn_implementation="sdpa")
    with pytest.raises(ValueError, match="shared prefixes need the varlen_sdpa attention"):
        token_logprobs(dense, pack(grpo_groups(), "cpu", share_prefixes=True))
    token_logprobs(dense, pack(grpo_groups(), "cpu"))  # unshared: any attention
