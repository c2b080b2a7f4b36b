"""aegis's own metrics, each defined once and recorded twice: into Ray's metrics
(`ray.util.metrics`: the Ray dashboard, and Prometheus through Ray's service-discovery file)
and into this process's `prometheus_client` registry (the API's `/metrics`, for scrapers that
cannot reach Ray's ports).

    executions      aegis_executions_submitted_total{tenant}
                    aegis_executions_started_total{tenant}          (RUNNING)
                    aegis_executions_finished_total{state, tenant}  (terminal state)
                    aegis_submit_to_running_seconds                 (histogram)
                    aegis_placement_wait_seconds                    (histogram)
                    aegis_log_lines_stored_total
                    aegis_executions{state}, aegis_executions_pending{reason}  (gauges)
    nodes           aegis_nodes{status}                             (gauge)
    API             aegis_api_request_seconds{transport, route, code}  (histogram)
    node agents     aegis_node_agent_containers{node}               (gauge)
                    aegis_node_agent_log_lines_total{node}          (lines handed out)

Ray exports its application metrics with the prefix `ray_` (ray_aegis_...); `/metrics` without.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import prometheus_client as prom

log = logging.getLogger(__name__)
REGISTRY = prom.CollectorRegistry(auto_describe=True)
# Seconds: from a fast placement on an idle node to a wait of minutes for capacity.
LATENCY_BUCKETS = (0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900)
_METHOD = {"counter": "inc", "gauge": "set", "histogram": "observe"}
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 60)


class Metric:
    """One metric in both registries; Ray's half is made on first use inside a Ray process."""

    def __init__(
        self,
        kind: str,
        name: str,
        doc: str,
        labels: Sequence[str] = (),
        buckets: Sequence[float] = (),
    ) -> None:
        self.kind, self.name, self.doc = kind, name, doc
        self.labels, self.buckets = tuple(labels), tuple(buckets)
        made: Any = {"counter": prom.Counter, "gauge": prom.Gauge, "histogram": prom.Histogram}
        extra: dict[str, Any] = {"buckets": self.buckets} if kind == "histogram" else {}
        # prometheus_client adds `_total` to a counter's samples itself.
        base = name.removesuffix("_total") if kind == "counter" else name
        self.local = made[kind](base, doc, self.labels, registry=REGISTRY, **extra)
        # Ray also adds `_total` to a counter, and `ray_` before every name.
        self.ray_name = base
        self._ray: Any = None

    def _in_ray(self) -> Any:
        if self._ray is None:
            import ray

            if not ray.is_initialized():
                return None
            from ray.util import metrics

            if self.kind == "counter":
                self._ray = metrics.Counter(self.ray_name, self.doc, tag_keys=self.labels)
            elif self.kind == "gauge":
                self._ray = metrics.Gauge(self.ray_name, self.doc, tag_keys=self.labels)
            else:
                self._ray = metrics.Histogram(
                    self.ray_name, self.doc, boundaries=list(self.buckets), tag_keys=self.labels
                )
        return self._ray

    def _record(self, value: float, labels: dict[str, str]) -> None:
        labels = {k: str(v) for k, v in labels.items()}
        method = _METHOD[self.kind]
        local = self.local.labels(**labels) if self.labels else self.local
        getattr(local, method)(value)
        try:
            remote = self._in_ray()
            if remote is not None:
                getattr(remote, method)(value, tags=labels or None)
        except Exception as err:  # measuring must never break the work it measures
            log.debug("ray metric %s not recorded: %s", self.name, err)

    def inc(self, value: float = 1.0, **labels: str) -> None:
        self._record(value, labels)

    def set(self, value: float, **labels: str) -> None:
        self._record(value, labels)

    def observe(self, value: float, **labels: str) -> None:
        self._record(value, labels)


SUBMITTED = Metric(
    "counter", "aegis_executions_submitted_total", "executions submitted", ["tenant"]
)
STARTED = Metric(
    "counter", "aegis_executions_started_total", "executions whose container ran", ["tenant"]
)
FINISHED = Metric(
    "counter",
    "aegis_executions_finished_total",
    "executions ended, by terminal state",
    ["state", "tenant"],
)
SUBMIT_TO_RUNNING = Metric(
    "histogram",
    "aegis_submit_to_running_seconds",
    "from submission to the container running",
    buckets=LATENCY_BUCKETS,
)
PLACEMENT_WAIT = Metric(
    "histogram",
    "aegis_placement_wait_seconds",
    "from an attempt's placement group request to its bundle being placed",
    buckets=LATENCY_BUCKETS,
)
LOG_LINES_STORED = Metric(
    "counter", "aegis_log_lines_stored_total", "agent output lines stored in PostgreSQL"
)
EXECUTIONS = Metric("gauge", "aegis_executions", "executions by state", ["state"])
PENDING = Metric(
    "gauge", "aegis_executions_pending", "pending executions by why they wait", ["reason"]
)
NODES = Metric("gauge", "aegis_nodes", "nodes by status", ["status"])
API_REQUESTS = Metric(
    "histogram",
    "aegis_api_request_seconds",
    "API request latency by route and answer",
    ["transport", "route", "code"],
    buckets=REQUEST_BUCKETS,
)
AGENT_CONTAINERS = Metric(
    "gauge", "aegis_node_agent_containers", "containers a node agent supervises", ["node"]
)
AGENT_LOG_LINES = Metric(
    "counter",
    "aegis_node_agent_log_lines_total",
    "output lines a node agent handed to the control plane",
    ["node"],
)


def pending_reason(reason: str | None) -> str:
    """A pending execution's reason as a small set of values (free text would make a series
    per execution): placing, capacity, no_fit, retrying, other."""
    text = (reason or "").lower()
    if not text:
        return "placing"
    if "waiting for capacity" in text:
        return "capacity"
    if "lost" in text or "retry" in text:
        return "retrying"
    if "no node" in text or "never" in text or "cannot" in text:
        return "no_fit"
    return "other"


def set_all(metric: Metric, counts: dict[str, int], known: Sequence[str], label: str) -> None:
    """Set a gauge for every known value (0 where none): a state that emptied reads 0, not
    its last count."""
    for value in sorted(set(known) | set(counts)):
        metric.set(counts.get(value, 0), **{label: value})


def exposition() -> tuple[bytes, str]:
    """This process's metrics in Prometheus text format, and its content type."""
    return prom.generate_latest(REGISTRY), prom.CONTENT_TYPE_LATEST
