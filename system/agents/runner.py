"""Running a user's agent function on many episodes at once, each bounded in time.

An agent is a function `fn(client, task, **params) -> reward | None`: `client` an `openai.OpenAI`
client whose base URL and API key are its episode's (an `openai.AsyncOpenAI` one for an `async def`
agent; `client.base_url` and `client.api_key` for an agent that makes its own: the endpoint refuses
a call without the key), `task` the data row (a copy: the agent may change it). It makes as many
calls as it likes and returns a number, its reward, or None to leave the scoring to the configured
reward functions.

An episode fails, and is counted, when its agent raises, runs past `timeout_s`, or returns
anything but a finite number or None. An agent past its time is not stopped (Python cannot stop
a thread): it is left to finish on its own, its episode closed, so its next call is refused.
"""

from __future__ import annotations

import asyncio
import copy
import inspect
import math
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from numbers import Real
from typing import Callable, Optional

from system.registry import Registry

AGENTS = Registry("agent")
register_agent = AGENTS.register
resolve_agent = AGENTS.get


@dataclass(frozen=True)
class Endpoint:
    """Where an episode's agent calls: its base URL, and its key (unguessable, one per episode)."""

    url: str
    api_key: str


@dataclass
class Outcome:
    reward: Optional[float] = None  # the agent's; None: left to the reward functions
    error: str = ""  # why the episode failed; "" when it did not


def run_agents(fn: Callable, endpoints: list[Endpoint], tasks: list[dict], params: dict, concurrency: int,
               timeout_s: float, request_timeout_s: float) -> list[Outcome]:
    """One episode per (endpoint, task), at most `concurrency` at a time; outcomes in order."""
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="agent") as pool:
        return list(pool.map(lambda at, task: _bounded(fn, at, task, params, timeout_s, request_timeout_s),
                             endpoints, tasks))


def _bounded(fn, endpoint: Endpoint, task: dict, params: dict, timeout_s: float,
             request_timeout_s: float) -> Outcome:
    """The episode on a thread of its own, waited for at most `timeout_s`."""
    box: list[Outcome] = []
    thread = threading.Thread(target=lambda: box.append(play(fn, endpoint, task, params, request_timeout_s)),
                              name="agent-episode", daemon=True)
    thread.start()
    thread.join(timeout_s)
    return box[0] if box else Outcome(error=f"timed out: still running after {timeout_s:g} s")


def play(fn, endpoint: Endpoint, task: dict, params: dict, request_timeout_s: float) -> Outcome:
    """One episode: the agent with a client on `endpoint`; whatever it does becomes an Outcome."""
    import openai

    options = {"base_url": endpoint.url, "api_key": endpoint.api_key, "timeout": request_timeout_s,
               "max_retries": 0}
    task = copy.deepcopy(task)
    try:
        if inspect.iscoroutinefunction(fn):
            async def episode():
                async with openai.AsyncOpenAI(**options) as client:
                    return await fn(client, task, **params)

            value = asyncio.run(episode())
        else:
            with openai.OpenAI(**options) as client:
                value = fn(client, task, **params)
    except Exception as e:  # noqa: BLE001 - any error of the user's agent fails its episode, not the run
        return Outcome(error=f"raised {type(e).__name__}: {str(e)[:300]}")
    if value is None:
        return Outcome()
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        return Outcome(error=f"returned {value!r:.80}: not a finite number or None")
    return Outcome(reward=float(value))


class AgentError(RuntimeError):
    """Too many episodes of one collection failed: the agent, or the endpoint, is broken."""


def check_failures(outcomes: list[Outcome], max_failed_frac: float) -> None:
    failed = [o.error for o in outcomes if o.error]
    if len(failed) > max_failed_frac * len(outcomes):
        raise AgentError(f"{len(failed)} of {len(outcomes)} agent episodes failed (agent.max_failed_frac="
                         f"{max_failed_frac:g}); the first: {failed[0]}")
