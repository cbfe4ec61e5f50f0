"""Multi-turn episodes as token sequences: token in, token out, never re-tokenised.

A trajectory is one growing list of token ids, exactly as the engine saw and produced them:

    prompt (system + first observation, generation prompt)      mask 0
    action 1  (the engine's token ids, EOS included if it ended)  mask 1, sampling log-probs
    end of turn + observation 1 as a user turn + generation prompt  mask 0
    action 2 ...

The next prompt IS the trajectory so far, so the policy is trained on the very tokens it was
conditioned on. Re-tokenising the decoded history instead (RAGEN) can merge or split tokens at
turn boundaries, so trained and sampled tokens differ, and building masks over re-tokenised text
is where its inverted-mask bug lived. Only the text the env adds (each observation) is tokenised.

How an observation looks in tokens is read off the tokenizer's own chat template (`ChatTurns`),
so any chat model works without a per-model table. An observation is a user turn, or, after a reply
that called tools, the tools' results as tool messages (role "tool"); either way outside the loss.
The tools are shown in the first prompt as the template shows them (system/tools/prompt.py).
The loop (`run_episodes`) is driven by three
callables (reset, generate, step), so it runs against fake generators in tests; `EpisodeRollout`
wires it to the engine and env pools (actors/vllm_engine.py, actors/env.py) for training.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import zip_longest
from typing import Callable, Optional, Union

from system.reporting.metrics import timed
from system.rollout.base import Rollout, RolloutBatch, TokenSequence
from system.tools.prompt import render_chat, supports_tools

SENTINEL = "\x00ACTION\x00"  # stands for the model's reply while reading the template
ANCHOR = [{"role": "user", "content": "U"}]  # any conversation before the reply


class ChatTurns:
    """The token ids that go around the model's replies under a tokenizer's chat template.
    `response_prefix` opens every assistant turn (e.g. "<answer>" for a small model): it is part of
    the prompt, not of the loss, and the env reads it in front of the reply."""

    def __init__(self, tokenizer, response_prefix: str = ""):
        self.tokenizer, self.response_prefix = tokenizer, response_prefix
        self.native_tools = supports_tools(tokenizer)  # else the tools go into the system prompt
        self.closed = self._render(ANCHOR + [{"role": "assistant", "content": SENTINEL}], False)
        self.reply_end = self.closed.rindex(SENTINEL) + len(SENTINEL)
        # What closes a reply ("<|im_end|>\n" in ChatML); a model that ends its turn writes its EOS part.
        self.end_of_turn = self.encode(self.closed[self.reply_end:])

    def _render(self, messages: list[dict], generation_prompt: bool) -> str:
        return self.tokenizer.apply_chat_template(messages, add_generation_prompt=generation_prompt,
                                                  tokenize=False)

    def encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def prompt(self, system_prompt: str, observation: str, tools: list[dict] = (),
               parser: str = "hermes") -> list[int]:
        """The first prompt: the system prompt and the tools (OpenAI function schemas; without the
        template's support, described for the `parser` format), the first observation as a user
        turn, the assistant turn opened."""
        system = [{"role": "system", "content": system_prompt}] if system_prompt else []
        messages = system + [{"role": "user", "content": observation}]
        text = render_chat(self.tokenizer, messages, list(tools), self.native_tools, parser)
        return self.encode(text + self.response_prefix)

    def after_reply(self, reply: list[int], messages: list[dict]) -> list[int]:
        """Tokens that follow a reply: the end of its turn (the part the model did not write), the
        observation's messages (a user turn, or tool messages), and the next assistant turn opened
        (and started with the prefix).

        The template renders [anchor, reply] and [anchor, reply, *messages]; the difference is
        exactly the text after the reply. A reply that ended with EOS already holds the start of
        the end-of-turn tokens; a reply cut by the token limit holds none of it."""
        opened = self._render(ANCHOR + [{"role": "assistant", "content": SENTINEL}] + messages, True)
        if not opened.startswith(self.closed):
            raise ValueError("the chat template renders earlier turns differently once another turn follows; "
                             "multi-turn rollouts need a template that only appends")
        tail = self.encode(opened[self.reply_end:] + self.response_prefix)
        written = max(k for k in range(min(len(self.end_of_turn), len(reply)) + 1)
                      if reply[len(reply) - k:] == tail[:k])
        return tail[written:]


@dataclass
class Trajectory(TokenSequence):
    """One episode: the token sequence with its loss mask and sampling log-probs, and what the env said."""

    observations: list[list[dict]] = field(default_factory=list)  # the task, then each step's: chat messages
    replies: list[str] = field(default_factory=list)  # per turn, as the env reads it: prefix + text
    rewards: list[float] = field(default_factory=list)  # per env step
    infos: list[dict] = field(default_factory=list)
    finish_reason: str = "stop"  # of the last reply, or "truncated" when the context limit ended it
    done: bool = False

    def reward(self, mode: str) -> float:
        """The episode's reward from its step rewards: their sum, or the last one (0 if no step ran)."""
        if mode == "sum":
            return float(sum(self.rewards))
        if mode == "last":
            return float(self.rewards[-1]) if self.rewards else 0.0
        raise ValueError(f"unknown trajectory reward '{mode}': sum | last")

    def transcript(self) -> str:
        """The episode as text, for logs: the env's and tools' messages and the model's replies in turn."""
        lines = []
        for messages, reply in zip_longest(self.observations, self.replies):
            lines += [f"[{'env' if m['role'] == 'user' else m['role']}] {m['content']}" for m in messages]
            lines += [f"[model] {reply}"] if reply is not None else []
        return "\n".join(lines)


# keys -> (system prompt, first observation, tool schemas, tool format)
Reset = Callable[[list[int]], list[tuple[str, str, list[dict], str]]]
Generate = Callable[[list[list[int]], int], list[dict]]  # prompts, turn -> one sample each (engine format)
# keys, replies -> (observation, reward, done, info); the observation: a user turn's text, or tool messages
Step = Callable[[list[int], list[str]], list[tuple[Union[str, list[dict]], float, bool, dict]]]


def as_messages(observation: Union[str, list[dict]]) -> list[dict]:
    return [{"role": "user", "content": observation}] if isinstance(observation, str) else observation


def run_episodes(count: int, reset: Reset, generate: Generate, step: Step, turns: ChatTurns,
                 max_context_tokens: int) -> list[Trajectory]:
    """Play `count` episodes (key = index) until every one is done. Each turn, all live episodes
    generate together (one `generate` call) and then step together (one `step` call).

    Context limit: no trajectory grows past `max_context_tokens`. A reply that would cross it is
    cut there and not sent to the env; an observation that would leave no room for a reply is not
    appended. Either way the episode ends with finish_reason "truncated"."""
    episodes = [Trajectory() for _ in range(count)]
    for ep, (system, observation, tools, parser) in zip(episodes, reset(list(range(count)))):
        ep.observations.append(as_messages(observation))
        ep.extend(turns.prompt(system, observation, tools, parser), 0)
        if len(ep.tokens) >= max_context_tokens:
            ep.finish_reason, ep.done = "truncated", True
    live = [k for k, ep in enumerate(episodes) if not ep.done]
    turn = 0
    while live:
        samples = generate([episodes[k].tokens for k in live], turn)
        acted = []
        for k, sample in zip(live, samples):
            ep, reply = episodes[k], sample["response"]
            room = max_context_tokens - len(ep.tokens)
            ep.extend(reply[:room], 1, sample["logprobs"][:room], sample["versions"][:room])
            if len(reply) > room:
                ep.replies.append(turns.response_prefix + turns.decode(reply[:room]))
                ep.finish_reason, ep.done = "truncated", True
            else:
                ep.replies.append(turns.response_prefix + sample["text"])
                ep.finish_reason = sample["finish_reason"]
                acted.append((k, reply))
        results = step([k for k, _ in acted], [episodes[k].replies[-1] for k, _ in acted]) if acted else []
        for (k, reply), (observation, reward, done, info) in zip(acted, results):
            ep = episodes[k]
            ep.rewards.append(float(reward))
            ep.infos.append(info)
            ep.observations.append(as_messages(observation))
            if done:
                ep.done = True
                continue
            following = turns.after_reply(reply, ep.observations[-1])
            if len(ep.tokens) + len(following) >= max_context_tokens:
                ep.finish_reason, ep.done = "truncated", True
            else:
                ep.extend(following, 0)
        live = [k for k, _ in acted if not episodes[k].done]
        turn += 1
    return episodes


def succeeded_after_retry(infos: list[dict]) -> float:
    """1.0 if the episode succeeded on a turn after a failed one, else 0.0. A failed turn: one that
    did not succeed and did not end the episode (the model was told and went on), and that called no
    tool: using a tool first is not a failed attempt."""
    failed = False
    for info in infos:
        if info.get("success", False):
            return float(failed)
        failed = failed or not info.get("tool_calls", 0)
    return 0.0


def env_error(episode: Trajectory) -> Optional[str]:
    """The traceback of the exception that ended the episode in the env's step (actors/env.py), if any."""
    return next((i["env_error"] for i in episode.infos if "env_error" in i), None)


class EnvError(RuntimeError):
    """Too many episodes in a row ended by an exception in the env's step: a bug to fix, not noise."""


def to_rollouts(episodes: list[Trajectory], trajectory_reward: str) -> RolloutBatch:
    """Episodes -> what the GRPO update takes; env statistics ride along as `scores` for metrics,
    per episode: solved, turns (replies), invalid moves, tool calls, tool errors (calls that were
    malformed or failed), solved after a failed turn."""

    def count(key: str) -> list[float]:
        return [float(sum(int(i.get(key, 0)) for i in ep.infos)) for ep in episodes]

    return RolloutBatch(
        tokens=[ep.tokens for ep in episodes],
        loss_mask=[ep.loss_mask for ep in episodes],
        logprobs=[ep.logprobs for ep in episodes],
        # An episode that the env's step ended by raising has no reward to learn from: unscored.
        rewards=[None if env_error(ep) else ep.reward(trajectory_reward) for ep in episodes],
        scores={
            "env/success": [float(any(i.get("success", False) for i in ep.infos)) for ep in episodes],
            "env/turns": [float(len(ep.rewards)) for ep in episodes],
            "env/invalid_actions": count("invalid_action"),
            "env/tool_calls": count("tool_calls"),
            "env/tool_errors": count("tool_errors"),
            "env/success_after_retry": [succeeded_after_retry(ep.infos) for ep in episodes],
            "env/errors": [float(env_error(ep) is not None) for ep in episodes],
        },
        finish_reasons=[ep.finish_reason for ep in episodes],
        texts=[ep.transcript() for ep in episodes],
        versions=[ep.versions for ep in episodes],
    )


# Env seeds: training plays even ones, evaluation odd ones, so no held-out seed is ever trained on
# (whatever the run's seed, step count or batch size). Envs with few distinct tasks (the 24 game
# has 1362 solvable sets) can still give two seeds the same task.
def train_seeds(step_seed: int, count: int) -> list[int]:
    """The env seeds of one training step (`step_seed` differs per step and run)."""
    return [2 * (step_seed + i) for i in range(count)]


def eval_seeds(count: int) -> list[int]:
    """The held-out env seeds: the same in every run, so eval curves of runs compare."""
    return [2 * i + 1 for i in range(count)]


def response_token_budget(max_turns: int, max_new_tokens: int, max_context_tokens: int) -> int:
    """The most tokens the model can write in one episode: Dr. GRPO's length constant for multi-turn."""
    return min(max_turns * max_new_tokens, max_context_tokens)


class EpisodeRollout(Rollout):
    """`n` episodes per env seed (a GRPO group, contiguous), each turn one engine call for every live
    episode (a distinct sampling seed per episode and turn), then one env-pool step for them all.
    `engines.generate(prompts, n, temperature, seed)`; `envs.reset(keys, seeds)`, `envs.step(keys,
    actions)` and `envs.max_turns` (actors/env.py). `cfg`: the GRPO config."""

    correctness = "env/success"

    def __init__(self, engines, envs, tokenizer, cfg):
        self.engines, self.envs, self.cfg = engines, envs, cfg
        self.turns = ChatTurns(tokenizer, cfg.data.response_prefix)
        self.max_response_tokens = response_token_budget(envs.max_turns, cfg.rollout.max_new_tokens,
                                                         cfg.env.max_context_tokens)
        self.errors_in_a_row = 0  # episodes ended by an exception in the env's step, over steps

    def train_tasks(self, step_seed: int) -> list[int]:
        return train_seeds(step_seed, self.cfg.prompts_per_step)

    def eval_tasks(self) -> list[int]:
        return eval_seeds(self.cfg.env.num_eval_seeds)

    def describe(self, env_seeds: list[int]) -> list[str]:
        return [f"{self.cfg.env.cls}, seed {s}" for s in env_seeds]

    def collect(self, env_seeds: list[int], seed: int, n: int, temperature: float, top_p: float | None = None
                ) -> RolloutBatch:
        timings: dict[str, float] = {}
        seeds = [s for s in env_seeds for _ in range(n)]
        count = len(seeds)

        def reset(keys):
            with timed(timings, "env"):
                return self.envs.reset(keys, [seeds[key] for key in keys])

        def sample(prompts, turn):
            with timed(timings, "generate"):
                groups = self.engines.generate(prompts, 1, temperature, seed + turn * count, top_p)
            return [group[0] for group in groups]

        def step(keys, replies):
            with timed(timings, "env"):
                return self.envs.step(keys, replies)

        episodes = run_episodes(count, reset, sample, step, self.turns, self.cfg.env.max_context_tokens)
        self._count_errors(episodes)
        rollouts = to_rollouts(episodes, self.cfg.env.trajectory_reward)
        rollouts.timings = timings
        return rollouts

    def _count_errors(self, episodes: list[Trajectory]) -> None:
        for ep in episodes:
            error = env_error(ep)
            self.errors_in_a_row = self.errors_in_a_row + 1 if error else 0
            if self.errors_in_a_row >= self.cfg.env.max_errors_in_a_row:
                raise EnvError(f"{self.errors_in_a_row} episodes in a row ended by an exception in "
                               f"{self.cfg.env.cls}.step (env.max_errors_in_a_row); the last one:\n{error}")
