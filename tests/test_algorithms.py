"""GRPO math against hand-computed values: advantages, loss aggregation, KL estimators."""

import math

import pytest
import torch

from system.algorithms.advantages import get_advantage, zero_variance_groups
from system.algorithms.kl import kl_penalty
from system.algorithms.losses import policy_loss, token_weights

R = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.5, 0.5, 0.5, 0.5])
ALL = torch.ones(8, dtype=torch.bool)


def test_grpo_advantage_hand_computed():
    # group 1: mean 0.5, unbiased std sqrt(1/3) -> +-0.5/0.57735 = +-0.8660; group 2: zero variance -> 0
    adv = get_advantage("grpo")(R, ALL, 4)
    expected = [0.8660, -0.8660, -0.8660, 0.8660, 0, 0, 0, 0]
    assert adv.tolist() == pytest.approx(expected, abs=1e-3)


def test_drgrpo_has_no_std_division():
    assert get_advantage("drgrpo")(R, ALL, 4).tolist() == pytest.approx([0.5, -0.5, -0.5, 0.5, 0, 0, 0, 0])


def test_batch_std_uses_the_batch_std():
    std = R.std().item()  # 0.3780
    adv = get_advantage("batch_std")(R, ALL, 4)
    assert adv[0].item() == pytest.approx(0.5 / std, rel=1e-4)


def test_unscorable_samples_are_left_out():
    rewards = torch.tensor([1.0, 0.0, 0.0, 123.0])  # last one unscorable: its value must not matter
    valid = torch.tensor([True, True, True, False])
    adv = get_advantage("drgrpo")(rewards, valid, 4)
    assert adv.tolist() == pytest.approx([2 / 3, -1 / 3, -1 / 3, 0.0])


def test_zero_variance_groups():
    assert zero_variance_groups(R, ALL, 4).tolist() == [False] * 4 + [True] * 4


MASK = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0]], dtype=torch.float32)  # lengths 3 and 1


def close(a: torch.Tensor, b) -> bool:
    return torch.allclose(a, torch.tensor(b, dtype=a.dtype), atol=1e-6)


def test_token_mean_weights():
    assert close(token_weights(MASK, "token-mean", 4), [[0.25] * 3 + [0], [0.25, 0, 0, 0]])


def test_seq_mean_token_mean_weights():
    w = token_weights(MASK, "seq-mean-token-mean", 4)
    assert close(w, [[1 / 6] * 3 + [0], [0.5, 0, 0, 0]])


def test_seq_mean_token_sum_norm_weights():
    w = token_weights(MASK, "seq-mean-token-sum-norm", 4)  # 1 / (max_len 4 * 2 sequences)
    assert close(w, [[0.125] * 3 + [0], [0.125, 0, 0, 0]])


def test_fully_masked_sequences_do_not_dilute_seq_mean():
    mask = torch.cat([MASK, torch.zeros(1, 4)])
    assert close(token_weights(mask, "seq-mean-token-mean", 4)[:2], token_weights(MASK, "seq-mean-token-mean", 4).tolist())


def test_weights_make_slices_add_up_to_the_whole():
    """Cutting a mini-batch into micro-batches or ranks must not change the loss."""
    torch.manual_seed(0)
    logp, old = torch.randn(4, 5) * 0.1, torch.randn(4, 5) * 0.1
    adv, mask = torch.randn(4), (torch.rand(4, 5) > 0.3).float()
    for mode in ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"):
        w = token_weights(mask, mode, 5)
        whole, _ = policy_loss(logp, old, adv, w, 0.2, 0.28)
        parts = sum(policy_loss(logp[i:i + 1], old[i:i + 1], adv[i:i + 1], w[i:i + 1], 0.2, 0.28)[0] for i in range(4))
        assert whole.item() == pytest.approx(parts.item(), abs=1e-6)


def test_clipped_loss_hand_computed():
    # ratio = e^0.5 = 1.6487 > 1 + eps_high = 1.28 with A=+1: clipped to 1.28 -> loss -1.28
    # ratio = e^-0.5 = 0.6065 < 1 - eps_low = 0.8 with A=-1: min(-0.6065, -0.8) = -0.8 -> loss 0.8
    logp = torch.tensor([[0.5], [-0.5]])
    old = torch.zeros(2, 1)
    w = torch.full((2, 1), 0.5)
    loss, stats = policy_loss(logp, old, torch.tensor([1.0, -1.0]), w, 0.2, 0.28)
    assert loss.item() == pytest.approx(0.5 * -1.28 + 0.5 * 0.8, abs=1e-5)
    assert stats["clip_frac"].item() == 2  # both tokens clipped


def test_unclipped_gradient_is_advantage_times_ratio():
    logp = torch.zeros(1, 1, requires_grad=True)
    loss, _ = policy_loss(logp, torch.zeros(1, 1), torch.tensor([2.0]), torch.ones(1, 1), 0.2, 0.2)
    loss.backward()
    assert logp.grad.item() == pytest.approx(-2.0)


def test_kl_estimators_hand_computed():
    logp, ref = torch.tensor([math.log(0.5)]), torch.tensor([math.log(0.25)])  # log ratio = ln 2
    lr = math.log(2)
    assert kl_penalty(logp, ref, "k1").item() == pytest.approx(lr)
    assert kl_penalty(logp, ref, "k2").item() == pytest.approx(lr ** 2 / 2)
    assert kl_penalty(logp, ref, "k3").item() == pytest.approx(0.5 - 1 + lr)
    assert kl_penalty(ref, ref, "k3").item() == 0.0


def test_kl_in_loss_adds_weighted_penalty():
    logp, ref = torch.tensor([[math.log(0.5)]]), torch.tensor([[math.log(0.25)]])
    base, _ = policy_loss(logp, logp, torch.tensor([0.0]), torch.ones(1, 1), 0.2, 0.2)
    with_kl, stats = policy_loss(logp, logp, torch.tensor([0.0]), torch.ones(1, 1), 0.2, 0.2, ref, 0.1, "k1")
    assert (with_kl - base).item() == pytest.approx(0.1 * math.log(2))
    assert stats["kl"].item() == pytest.approx(math.log(2))


def test_off_policy_weights_by_hand():
    from system.algorithms.off_policy import off_policy_weights

    # Two samples, three tokens; the second sample's last token is padding (mask 0).
    # rho = exp(old - behaviour): sample 0: 2, 0.25, 1; sample 1: 4, 0.5, (masked).
    old = torch.log(torch.tensor([[2.0, 0.25, 1.0], [4.0, 0.5, 1.0]]))
    behaviour = torch.zeros(2, 3)
    mask = torch.tensor([[1.0, 1, 1], [1, 1, 0]])
    w, rho = off_policy_weights(old, behaviour, mask, "none", "token", 3.0)
    assert w.tolist() == mask.tolist()
    assert close(rho, [[2.0, 0.25, 1.0], [4.0, 0.5, 1.0]])
    w, _ = off_policy_weights(old, behaviour, mask, "tis", "token", 3.0)  # min(rho, 3)
    assert close(w, [[2.0, 0.25, 1.0], [3.0, 0.5, 0.0]])
    w, _ = off_policy_weights(old, behaviour, mask, "mis", "token", 3.0)  # 1 inside [1/3, 3]
    assert close(w, [[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    w, _ = off_policy_weights(old, behaviour, mask, "decoupled", "token", 3.0)  # rho, 0 above 3
    assert close(w, [[2.0, 0.25, 1.0], [0.0, 0.5, 0.0]])
    # Sequence level: the geometric mean over a sample's tokens: (2 * 0.25 * 1)^(1/3), (4 * 0.5)^(1/2).
    w, rho = off_policy_weights(old, behaviour, mask, "tis", "sequence", 3.0)
    g0, g1 = 0.5 ** (1 / 3), 2.0 ** 0.5
    assert close(rho * mask, [[g0] * 3, [g1, g1, 0.0]]) and close(w, [[g0] * 3, [g1, g1, 0.0]])


def test_is_weights_scale_the_surrogate_only():
    logp = torch.zeros(1, 2, requires_grad=True)
    weights = torch.tensor([[0.5, 0.5]])
    is_w = torch.tensor([[2.0, 0.0]])
    loss, _ = policy_loss(logp, logp.detach(), torch.tensor([1.0]), weights, 0.2, 0.2, is_weights=is_w)
    loss.backward()
    # d/dlogp of -ratio*A*w*is at ratio 1: -A * w * is = [-1.0, 0.0]
    assert close(logp.grad, [[-1.0, 0.0]]) and loss.item() == pytest.approx(-1.0)
