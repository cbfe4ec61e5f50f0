"""Config loading: inheritance, overrides, and the messages a user sees for mistakes."""

import glob
import os
import subprocess
import sys

import pytest

from system.config.grpo import ConfigError, load_config, save_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(ROOT, "configs", "grpo_countdown_cpu.yaml")


def test_base_inheritance_and_override():
    cfg = load_config(DEMO, ["rollout.group_size=8", "reward.functions={countdown: 1.0, format: 0.5}"])
    assert cfg.rollout.group_size == 8
    assert cfg.logging.wandb_mode == "offline"  # from base.yaml
    assert cfg.reward.functions == {"countdown": 1.0, "format": 0.5}


@pytest.mark.parametrize("override, message", [
    (["rollout.grop_size=3"], "unknown config key 'rollout.grop_size' (did you mean 'rollout.group_size'?)"),
    (["trian.lr=1"], "unknown config key 'trian'"),
    (["rollout.group_size=abc"], "bad value for 'rollout.group_size'"),
    (["train.zero_stage=[1]"], "bad value for 'train.zero_stage'"),
    (["rollout.group_size"], "bad override 'rollout.group_size': expected key.sub=value"),
    (["=3"], "bad override '=3'"),
    (["a..b=1"], "bad override 'a..b=1'"),
    (["algorithm.loss_agg=foo"], "'algorithm.loss_agg': unknown loss aggregation 'foo'"),
    (["algorithm.advantage=grop"], "unknown advantage estimator 'grop' (did you mean 'grpo'?)"),
    (["algorithm.kl_estimator=k4"], "'algorithm.kl_estimator': unknown KL estimator 'k4'"),
    (["reward.functions={acuracy: 1.0}"], "unknown reward 'acuracy' (did you mean 'accuracy'?)"),
    (["algorithm.advantage=no_such_pkg.adv:rloo"], "cannot import module 'no_such_pkg.adv'"),
    (["env.cls=twenty_for"], "'env.cls': unknown env 'twenty_for' (did you mean 'twenty_four'?)"),
    (["reward.mode=product"], "'reward.mode' must be one of ['sum', 'gate']"),
    (["reward.mode=gate", "reward.gate=accuracy"], "'reward.gate'=accuracy must be one of reward.functions"),
    (["reward.num_workers=-1"], "'reward.num_workers' must be >= 0"),
    (["rollout.group_size=1"], "must be >= 2"),
    (["train.lr_schedule=cosin"], "'train.lr_schedule' must be one of ['constant', 'cosine', 'linear']"),
    (["train.min_lr_ratio=2"], "'train.min_lr_ratio' must be between 0 and 1"),
    (["prompts_per_step=3", "rollout.group_size=3", "train.num_ranks=2"], "must split evenly"),
])
def test_errors_name_the_key(override, message):
    with pytest.raises(ConfigError) as e:
        load_config(DEMO, override)
    assert message in str(e.value)


def test_reward_functions_replace_instead_of_merging(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"base: {DEMO}\nreward:\n  functions: {{accuracy: 1.0}}\n")
    assert load_config(str(recipe)).reward.functions == {"accuracy": 1.0}
    assert load_config(DEMO, ["reward.functions={format: 1.0}"]).reward.functions == {"format": 1.0}


def test_a_dotted_override_sets_one_key_of_a_replaced_mapping():
    lake = os.path.join(ROOT, "configs", "grpo_frozen_lake_cpu.yaml")
    # A YAML layer replaces its base's env.params (the 24 game's would not fit FrozenLake) ...
    assert load_config(lake).env.params == {"max_turns": 6, "size": 3}
    # ... a dotted override sets one key and keeps the rest ...
    assert load_config(lake, ["env.params.max_turns=3"]).env.params == {"max_turns": 3, "size": 3}
    demo = load_config(DEMO).reward.functions
    assert load_config(DEMO, ["reward.functions.format=0.5"]).reward.functions == {**demo, "format": 0.5}
    # ... and a whole mapping, given as the mapping or inside its section, still replaces.
    assert load_config(lake, ["env.params={max_turns: 3}"]).env.params == {"max_turns": 3}
    assert load_config(lake, ["env={params: {size: 4}}"]).env.params == {"size": 4}


def test_unknown_key_in_yaml_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"base: {DEMO}\nrollout:\n  temprature: 0.7\n")
    with pytest.raises(ConfigError,
                       match=r"unknown config key 'rollout.temprature' "
                             r"\(did you mean 'rollout.temperature'\?\)"):
        load_config(str(bad))


def test_resolved_config_round_trips(tmp_path):
    cfg = load_config(DEMO, ["train.lr=3e-6"])
    save_config(cfg, tmp_path / "config.yaml")
    assert load_config(str(tmp_path / "config.yaml")) == cfg


@pytest.mark.e2e  # a launcher process (~5 s of imports): out of the quick loop
def test_launcher_exits_nonzero_with_the_message():
    out = subprocess.run([sys.executable, os.path.join(ROOT, "launcher", "grpo.py"), "--config", DEMO,
                          "rollout.grop_size=3"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert "did you mean 'rollout.group_size'" in out.stderr


GRPO_CONFIGS = sorted(os.path.relpath(p, ROOT)
                      for p in glob.glob(os.path.join(ROOT, "configs", "**", "grpo_*.yaml"), recursive=True))


@pytest.mark.parametrize("name", GRPO_CONFIGS)
def test_every_shipped_grpo_config_validates(name):
    """GPU recipes cannot run here, but they must parse and validate."""
    load_config(os.path.join(ROOT, name))


def test_gpu_recipes_are_there():
    assert {"configs/gpu/grpo_countdown_qwen2.5-3b.yaml", "configs/gpu/grpo_math_qwen2.5-math-7b.yaml",
            "configs/gpu/grpo_math_qwen2.5-math-7b_multinode.yaml"} <= set(GRPO_CONFIGS)
    tinyzero = load_config(os.path.join(ROOT, "configs/gpu/grpo_countdown_qwen2.5-3b.yaml"))
    assert (tinyzero.prompts_per_step, tinyzero.rollout.max_new_tokens, tinyzero.train.lr,
            tinyzero.algorithm.kl_coef) == (256, 1024, 1e-6, 0.001)


USER_PACKAGE = """
from system.rewards import register_reward


def rloo(rewards, valid, group_size):
    r = rewards.view(-1, group_size)
    return (r - (r.sum(1, keepdim=True) - r) / (group_size - 1)).view(-1)


@register_reward("exact_match", correctness=True)
def exact_match(completions, answer, **_):
    return [float(c.strip() == a) for c, a in zip(completions, answer)]


def shout(completions, **_):
    return [float(c.isupper()) for c in completions]
"""


def test_pluggable_names_come_from_the_users_package(tmp_path, monkeypatch):
    """Everything the config names through a registry can be a user's `package.module:fn`; a
    reward registered with correctness=True is what accuracy counts."""
    import torch

    from system.algorithms.advantages import get_advantage
    from system.rewards import correctness_reward

    (tmp_path / "my_pkg").mkdir()
    (tmp_path / "my_pkg" / "__init__.py").write_text("")
    (tmp_path / "my_pkg" / "plugins.py").write_text(USER_PACKAGE)
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = load_config(DEMO, ["algorithm.advantage=my_pkg.plugins:rloo",
                             "reward.functions={my_pkg.plugins:shout: 0.1, my_pkg.plugins:exact_match: 1.0}"])
    rewards = torch.tensor([1.0, 0.0, 0.0, 0.0])
    assert get_advantage(cfg.algorithm.advantage)(rewards, torch.ones(4, dtype=torch.bool), 4).tolist() == \
        pytest.approx([1.0, -1 / 3, -1 / 3, -1 / 3])
    assert correctness_reward(cfg.reward.functions) == "my_pkg.plugins:exact_match"
    assert correctness_reward({"format": 1.0, "countdown": 1.0}) == "countdown"
    assert correctness_reward({"format": 1.0, "my_pkg.plugins:shout": 1.0}) is None


def test_distillation_checks_its_reward_section_as_grpo_does():
    from system.config.recipe import DistillConfig, validate_distill

    with pytest.raises(ConfigError, match="'reward.gate'=format must be one of reward.functions"):
        load_config(None, ["reward.mode=gate"], schema=DistillConfig, check=validate_distill)
    with pytest.raises(ConfigError, match="'reward.num_workers' must be >= 0"):
        load_config(None, ["reward.num_workers=-2"], schema=DistillConfig, check=validate_distill)
