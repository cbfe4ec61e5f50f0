"""Multi-turn trajectory assembly (system/rollout/multiturn.py) with a fake generator, real envs and
SmolLM2's real tokenizer and chat template: masks, token-exactness, truncation, episode rewards."""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from system.envs import PlayedEnv, make_env
from system.models import tiny_model_path
from system.rollout.multiturn import (ChatTurns, eval_seeds, response_token_budget, run_episodes,
                                      succeeded_after_retry, to_rollouts, train_seeds)

LOGP = -0.5  # every fake sampled token's log-prob: nonzero, so misplaced log-probs show


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(tiny_model_path())


@pytest.fixture(scope="module")
def turns(tokenizer):
    return ChatTurns(tokenizer)


class Scripted:
    """A fake engine: every live episode answers replies[turn]; EOS-ended, or cut at `limit` tokens."""

    def __init__(self, tokenizer, replies: list[str], limit: int | None = None):
        self.tokenizer, self.replies, self.limit = tokenizer, replies, limit
        self.prompts: list[list[list[int]]] = []  # per call, what the engine was given

    def __call__(self, prompts: list[list[int]], turn: int) -> list[dict]:
        self.prompts.append([list(p) for p in prompts])
        text = self.replies[turn]
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        if self.limit is None or len(ids) < self.limit:
            sample = {"response": ids + [self.tokenizer.eos_token_id], "finish_reason": "stop", "text": text}
        else:
            ids = ids[: self.limit]
            sample = {"response": ids, "finish_reason": "length", "text": self.tokenizer.decode(ids)}
        # as if the weights changed between turns: turn t is sampled by policy version t
        return [{**sample, "logprobs": [LOGP] * len(sample["response"]),
                 "versions": [turn] * len(sample["response"])}
                for _ in prompts]


def local_envs(name: str, seeds: list[int], **params):
    """reset/step callables over in-process envs, played as the env workers play them in training
    (actors/env.py), logging what they saw."""
    envs = [PlayedEnv(make_env(name, **params)) for _ in seeds]
    log = {"observations": [[] for _ in seeds], "steps": []}

    def reset(keys):
        out = [(envs[k].system_prompt, envs[k].reset(seeds[k]), envs[k].tool_schemas, envs[k].tool_parser)
               for k in keys]
        for k, (_, obs, *_) in zip(keys, out):
            log["observations"][k].append(obs)
        return out

    def step(keys, replies):
        log["steps"].append(list(keys))
        out = [envs[k].step(r) for k, r in zip(keys, replies)]
        for k, (obs, *_) in zip(keys, out):
            log["observations"][k].append(obs)
        return out

    return reset, step, log


def segments(mask: list[int]) -> list[tuple[int, int, int]]:
    """(value, start, end) of each maximal run of equal mask values."""
    runs, start = [], 0
    for i in range(1, len(mask) + 1):
        if i == len(mask) or mask[i] != mask[start]:
            runs.append((mask[start], start, i))
            start = i
    return runs


WRONG = ["Let me try. <answer>1 + 2</answer>", "Hmm. <answer>3 * 8 * 1 * 1</answer>", "No idea."]


def play_24(tokenizer, turns, seed: int, limit: int = 4096, max_turns: int = 3, reply_limit=None):
    """One 24-game episode of the WRONG replies: (episode, env log, fake engine)."""
    reset, step, log = local_envs("twenty_four", [seed], max_turns=max_turns)
    engine = Scripted(tokenizer, WRONG, reply_limit)
    [ep] = run_episodes(1, reset, engine, step, turns, max_context_tokens=limit)
    return ep, log, engine


def test_tokens_equal_the_chat_template_of_the_same_conversation(tokenizer, turns):
    ep, log, engine = play_24(tokenizer, turns, 5)
    assert ep.done and len(ep.rewards) == 3 and ep.finish_reason == "stop"
    system, observations = make_env("twenty_four", max_turns=3).system_prompt, log["observations"][0]
    conversation = [{"role": "system", "content": system}]
    for observation, reply in zip(observations, WRONG):
        conversation += [{"role": "user", "content": observation}, {"role": "assistant", "content": reply}]
    expected = tokenizer(tokenizer.apply_chat_template(conversation, tokenize=False),
                         add_special_tokens=False)["input_ids"]
    # The same tokens, up to the end-of-turn text after the last EOS that nobody needs to write.
    assert ep.tokens == expected[: len(ep.tokens)]
    assert len(expected) - len(ep.tokens) == len(turns.end_of_turn) - 1
    # Token in, token out: each turn's prompt is the trajectory so far, ending in the opened assistant turn.
    opened = tokenizer("<|im_start|>assistant\n", add_special_tokens=False)["input_ids"]
    for [prompt] in engine.prompts:
        assert ep.tokens[: len(prompt)] == prompt and prompt[-len(opened):] == opened


def test_only_the_models_tokens_carry_loss_and_logprobs(tokenizer, turns):
    reset, step, log = local_envs("twenty_four", [1, 1, 2], max_turns=3)
    episodes = run_episodes(3, reset, Scripted(tokenizer, WRONG), step, turns, max_context_tokens=4096)
    for k, ep in enumerate(episodes):
        assert len(ep.tokens) == len(ep.loss_mask) == len(ep.logprobs) == len(ep.versions)
        assert all((lp == LOGP) == (m == 1) for m, lp in zip(ep.loss_mask, ep.logprobs))
        runs = segments(ep.loss_mask)
        # an episode spans policy versions: each action's tokens carry the version that sampled that turn
        assert [set(ep.versions[a:b]) for m, a, b in runs if m == 1] == [{0}, {1}, {2}]
        assert {v for v, m in zip(ep.versions, ep.loss_mask) if m == 0} == {-1}
        actions = [tokenizer.decode(ep.tokens[a:b], skip_special_tokens=True) for m, a, b in runs if m == 1]
        rest = [tokenizer.decode(ep.tokens[a:b]) for m, a, b in runs if m == 0]
        assert actions == WRONG == ep.replies
        # prompt, then 2 observations; the last one (the episode is over) is not appended
        assert len(rest) == 3
        assert rest[0].endswith(log["observations"][k][0] + "<|im_end|>\n<|im_start|>assistant\n")
        for text, observation in zip(rest[1:], log["observations"][k][1:]):
            assert text == f"\n<|im_start|>user\n{observation}<|im_end|>\n<|im_start|>assistant\n"


def test_a_reply_cut_by_the_token_limit_gets_its_end_of_turn_outside_the_loss(tokenizer, turns):
    ep, _, _ = play_24(tokenizer, turns, 3, max_turns=2, reply_limit=4)
    assert ep.finish_reason == "length" and len(ep.replies) == 2
    for m, a, b in segments(ep.loss_mask)[1:]:
        if m == 1:
            assert b - a == 4 and tokenizer.eos_token_id not in ep.tokens[a:b]
        else:  # the end of turn the model did not write, outside the loss
            assert tokenizer.decode(ep.tokens[a:b]).startswith("<|im_end|>\n<|im_start|>user\n")


def test_after_reply_writes_only_the_missing_end_of_turn(tokenizer, turns):
    eos = tokenizer.eos_token_id
    reply = tokenizer("4 * 6", add_special_tokens=False)["input_ids"]
    obs = [{"role": "user", "content": "obs"}]
    assert turns.after_reply(reply + [eos], obs)[0] != eos
    assert turns.after_reply(reply, obs)[0] == eos
    assert turns.after_reply(reply + [eos], obs) == turns.after_reply(reply, obs)[1:]


def test_a_response_prefix_opens_every_turn_and_the_env_reads_it(tokenizer):
    """As the CPU recipes do for a small model: replies start with "<answer>", stop at "</answer>"."""
    turns = ChatTurns(tokenizer, "<answer>")
    replies = ["2 + 2", "(8 - 4) * 6"]

    def stopped_at_tag(prompts, turn):  # a stop string ends the reply: no EOS in the tokens
        ids = tokenizer(replies[turn] + "</answer>", add_special_tokens=False)["input_ids"]
        return [{"response": ids, "logprobs": [LOGP] * len(ids), "finish_reason": "stop",
                 "text": replies[turn] + "</answer>", "versions": [0] * len(ids)} for _ in prompts]

    reset, step, log = local_envs("twenty_four", [6], max_turns=2)
    [ep] = run_episodes(1, reset, stopped_at_tag, step, turns, max_context_tokens=4096)
    assert ep.replies == [f"<answer>{r}</answer>" for r in replies]
    assert all("No move found" not in obs for obs in log["observations"][0][1:]), "the env saw the tags"
    opened = "<|im_start|>assistant\n<answer>"
    for m, a, b in segments(ep.loss_mask):
        text = tokenizer.decode(ep.tokens[a:b])
        if m == 0:  # outside the loss: the prefix, and the whole end of turn (the model wrote no EOS)
            assert text.endswith(opened) and (a == 0 or text.startswith("<|im_end|>\n<|im_start|>user\n"))
        else:
            assert text.endswith("</answer>") and "<answer>" not in text


def test_a_template_with_other_turn_markers(tokenizer):
    """Nothing is hard-coded for ChatML: the turn markers are read off whatever template is set."""
    other = AutoTokenizer.from_pretrained(tiny_model_path())
    other.chat_template = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>"
                           "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    turns = ChatTurns(other)
    replies = ["<answer>right</answer>", "<answer>down</answer>"]
    reset, step, log = local_envs("frozen_lake", [0], max_turns=2, map="SFF/FFF/FFG")
    [ep] = run_episodes(1, reset, Scripted(other, replies), step, turns, max_context_tokens=4096)
    assert turns.end_of_turn == [tokenizer.eos_token_id]  # no newline after it here: EOS is the whole end
    conversation = [{"role": "system", "content": make_env("frozen_lake").system_prompt}]
    for observation, reply in zip(log["observations"][0], replies):
        conversation += [{"role": "user", "content": observation}, {"role": "assistant", "content": reply}]
    assert ep.tokens == other(other.apply_chat_template(conversation, tokenize=False),
                              add_special_tokens=False)["input_ids"]


def test_context_limit_cuts_the_reply_and_ends_the_episode(tokenizer, turns):
    full, _, _ = play_24(tokenizer, turns, 4)
    second_reply = [a for m, a, b in segments(full.loss_mask) if m == 1][1]
    ep, log, _ = play_24(tokenizer, turns, 4, limit=second_reply + 3)
    assert ep.finish_reason == "truncated" and ep.done
    assert ep.tokens == full.tokens[: second_reply + 3] and ep.loss_mask[-3:] == [1, 1, 1]
    assert log["steps"] == [[0]], "a cut reply is not sent to the env"
    assert len(ep.rewards) == 1


def test_context_limit_drops_an_observation_that_leaves_no_room(tokenizer, turns):
    full, _, _ = play_24(tokenizer, turns, 4)
    first_reply_end = [b for m, a, b in segments(full.loss_mask) if m == 1][0]
    ep, _, _ = play_24(tokenizer, turns, 4, limit=first_reply_end + 5)
    assert ep.finish_reason == "truncated" and ep.tokens == full.tokens[:first_reply_end]
    assert len(ep.rewards) == 1  # the reply was complete: the env judged it


def test_a_prompt_over_the_limit_never_generates(tokenizer, turns):
    ep, _, engine = play_24(tokenizer, turns, 0, limit=10)
    assert engine.prompts == [] and ep.finish_reason == "truncated" and sum(ep.loss_mask) == 0


def scripted_env(outcomes: list[list[tuple[float, bool, dict]]]):
    """Episode k's env returns outcomes[k][turn]: (reward, done, info)."""
    turn = [0] * len(outcomes)
    calls = []

    def reset(keys):
        return [("Play.", f"Episode {k}.", [], "hermes") for k in keys]

    def step(keys, replies):
        calls.append(list(keys))
        out = []
        for k in keys:
            reward, done, info = outcomes[k][turn[k]]
            turn[k] += 1
            out.append((f"Turn {turn[k]} over.", reward, done, info))
        return out

    return reset, step, calls


def test_live_episodes_generate_together_and_finished_ones_drop_out(tokenizer, turns):
    invalid, valid, won = {"invalid_action": True}, {"invalid_action": False}, {"success": True}
    outcomes = [
        [(1.0, True, won)],
        [(-0.1, False, invalid), (1.0, True, won)],
        [(-0.1, False, invalid), (0.0, False, valid), (0.5, True, valid)],
    ]
    reset, step, calls = scripted_env(outcomes)
    engine = Scripted(tokenizer, WRONG)
    episodes = run_episodes(3, reset, engine, step, turns, max_context_tokens=4096)
    assert [len(p) for p in engine.prompts] == [3, 2, 1] and calls == [[0, 1, 2], [1, 2], [2]]

    summed, last = to_rollouts(episodes, "sum"), to_rollouts(episodes, "last")
    assert summed.rewards == pytest.approx([1.0, 0.9, 0.4]) and last.rewards == [1.0, 1.0, 0.5]
    assert summed.scores == {
        "env/success": [1.0, 1.0, 0.0],
        "env/turns": [1.0, 2.0, 3.0],
        "env/invalid_actions": [0.0, 1.0, 1.0],
        "env/tool_calls": [0.0, 0.0, 0.0],
        "env/tool_errors": [0.0, 0.0, 0.0],
        "env/success_after_retry": [0.0, 1.0, 0.0], "env/errors": [0.0, 0.0, 0.0],
    }
    assert summed.texts[2] == "\n".join(f"[env] {o}\n[model] {r}" for o, r in zip(
        ["Episode 2.", "Turn 1 over.", "Turn 2 over."], WRONG)) + "\n[env] Turn 3 over."
    assert summed.finish_reasons == ["stop"] * 3
    assert summed.response_lengths == [sum(ep.loss_mask) for ep in episodes]


def test_eval_seeds_are_never_training_seeds():
    trained = {seed for step_seed in range(0, 10**6, 997) for seed in train_seeds(step_seed, 64)}
    held_out = eval_seeds(256)
    assert len(set(held_out)) == 256 and not trained & set(held_out)
    assert train_seeds(7, 3) == [14, 16, 18] and eval_seeds(3) == [1, 3, 5]


def test_dr_grpo_length_constant_covers_every_turn():
    assert response_token_budget(max_turns=3, max_new_tokens=32, max_context_tokens=1024) == 96
    assert response_token_budget(max_turns=10, max_new_tokens=400, max_context_tokens=3600) == 3600


TOOL_REPLIES = [
    'Let me check. <tool_call>{"name": "python", "arguments": {"code": "print(6 * 7)"}}</tool_call>',
    '<tool_call>{"name": "python", "arguments": {"code": "1/0"}}</tool_call> '
    '<tool_call>{"name": python}</tool_call>',
    "So it is 42. The answer is 42.",
]


def test_tool_calls_run_and_their_results_follow_as_tool_messages_outside_the_loss(tokenizer, turns):
    from system.tools.prompt import tool_block

    reset, step, log = local_envs("python_arithmetic", [3], tool_parser="hermes")
    [ep] = run_episodes(1, reset, Scripted(tokenizer, TOOL_REPLIES), step, turns, max_context_tokens=4096)
    assert ep.done and len(ep.rewards) == 3 and ep.rewards == [0.0, 0.0, 0.0]  # 42 is not 343 * 706 + 70
    env = PlayedEnv(make_env("python_arithmetic", tool_parser="hermes"))
    env.reset(3)
    assert ep.observations[1] == [{"role": "tool", "content": "42\n"}]  # the program ran, in the sandbox
    error, invalid = [m["content"] for m in ep.observations[2]]  # two calls, two tool messages
    assert "ZeroDivisionError" in error and error.lstrip().startswith('File "main.py"')
    assert invalid.startswith("Invalid tool call: not valid JSON")

    # The tokens of the same conversation under the template, the tools in the system prompt (the fallback).
    system = f"{env.system_prompt}\n\n{tool_block(env.tool_schemas, 'hermes')}"
    conversation = [{"role": "system", "content": system},
                    {"role": "user", "content": log["observations"][0][0]}]
    for reply, messages in zip(TOOL_REPLIES, ep.observations[1:]):
        conversation += [{"role": "assistant", "content": reply}] + messages
    expected = tokenizer(tokenizer.apply_chat_template(conversation[:-1], tokenize=False),
                         add_special_tokens=False)["input_ids"]
    assert ep.tokens == expected[: len(ep.tokens)]
    assert len(expected) - len(ep.tokens) == len(turns.end_of_turn) - 1
    assert '"name": "python"' in tokenizer.decode(ep.tokens[: ep.loss_mask.index(1)])

    runs = segments(ep.loss_mask)
    actions = [tokenizer.decode(ep.tokens[a:b], skip_special_tokens=True) for m, a, b in runs if m == 1]
    assert actions == TOOL_REPLIES
    outside = [tokenizer.decode(ep.tokens[a:b]) for m, a, b in runs if m == 0][1:]
    assert outside[0] == "\n<|im_start|>tool\n42\n<|im_end|>\n<|im_start|>assistant\n"
    assert outside[1].count("<|im_start|>tool\n") == 2

    rollouts = to_rollouts([ep], "sum")
    assert {k: v[0] for k, v in rollouts.scores.items() if k.startswith("env/tool") or k == "env/turns"} == {
        "env/tool_calls": 3.0, "env/tool_errors": 2.0, "env/turns": 3.0}
    assert "[tool] 42" in rollouts.texts[0] and "[model] So it is 42." in rollouts.texts[0]
    assert rollouts.texts[0].endswith("[env] Wrong: 343 * 706 + 70 = 242228, not 42.")


def test_success_after_retry_counts_a_solve_that_follows_a_failed_turn():
    miss, invalid, won = {"success": False}, {"success": False, "invalid_action": True}, {"success": True}
    tool = {"success": False, "tool_calls": 1}
    assert succeeded_after_retry([miss, won]) == 1.0
    assert succeeded_after_retry([invalid, tool, won]) == 1.0
    assert succeeded_after_retry([won]) == 0.0  # solved at once
    assert succeeded_after_retry([tool, tool, won]) == 0.0  # looking things up first is no failed attempt
    assert succeeded_after_retry([miss, invalid, miss]) == 0.0
    assert succeeded_after_retry([{}, won]) == 1.0  # no success key: not solved
