"""The `agent` section of a GRPO config: training a user's agent program through the engines'
OpenAI-compatible endpoint (docs/training-an-agent.md, part (c))."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional


@dataclass
class AgentConfig:
    # `package.module:function` (or a registered name): fn(client, task, **params) -> reward | None,
    # an OpenAI client on the episode's base URL and the data row. "" = no agent.
    fn: str = ""
    params: dict[str, Any] = field(default_factory=dict)  # keyword arguments of fn
    concurrency: int = 16  # episodes running at once
    timeout_s: float = 300.0  # one episode's wall time; past it the episode fails
    request_timeout_s: float = 120.0  # one HTTP call of the client the agent gets
    max_failed_frac: float = 0.5  # a collection with more failed episodes than this stops the run
    tool_parser: str = ""  # a vLLM tool-call parser for the chat endpoint ("hermes", ...); "" = none
    model_name: str = "policy"  # what /v1/models lists; a request may name any model


def agent_problem(cfg) -> Optional[str]:
    """What is wrong with the run config `cfg`'s agent section (None: nothing)."""
    from system.agents.runner import resolve_agent

    agent = cfg.agent
    if not agent.fn:
        return None
    if cfg.env.cls:
        return "'agent.fn' and 'env.cls' both set: a run trains an agent program or an environment, not both"
    try:
        resolve_agent(agent.fn)
    except ValueError as e:
        return f"'agent.fn': {e}"
    if agent.concurrency < 1 or min(agent.timeout_s, agent.request_timeout_s) <= 0:
        return "'agent.concurrency' must be >= 1 and 'agent.timeout_s', 'agent.request_timeout_s' > 0"
    if not 0 <= agent.max_failed_frac <= 1:
        return "'agent.max_failed_frac' must be between 0 and 1"
    if agent.tool_parser:
        from vllm.tool_parsers import ToolParserManager  # seconds to import: only when one is named

        if agent.tool_parser not in ToolParserManager.list_registered():
            return (f"'agent.tool_parser': vLLM has no tool parser '{agent.tool_parser}'; it has "
                    f"{', '.join(ToolParserManager.list_registered())}")
    return None
