"""Prometheus metrics of the operator (served on config.metrics_port)."""

from prometheus_client import Counter, Gauge, Histogram

RECONCILES = Counter("agentry_reconcile_total", "Reconciles by kind and outcome", ["kind", "outcome"])
RECONCILE_SECONDS = Histogram("agentry_reconcile_duration_seconds", "Reconcile duration by kind", ["kind"])
EXECUTIONS = Gauge("agentry_executions", "Executions known to this operator by phase", ["phase"])
PHASE_TRANSITIONS = Counter(
    "agentry_execution_phase_transitions_total", "Execution phase transitions", ["phase"]
)
POOL_READY = Gauge(
    "agentry_pool_ready_pods", "Warm pods ready for a claim, by namespace and pool", ["namespace", "pool"]
)
