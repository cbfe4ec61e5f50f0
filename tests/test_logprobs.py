"""Log-probs over length-sorted micro-batches: every sequence scored, results in the order given."""

import torch

from system.training.logprobs import compute_logprobs, micro_batches
from system.training.samples import TrainingSample


def sample(tokens: torch.Tensor) -> TrainingSample:
    return TrainingSample(tokens, torch.zeros(len(tokens)), torch.zeros(len(tokens)))


def test_micro_batches_group_similar_lengths():
    seqs = [sample(torch.zeros(n, dtype=torch.long)) for n in (9, 2, 7, 3, 8, 1)]
    groups = micro_batches(seqs, 2)
    assert [[len(s.tokens) for s in g] for g in groups] == [[1, 2], [3, 7], [8, 9]]
    assert sum(len(g) for g in groups) == len(seqs)


def test_compute_logprobs_keeps_the_given_order(tiny_model):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32).eval()
    g = torch.Generator().manual_seed(0)
    seqs = [sample(torch.randint(1, 1000, (n,), generator=g)) for n in (12, 5, 9, 17, 6)]
    batched = compute_logprobs(model, seqs, micro_batch=2, pad_id=0, temperature=0.7)
    for seq, logp in zip(seqs, batched):
        [alone] = compute_logprobs(model, [seq], micro_batch=1, pad_id=0, temperature=0.7)
        assert logp.shape == seq.tokens.shape
        torch.testing.assert_close(logp, alone, atol=1e-4, rtol=0)


def textbook_logprobs(logits, targets, temperature):
    logp_all = torch.log_softmax(logits / temperature, -1)
    return logp_all.gather(-1, targets[:, None]).squeeze(-1), -(logp_all.exp() * logp_all).sum(-1)


def test_selected_logprobs_match_log_softmax_with_gradients(monkeypatch):
    import system.training.logprobs as lp

    monkeypatch.setattr(lp, "CHUNK_ELEMENTS", 3 * 50)  # chunks of 3 rows: the loop's edges get tested
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(10, 50, generator=g, dtype=torch.float64) * 3
    targets = torch.randint(0, 50, (10,), generator=g)
    weights = torch.randn(10, generator=g, dtype=torch.float64)
    ours = logits.clone().requires_grad_()
    logp, entropy = lp.SelectedLogprobs.apply(ours, targets, 0.7, True)
    (logp * weights).sum().backward()
    textbook = logits.clone().requires_grad_()
    want_logp, want_entropy = textbook_logprobs(textbook, targets, 0.7)
    (want_logp * weights).sum().backward()
    torch.testing.assert_close(logp, want_logp)
    torch.testing.assert_close(entropy, want_entropy)
    torch.testing.assert_close(ours.grad, textbook.grad)
    assert torch.autograd.gradcheck(lambda x: lp.SelectedLogprobs.apply(x, targets, 0.7, False)[0],
                                    (logits.clone().requires_grad_(),))
