"""What a run does when one of its processes dies, hangs or is told to stop (docs/reliability.md).

The config section (`fault.*`) and the driver's stop request (SIGTERM, Ctrl-C, `ray job stop`):
plain Python, no Ray. The recovery itself, which restarts actors, is actors/recovery.py.
"""

from __future__ import annotations

import signal
import threading
import time
from dataclasses import dataclass
from typing import Optional


@dataclass
class FaultConfig:
    restart: bool = True  # a dead actor is restarted, brought back to the run's state, the step retried
    max_failures_in_a_row: int = 3  # failures without a finished step between them: the run stops
    call_timeout_s: float = 600.0  # the longest the driver waits on one call (update, reference, sync)
    collective_timeout_s: float = 120.0  # a collective (weight sync, DeepSpeed's) waiting on a peer
    restart_timeout_s: float = 600.0  # the longest a restarted actor may take to come back
    lost_node_wait_s: float = 60.0  # a lost node's actors not placed anew on another node by then: stop


class FaultError(RuntimeError):
    """The run cannot go on: the message names the actor, the phase and what was tried."""


class StopRequest:
    """SIGTERM or SIGINT (Ctrl-C; `ray job stop` sends SIGTERM) asks the run to stop at the next step
    boundary, with a checkpoint. A second signal stops at once (KeyboardInterrupt), the last
    checkpoint being the one to resume from. Handlers can only be set in the main thread; elsewhere
    (a run started from a thread) this does nothing."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.signal: Optional[str] = None  # the name of the signal received
        self.at: Optional[float] = None  # time.monotonic() when it arrived
        self._previous: dict = {}

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)

    @property
    def requested(self) -> bool:
        return self.signal is not None

    def _handle(self, signum: int, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt(f"second {signal.Signals(signum).name}: stopping now")
        self.signal, self.at = signal.Signals(signum).name, time.monotonic()
        print(f"{self.signal} received: stopping at the end of this step, with a checkpoint "
              "(send it again to stop at once)", flush=True)
