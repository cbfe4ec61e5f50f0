"""Weight sync into a real vLLM engine: the engine serves exactly the weights sent, also when they
land in the middle of a generation.

The test process plays policy rank 0 (system/weight_sync.py's `send` over gloo) and a VLLMEngine actor
receives (actors/vllm_worker.py). The tiny model ties its LM head to the input embedding, as
SmolLM2 does: on CPU vLLM computes the head from a copy packed at start-up, so a sync that
updated only the shared tensor would leave the engine scoring with the old head."""

import copy
import time

import pytest
import torch

from system.weight_sync import BucketBuffers, init_sync_group, plan_buckets, send
from tests.probes import engine_logprobs


def hf_logprobs(model, seq: list[int]) -> torch.Tensor:
    """log p(seq[t] | seq[:t]) for t >= 1 under an HF model."""
    with torch.no_grad():
        logits = model(torch.tensor([seq])).logits[0, :-1].float()
    return torch.log_softmax(logits, -1).gather(-1, torch.tensor(seq[1:]).unsqueeze(-1)).squeeze(-1)


def moved(model, seed: int = 0):
    """A copy of `model` whose shared embedding / LM head tensor moved far (log-probs change ~0.5)."""
    model = copy.deepcopy(model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        embedding = model.get_input_embeddings().weight
        noise = torch.randn(embedding.shape, generator=g).to(embedding.dtype)
        embedding.add_(noise * embedding.float().std() * 2)
    return model


class Sender:
    """The policy's side of the sync group, in the test process."""

    def __init__(self, ray_job, engine):
        from actors.group import free_port

        port = free_port()
        joined = engine.init_weight_sync.remote("127.0.0.1", port, 1, 2, "gloo", 60)
        self.group = init_sync_group("127.0.0.1", port, 0, 2, "gloo", timeout_s=60)
        ray_job.get(joined, timeout=60)
        self.ray, self.engine = ray_job, engine
        self.buffers = None  # kept from one sync to the next, as the policy keeps them

    def sync(self, model, version: int) -> None:
        params = [(n, p) for n, p in model.named_parameters() if n != "lm_head.weight"]  # tied
        plan = plan_buckets([(n, p.dtype, tuple(p.shape)) for n, p in params], bucket_mb=1)
        by_name = dict(params)

        class Gathered:  # the policy's ZeRO-3 gather; here the tensors as they are
            def __init__(self, bucket):
                self.tensors = [by_name[m["name"]].data for m in bucket]

            def __enter__(self):
                return self.tensors

            def __exit__(self, *exc):
                return False

        received = self.engine.receive_weights.remote(plan, True, version)
        self.buffers = BucketBuffers.for_plan(plan, "cpu", self.buffers)
        sent = send(self.group, plan, Gathered, self.buffers, verify=True)  # the engine receives meanwhile
        assert self.ray.get(received, timeout=60) == sent


def start_engine(tiny_model, max_model_len: int = 256):
    from actors.vllm_engine import VLLMEngine
    from system.config.grpo import RolloutConfig

    return VLLMEngine.options(num_cpus=0.5).remote(tiny_model, RolloutConfig(max_model_len=max_model_len), 0,
                                                   "bfloat16", 1, True)


@pytest.mark.e2e
def test_engine_serves_the_sent_weights_including_a_tied_lm_head(ray_job, tiny_model):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.bfloat16)
    assert model.config.tie_word_embeddings
    engine = start_engine(tiny_model)
    seq = list(range(200, 260))
    before = torch.tensor(engine_logprobs(engine, [seq])[0])
    torch.testing.assert_close(before, hf_logprobs(model, seq), atol=0.05, rtol=0)

    sender = Sender(ray_job, engine)
    for version in (1, 2):  # the second sync lands in the buffers both sides kept from the first
        new = moved(model, seed=version)
        sender.sync(new, version=version)
        after, want = torch.tensor(engine_logprobs(engine, [seq])[0]), hf_logprobs(new, seq)
        change, error = (want - before).abs().mean(), (after - want).abs().mean()
        print(f"log-probs moved {change:.3f} by the new weights; engine vs sent weights {error:.4f}")
        assert change > 0.3, "the test's weight change is too small to tell"
        assert error < 0.05, "the engine does not serve the weights it received"
    ray_job.kill(engine)


@pytest.mark.e2e
def test_weights_land_mid_generation_and_each_token_keeps_its_behaviour_logprob(ray_job, tiny_model):
    """A sync lands while the engine generates: the samples go on (not restarted, not thrown away),
    their tokens carry version 0 then 1, and each token's log-prob is that of the policy that
    sampled it: the old weights before the switch, the new ones after (the trainer's
    `rollout_logp`, what the off-policy correction divides by)."""
    from transformers import AutoModelForCausalLM

    old = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.bfloat16)
    new = moved(old, seed=1)
    engine = start_engine(tiny_model, max_model_len=1024)
    sender = Sender(ray_job, engine)
    prompts = [list(range(300 + 7 * i, 310 + 7 * i)) for i in range(4)]
    generating = engine.generate.remote(prompts, 1, 1.0, 1.0, 900, [11, 12, 13, 14])
    time.sleep(3.0)  # into the generation (900 tokens take 10 s and more here)
    sender.sync(new, version=1)
    samples = [group[0] for group in ray_job.get(generating, timeout=120)]
    for prompt, sample in zip(prompts, samples):
        versions, behaviour = sample["versions"], torch.tensor(sample["logprobs"])
        assert len(versions) == len(sample["response"]) == len(behaviour)
        assert versions == sorted(versions)
        assert set(versions) == {0, 1}, "the load did not land mid-generation"
        switch = versions.index(1)
        seq = prompt + sample["response"]
        under_old, under_new = (hf_logprobs(m, seq)[len(prompt) - 1:] for m in (old, new))
        right = [(behaviour[:switch] - under_old[:switch]).abs().mean(),
                 (behaviour[switch:] - under_new[switch:]).abs().mean()]
        wrong = [(behaviour[:switch] - under_new[:switch]).abs().mean(),
                 (behaviour[switch:] - under_old[switch:]).abs().mean()]
        print(f"switch at token {switch}/{len(versions)}: "
              f"behaviour vs its own policy {right}, vs the other {wrong}")
        assert max(right) < 0.05
        # a few tokens cannot tell the policies apart
        assert wrong[1] > 0.2 and (switch < 8 or wrong[0] > 0.2)
    ray_job.kill(engine)
