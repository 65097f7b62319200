"""Request counts and latencies in TF Serving's Prometheus names and text format."""

from __future__ import annotations

import threading

PROMETHEUS_PATH = "/monitoring/prometheus/metrics"


class Metrics:
    _BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30)

    def __init__(self):
        self._lock = threading.Lock()
        self.requests: dict[tuple, int] = {}
        self.latency: dict[tuple, list] = {}

    def record(self, entrypoint: str, model: str, status: str, seconds: float):
        with self._lock:
            key = (entrypoint, model, status)
            self.requests[key] = self.requests.get(key, 0) + 1
            buckets = self.latency.setdefault((entrypoint, model),
                                              [0] * len(self._BUCKETS) + [0, 0.0])
            for i, b in enumerate(self._BUCKETS):
                if seconds <= b:
                    buckets[i] += 1
            buckets[-2] += 1
            buckets[-1] += seconds

    def page(self, manager) -> str:
        lines = ["# TYPE :tensorflow:serving:request_count counter"]
        with self._lock:
            for (entry, model, status), n in sorted(self.requests.items()):
                lines.append(f':tensorflow:serving:request_count{{entrypoint="{entry}",'
                             f'model_name="{model}",status="{status}"}} {n}')
            lines.append("# TYPE :tensorflow:serving:request_latency histogram")
            for (entry, model), b in sorted(self.latency.items()):
                labels = f'entrypoint="{entry}",model_name="{model}"'
                for edge, n in zip(self._BUCKETS, b):
                    lines.append(f':tensorflow:serving:request_latency_bucket{{{labels},'
                                 f'le="{edge}"}} {n}')
                lines.append(f':tensorflow:serving:request_latency_bucket{{{labels},le="+Inf"}} '
                             f"{b[-2]}")
                lines.append(f":tensorflow:serving:request_latency_count{{{labels}}} {b[-2]}")
                lines.append(f":tensorflow:serving:request_latency_sum{{{labels}}} {b[-1]:.6f}")
        lines.append("# TYPE :tensorflow:core:servable_available gauge")
        for name, versions in sorted(manager.available().items()):
            for v in versions:
                lines.append(f':tensorflow:core:servable_available{{model_name="{name}",'
                             f'version="{v}"}} 1')
        return "\n".join(lines) + "\n"
