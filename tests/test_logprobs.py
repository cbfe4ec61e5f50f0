"""The chunked log-softmax (SelectedLogprobs) equals the textbook one, gradients included. Log-probs
of whole sequences over packed micro-batches: tests/test_packing.py."""

import torch


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
