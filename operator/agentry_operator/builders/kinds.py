"""The parts of Kubernetes objects the operator reads and writes, as typed shapes of their JSON
(camelCase keys, every key optional): Jobs, Pods and Executions as the API server sends them, read
without lightkube's models, and the pieces of the manifests it builds (env, owner references)."""

from __future__ import annotations

from typing import TypedDict


class OwnerReference(TypedDict, total=False):
    apiVersion: str
    kind: str
    name: str
    uid: str
    controller: bool
    blockOwnerDeletion: bool


class Meta(TypedDict, total=False):
    name: str
    namespace: str
    uid: str
    generation: int
    resourceVersion: str
    creationTimestamp: str
    deletionTimestamp: str
    labels: dict[str, str]
    annotations: dict[str, str]
    ownerReferences: list[OwnerReference]


class Condition(TypedDict, total=False):
    type: str
    status: str
    reason: str
    message: str
    lastTransitionTime: str
    observedGeneration: int


class JobSpec(TypedDict, total=False):
    activeDeadlineSeconds: int
    backoffLimit: int


class JobStatus(TypedDict, total=False):
    conditions: list[Condition]
    startTime: str
    completionTime: str
    active: int
    failed: int
    succeeded: int


class Job(TypedDict, total=False):
    metadata: Meta
    spec: JobSpec
    status: JobStatus


class Terminated(TypedDict, total=False):
    exitCode: int
    reason: str
    message: str
    finishedAt: str


class Waiting(TypedDict, total=False):
    reason: str
    message: str


class ContainerState(TypedDict, total=False):
    waiting: Waiting
    terminated: Terminated


class ContainerStatus(TypedDict, total=False):
    name: str
    state: ContainerState
    lastState: ContainerState


class SecretKeySelector(TypedDict, total=False):
    name: str
    key: str
    optional: bool


class EnvVarSource(TypedDict, total=False):
    secretKeyRef: SecretKeySelector


class EnvVar(TypedDict, total=False):
    name: str
    value: str
    valueFrom: EnvVarSource


class Container(TypedDict, total=False):
    name: str
    env: list[EnvVar]


class PodSpec(TypedDict, total=False):
    containers: list[Container]


class PodStatus(TypedDict, total=False):
    phase: str
    reason: str
    message: str
    startTime: str
    conditions: list[Condition]
    containerStatuses: list[ContainerStatus]


class Pod(TypedDict, total=False):
    metadata: Meta
    spec: PodSpec
    status: PodStatus


class UsageRead(TypedDict, total=False):
    inputTokens: int
    outputTokens: int
    costUSD: str


class NameRef(TypedDict, total=False):
    name: str


class RunSpec(TypedDict, total=False):
    """An Execution's spec: the fields read from the watch's copy, and those the operator writes
    into the Executions it creates (a workflow step's)."""

    agentRef: NameRef
    trigger: str
    scheduledTime: str
    cancel: bool
    input: str
    correlationId: str
    priority: int
    outputs: list[str]


class RunStatus(TypedDict, total=False):
    """An Execution's status, the fields read from the watch's copy (written as ExecutionStatus)."""

    phase: str
    reason: str
    startTime: str
    completionTime: str
    jobName: str
    usage: UsageRead
    mcp: dict[str, object]


class Run(TypedDict, total=False):
    """An Execution as the watch keeps it."""

    metadata: Meta
    spec: RunSpec
    status: RunStatus


class Backfill(TypedDict, total=False):
    start: str
    end: str


class PauseOnFailure(TypedDict, total=False):
    consecutiveFailures: int


class Schedule(TypedDict, total=False):
    """An Agent's spec.schedule, as the operator reads it (the CRD's schema checked it)."""

    cron: str
    timeZone: str
    suspend: bool
    jitterSeconds: int
    catchupWindowSeconds: int
    maxCatchupRuns: int
    pauseOnFailure: PauseOnFailure
    backfill: Backfill
    backend: str  # Agents: CronJob, Cloud Scheduler or the operator's timers
    parameters: dict[str, str]  # Workflows: the scheduled runs' parameters


class SkippedRuns(TypedDict, total=False):
    count: int
    first: str
    last: str
    reason: str  # Workflows: why they did not start


class ScheduleState(TypedDict, total=False):
    """status.scheduleState as the operator computes it (written through the agentry_common models)."""

    signature: str
    since: str
    through: str
    skippedRuns: int
    lastSkipped: SkippedRuns
    consecutiveFailures: int
    backfilled: str


class WorkflowRunSpec(TypedDict, total=False):
    """A WorkflowRun's spec, as a scheduled run is created with."""

    workflowRef: NameRef
    scheduledTime: str
    parameters: dict[str, str]
