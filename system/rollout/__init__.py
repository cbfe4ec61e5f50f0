"""Where a GRPO step's samples come from: one interface (base.Rollout), two kinds of rollout.

    single_turn.py  a prompt from the data set, one completion per sample, scored by reward functions
    multiturn.py    an episode played in an environment, turn by turn, rewarded by the env

Both drive the rollout engines, reward and env workers through small interfaces (`generate`,
`score`, `reset`/`step`), so they run against Ray actor pools in training and fakes in tests.
"""

from system.rollout.base import Rollout, RolloutBatch

__all__ = ["Rollout", "RolloutBatch"]
