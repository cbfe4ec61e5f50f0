"""GRPO math against hand-computed values: advantages, objectives, loss aggregation, KL estimators."""

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


def test_batch_std_is_not_reinforce_pp_baseline():
    # groups [1, 0] and [3, 3]: centred 0.5, -0.5, 0, 0
    rewards, valid = torch.tensor([1.0, 0.0, 3.0, 3.0]), torch.ones(4, dtype=torch.bool)
    # batch_std: the raw rewards' std: mean 1.75, squares 0.5625 + 3.0625 + 2 * 1.5625 = 6.75, / 3 -> std 1.5
    adv = get_advantage("batch_std")(rewards, valid, 2)
    assert adv.tolist() == pytest.approx([1 / 3, -1 / 3, 0, 0], abs=1e-5)
    # REINFORCE++-baseline: the centred rewards' std: (0.25 + 0.25) / 3 -> std sqrt(1/6) = 0.40825
    adv = get_advantage("reinforce_pp_baseline")(rewards, valid, 2)
    assert adv.tolist() == pytest.approx([0.5 / math.sqrt(1 / 6), -0.5 / math.sqrt(1 / 6), 0, 0], abs=1e-5)


def test_reinforce_pp_baseline_leaves_unscorable_samples_out():
    rewards = torch.tensor([1.0, 0.0, 0.0, 99.0, 1.0, 1.0, 0.0, 0.0])
    valid = torch.tensor([True, True, True, False, True, True, True, True])
    # group 1 (3 valid): mean 1/3 -> 2/3, -1/3, -1/3; group 2: mean 1/2 -> +-1/2
    centred = [2 / 3, -1 / 3, -1 / 3, 0.0, 0.5, 0.5, -0.5, -0.5]
    std = math.sqrt((4 / 9 + 1 / 9 + 1 / 9 + 4 * 0.25) / 6)  # over the 7 valid, whose mean is 0
    adv = get_advantage("reinforce_pp_baseline")(rewards, valid, 4)
    assert adv.tolist() == pytest.approx([c / std for c in centred], abs=1e-5)


def test_rloo_baseline_is_the_mean_of_the_others():
    # group 1: r=1 -> 1 - (0 + 0 + 1) / 3 = 2/3; r=0 -> 0 - (1 + 0 + 1) / 3 = -2/3; group 2: all equal -> 0
    adv = get_advantage("rloo")(R, ALL, 4)
    assert adv.tolist() == pytest.approx([2 / 3, -2 / 3, -2 / 3, 2 / 3, 0, 0, 0, 0])
    rewards = torch.tensor([1.0, 0.0, 0.0, 123.0, 1.0, 7.0, 7.0, 7.0])  # 123 and the 7s unscorable
    valid = torch.tensor([True, True, True, False, True, False, False, False])
    # 1 - (0 + 0) / 2 = 1; 0 - (1 + 0) / 2 = -0.5; a sample alone in its group has no baseline: 0
    assert get_advantage("rloo")(rewards, valid, 4).tolist() == pytest.approx([1, -0.5, -0.5, 0, 0, 0, 0, 0])


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
    assert close(token_weights(mask, "seq-mean-token-mean", 4)[:2],
                 token_weights(MASK, "seq-mean-token-mean", 4).tolist())


def test_weights_make_slices_add_up_to_the_whole():
    """Cutting a mini-batch into micro-batches or ranks must not change the loss."""
    torch.manual_seed(0)
    logp, old = torch.randn(4, 5) * 0.1, torch.randn(4, 5) * 0.1
    adv, mask = torch.randn(4), (torch.rand(4, 5) > 0.3).float()
    for mode in ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"):
        w = token_weights(mask, mode, 5)
        whole, _ = policy_loss(logp, old, adv, w, 0.2, 0.28)
        parts = sum(policy_loss(logp[i:i + 1], old[i:i + 1], adv[i:i + 1], w[i:i + 1], 0.2, 0.28)[0]
                    for i in range(4))
        assert whole.item() == pytest.approx(parts.item(), abs=1e-6)


def test_clipped_loss_hand_computed():
    # ratio = e^0.5 = 1.6487 > 1 + eps_high = 1.28 with A=+1: clipped to 1.28 -> loss -1.28
    # ratio = e^-0.5 = 0.6065 < 1 - eps_low = 0.8 with A=-1: min(-0.6065, -0.8) = -0.8 -> loss 0.8
    logp = torch.tensor([[0.5], [-0.5]])
    old = torch.zeros(2, 1)
    w = torch.full((2, 1), 0.5)
    loss, stats = policy_loss(logp, old, torch.tensor([1.0, -1.0]), w, 0.2, 0.28)
    assert loss.item() == pytest.approx(0.5 * -1.28 + 0.5 * 0.8, abs=1e-5)
    assert stats["clip_count"].item() == 2  # both tokens clipped


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
    with_kl, stats = policy_loss(logp, logp, torch.tensor([0.0]), torch.ones(1, 1), 0.2, 0.2, ref_logp=ref,
                                 kl_coef=0.1, kl_estimator="k1")
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


# ---- policy objectives (system/algorithms/objectives.py) ----

OBJECTIVES = ("ppo", "gspo", "gspo_token", "cispo")


def test_dual_clip_caps_the_loss_of_negative_advantages():
    # ratio e^1.5 = 4.4817 with A = -1: PPO's loss max(4.4817, 1.2) = 4.4817; dual clip c = 3 caps it at 3
    logp = torch.full((1, 1), 1.5, requires_grad=True)
    loss, stats = policy_loss(logp, torch.zeros(1, 1), torch.tensor([-1.0]), torch.ones(1, 1), 0.2, 0.2,
                              clip_ratio_c=3.0)
    loss.backward()
    assert loss.item() == pytest.approx(3.0) and logp.grad.item() == 0.0 and stats["clip_count"].item() == 1
    logp.grad = None
    loss, stats = policy_loss(logp, torch.zeros(1, 1), torch.tensor([-1.0]), torch.ones(1, 1), 0.2, 0.2,
                              clip_ratio_c=0.0)
    loss.backward()  # off: d(-r A)/dlogp = r
    assert loss.item() == pytest.approx(math.exp(1.5), rel=1e-5)
    assert logp.grad.item() == pytest.approx(math.exp(1.5))
    assert stats["clip_count"].item() == 0
    # a positive advantage is never dual-clipped (PPO's upper clip already bounds it)
    loss, _ = policy_loss(logp, torch.zeros(1, 1), torch.tensor([1.0]), torch.ones(1, 1), 0.2, 0.2,
                          clip_ratio_c=3.0)
    assert loss.item() == pytest.approx(-1.2)


def gspo_example():
    """Two samples; log(pi / pi_old) per token, the second sample's last token masked."""
    log_ratio = torch.tensor([[0.2, 0.4, 0.0], [-0.1, 0.1, 5.0]])
    mask = torch.tensor([[1.0, 1, 0], [1, 1, 0]])
    weights = token_weights(mask, "seq-mean-token-mean", 3)  # 1/4 each
    return log_ratio, weights, torch.tensor([1.0, -1.0])


@pytest.mark.parametrize("objective", ["gspo", "gspo_token"])
def test_gspo_hand_computed(objective):
    log_ratio, weights, adv = gspo_example()
    logp = log_ratio.clone().requires_grad_()
    loss, stats = policy_loss(logp, torch.zeros(2, 3), adv, weights, 0.2, 0.2, objective=objective)
    loss.backward()
    # sample 0: s = exp((0.2 + 0.4) / 2) = e^0.3 = 1.3499 > 1.2 with A = +1: clipped, loss -1.2 per token,
    #   no gradient
    # sample 1: s = exp((-0.1 + 0.1) / 2) = 1 (the masked 5.0 does not count), A = -1: loss s per token;
    #   d/dlogp_t of sum_t w_t s = (1/4 + 1/4) * s / 2 = 0.25
    assert loss.item() == pytest.approx(2 * 0.25 * -1.2 + 2 * 0.25 * 1.0)
    assert close(logp.grad, [[0.0, 0.0, 0.0], [0.25, 0.25, 0.0]])
    assert stats["clip_count"].item() == 2  # both tokens of sample 0


def test_gspo_token_equals_gspo_in_value_and_gradient():
    """The GSPO paper: with one advantage per sequence the token variant is GSPO, value and gradient."""
    torch.manual_seed(0)
    old, adv, mask = torch.randn(4, 6) * 0.1, torch.randn(4), (torch.rand(4, 6) > 0.3).float()
    weights = token_weights(mask, "token-mean", 6)
    grads = []
    for objective in ("gspo", "gspo_token"):
        logp = (old + torch.randn(4, 6, generator=torch.Generator().manual_seed(1)) * 0.01).requires_grad_()
        loss, stats = policy_loss(logp, old, adv, weights, 3e-4, 4e-4, objective=objective)
        loss.backward()
        grads.append((loss.item(), stats["clip_count"].item(), logp.grad))
    assert grads[0][:2] == pytest.approx(grads[1][:2]) and torch.allclose(grads[0][2], grads[1][2], atol=1e-7)
    assert grads[0][1] > 0  # GSPO's tiny clip range does clip here


def test_cispo_keeps_the_gradient_of_clipped_tokens():
    # token 0: ratio e^0.5 = 1.6487, A = +1: the weight is capped at 1 + 0.28 = 1.28 (PPO: no gradient at all)
    # token 1: ratio e^-0.5 = 0.6065, A = -1, eps_low = 1 (no lower bound, as MiniMax-M1): weight 0.6065
    logp = torch.tensor([[0.5], [-0.5]], requires_grad=True)
    w = torch.full((2, 1), 0.5)
    loss, stats = policy_loss(logp, torch.zeros(2, 1), torch.tensor([1.0, -1.0]), w, 1.0, 0.28,
                              objective="cispo")
    loss.backward()
    r1 = math.exp(-0.5)
    # loss = sum_t w_t * -sg(weight_t) A_t logp_t; its gradient -w_t weight_t A_t
    assert loss.item() == pytest.approx(0.5 * (-1.28 * 0.5) + 0.5 * (-r1 * 0.5), abs=1e-6)
    assert close(logp.grad, [[-0.5 * 1.28], [0.5 * r1]])
    assert stats["clip_count"].item() == 1


def test_objectives_agree_on_policy():
    """At ratio 1 (one update per batch) every objective's gradient is A * w per token: they only
    differ once the policy has moved away from the one that sampled."""
    torch.manual_seed(0)
    logp0, adv, mask = torch.randn(3, 5) * 0.5, torch.randn(3), (torch.rand(3, 5) > 0.3).float()
    weights = token_weights(mask, "token-mean", 5)
    for objective in OBJECTIVES:
        logp = logp0.clone().requires_grad_()
        loss, stats = policy_loss(logp, logp0, adv, weights, 0.2, 0.28, objective=objective)
        loss.backward()
        assert torch.allclose(logp.grad, -adv[:, None] * weights, atol=1e-6), objective
        assert stats["clip_count"].item() == 0


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_is_weights_scale_every_objective(objective):
    torch.manual_seed(0)
    old, adv = torch.randn(2, 4) * 0.1, torch.tensor([1.0, -1.0])
    weights = token_weights(torch.ones(2, 4), "token-mean", 4)
    results = []
    for is_weights in (None, torch.full((2, 4), 0.5)):
        logp = (old + 0.05).requires_grad_()
        loss, _ = policy_loss(logp, old, adv, weights, 0.2, 0.28, objective=objective, is_weights=is_weights)
        loss.backward()
        results.append((loss.item(), logp.grad))
    assert results[1][0] == pytest.approx(0.5 * results[0][0])
    assert torch.allclose(results[1][1], 0.5 * results[0][1])


def test_entropy_bonus_is_subtracted_with_the_token_weights():
    logp = torch.zeros(1, 2)
    entropy = torch.tensor([[1.0, 3.0]], requires_grad=True)
    weights = torch.tensor([[0.25, 0.75]])
    base, _ = policy_loss(logp, logp, torch.tensor([0.0]), weights, 0.2, 0.2)
    bonus, _ = policy_loss(logp, logp, torch.tensor([0.0]), weights, 0.2, 0.2, entropy=entropy,
                           entropy_coef=0.01)
    bonus.backward()
    assert (bonus - base).item() == pytest.approx(-0.01 * (0.25 * 1 + 0.75 * 3))
    assert close(entropy.grad, [[-0.0025, -0.0075]])


def test_objective_names_are_checked_and_recipes_load():
    import glob
    import os

    from system.config.grpo import ConfigError, load_config

    configs = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")
    demo = os.path.join(configs, "grpo_countdown_cpu.yaml")
    with pytest.raises(ConfigError, match="unknown policy objective 'gspoo' \\(did you mean 'gspo'\\?\\)"):
        load_config(demo, ["algorithm.policy_loss=gspoo"])
    with pytest.raises(ConfigError, match="clip_ratio_c"):
        load_config(demo, ["algorithm.clip_ratio_c=0.5"])
    recipes = glob.glob(os.path.join(configs, "algorithms", "*_countdown_cpu.yaml"))
    assert {load_config(path).algorithm.policy_loss for path in recipes} == set(OBJECTIVES)
