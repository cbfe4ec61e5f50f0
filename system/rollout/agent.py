"""Agent-program rollout: a user's agent (cfg.agent.fn) plays each data row through the engines'
OpenAI-compatible endpoint, and its recorded calls become the samples (system/agents/).

One collection: every episode (`n` per row, a GRPO group) gets a base URL of its own, opened on
an engine with the collection's sampling (temperature, top-p, a seed per episode, the token limit
per call); the agents run, at most `agent.concurrency` at once; the episodes are closed and their
calls come back; a reward is the agent's number, or, where it returned None, the configured reward
functions' score of the text of its last call (with the row's columns). Samples come from the
recorded token ids alone (system/agents/episodes.py), laid out in whole groups.
"""

from __future__ import annotations

import uuid
from typing import Optional

from system.agents.episodes import assemble, group_aligned
from system.agents.runner import check_failures, resolve_agent, run_agents
from system.data.sampler import PromptSampler
from system.reporting.metrics import timed
from system.rollout.base import RolloutBatch
from system.rollout.single_turn import SingleTurnRollout, score_samples

FILLER_TOKENS = 2  # a filler sample: this many pad tokens, none in the loss


class AgentRollout(SingleTurnRollout):
    """The data side (rows, sampler, checkpoint state) is the single-turn rollout's; the samples come
    from agents. `endpoints.open({id: sampling}) -> {id: Endpoint}`, `endpoints.close(ids) -> {id:
    EpisodeCalls}` (actors/openai_server.py); `rewards.score` as in single_turn.py. `cfg`: the GRPO config."""

    def __init__(self, endpoints, rewards, tokenizer, cfg, sampler: PromptSampler, eval_rows: list[dict]):
        super().__init__(None, rewards, tokenizer, cfg, sampler, eval_rows)
        self.endpoints, self.fn = endpoints, resolve_agent(cfg.agent.fn)
        self.correctness = None  # an episode is solved when its reward is 1 or more
        self.filler = [tokenizer.pad_token_id] * FILLER_TOKENS
        self.max_response_tokens = cfg.rollout.max_model_len  # a sample never outgrows the engine's context

    def collect(self, rows: list[dict], seed: int, n: int, temperature: float, top_p: float | None = None
                ) -> RolloutBatch:
        timings: dict[str, float] = {}
        rollout, ids = self.cfg.rollout, [f"{uuid.uuid4().hex[:12]}-{k}" for k in range(len(rows) * n)]
        sampling = {eid: {"temperature": temperature, "top_p": rollout.top_p if top_p is None else top_p,
                          "max_tokens": rollout.max_new_tokens, "seed": seed + k}
                    for k, eid in enumerate(ids)}
        with timed(timings, "generate"):
            outcomes, calls = self._play([row for row in rows for _ in range(n)], ids, sampling)
        episodes = [[] if o.error else assemble(calls[eid]) for o, eid in zip(outcomes, ids)]
        last = [None if o.error else max(calls[eid], key=lambda c: c.index, default=None)
                for o, eid in zip(outcomes, ids)]
        with timed(timings, "reward"):
            rewards, scores = self._rewards(rows, n, outcomes, last)
        scores.update({
            "agent/calls": [float(len({c.index for c in calls[eid]})) for eid in ids],
            "agent/split_episodes": [float(len(samples) > 1) for samples in episodes],
            "agent/failed": [float(bool(o.error)) for o in outcomes],
            "agent/refused_calls": [float(calls[eid].refused) for eid in ids],  # 401 (no key) and 429
        })
        rollouts = self._laid_out(episodes, rewards, scores, n)
        rollouts.timings = timings
        return rollouts

    def _play(self, tasks: list[dict], ids: list[str], sampling: dict) -> tuple[list, dict]:
        """Each task's agent on its episode's URL; (the outcomes, each episode's recorded calls)."""
        agent = self.cfg.agent
        urls = self.endpoints.open(sampling)
        outcomes = run_agents(self.fn, [urls[eid] for eid in ids], tasks, dict(agent.params),
                              agent.concurrency, agent.timeout_s, agent.request_timeout_s)
        calls = self.endpoints.close(ids)
        failed = [o.error for o in outcomes if o.error]
        if failed:
            print(f"agent: {len(failed)} of {len(outcomes)} episodes failed; the first {failed[0]}",
                  flush=True)
        check_failures(outcomes, agent.max_failed_frac)
        return outcomes, calls

    def _rewards(self, rows: list[dict], n: int, outcomes: list, last: list) -> tuple[list, dict]:
        """Per episode: the agent's reward, or the reward functions' score of its last call's text where
        the agent returned None (their scores, None elsewhere); None for a failed episode, or one without
        a call to score."""
        rewards = [o.reward for o in outcomes]
        to_score = [o.reward is None and call is not None for o, call in zip(outcomes, last)]
        if not any(to_score):
            return rewards, {}
        texts, lengths = [c.text if c else "" for c in last], [len(c.tokens) if c else 0 for c in last]
        scored = score_samples(self.rewards, rows, texts, lengths, n)
        rewards = [c if k else r for r, c, k in zip(rewards, scored.total, to_score)]
        kept = {name: [v if k else None for v, k in zip(values, to_score)]
                for name, values in scored.parts.items()}
        return rewards, kept

    def _laid_out(self, episodes, rewards: list[Optional[float]], scores: dict, n: int) -> RolloutBatch:
        """Samples in whole GRPO groups (episodes.group_aligned); an episode's scores sit on its first
        sample only (None elsewhere), so that per-episode means stay per episode."""
        train = self.cfg.train
        order = group_aligned(episodes, n, train.num_minibatches * train.num_ranks)
        first = {i: k for k, (i, _) in reversed(list(enumerate(order)))}
        tokens = [s.tokens if s else self.filler for _, s in order]
        return RolloutBatch(
            tokens=tokens,
            loss_mask=[s.loss_mask if s else [0] * len(self.filler) for _, s in order],
            logprobs=[s.logprobs if s else [0.0] * len(self.filler) for _, s in order],
            rewards=[rewards[i] for i, _ in order],
            scores={name: [values[i] if first[i] == k else None for k, (i, _) in enumerate(order)]
                    for name, values in scores.items()},
            finish_reasons=[s.finish_reason if s else "stop" for _, s in order],
            texts=[s.transcript() if s else "" for _, s in order],
            versions=[s.versions if s else [-1] * len(self.filler) for _, s in order],
        )
