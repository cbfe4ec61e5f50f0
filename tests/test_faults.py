"""The pure parts of fault handling: the driver's stop request, and forgetting metrics a run redoes."""

import os
import signal

import pytest

from system.config.grpo import ConfigError, load_config
from system.faults import StopRequest
from system.reporting.metrics import MetricsLogger, drop_metrics_from, read_metrics


def test_a_first_signal_asks_to_stop_at_the_step_boundary_and_a_second_stops_at_once(capsys):
    before = signal.getsignal(signal.SIGTERM)
    with StopRequest() as stop:
        assert not stop.requested
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.requested and stop.signal == "SIGTERM"
        assert "stopping at the end of this step" in capsys.readouterr().out
        with pytest.raises(KeyboardInterrupt, match="second SIGINT"):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGTERM) is before  # the handlers are put back


def test_metrics_of_steps_a_run_goes_back_over_are_dropped(tmp_path):
    logger = MetricsLogger(str(tmp_path))
    for step in range(4):
        logger.log({"reward/mean": float(step)}, step)
    drop_metrics_from(str(tmp_path), 2)
    logger.log({"reward/mean": 9.0}, 2)
    kept = [(r["step"], r["reward/mean"]) for r in read_metrics(str(tmp_path))]
    assert kept == [(0, 0.0), (1, 1.0), (2, 9.0)]


@pytest.mark.parametrize("override", ["fault.max_failures_in_a_row=0", "fault.call_timeout_s=0",
                                      "placement.node_resources={engines: {rollout_node: 1}}",
                                      "fault.restarts=1"])
def test_fault_and_node_placement_settings_are_checked(override):
    with pytest.raises(ConfigError):
        load_config(os.path.join(os.path.dirname(__file__), "..", "configs", "grpo_countdown_cpu.yaml"),
                    [override])
