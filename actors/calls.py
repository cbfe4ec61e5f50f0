"""Every wait of the driver on an actor is bounded and names the actor and the phase.

Ray reports an actor that died in the middle of a call within seconds (RayActorError); a call
to a live actor that never answers (a collective waiting on a dead peer) would wait for ever:
`bounded_get` turns both into an `ActorFailure`, which the run recovers from (actors/recovery.py)
or stops on. An exception raised by the actor's own code passes through unchanged.
"""

from __future__ import annotations

import os
import time
from typing import Callable

import ray
from ray.exceptions import RayActorError


def actor_names(role: str, count: int) -> list[str]:
    """The names of a role's actors (`engine-0`, `reward-1`, ...): Ray's, and the ones errors give."""
    return [f"{role}-{i}" for i in range(count)]


class ActorFailure(RuntimeError):
    """Actors (by name) died or did not answer in a phase of the step."""

    def __init__(self, actors: list[str], phase: str, why: str, hung: bool = False):
        super().__init__(f"{', '.join(actors)}: {why} (phase: {phase})")
        self.actors, self.phase, self.hung = actors, phase, hung  # hung: alive, but gave no answer


def bounded_get(calls: list[tuple[str, ray.ObjectRef]], phase: str, timeout_s: float) -> list:
    """The results of `calls` ((actor name, the call's ref) pairs), in order. Returns or raises as
    soon as one call fails: a dead actor, or calls still running after `timeout_s`, raise
    ActorFailure."""
    pending = {ref: name for name, ref in calls}
    results = {}
    deadline = time.monotonic() + timeout_s
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1, timeout=max(0.0, deadline - time.monotonic()))
        if not done:
            raise ActorFailure(sorted(set(pending.values())), phase, f"no answer within {timeout_s:.0f} s",
                               hung=True)
        for ref in done:
            name = pending.pop(ref)
            try:
                results[ref] = ray.get(ref)
            except RayActorError as e:
                raise ActorFailure([name], phase, f"the actor died ({type(e).__name__})") from e
    return [results[ref] for _, ref in calls]


def _pid(actor) -> int:
    return os.getpid()


def process_ids(named: list[tuple[str, object]], timeout_s: float,
                watch: Callable[[], None] = lambda: None) -> dict[str, int]:
    """The process id of each (name, actor handle), waiting up to `timeout_s` for actors that Ray is
    restarting (a call to one fails at once with ActorUnavailableError, so it is retried). `watch` is
    called every few seconds while waiting, and may raise (actors/nodes.py: a lost node)."""
    deadline, pids = time.monotonic() + timeout_s, {}
    for name, actor in named:
        while name not in pids:
            try:
                left = max(0.1, min(5.0, deadline - time.monotonic()))
                pids[name] = ray.get(actor.__ray_call__.remote(_pid), timeout=left)
            except (RayActorError, ray.exceptions.GetTimeoutError) as e:
                watch()
                if time.monotonic() > deadline or (isinstance(e, RayActorError) and not _restarting(e)):
                    why = f"did not come back within {timeout_s:.0f} s: {e}"
                    raise ActorFailure([name], "restart", why) from e
                time.sleep(0.5)
    return pids


def _restarting(error: RayActorError) -> bool:
    """Unavailable (restarting, just restarted) rather than dead for good."""
    return isinstance(error, ray.exceptions.ActorUnavailableError)


def restart_actors(named: list[tuple[str, object]], old_pids: dict[str, int],
                   timeout_s: float) -> dict[str, int]:
    """Kill each (name, actor) so that Ray restarts it, even one stuck in a call; returns the new
    process ids, once every actor answers from a process other than `old_pids[name]`."""
    for _, actor in named:
        ray.kill(actor, no_restart=False)
    deadline, pids = time.monotonic() + timeout_s, {}
    for name, actor in named:
        while name not in pids:
            pid = process_ids([(name, actor)], max(0.1, deadline - time.monotonic()))[name]
            if pid != old_pids[name]:
                pids[name] = pid
            elif time.monotonic() > deadline:
                raise ActorFailure([name], "restart", f"still the old process after {timeout_s:.0f} s")
            else:
                time.sleep(0.5)
    return pids


def restart_counts(named: list[tuple[str, object]]) -> dict[str, int]:
    """How often Ray has restarted each (name, actor handle), from its actor table: no call to the
    actors, so it costs well under a millisecond each and never waits on a busy actor."""
    # Private: the public ray.util.state.list_actors (ActorState.num_restarts) asks the dashboard's API
    # server, which a Ray started without a dashboard (include_dashboard=False, as the tests') lacks.
    return {name: ray._private.state.actors(actor._actor_id.hex())["NumRestarts"] for name, actor in named}
