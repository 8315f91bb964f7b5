"""Operator settings: one documented place, read from AGENTRY_* environment variables."""

from __future__ import annotations

import json
from functools import lru_cache

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from agentry_common.models import DEFAULT_MODEL, ModelSpec, parse_model
from agentry_common.pool import CLAIM_PORT, PoolProfile
from agentry_common.tokens import Keyring


class Settings(BaseSettings):
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
    # -- StorageClass of kept workspaces (Agent spec.workspace.persistent) whose Agent names none;
    # empty: the cluster's default StorageClass.
    workspace_storage_class: str = ""
    default_cpu_request: str = "100m"
    default_memory_request: str = "256Mi"
    default_memory_limit: str = "1Gi"
    # -- CPU limit of run containers whose Agent sets none (a runaway shell loop gets this much CPU,
    # not the node's); raised to the Agent's CPU request when that is larger. Empty: no default limit.
    default_cpu_limit: str = "1"
    # -- The model of Agents that set no spec.model, as provider/name (e.g. anthropic/claude-sonnet-4-6;
    # a bare name means anthropic). Empty: such Agents are refused (Ready=False InvalidSpec).
    default_model: str = DEFAULT_MODEL
    # -- Base URLs the runtime gets when the Agent does not set one. With the gateway on they default
    # to gateway_url (Anthropic) and gateway_url + "/v1" (OpenAI).
    anthropic_base_url: str | None = None
    openai_base_url: str | None = None
    # -- Governance (docs/governance.md): base URL of the LLM gateway, e.g.
    # http://agentry-gateway.agentry.svc:8090. Unset: governance off (runs use spec.secrets keys,
    # no admission). Set: every start asks the gateway's admission, run pods get a per-Execution
    # token instead of provider keys, and the token keyring below is required.
    gateway_url: str | None = None
    # -- The egress proxy (docs/security.md, "Egress"), e.g. http://agentry-egress.agentry.svc:3128:
    # run pods get it as AGENTRY_EGRESS_PROXY and HTTP(S)_PROXY (the gateway excepted in NO_PROXY).
    egress_proxy_url: str | None = None
    # -- Token keyring shared with the gateway: a mounted Secret directory (one file per key id), or
    # kid:secret pairs (development); the minting key id (default: the greatest).
    token_keys_dir: str | None = None
    token_keys: str | None = None
    token_kid: str | None = None
    # -- Longest an Execution may wait for budget (maxWaitSeconds of admission) when its schedule sets
    # no startingDeadlineSeconds; counted from the Execution's creation.
    admission_max_wait_seconds: int = Field(default=86400, ge=0)
    # -- A waiting Execution asks again after the gateway's retryAfterSeconds, but at most this long
    # (budgets may be raised, or reservations released, before the window frees).
    admission_recheck_seconds: float = Field(default=300.0, gt=0)
    # -- Gateway unreachable (or 5xx): the Execution stays Pending and asks again after this long.
    admission_unavailable_retry_seconds: float = Field(default=30.0, gt=0)
    # -- Timeout of one admission call.
    admission_timeout_seconds: float = Field(default=10.0, gt=0)
    # -- Tracing (docs/observability.md): the OTLP/HTTP endpoint of a collector, e.g.
    # http://otel-collector.monitoring.svc:4318 (the standard OTEL_EXPORTER_OTLP_ENDPOINT, which the
    # operator's own spans use too). Set: run pods get it with their parent span's TRACEPARENT.
    otlp_endpoint: str | None = Field(
        default=None,
        validation_alias=AliasChoices("AGENTRY_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"),
    )
    # -- The sampler of run pods (the standard OTEL_TRACES_SAMPLER / _ARG), e.g. parentbased_traceidratio
    # and 0.1. Unset: the SDK's default (parent-based, always on).
    traces_sampler: str | None = Field(
        default=None, validation_alias=AliasChoices("AGENTRY_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER")
    )
    traces_sampler_arg: str | None = Field(
        default=None, validation_alias=AliasChoices("AGENTRY_TRACES_SAMPLER_ARG", "OTEL_TRACES_SAMPLER_ARG")
    )
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
    # -- The Agent policy file (agentry_common.policy: JSON or YAML; the chart's `policy:` values),
    # applied by the webhook to every Agent change. Unset: the policy's defaults.
    policy_file: str | None = None
    # -- Users (Kubernetes usernames, e.g. system:serviceaccount:agentry:agentry-api) that act for owners:
    # they alone set or change the `agentry.dev/owner` label (and `agentry.dev/owner-kind`) of Agents,
    # Executions, Workflows and WorkflowRuns, and start runs of owned Agents (the chart lists the API,
    # the operator and the schedule tick). Anybody else's write that sets or changes it is refused.
    owner_label_writers: list[str] = Field(default_factory=list)
    # -- Also allow members of system:masters (cluster administrators, who can impersonate the API's
    # service account anyway).
    owner_label_trust_masters: bool = True
    # -- The run gate's quotas per owner (the `agentry.dev/owner` label of a run's Agent; docs/security.md,
    # "Who may start a run"): the API's own values (chart: api.quotas, api.guestQuotas), enforced here
    # for every path that starts a run. Runs of Agents without an owner are bounded by the namespace's
    # ResourceQuota instead. 0: no limit.
    quota_concurrent_runs: int = Field(default=5, ge=0)
    quota_runs_per_day: int = Field(default=200, ge=0)
    guest_quota_concurrent_runs: int = Field(default=1, ge=0)
    guest_quota_runs_per_day: int = Field(default=20, ge=0)
    # -- Namespace of the operator's own records (each owner's runs of the day: ConfigMaps
    # agentry-runs-*), out of reach of the workload namespace's users.
    state_namespace: str = Field(
        default="default", validation_alias=AliasChoices("AGENTRY_STATE_NAMESPACE", "POD_NAMESPACE")
    )
    # -- Leader election (several replicas): every replica serves the webhook, the one holding the
    # Lease `lease_name` in `lease_namespace` (default: POD_NAMESPACE) reconciles (controller/leader.py).
    # Off: one replica serves and reconciles, without a Lease.
    leader_election: bool = False
    lease_name: str = "agentry-operator"
    lease_namespace: str = Field(
        default="default", validation_alias=AliasChoices("AGENTRY_LEASE_NAMESPACE", "POD_NAMESPACE")
    )
    lease_seconds: int = Field(default=10, ge=3, le=120)
    # -- Warm pools (docs/runs.md, "Warm pool"; the chart's operator.pools): a JSON list of pools
    # (agentry_common.pool.PoolProfile). Empty: every run starts as a Job of its own.
    pools: list[PoolProfile] = Field(default_factory=list)
    # -- The warm pods' claim port (the NetworkPolicy opens it to the operator only).
    pool_claim_port: int = Field(default=CLAIM_PORT, ge=1, le=65535)
    # -- Seconds between coalesced refreshes of Agent status (totals, history, next run).
    agent_refresh_seconds: float = 1.0
    # -- Seconds between sweeps of Agent memory stores whose Agent is gone (deleted while the operator
    # was away, or a drop the gateway missed); each Agent's deletion drops its own store at once.
    memory_sweep_seconds: float = Field(default=600.0, gt=0)
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

    @field_validator("owner_label_writers", mode="before")
    @classmethod
    def _json_list(cls, value: object) -> object:
        # From the environment pydantic-settings decodes JSON; a string passed directly is decoded here.
        return json.loads(value) if isinstance(value, str) else value

    @field_validator("default_model")
    @classmethod
    def _check_default_model(cls, value: str) -> str:
        if value.strip():
            parse_model(value)  # a malformed default stops the operator at startup, not each run
        return value.strip()

    @property
    def default_model_spec(self) -> ModelSpec | None:
        """The installation default model, or None when it is unset."""
        return parse_model(self.default_model) if self.default_model else None

    @property
    def governed(self) -> bool:
        """The LLM gateway is on: admission before each run, run tokens instead of provider keys."""
        return bool(self.gateway_url)

    @property
    def tracing(self) -> bool:
        """Spans are exported (an OTLP endpoint is set): run pods trace too."""
        return bool(self.otlp_endpoint)

    @property
    def gateway_base(self) -> str:
        return (self.gateway_url or "").rstrip("/")

    @property
    def run_anthropic_base_url(self) -> str | None:
        """ANTHROPIC_BASE_URL of run pods: explicit setting, else the gateway when it is on."""
        return self.anthropic_base_url or (self.gateway_base if self.governed else None)

    @property
    def run_openai_base_url(self) -> str | None:
        """OPENAI_BASE_URL of run pods: explicit setting, else the gateway's /v1 when it is on."""
        return self.openai_base_url or (f"{self.gateway_base}/v1" if self.governed else None)

    def keyring(self) -> Keyring:
        """The token keyring (required when the gateway is on); ValueError says what to set."""
        try:
            return Keyring.from_settings(self.token_keys_dir, self.token_keys, self.token_kid)
        except ValueError as exc:
            raise ValueError(f"AGENTRY_GATEWAY_URL is set but: {exc}") from exc


@lru_cache
def get_settings() -> Settings:
    return Settings()
