"""On-policy distillation: the per-token advantage against hand-computed values, its gradient against
the exact reverse KL, the loss with per-token advantages, the config and the tokenizer check."""

import os

import pytest
import torch

from system.algorithms.losses import policy_loss
from system.algorithms.on_policy_distill import check_same_tokenizer, distill_advantages
from system.config.grpo import ConfigError, load_config
from system.config.recipe import PipelineConfig, validate_pipeline

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STUDENT = torch.tensor([[-1.0, -2.0, -0.5, -4.0], [-0.2, -3.0, 0.0, 0.0]])
TEACHER = torch.tensor([[-1.5, -1.0, -0.5, -9.0], [-0.7, -1.0, 0.0, 0.0]])
MASK = torch.tensor([[1.0, 1.0, 1.0, 0.0], [1.0, 1.0, 0.0, 0.0]])


def test_distill_advantages_hand_computed():
    # k = student - teacher on the loss tokens: [0.5, -1, 0, (masked)], [0.5, -2, (masked), (masked)]
    adv, k = distill_advantages(STUDENT, TEACHER, torch.tensor([2.0, -1.0]), MASK, coef=1.0, task_coef=0.0)
    assert k.tolist() == [[0.5, -1.0, 0.0, 0.0], [0.5, -2.0, 0.0, 0.0]]
    assert adv.tolist() == [[-0.5, 1.0, 0.0, 0.0], [-0.5, 2.0, 0.0, 0.0]]  # pure distillation: -k
    # with the task: A_t = 0.5 * A_i - 2 * k_t; row 1: 1 - [1, -2, 0]; row 2: -0.5 - [1, -4]
    adv, _ = distill_advantages(STUDENT, TEACHER, torch.tensor([2.0, -1.0]), MASK, coef=2.0, task_coef=0.5)
    assert adv.tolist() == [[0.0, 3.0, 1.0, 0.0], [-1.5, 3.5, 0.0, 0.0]]


def test_distill_advantages_are_detached():
    student = STUDENT.clone().requires_grad_(True)
    adv, k = distill_advantages(student, TEACHER, torch.zeros(2), MASK, coef=1.0, task_coef=0.0)
    assert not adv.requires_grad and not k.requires_grad


def test_per_token_advantages_in_the_loss():
    # A per-sample advantage given per token is the same loss; on-policy (ratio 1) the token loss is
    # -A_t and its gradient -A_t * w_t, for each token's own advantage.
    weights = MASK / MASK.sum()
    per_sample = torch.tensor([0.7, -0.3])
    args = dict(eps_low=0.2, eps_high=0.2)
    logp = STUDENT.clone().requires_grad_(True)
    a, _ = policy_loss(logp, STUDENT, per_sample, weights, **args)
    b, _ = policy_loss(logp, STUDENT, per_sample[:, None].expand(-1, 4), weights, **args)
    assert torch.allclose(a, b)
    adv, _ = distill_advantages(STUDENT, TEACHER, torch.zeros(2), MASK, coef=1.0, task_coef=0.0)
    for objective in ("ppo", "gspo_token", "cispo"):
        logp = STUDENT.clone().requires_grad_(True)
        loss, _ = policy_loss(logp, STUDENT, adv, weights, objective=objective, **args)
        (grad,) = torch.autograd.grad(loss, logp)
        expected = -adv * weights  # -[-0.5, 1, 0], -[-0.5, 2] over 5 tokens
        assert torch.allclose(grad, expected, atol=1e-6), objective
        if objective != "cispo":  # cispo's loss is -w A log pi, not -w A r
            assert loss.item() == pytest.approx((-adv * weights).sum().item())


def test_the_gradient_is_that_of_the_reverse_kl():
    # One token position, a 4-way vocabulary, every token "sampled" with its probability: the loss
    # with A_t = -(log pi - log q) has the gradient of KL(pi || q) = sum pi (log pi - log q).
    theta = torch.tensor([0.3, -1.2, 2.0, 0.1], requires_grad=True)
    log_q = torch.log_softmax(torch.tensor([1.0, 0.5, -0.5, 0.0]), -1)
    logp = torch.log_softmax(theta, -1)
    kl = (logp.exp() * (logp - log_q)).sum()
    (exact,) = torch.autograd.grad(kl, theta, retain_graph=True)
    ones = torch.ones(1, 4)
    adv, _ = distill_advantages(logp[None], log_q[None], torch.zeros(1), ones, coef=1.0, task_coef=0.0)
    loss, _ = policy_loss(logp[None], logp[None].detach(), adv, logp.exp()[None].detach(), 0.2, 0.2)
    (estimated,) = torch.autograd.grad(loss, theta)
    assert torch.allclose(estimated, exact, atol=1e-6)


def test_tokenizers_must_match(tiny_model):
    from transformers import AutoTokenizer

    student = AutoTokenizer.from_pretrained(tiny_model)
    check_same_tokenizer(student, AutoTokenizer.from_pretrained(tiny_model), tiny_model)  # the same: fine
    other = AutoTokenizer.from_pretrained(tiny_model)
    other.add_tokens(["<not_the_students>"])
    with pytest.raises(ValueError, match="not the student's.*<not_the_students>"):
        check_same_tokenizer(student, other, "other")


def config(*overrides):
    return load_config(os.path.join(ROOT, "configs", "onpolicy_distill_arithmetic_cpu.yaml"), list(overrides))


def test_config_section_and_roles():
    cfg = config()
    assert cfg.on_policy_distill.coef == 1.0 and cfg.roles().teacher == 1
    assert config("on_policy_distill.teacher_path=").roles().teacher == 0  # off
    assert config("on_policy_distill.num_ranks=2").roles().teacher == 2
    with pytest.raises(ConfigError, match="not both 0"):
        config("on_policy_distill.coef=0")
    with pytest.raises(ConfigError, match="zero_stage"):
        config("on_policy_distill.zero_stage=2")
    with pytest.raises(ConfigError, match="filter_zero_variance_groups"):
        config("algorithm.filter_zero_variance_groups=true")
    config("algorithm.filter_zero_variance_groups=true", "on_policy_distill.task_coef=1")  # the task counts


def test_pipeline_teacher_from_is_checked():
    path = os.path.join(ROOT, "configs", "pipeline_onpolicy_distill_cpu.yaml")
    cfg = load_config(path, [], schema=PipelineConfig, check=validate_pipeline)
    assert cfg.stages[-1].teacher_from == "teacher_sft"
    with pytest.raises(ConfigError, match="teacher_from"):
        load_config(path, ["stages.2.teacher_from=teacher_data"], schema=PipelineConfig,
                    check=validate_pipeline)
