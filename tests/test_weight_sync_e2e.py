"""Weight sync into a real vLLM engine: the engine serves exactly the weights sent.

The test process plays policy rank 0 (system/sync.py's `send` over gloo) and a VLLMEngine actor
receives (actors/vllm_worker.py). The tiny model ties its LM head to the input embedding, as
SmolLM2 does: on CPU vLLM computes the head from a copy packed at start-up, so a sync that
updated only the shared tensor would leave the engine scoring with the old head."""

import pytest
import torch

from system.sync import init_sync_group, plan_buckets, send
from tests.probes import engine_logprobs


def hf_logprobs(model, seq: list[int]) -> torch.Tensor:
    logits = model(torch.tensor([seq])).logits[0, :-1].float()
    return torch.log_softmax(logits, -1).gather(-1, torch.tensor(seq[1:]).unsqueeze(-1)).squeeze(-1)


@pytest.mark.e2e
def test_engine_serves_the_sent_weights_including_a_tied_lm_head(ray_job, tiny_model):
    from transformers import AutoModelForCausalLM

    from actors.group import free_port
    from actors.vllm_engine import VLLMEngine
    from system.config import RolloutConfig

    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.bfloat16)
    assert model.config.tie_word_embeddings
    engine = VLLMEngine.options(num_cpus=0.5).remote(tiny_model, RolloutConfig(max_model_len=256), 0, "bfloat16", 1)
    seq = list(range(200, 260))
    before = torch.tensor(engine_logprobs(engine, [seq])[0])
    torch.testing.assert_close(before, hf_logprobs(model, seq), atol=0.05, rtol=0)

    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # a big move of the shared embedding / LM head tensor only
        embedding = model.get_input_embeddings().weight
        embedding.add_(torch.randn(embedding.shape, generator=g).to(embedding.dtype) * embedding.float().std() * 2)
    params = [(n, p) for n, p in model.named_parameters() if n != "lm_head.weight"]
    plan = plan_buckets([(n, p.dtype, tuple(p.shape)) for n, p in params], bucket_mb=1)
    by_name = dict(params)

    port = free_port()
    joined = engine.init_weight_sync.remote("127.0.0.1", port, 1, 2, "gloo")
    group = init_sync_group("127.0.0.1", port, 0, 2, "gloo", timeout_s=60)
    ray_job.get(joined, timeout=60)
    received = engine.receive_weights.remote(plan, True)

    class Gathered:  # the policy's ZeRO-3 gather, here the tensors as they are
        def __init__(self, bucket):
            self.tensors = [by_name[m["name"]].data for m in bucket]

        def __enter__(self):
            return self.tensors

        def __exit__(self, *exc):
            return False

    sent = send(group, plan, Gathered, "cpu", verify=True)  # the engine receives meanwhile
    assert ray_job.get(received, timeout=60) == sent

    after, want = torch.tensor(engine_logprobs(engine, [seq])[0]), hf_logprobs(model, seq)
    moved = (want - before).abs().mean()
    error = (after - want).abs().mean()
    print(f"log-probs moved {moved:.3f} by the new weights; engine vs sent weights {error:.4f}")
    assert moved > 0.3, "the test's weight change is too small to tell"
    assert error < 0.05, "the engine does not serve the weights it received"
    ray_job.kill(engine)
