"""Agent programs trained through the engines' OpenAI-compatible endpoint (docs/training-an-agent.md, (c)).

    config.py    the `agent` config section
    runner.py    running a user's agent function on many episodes at once, bounded in time
    episodes.py  an episode's recorded calls -> training samples (the split rule), laid out in GRPO groups
    replies.py   token in, token out: a reply sent back to the endpoint goes to the engine as its sampled ids

The endpoint itself runs in the engine actors (actors/openai_server.py); the rollout that ties
these together is system/rollout/agent.py.
"""

from system.agents.episodes import Call, EpisodeCalls, Sample, assemble, group_aligned
from system.agents.runner import Endpoint, Outcome, register_agent, resolve_agent, run_agents

__all__ = ["Call", "Endpoint", "EpisodeCalls", "Outcome", "Sample", "assemble", "group_aligned",
           "register_agent", "resolve_agent", "run_agents"]
