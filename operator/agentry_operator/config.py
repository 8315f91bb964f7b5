"""Operator settings: one documented place, read from AGENTRY_* environment variables."""

from __future__ import annotations

from functools import lru_cache

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class OperatorConfig(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AGENTRY_", extra="ignore", populate_by_name=True)

    # -- Namespaces to watch (a JSON list, e.g. ["agents"]); empty means every namespace.
    watch_namespaces: list[str] = Field(default_factory=list)
    # -- Image every Execution's Job runs.
    workspace_image: str = "agentry/workspace:dev"
    # -- Image of the schedule tick pod (creates an Execution); the operator image by default.
    tick_image: str = "agentry/operator:dev"
    image_pull_policy: str = "IfNotPresent"
    # -- ServiceAccount of run pods (no token is mounted; it carries Workload Identity on GKE).
    workload_service_account: str | None = None
    # -- ServiceAccount of schedule tick pods (needs create on executions only).
    tick_service_account: str = "agentry-tick"
    # -- Seconds a finished Job (and its pods) is kept; the Execution keeps the outcome.
    job_ttl_seconds: int = 3600
    # -- Size limit of the writable /workspace and /tmp emptyDirs.
    workspace_size_limit: str = "1Gi"
    default_cpu_request: str = "100m"
    default_memory_request: str = "256Mi"
    default_memory_limit: str = "1Gi"
    # -- Base URLs the runtime gets when the Agent does not set one (e.g. an in-cluster gateway).
    anthropic_base_url: str | None = None
    openai_base_url: str | None = None
    # -- Port of Prometheus metrics (0 disables).
    metrics_port: int = 9090
    # -- Admission webhook: listen address/port, and the host the API server calls.
    webhook_enabled: bool = True
    # -- Let kopf create/patch the ValidatingWebhookConfiguration itself (off when a chart ships it).
    webhook_managed: bool = True
    webhook_addr: str = "0.0.0.0"
    webhook_port: int = 9443
    webhook_host: str | None = None
    webhook_certfile: str | None = None
    webhook_keyfile: str | None = None
    # -- kopf peering (several replicas: one acts, by priority).
    peering_name: str | None = None
    peering_priority: int = 100
    # -- Seconds between coalesced refreshes of Agent status (totals, history, next run).
    agent_refresh_seconds: float = 1.0
    # -- Cloud Scheduler backend (spec.schedule.backend: CloudScheduler); enabled when project,
    # location, target URL and service account are all set. Project and location of the jobs.
    cloud_scheduler_project: str | None = Field(
        default=None,
        validation_alias=AliasChoices("AGENTRY_CLOUD_SCHEDULER_PROJECT", "GOOGLE_CLOUD_PROJECT"),
    )
    cloud_scheduler_location: str | None = None
    # -- Base URL of the API the jobs call (e.g. https://agentry.example.com), and the path appended
    # to it ({namespace} and {name} are the Agent's, URL-quoted): POST {target_url}{path}.
    cloud_scheduler_target_url: str | None = None
    cloud_scheduler_path: str = "/api/agents/{namespace}/{name}/runs"
    # -- Google service account whose OIDC token the jobs send; and the token's audience (default:
    # the target URL). The API must accept exactly this audience and service account.
    cloud_scheduler_service_account: str | None = None
    cloud_scheduler_audience: str | None = None
    # -- Tests and local fakes only: host:port of a Cloud Scheduler gRPC server reached without TLS
    # or credentials. Unset in production (cloudscheduler.googleapis.com with Workload Identity).
    cloud_scheduler_endpoint: str | None = None
    # -- Deadline of one Cloud Scheduler call, transient-error retries included; and the delay before
    # a failed reconcile (refused, unreachable) is tried again.
    cloud_scheduler_timeout_seconds: float = 30.0
    cloud_scheduler_retry_seconds: float = 60.0


@lru_cache
def get_config() -> OperatorConfig:
    return OperatorConfig()
