"""Step metrics on the Ray dashboard: one `ray.util.metrics.Gauge` per metric key.

Ray exports them to its Prometheus endpoint, so the dashboard's Metrics page (with Grafana)
and any Prometheus scraper show training progress while the job runs. Names are the metric
keys with `/`, `@` and `.` turned into `_`, prefixed `r1ray_` (e.g. `r1ray_reward_mean`).
"""

from __future__ import annotations

import re

import ray


@ray.remote(num_cpus=0)
class MetricsExporter:
    def __init__(self, run_name: str):
        self.run_name = run_name
        self.gauges: dict = {}

    def record(self, metrics: dict, step: int) -> None:
        from ray.util.metrics import Gauge

        for key, value in {**metrics, "step": step}.items():
            if not isinstance(value, (int, float)):
                continue
            name = gauge_name(key)
            if name not in self.gauges:
                self.gauges[name] = Gauge(name, description=key, tag_keys=("run",))
            self.gauges[name].set(float(value), tags={"run": self.run_name})


def gauge_name(key: str) -> str:
    """The gauge of a metric key (Prometheus shows it with Ray's `ray_` prefix: ray_r1ray_reward_mean)."""
    return "r1ray_" + re.sub(r"[^a-zA-Z0-9_]", "_", key)


def dashboard_sink(run_name: str):
    """A MetricsLogger sink that forwards each step's metrics to the exporter actor."""
    exporter = MetricsExporter.options(name=f"metrics-{run_name}", get_if_exists=True).remote(run_name)
    return lambda metrics, step: exporter.record.remote(metrics, step)
