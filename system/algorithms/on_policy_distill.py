"""On-policy distillation: a teacher model scores the student's own samples token by token, and the
per-token reverse KL to the teacher is the training signal (GKD, arXiv 2306.13649; MiniLLM,
arXiv 2306.08543; Thinking Machines' "On-Policy Distillation", 2025), alone or added to the task's.

For a sample y of the student pi and a token t, with sg() = stop-gradient:

  k_t = log pi(y_t | y_<t) - log pi_teacher(y_t | y_<t)       reverse KL estimate at the sampled token
  A_t = task_coef * A_i - coef * sg(k_t)                       the token's advantage

A_i is the task's (group-normalised) advantage of the sample. The policy gradient of -k_t, with
y ~ pi, is the gradient of -KL(pi || pi_teacher) over whole sequences: each token is pushed up where
the teacher likes it more than the student, down where less.

log pi is the trainer's log-prob under the weights before this update (the `old_logp` of the update,
computed in its first forward): on-policy they are the behaviour policy itself, without the
engine's kernel noise (vLLM's bf16 log-probs differ from the trainer's by ~0.03 a token, the size of
the signal near the end of distillation), and a student equal to its teacher gets k_t = 0 exactly.
With stale rollouts (schedule.max_staleness > 0) they are still the KL of the policy being trained;
that its tokens were sampled by an older one is what `algorithm.off_policy` corrects, as for the
task reward.

Not to be confused with the *program* teachers of system/teachers/ (the `teacher:` key of a
distill config): those write SFT traces offline; this teacher is a model that scores the student.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch


@dataclass
class OnPolicyDistillConfig:
    """The `on_policy_distill` section of a GRPO config; off while `teacher_path` is empty."""

    # The teacher: a HF folder (or `smollm2-135m`, `tiny`, a hub id) with the student's tokenizer,
    # held by its own actors (role `teacher`, placement.teacher_cpus), frozen like the reference.
    teacher_path: str = ""
    coef: float = 1.0  # weight of -k_t in each token's advantage
    task_coef: float = 0.0  # weight of the task's advantage A_i (0: pure distillation)
    num_ranks: int = 1
    zero_stage: int = 0  # 3 shards a large teacher over its ranks
    micro_batch_size: int = 8  # sequences per forward when train.max_tokens_per_microbatch is 0


def distill_advantages(student_logp: torch.Tensor, teacher_logp: torch.Tensor, task_advantages: torch.Tensor,
                       mask: torch.Tensor, coef: float, task_coef: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(A_t, k_t), both [sequences, tokens] and detached; 0 where mask is 0. student_logp, teacher_logp
    and mask are [sequences, tokens]; task_advantages [sequences] (A_i, one per sample)."""
    with torch.no_grad():
        k = (student_logp - teacher_logp) * mask
        return (task_coef * task_advantages.unsqueeze(1) - coef * k) * mask, k


def distill_problem(cfg) -> Optional[str]:
    """What is wrong with the run config `cfg`'s on_policy_distill section (None: nothing)."""
    d = cfg.on_policy_distill
    if not d.teacher_path:
        return None
    if d.coef < 0 or d.task_coef < 0 or d.coef + d.task_coef == 0:
        return "'on_policy_distill.coef' and 'task_coef' must be >= 0, not both 0"
    if d.num_ranks < 1 or d.zero_stage not in (0, 3) or d.micro_batch_size < 1:
        return ("'on_policy_distill.num_ranks' and 'micro_batch_size' must be >= 1, 'zero_stage' 0 or 3 "
                "(the teacher has no optimizer: ZeRO 1-2 shard nothing)")
    if cfg.algorithm.filter_zero_variance_groups and d.task_coef == 0:
        return ("'algorithm.filter_zero_variance_groups' drops groups whose task reward has no spread; with "
                "on_policy_distill.task_coef 0 the task reward is not trained on, and those groups still have "
                "the teacher's signal")
    return None


def check_same_tokenizer(student, teacher, teacher_path: str) -> None:
    """The teacher scores the student's token ids: both must mean the same text by every id. Raises
    ValueError naming the first difference (`student`, `teacher`: transformers tokenizers)."""
    s, t = student.get_vocab(), teacher.get_vocab()
    if s == t:
        return
    only_s, only_t = sorted(set(s) - set(t))[:3], sorted(set(t) - set(s))[:3]
    moved = sorted(k for k in set(s) & set(t) if s[k] != t[k])[:3]
    raise ValueError(
        f"on_policy_distill.teacher_path={teacher_path}: its tokenizer is not the student's ({len(t)} vs "
        f"{len(s)} tokens; only the student's: {only_s}, only the teacher's: {only_t}, other ids: {moved}). "
        f"The teacher scores the student's token ids, so it must share the student's vocabulary")
